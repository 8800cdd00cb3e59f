package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The failure classes the kernel will not give on demand to a privileged
// process on a recent kernel, produced for real in the unprivileged test
// child (runUnprivileged): ENOSYS from a seccomp filter that hides mlock2,
// and ENOMEM within the limit from an address-space limit and from a hole
// in the locked range.

// childSetup prepares a test child as req asks, after its runner is built
// and right before its probes. It returns 0, or the child's exit status.
func childSetup(req childRequest) int {
	if req.Seccomp {
		if err := denyMlock2(); err != nil {
			fmt.Fprintln(os.Stderr, "seccomp:", err)
			if errors.Is(err, errSeccompDenied) {
				return childSkip
			}
			return 3
		}
	}
	if req.ASSlack > 0 {
		if err := limitAddressSpace(req.ASSlack); err != nil {
			fmt.Fprintln(os.Stderr, "RLIMIT_AS:", err)
			return 3
		}
	}
	return 0
}

// auditArch is the seccomp_data.arch of this binary's system calls.
func auditArch() (uint32, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, true
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, true
	}
	return 0, false
}

// errSeccompDenied wraps the machine's refusal to install a filter: the
// test skips on it. A filter that installs but does not hold fails.
var errSeccompDenied = errors.New("seccomp filter refused")

// denyMlock2 installs, on every thread of the process (TSYNC), a classic
// BPF seccomp filter that answers mlock2 with ENOSYS, as a kernel older
// than 4.4 would, and allows everything else.
func denyMlock2() error {
	arch, ok := auditArch()
	if !ok {
		return fmt.Errorf("%w: no audit arch known for %s", errSeccompDenied, runtime.GOARCH)
	}
	const (
		offNr   = 0 // offsetof(struct seccomp_data, nr)
		offArch = 4 // offsetof(struct seccomp_data, arch)
	)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offArch},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 0, Jf: 3}, // another arch: allow
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offNr},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: unix.SYS_MLOCK2, Jt: 0, Jf: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	// no_new_privs is per thread: set it on the thread that installs the
	// filter; TSYNC then sets it, and the filter, on every other thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("%w: prctl(PR_SET_NO_NEW_PRIVS): %w", errSeccompDenied, err)
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("%w: seccomp(SECCOMP_SET_MODE_FILTER, TSYNC): %w", errSeccompDenied, errno)
	}
	if r != 0 {
		return fmt.Errorf("seccomp TSYNC: thread %d cannot take the filter", r)
	}
	// The filter must hold on whatever thread the probe runs: check it
	// here and on a fresh goroutine (not locked to this thread).
	probeENOSYS := func() error {
		_, _, e := unix.Syscall(unix.SYS_MLOCK2, 0, 0, 0)
		if e != unix.ENOSYS {
			return fmt.Errorf("mlock2 answers %v under the filter, want ENOSYS", e)
		}
		return nil
	}
	if err := probeENOSYS(); err != nil {
		return err
	}
	ch := make(chan error)
	go func() { ch <- probeENOSYS() }()
	return <-ch
}

// limitAddressSpace lowers RLIMIT_AS to this process's VmSize plus slack,
// after growing the heap and turning the collector off so that the Go
// runtime needs no new mapping for the little the probe allocates.
func limitAddressSpace(slack uint64) error {
	debug.SetGCPercent(-1)
	var sink [][]byte
	for range 256 { // 8 MiB of heap, then freed: room to allocate without mapping
		sink = append(sink, make([]byte, 32<<10))
	}
	runtime.KeepAlive(sink)
	sink = nil
	runtime.GC()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err
	}
	size, err := statusKB(b, "VmSize:")
	if err != nil {
		return err
	}
	limit := size + slack
	return unix.Setrlimit(unix.RLIMIT_AS, &unix.Rlimit{Cur: limit, Max: limit})
}

// statusKB is a "Field:   N kB" line of /proc/<pid>/status, in bytes.
func statusKB(status []byte, field string) (uint64, error) {
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			f := bytes.Fields(rest)
			if len(f) != 2 || string(f[1]) != "kB" {
				return 0, fmt.Errorf("bad %s line %q", field, line)
			}
			v, err := strconv.ParseUint(string(f[0]), 10, 64)
			return v << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in status", field)
}

// punchHoleAtMap is the test child's hook when HoleAtMap is set: once the
// region is mapped it unmaps a page in its middle, so the lock call meets
// a range that is not wholly mapped.
func punchHoleAtMap(_ context.Context, p Phase, mem []byte) {
	if p != PhaseMap {
		return
	}
	page := os.Getpagesize()
	mid := len(mem) / page / 2 * page
	// The raw call: unix.Munmap only takes whole mappings it made.
	if _, _, errno := unix.Syscall(unix.SYS_MUNMAP, uintptr(unsafe.Pointer(&mem[mid])), uintptr(page), 0); errno != 0 {
		panic(fmt.Sprintf("punching a hole: %v", errno))
	}
}

