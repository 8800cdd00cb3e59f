package bpf

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

const page = 4096

// TestAgreementStoppedChildren: children that lock, pin and limit known
// amounts as different users, stopped while read, agree with /proc field by
// field and with what they made: VmLck, VmPin, both limits, uid, CapEff.
func TestAgreementStoppedChildren(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	if os.Getpagesize() != page {
		t.Skipf("expected sizes assume 4 KiB pages, have %d", os.Getpagesize())
	}
	type want struct {
		locked, pinned uint64
		soft, hard     uint64
		uid            int
		ipcLock        bool
	}
	var kids []*child
	var wants []want
	add := func(o childOpts, mode string, arg uint64, w want) *child {
		c := startChild(t, o, mode, arg)
		if mode == "uring" {
			c.next()
		}
		kids = append(kids, c)
		wants = append(wants, w)
		return c
	}
	u1, u2, u3 := freshUID(t), freshUID(t), freshUID(t)
	add(childOpts{uid: -1, memlock: &[2]uint64{4 << 20, 8 << 20}}, "lock", 1<<20+3*page,
		want{locked: 1<<20 + 3*page, soft: 4 << 20, hard: 8 << 20, uid: 0, ipcLock: true})
	add(childOpts{uid: u1, memlock: &[2]uint64{2 << 20, 4 << 20}}, "lock", 512<<10,
		want{locked: 512 << 10, soft: 2 << 20, hard: 4 << 20, uid: u1})
	add(childOpts{uid: u2, caps: []uintptr{unix.CAP_IPC_LOCK}, memlock: &[2]uint64{0, 0}}, "lock", 64<<10,
		want{locked: 64 << 10, soft: 0, hard: 0, uid: u2, ipcLock: true})
	add(childOpts{uid: u3, memlock: &[2]uint64{1 << 20, 1 << 20}}, "uring", 256<<10,
		want{pinned: 256 << 10, soft: 1 << 20, hard: 1 << 20, uid: u3})
	for _, c := range kids {
		c.stop()
	}
	s := snapshot(t, m)
	for i, c := range kids {
		w := wants[i]
		t.Run(fmt.Sprintf("%s_%d", c.cmd.Args[1], c.pid), func(t *testing.T) {
			task := s.find(c.pid)
			if task == nil {
				t.Fatalf("pid %d missing", c.pid)
			}
			st, _ := procStatus(t, c.pid, c.pid)
			lim := procLimit(t, c.pid)
			check := func(what string, bpf, proc, made uint64) {
				t.Helper()
				if bpf != proc || bpf != made {
					t.Errorf("%s: iterator %d, /proc %d, child made %d", what, bpf, proc, made)
				}
			}
			check("VmLck", task.LockedBytes, st.Locked, w.locked)
			check("VmPin", task.PinnedBytes, st.Pinned, w.pinned)
			check("soft limit", task.MemlockSoft, lim.Soft, w.soft)
			check("hard limit", task.MemlockHard, lim.Hard, w.hard)
			check("uid", uint64(task.UID), uint64(st.UID), uint64(w.uid))
			if task.CapEffective != st.CapEff {
				t.Errorf("CapEff: iterator %#x, /proc %#x", task.CapEffective, st.CapEff)
			}
			if task.CapIPCLock() != w.ipcLock || st.IPCLock() != w.ipcLock {
				t.Errorf("CAP_IPC_LOCK: iterator %v, /proc %v, want %v", task.CapIPCLock(), st.IPCLock(), w.ipcLock)
			}
			if !task.InitUserNS() || task.Comm() != "child" || task.Flags&FlagLeader == 0 {
				t.Errorf("init userns %v, comm %q, flags %#x", task.InitUserNS(), task.Comm(), task.Flags)
			}
		})
	}
}

// TestLeaderExited: a process whose leader called pthread_exit has no Vm
// lines in /proc/<pid>/status; the iterator reports it once, with the live
// thread's address space, which /proc/<pid>/task/<tid>/status agrees with.
func TestLeaderExited(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	const locked = 128 << 10
	c := startChild(t, childOpts{uid: -1}, "leader-exit", locked)
	c.expect("ready")
	// The leader exits after the thread is created: wait for the zombie.
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.pid))
		if err != nil {
			t.Fatal(err)
		}
		if state := statState(b); state == 'Z' {
			break
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 1e6}, nil)
	}
	c.stop()
	s := snapshot(t, m)
	n := 0
	for i := range s.Tasks {
		if int(s.Tasks[i].PID) == c.pid {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("pid %d appears %d times", c.pid, n)
	}
	task := s.find(c.pid)
	if task.TID == task.PID || task.Flags&(FlagThread|FlagLeader|FlagMM) != FlagThread|FlagLeader|FlagMM {
		t.Fatalf("tid %d flags %#x: want a live thread's mm under the leader's record", task.TID, task.Flags)
	}
	leader, raw := procStatus(t, c.pid, c.pid)
	if leader.HasMM {
		t.Fatalf("/proc/%d/status has Vm lines for an exited leader:\n%s", c.pid, raw)
	}
	thread, _ := procStatus(t, c.pid, int(task.TID))
	if task.LockedBytes != thread.Locked || task.LockedBytes != locked {
		t.Errorf("VmLck: iterator %d, /proc/%d/task/%d %d, child locked %d", task.LockedBytes, c.pid, task.TID, thread.Locked, locked)
	}
}

// statState returns the state letter of /proc/<pid>/stat (after the comm's
// closing parenthesis).
func statState(b []byte) byte {
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2]
		}
	}
	return 0
}
