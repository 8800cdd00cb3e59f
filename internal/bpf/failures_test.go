package bpf

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf/bpftest"
	"golang.org/x/sys/unix"
)

// attachFailures attaches the tracepoint programs from a thread that sees
// tracefs (bpftest.WithTracefs), or skips without the privileges.
func attachFailures(t testing.TB, m *Module) {
	t.Helper()
	err := bpftest.WithTracefs(func() error { return m.AttachFailures("") })
	if err != nil {
		if errors.Is(err, ErrPermission) || errors.Is(err, unix.EPERM) {
			t.Skipf("cannot attach tracepoints here: %v", err)
		}
		t.Fatal(err)
	}
}

// TestFailedMlockCountedOnce: an unprivileged child (fresh uid, no
// capabilities, RLIMIT_MEMLOCK 64 KiB) locks a page, then asks for 1 MiB
// more: the failure is counted exactly once, as mlock ENOMEM of that
// process with those bytes, uid and comm, and the success is counted.
func TestFailedMlockCountedOnce(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	attachFailures(t, m)
	var before FailureCounts
	if err := m.Failures(&before); err != nil {
		t.Fatal(err)
	}
	uid := freshUID(t)
	const asked = 1 << 20
	c := startChild(t, childOpts{UID: uid, Memlock: &[2]uint64{64 << 10, 64 << 10}}, "mlock", asked)
	if _, err := c.Stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	c.Expect("error 12") // ENOMEM, as the child saw it
	var after FailureCounts
	if err := m.Failures(&after); err != nil {
		t.Fatal(err)
	}
	var mine []Failure
	for _, f := range after.Failures {
		if int(f.PID) == c.Pid {
			mine = append(mine, f)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("child %d has %d failure entries: %+v", c.Pid, len(mine), mine)
	}
	f := mine[0]
	if f.Syscall != SyscallMlock || f.Errno != unix.ENOMEM || f.Count != 1 || f.Bytes != asked ||
		f.UID != uint32(uid) || f.Comm() != "child" || f.LastBootNS == 0 {
		t.Errorf("failure %+v (%s, %v, comm %q): want mlock ENOMEM once, %d bytes, uid %d", f, f.Syscall, f.Errno, f.Comm(), asked, uid)
	}
	if got := after.Successes[SyscallMlock] - before.Successes[SyscallMlock]; got < 1 {
		t.Errorf("mlock successes rose by %d, the child's first mlock succeeded", got)
	}
	if after.Dropped != before.Dropped {
		t.Errorf("dropped %d -> %d", before.Dropped, after.Dropped)
	}
}

// TestFailuresByCall: each lock call an unprivileged child (fresh uid, no
// capabilities) makes over its limit is counted once, with the syscall and
// errno the child saw and the bytes it asked for; a storm of 100,000 failing
// mlocks of one process is one entry counting all of them.
func TestFailuresByCall(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	attachFailures(t, m)
	const mib = 1 << 20
	small := &[2]uint64{64 << 10, 64 << 10}
	for _, tc := range []struct {
		kind    string
		arg     uint64
		limit   *[2]uint64
		syscall Syscall
		errno   unix.Errno
		bytes   uint64
		count   uint64
	}{
		{"mlock2", mib, small, SyscallMlock2, unix.ENOMEM, mib, 1},
		{"mlockall", 0, small, SyscallMlockall, unix.ENOMEM, 0, 1},
		{"mmap", mib, small, SyscallMmap, unix.EAGAIN, mib, 1},
		// SHM_LOCK asks for the whole segment (1 MiB): refused for a zero
		// limit (EPERM) and for one below the segment (ENOMEM).
		{"shm", 0, &[2]uint64{0, 0}, SyscallShmctl, unix.EPERM, mib, 1},
		{"shm-nomem", 0, small, SyscallShmctl, unix.ENOMEM, mib, 1},
		// Behind 80 other segments: an index past the idr's first level.
		{"shm-deep", 0, small, SyscallShmctl, unix.ENOMEM, mib, 1},
		{"uring", mib, small, SyscallIOURingRegister, unix.ENOMEM, mib, 1},
		// 37 buffers through IORING_REGISTER_BUFFERS2: two chunks of the
		// program's iovec reads and a tail of 5.
		{"uringv", 8 << 10, small, SyscallIOURingRegister, unix.ENOMEM, 37 * 8 << 10, 1},
		// Raising the hard limit needs CAP_SYS_RESOURCE; no bytes asked.
		{"setrlimit", mib, small, SyscallSetrlimit, unix.EPERM, 0, 1},
		{"prlimit", mib, small, SyscallPrlimit64, unix.EPERM, 0, 1},
		{"storm", 100000, small, SyscallMlock, unix.ENOMEM, 100000 * mib, 100000},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			uid := freshUID(t)
			arg, kind := tc.arg, tc.kind
			if strings.HasPrefix(tc.kind, "shm") {
				kind = "shm"
				for i := 0; tc.kind == "shm-deep" && i < 80; i++ {
					other, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
					if err != nil {
						t.Fatalf("shmget: %v", err)
					}
					t.Cleanup(func() { _, _ = unix.SysvShmCtl(other, unix.IPC_RMID, nil) })
				}
				id, err := unix.SysvShmGet(unix.IPC_PRIVATE, mib, unix.IPC_CREAT|0o600)
				if err != nil {
					t.Skipf("shmget: %v", err)
				}
				t.Cleanup(func() { _, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
				var ds unix.SysvShmDesc
				if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
					t.Fatal(err)
				}
				ds.Perm.Uid, ds.Perm.Gid = uint32(uid), uint32(uid)
				if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
					t.Fatal(err)
				}
				arg = uint64(id)
			}
			c := startChild(t, childOpts{UID: uid, Memlock: tc.limit}, "fail-"+kind, arg)
			if _, err := c.Stdin.Write([]byte("\n")); err != nil {
				t.Fatal(err)
			}
			c.Expect("error " + strconv.Itoa(int(tc.errno)))
			var fc FailureCounts
			if err := m.Failures(&fc); err != nil {
				t.Fatal(err)
			}
			var mine []Failure
			for _, f := range fc.Failures {
				if int(f.PID) == c.Pid {
					mine = append(mine, f)
				}
			}
			if len(mine) != 1 {
				t.Fatalf("child %d has %d failure entries: %+v", c.Pid, len(mine), mine)
			}
			f := mine[0]
			if tc.syscall == SyscallMlockall {
				// mlockall(MCL_CURRENT) asks for the whole address space,
				// which the child, blocked since, still has.
				tc.bytes = c.VmSize()
			}
			if f.Syscall != tc.syscall || f.Errno != tc.errno || f.Count != tc.count || f.Bytes != tc.bytes || f.UID != uint32(uid) {
				t.Errorf("got %s %v x%d, %d bytes, uid %d; want %s %v x%d, %d bytes, uid %d",
					f.Syscall, f.Errno, f.Count, f.Bytes, f.UID, tc.syscall, tc.errno, tc.count, tc.bytes, uid)
			}
			if fc.Dropped != 0 {
				t.Errorf("dropped %d failures", fc.Dropped)
			}
		})
	}
}

// BenchmarkSyscallOverhead: what the failure tracepoints cost the syscalls
// they watch (mlock+munlock of one locked page) and one they do not
// (getppid), with the programs detached and attached, in one run:
//
//	go test -run '^$' -bench SyscallOverhead -benchtime 200000x -count 5 ./internal/bpf/
func BenchmarkSyscallOverhead(b *testing.B) {
	requireRoot(b)
	m := openModule(b)
	page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(page)
	page[0] = 1
	loops := []struct {
		name string
		fn   func()
	}{
		{"mlock+munlock", func() {
			if err := unix.Mlock(page); err != nil {
				b.Fatal(err)
			}
			if err := unix.Munlock(page); err != nil {
				b.Fatal(err)
			}
		}},
		{"getppid", func() { unix.Getppid() }},
	}
	for _, state := range []string{"detached", "attached", "detached-again"} {
		if state == "attached" {
			attachFailures(b, m)
		} else if err := m.DetachFailures(); err != nil {
			b.Fatal(err)
		}
		for _, l := range loops {
			b.Run(l.name+"/"+state, func(b *testing.B) {
				for b.Loop() {
					l.fn()
				}
			})
		}
	}
}
