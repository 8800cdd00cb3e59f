package bpf

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// charges returns the user_struct and ucounts of a child as the iterator
// sees them.
func charges(t *testing.T, m *Module, pid int) (Task, User, ShmCharge) {
	t.Helper()
	s := snapshot(t, m)
	task := s.find(pid)
	if task == nil {
		t.Fatalf("pid %d missing", pid)
	}
	if task.User < 0 || task.Charge < 0 {
		t.Fatalf("pid %d: no user_struct (%d) or ucounts (%d)", pid, task.User, task.Charge)
	}
	u, c := s.Users[task.User], s.Charges[task.Charge]
	if !u.Valid || !c.Valid {
		t.Skipf("kernel lacks user_struct->locked_vm (%v) or the ucounts MEMLOCK count (%v)", u.Valid, c.Valid)
	}
	return *task, u, c
}

// TestUserLockedVMIOURing: io_uring buffer registration is charged to
// user_struct->locked_vm only when the caller lacks CAP_IPC_LOCK, and to
// mm->pinned_vm either way (io_uring/rsrc.c io_account_mem). Each child is a
// fresh uid, so its user's charge is its own.
func TestUserLockedVMIOURing(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	const buf = 1<<20 + 5*page
	for _, tc := range []struct {
		name    string
		caps    []uintptr
		charged uint64
	}{
		{"without_CAP_IPC_LOCK", nil, buf},
		{"with_CAP_IPC_LOCK", []uintptr{unix.CAP_IPC_LOCK}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid := freshUID(t)
			c := startChild(t, childOpts{uid: uid, caps: tc.caps, memlock: &[2]uint64{4 << 20, 4 << 20}}, "uring", buf)
			t0, u0, _ := charges(t, m, c.pid)
			c.next()
			c.stop()
			t1, u1, _ := charges(t, m, c.pid)
			if u1.UID != uint32(uid) {
				t.Errorf("user_struct of uid %d, want %d", u1.UID, uid)
			}
			if tc.charged == 0 && u0.LockedBytes != 0 {
				t.Errorf("capable caller's user charged %d for its rings", u0.LockedBytes)
			}
			if got := u1.LockedBytes - u0.LockedBytes; got != tc.charged {
				t.Errorf("user locked_vm rose by %d (from %d), want %d", got, u0.LockedBytes, tc.charged)
			}
			if got := t1.PinnedBytes - t0.PinnedBytes; got != buf {
				t.Errorf("pinned_vm rose by %d, want %d", got, buf)
			}
			st, _ := procStatus(t, c.pid, c.pid)
			if st.Pinned != t1.PinnedBytes {
				t.Errorf("VmPin %d, iterator %d", st.Pinned, t1.PinnedBytes)
			}
			t.Logf("uid %d: user locked_vm %d before registration (the rings), %d after; pinned_vm %d", uid, u0.LockedBytes, u1.LockedBytes, t1.PinnedBytes)
		})
	}
}

// TestUserLockedVMPerf: a perf ring buffer of 1+512 pages charges
// user_struct->locked_vm up to perf_event_mlock_kb times the online CPUs
// and mm->pinned_vm with the rest (kernel/events/core.c
// perf_mmap_calc_limits).
func TestUserLockedVMPerf(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	mlockKB := readInt(t, "/proc/sys/kernel/perf_event_mlock_kb")
	cpus := onlineCPUs(t)
	const dataPages = 512
	userLimit := uint64(mlockKB/(page/1024)) * uint64(cpus) // pages
	total := uint64(dataPages + 1)
	wantUser, wantPinned := total, uint64(0)
	if total > userLimit {
		wantUser, wantPinned = userLimit, total-userLimit
	}
	uid := freshUID(t)
	c := startChild(t, childOpts{uid: uid, memlock: &[2]uint64{8 << 20, 8 << 20}}, "perf", dataPages)
	t0, u0, _ := charges(t, m, c.pid)
	if u0.LockedBytes != 0 || t0.PinnedBytes != 0 {
		t.Fatalf("fresh uid %d starts at user locked_vm %d, pinned_vm %d", uid, u0.LockedBytes, t0.PinnedBytes)
	}
	c.next()
	c.stop()
	t1, u1, _ := charges(t, m, c.pid)
	if u1.LockedBytes != wantUser*page || t1.PinnedBytes != wantPinned*page {
		t.Errorf("user locked_vm %d, pinned_vm %d; want %d and %d (%d pages mapped, user limit %d pages = %d KiB x %d CPUs)",
			u1.LockedBytes, t1.PinnedBytes, wantUser*page, wantPinned*page, total, userLimit, mlockKB, cpus)
	}
	st, _ := procStatus(t, c.pid, c.pid)
	if st.Pinned != t1.PinnedBytes {
		t.Errorf("VmPin %d, iterator %d", st.Pinned, t1.PinnedBytes)
	}
}

// TestShmLockChargesCaller: SHM_LOCK of a segment another user owns is
// charged to the caller's ucounts (ipc/shm.c shmctl_do_lock ->
// user_shm_lock(size, current_ucounts())), in whole pages, not to the owner's.
func TestShmLockChargesCaller(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	const size = 1<<20 + 100
	const pages = (size + page - 1) / page
	owner, caller := freshUID(t), freshUID(t)
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Skipf("shmget: %v", err)
	}
	t.Cleanup(func() {
		_, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	})
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		t.Fatal(err)
	}
	ds.Perm.Uid, ds.Perm.Gid = uint32(owner), uint32(owner)
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		t.Fatal(err)
	}
	o := startChild(t, childOpts{uid: owner}, "lock", 0)
	o.expect("ready")
	// Locking another user's segment takes CAP_IPC_LOCK; the charge is
	// still counted (only the limit is waived).
	c := startChild(t, childOpts{uid: caller, caps: []uintptr{unix.CAP_IPC_LOCK}, memlock: &[2]uint64{64 << 10, 64 << 10}}, "shmlock", uint64(id))
	_, _, c0 := charges(t, m, c.pid)
	c.next()
	c.stop()
	o.stop()
	_, _, c1 := charges(t, m, c.pid)
	_, _, oc := charges(t, m, o.pid)
	if c1.UID != uint32(caller) || c1.UserNSInode != initUserNSInode {
		t.Errorf("caller's ucounts: uid %d ns %d", c1.UID, c1.UserNSInode)
	}
	if got := c1.LockedBytes - c0.LockedBytes; got != pages*page || c0.LockedBytes != 0 {
		t.Errorf("caller's MEMLOCK count %d -> %d, want 0 -> %d (%d bytes in %d pages)", c0.LockedBytes, c1.LockedBytes, pages*page, size, pages)
	}
	if oc.LockedBytes != 0 || oc.UID != uint32(owner) {
		t.Errorf("owner uid %d charged %d, want 0", oc.UID, oc.LockedBytes)
	}
}

func readInt(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skip(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// onlineCPUs counts /sys/devices/system/cpu/online ("0-3,5"), what the
// kernel's num_online_cpus() returns.
func onlineCPUs(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, ok := strings.Cut(r, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if ok {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil {
			t.Fatalf("cpu online %q", b)
		}
		n += z - a + 1
	}
	return n
}
