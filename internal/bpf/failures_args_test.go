package bpf

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestFailureArguments: the exit programs read each call's arguments from
// the saved registers and keep only the calls that concern locking. From
// this process: a zero-length mmap fails with EINVAL with MAP_LOCKED
// (counted, as mmap) and without (not counted); shmctl IPC_STAT and
// prlimit64 of RLIMIT_NOFILE on a pid that does not exist fail and are not
// counted, prlimit64 and setrlimit of RLIMIT_MEMLOCK are: raising the hard
// limit fails with EPERM without CAP_SYS_RESOURCE (this host's root), or
// succeeds and is counted as a success.
func TestFailureArguments(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	attachFailures(t, m)
	self := int32(os.Getpid())
	var before FailureCounts
	if err := m.Failures(&before); err != nil {
		t.Fatal(err)
	}
	mine := func(fc *FailureCounts) map[[2]int]uint64 {
		out := map[[2]int]uint64{}
		for _, f := range fc.Failures {
			if f.PID == self {
				out[[2]int{int(f.Syscall), int(f.Errno)}] += f.Count
			}
		}
		return out
	}

	mmap := func(flags uintptr) unix.Errno {
		_, _, e := unix.Syscall6(unix.SYS_MMAP, 0, 0, unix.PROT_READ, flags, ^uintptr(0), 0)
		return e
	}
	if e := mmap(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS); e != unix.EINVAL {
		t.Fatalf("mmap of 0 bytes: %v, want EINVAL", e)
	}
	if e := mmap(unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_LOCKED); e != unix.EINVAL {
		t.Fatalf("mmap MAP_LOCKED of 0 bytes: %v, want EINVAL", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_SHMCTL, ^uintptr(0)>>1, unix.IPC_STAT, 0); e == 0 {
		t.Fatal("shmctl IPC_STAT of a bad id succeeded")
	}
	const noPid = 1 << 30
	if err := unix.Prlimit(noPid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 1, Max: 1}, nil); err != unix.ESRCH {
		t.Fatalf("prlimit64 RLIMIT_NOFILE of no pid: %v, want ESRCH", err)
	}
	if err := unix.Prlimit(noPid, unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 1, Max: 1}, nil); err != unix.ESRCH {
		t.Fatalf("prlimit64 RLIMIT_MEMLOCK of no pid: %v, want ESRCH", err)
	}
	var old unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &old); err != nil {
		t.Fatal(err)
	}
	raised := unix.Rlimit{Cur: old.Cur, Max: old.Max + 1<<20}
	_, _, setErr := unix.Syscall(unix.SYS_SETRLIMIT, unix.RLIMIT_MEMLOCK, uintptr(unsafe.Pointer(&raised)), 0)
	if setErr == 0 {
		t.Cleanup(func() { _ = unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &old, nil) })
	}

	var after FailureCounts
	if err := m.Failures(&after); err != nil {
		t.Fatal(err)
	}
	b, a := mine(&before), mine(&after)
	want := map[[2]int]uint64{
		{int(SyscallMmap), int(unix.EINVAL)}:     1,
		{int(SyscallPrlimit64), int(unix.ESRCH)}: 1,
	}
	if old.Max != unix.RLIM_INFINITY && setErr != 0 {
		want[[2]int{int(SyscallSetrlimit), int(setErr)}] = 1
	}
	for k, n := range want {
		if got := a[k] - b[k]; got != n {
			t.Errorf("%s %v: %d new failures, want %d", Syscall(k[0]), unix.Errno(k[1]), got, n)
		}
	}
	for k := range a {
		if _, ok := want[k]; !ok && a[k] != b[k] {
			t.Errorf("%s %v counted %d times: not a lock call", Syscall(k[0]), unix.Errno(k[1]), a[k]-b[k])
		}
	}
	if setErr == 0 && after.Successes[SyscallSetrlimit] == before.Successes[SyscallSetrlimit] {
		t.Error("setrlimit RLIMIT_MEMLOCK succeeded and was not counted")
	}
	t.Logf("setrlimit RLIMIT_MEMLOCK raising the hard limit: %v", setErr)
}