// wantClean checks what the child saw around each probe: VmLck back where
// it was. (The child itself exits 4 when a region is left mapped.)
func wantClean(t *testing.T, got map[string]childOutcome) {
	t.Helper()
	for name, o := range got {
		t.Logf("%s: success %t reason %q err %q rlimit headroom %d VmLck %d -> %d", name, o.Success, o.Reason, o.Err, o.Rlimit, o.VmLckBefore, o.VmLckAfter)
		if o.VmLckAfter != o.VmLckBefore {
			t.Errorf("%s: child VmLck %d after the probe, %d before", name, o.VmLckAfter, o.VmLckBefore)
		}
	}
}

// A kernel without mlock2, made by a seccomp filter in the child (as
// nobody, limit 1 MiB, ample for the region): onfault fails with enosys,
// releases its region, and VmLck is back to its baseline. mlock, which
// does not use mlock2, still succeeds under the same filter.
func TestFailureRealENOSYS(t *testing.T) {
	if _, ok := auditArch(); !ok {
		t.Skipf("no seccomp audit arch known for %s", runtime.GOARCH)
	}
	got := runUnprivileged(t, childRequest{Limit: 1 << 20, Seccomp: true, Modules: []NamedModule{
		{Name: "onfault", Module: Module{Mode: ModeOnfault, Size: 64 << 10}},
		{Name: "mlock", Module: Module{Mode: ModeMlock, Size: 64 << 10}},
	}})
	wantReasons(t, got, map[string]Reason{"onfault": ReasonENOSYS, "mlock": ""})
	if o := got["onfault"]; o.Rlimit != 1<<20 {
		t.Errorf("rlimit headroom %d, want %d: ENOSYS must come with ample headroom", o.Rlimit, 1<<20)
	}
	wantClean(t, got)
}

// ENOMEM that is not the memlock limit, from the kernel, two ways, in the
// child as nobody with RLIMIT_MEMLOCK well above the region:
//   - RLIMIT_AS just above the child's VmSize: the mmap of the region
//     fails with ENOMEM (every local mode maps first);
//   - a page unmapped in the middle of the mapped region: mlock and
//     mlock2 fail with ENOMEM (range not mapped) after locking the part
//     before the hole, which the probe must release.
//
// Each is enomem_mappings, and VmLck is back at its baseline.
func TestFailureRealENOMEMMappings(t *testing.T) {
	t.Run("address_space", func(t *testing.T) {
		var ms []NamedModule
		for _, mode := range []Mode{ModeMlock, ModeOnfault, ModePopulate} {
			ms = append(ms, NamedModule{Name: string(mode), Module: Module{Mode: mode, Size: 4 << 20}})
		}
		got := runUnprivileged(t, childRequest{Limit: 8 << 20, ASSlack: 1 << 20, Modules: ms})
		wantReasons(t, got, map[string]Reason{"mlock": ReasonENOMEMMappings, "onfault": ReasonENOMEMMappings, "populate": ReasonENOMEMMappings})
		for name, o := range got {
			if o.Rlimit != 8<<20 {
				t.Errorf("%s: rlimit headroom %d, want %d", name, o.Rlimit, 8<<20)
			}
			if !bytes.Contains([]byte(o.Err), []byte("mmap")) {
				t.Errorf("%s: err %q, want the mmap of the region to fail", name, o.Err)
			}
		}
		wantClean(t, got)
	})
	// A region larger than the memlock headroom whose plain mmap fails:
	// still enomem_mappings, since a mapping without MAP_LOCKED is not
	// checked against RLIMIT_MEMLOCK.
	t.Run("address_space_over_the_limit", func(t *testing.T) {
		var ms []NamedModule
		for _, mode := range []Mode{ModeMlock, ModeOnfault} {
			ms = append(ms, NamedModule{Name: string(mode), Module: Module{Mode: mode, Size: 4 << 20, IgnoreHeadroom: true}})
		}
		got := runUnprivileged(t, childRequest{Limit: 1 << 20, ASSlack: 1 << 20, Modules: ms})
		wantReasons(t, got, map[string]Reason{"mlock": ReasonENOMEMMappings, "onfault": ReasonENOMEMMappings})
		wantClean(t, got)
	})
	t.Run("hole", func(t *testing.T) {
		got := runUnprivileged(t, childRequest{Limit: 1 << 20, HoleAtMap: true, Modules: []NamedModule{
			{Name: "mlock", Module: Module{Mode: ModeMlock, Size: 64 << 10}},
			{Name: "onfault", Module: Module{Mode: ModeOnfault, Size: 64 << 10}},
		}})
		wantReasons(t, got, map[string]Reason{"mlock": ReasonENOMEMMappings, "onfault": ReasonENOMEMMappings})
		for name, o := range got {
			if o.Rlimit != 1<<20 {
				t.Errorf("%s: rlimit headroom %d, want %d", name, o.Rlimit, 1<<20)
			}
		}
		wantClean(t, got)
	})
}
