package probe

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func allModes(size Bytes, ignoreHeadroom bool) []NamedModule {
	var ms []NamedModule
	for _, mode := range Modes() {
		ms = append(ms, NamedModule{Name: string(mode), Module: Module{Mode: mode, Size: size, IgnoreHeadroom: ignoreHeadroom}})
	}
	return ms
}

func wantReasons(t *testing.T, got map[string]childOutcome, want map[string]Reason) {
	t.Helper()
	for name, reason := range want {
		o, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: no outcome", name)
		case reason == "" && !o.Success:
			t.Errorf("%s: failed with %s (%s), want success", name, o.Reason, o.Err)
		case reason != "" && (o.Success || Reason(o.Reason) != reason):
			t.Errorf("%s: success %t reason %q (%s), want reason %q", name, o.Success, o.Reason, o.Err, reason)
		}
	}
}

// As nobody with RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK every way of locking
// is refused with EPERM.
func TestFailureEPERM(t *testing.T) {
	got := runUnprivileged(t, childRequest{Limit: 0, Modules: allModes(16<<10, true)})
	wantReasons(t, got, map[string]Reason{"mlock": ReasonEPERM, "onfault": ReasonEPERM, "populate": ReasonEPERM, "mlockall": ReasonEPERM})
}

// As nobody with a 16 KiB limit, 64 KiB is over the limit: mlock and mlock2
// say ENOMEM, mmap(MAP_LOCKED) says EAGAIN, and mlockall(MCL_CURRENT) says
// ENOMEM for the whole address space. 8 KiB fits: mlock, onfault and
// populate succeed without any capability.
func TestFailureOverLimit(t *testing.T) {
	ms := allModes(64<<10, true)
	for _, mode := range []Mode{ModeMlock, ModeOnfault, ModePopulate} {
		ms = append(ms, NamedModule{Name: "small_" + string(mode), Module: Module{Mode: mode, Size: 8 << 10}})
	}
	got := runUnprivileged(t, childRequest{Limit: 16 << 10, Modules: ms})
	wantReasons(t, got, map[string]Reason{
		"mlock": ReasonENOMEMLimit, "onfault": ReasonENOMEMLimit, "populate": ReasonEAGAIN, "mlockall": ReasonENOMEMLimit,
		"small_mlock": "", "small_onfault": "", "small_populate": "",
	})
	if o := got["mlock"]; o.Rlimit != 16<<10 {
		t.Errorf("rlimit headroom %d, want %d", o.Rlimit, 16<<10)
	}
}

// With RLIMIT_MEMLOCK 0 and the headroom check on (every module unless it
// says ignore_headroom), no probe is attempted: the headroom is 0, so the
// reason is headroom, not eperm (docs/probes.md, docs/security.md).
func TestFailureZeroLimitIsHeadroom(t *testing.T) {
	got := runUnprivileged(t, childRequest{Limit: 0, Modules: allModes(16<<10, false)})
	wantReasons(t, got, map[string]Reason{"mlock": ReasonHeadroom, "onfault": ReasonHeadroom, "populate": ReasonHeadroom, "mlockall": ReasonHeadroom})
	if o := got["mlock"]; o.Rlimit != 0 {
		t.Errorf("rlimit headroom %d, want 0", o.Rlimit)
	}
}

// mlockall under an ordinary finite limit (1 MiB, no capability): with
// MCL_CURRENT the kernel compares the Go child's whole address space with
// the limit and says ENOMEM (enomem_limit, and the error gives VmSize);
// with current: false, mlockall(MCL_FUTURE) then a 64 KiB mapping locks it
// within the limit, and a 2 MiB one is refused with EAGAIN, as mmap of a
// locked mapping over the limit is.
func TestMlockallFutureUnderLimit(t *testing.T) {
	no := false
	ms := []NamedModule{
		{Name: "current", Module: Module{Mode: ModeMlockall, Size: 64 << 10}},
		{Name: "future", Module: Module{Mode: ModeMlockall, Size: 64 << 10, Current: &no}},
		{Name: "future_over", Module: Module{Mode: ModeMlockall, Size: 2 << 20, Current: &no, IgnoreHeadroom: true}},
	}
	want := map[string]Reason{"current": ReasonENOMEMLimit, "future": "", "future_over": ReasonEAGAIN}
	if !raceEnabled { // the race detector's child refuses mlockall without MCL_ONFAULT
		ms = append(ms, NamedModule{Name: "future_populate", Module: Module{Mode: ModeMlockall, Size: 64 << 10, Current: &no, OnFault: &no}})
		want["future_populate"] = ""
	}
	got := runUnprivileged(t, childRequest{Limit: 1 << 20, Modules: ms})
	wantReasons(t, got, want)
	t.Logf("MCL_CURRENT under 1 MiB: %s", got["current"].Err)
	t.Logf("MCL_FUTURE, 2 MiB under 1 MiB: %s", got["future_over"].Err)
	if e := got["current"].Err; !strings.Contains(e, "VmSize") || !strings.Contains(e, "current: false") {
		t.Errorf("the MCL_CURRENT failure does not say what to do: %q", e)
	}
}

// The same probes with the headroom check on are not attempted.
func TestFailureHeadroomRefusal(t *testing.T) {
	got := runUnprivileged(t, childRequest{Limit: 16 << 10, Modules: allModes(64<<10, false)})
	wantReasons(t, got, map[string]Reason{"mlock": ReasonHeadroom, "onfault": ReasonHeadroom, "populate": ReasonHeadroom, "mlockall": ReasonHeadroom})
	if !strings.Contains(got["mlock"].Err, ErrHeadroom.Error()) {
		t.Errorf("err %q does not say headroom", got["mlock"].Err)
	}
}

// EINVAL from the kernel itself: mlock2 with an unknown flag.
func TestClassifyRealEINVAL(t *testing.T) {
	b, err := unix.Mmap(-1, 0, os.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(b)
	err = mlock2(b, 0x80)
	if got := classify(err, uint64(len(b)), nil); got != ReasonEINVAL {
		t.Fatalf("mlock2(0x80) = %v classified %q, want einval", err, got)
	}
}

// classify from the errno value alone, the headroom deciding between the
// two ENOMEMs. Each of these is also produced for real: EPERM, ENOMEM
// (limit) and EAGAIN above, ENOSYS and ENOMEM (mappings) in
// failure_more_test.go; EFAULT is not (ReasonOther covers it).
func TestClassify(t *testing.T) {
	limited := &Headroom{RlimitKnown: true, Rlimit: 4096}
	capable := &Headroom{RlimitKnown: true, Rlimit: unlimited, CapIPCLock: true}
	for _, tc := range []struct {
		err  error
		size uint64
		h    *Headroom
		want Reason
	}{
		{unix.EPERM, 4096, nil, ReasonEPERM},
		{unix.ENOMEM, 8192, limited, ReasonENOMEMLimit},
		{unix.ENOMEM, 4096, limited, ReasonENOMEMMappings},
		{unix.ENOMEM, 1 << 30, capable, ReasonENOMEMMappings},
		{unix.EAGAIN, 4096, nil, ReasonEAGAIN},
		{unix.ENOSYS, 4096, nil, ReasonENOSYS},
		{unix.EFAULT, 4096, nil, ReasonOther},
		{context.DeadlineExceeded, 4096, nil, ReasonTimeout},
		{errors.New("x"), 4096, nil, ReasonOther},
	} {
		if got := classify(tc.err, tc.size, tc.h); got != tc.want {
			t.Errorf("classify(%v, %d) = %q, want %q", tc.err, tc.size, got, tc.want)
		}
	}
}

func newTestRunner(t *testing.T, env *Env) *Runner {
	t.Helper()
	r, err := NewRunner(Options{Env: env, MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func vmLck(t *testing.T) uint64 {
	t.Helper()
	st, err := NewEnv("/proc", "").status()
	if err != nil {
		t.Fatal(err)
	}
	return st.Locked
}

// A deadline already passed stops the probe before its first lock chunk:
// timeout, and nothing left mapped or locked.
func TestFailureTimeout(t *testing.T) {
	needLockable(t, 64<<10)
	base := vmLck(t)
	r := newTestRunner(t, testEnv(t))
	for _, mode := range Modes() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := r.Probe(ctx, string(mode), Module{Mode: mode, Size: 64 << 10, ChunkSize: 4096}, slog.New(slog.DiscardHandler))
		if res.Success || res.Reason != ReasonTimeout {
			t.Errorf("%s: success %t reason %q (%v), want timeout", mode, res.Success, res.Reason, res.Err)
		}
	}
	if n := liveRegions.Load(); n != 0 {
		t.Errorf("%d regions left mapped", n)
	}
	if got := vmLck(t); got != base {
		t.Errorf("VmLck %d after timeouts, want %d", got, base)
	}
}

// A lock that succeeded but does not hold (here unlocked behind the
// probe's back) fails verification; a panic mid-probe still releases.
func TestFailureVerificationAndPanic(t *testing.T) {
	needLockable(t, 64<<10)
	base := vmLck(t)
	env := testEnv(t)
	r := newTestRunner(t, env)
	env.hook = func(_ context.Context, p Phase, mem []byte) {
		if p == PhaseTouch {
			unix.Munlock(mem)
		}
	}
	for _, mode := range []Mode{ModeMlock, ModeOnfault, ModePopulate} {
		res := r.Probe(context.Background(), string(mode), Module{Mode: mode, Size: 64 << 10}, slog.New(slog.DiscardHandler))
		if res.Success || res.Reason != ReasonVerification || !errors.Is(res.Err, ErrVerification) {
			t.Errorf("%s: success %t reason %q (%v), want verification", mode, res.Success, res.Reason, res.Err)
		}
	}
	env.hook = func(_ context.Context, p Phase, _ []byte) {
		if p == PhaseLock {
			panic("injected")
		}
	}
	var logs bytes.Buffer
	res := r.Probe(context.Background(), "mlock", Module{Mode: ModeMlock, Size: 64 << 10}, slog.New(slog.NewTextHandler(&logs, nil)))
	if res.Success || res.Reason != ReasonOther || !strings.Contains(res.Err.Error(), "injected") {
		t.Errorf("panic: success %t reason %q (%v)", res.Success, res.Reason, res.Err)
	}
	if n := liveRegions.Load(); n != 0 {
		t.Errorf("%d regions left mapped", n)
	}
	if got := vmLck(t); got != base {
		t.Errorf("VmLck %d, want %d", got, base)
	}
}

// onfault on this kernel: VmLck counts the whole range at once, smaps
// Locked, Rss and mincore only the touched pages, VmFlags lo and lf.
func TestOnfaultSemantics(t *testing.T) {
	const size, touched = 256 << 10, 64 << 10
	needLockable(t, size)
	env := testEnv(t)
	var sawFlags bool
	env.hook = func(_ context.Context, p Phase, mem []byte) {
		if p != PhaseTouch {
			return
		}
		sm, err := env.smaps(uint64(addrOf(mem)))
		if err != nil {
			t.Errorf("smaps: %v", err)
			return
		}
		sawFlags = sm.VmLocked && sm.VmLockOnFault
	}
	r := newTestRunner(t, env)
	res := r.Probe(context.Background(), "onfault", Module{Mode: ModeOnfault, Size: size, TouchSize: touched}, slog.New(slog.DiscardHandler))
	if !res.Success {
		t.Fatalf("%s: %v", res.Reason, res.Err)
	}
	if !sawFlags {
		t.Error("smaps VmFlags lack lo or lf after mlock2(MLOCK_ONFAULT)")
	}
	if res.LockedDelta != size {
		t.Errorf("VmLck rose by %d, want the whole %d", res.LockedDelta, size)
	}
	if res.ResidentLocked != touched || res.Resident != touched || res.Touched != touched {
		t.Errorf("smaps Locked %d, resident %d, touched %d: want %d", res.ResidentLocked, res.Resident, res.Touched, touched)
	}
}

// Many probe cycles, failing ones included, leave VmLck and the mappings
// where they were.
func TestNoLeak(t *testing.T) {
	const size = 37 * 4096 // an unusual size, to spot a leftover mapping
	needLockable(t, size)
	if os.Getpagesize() != 4096 {
		t.Skip("sizes assume 4 KiB pages")
	}
	env := testEnv(t)
	r := newTestRunner(t, env)
	base := vmLck(t)
	baseMaps := countMaps(t)
	discard := slog.New(slog.DiscardHandler)
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	for i := 0; i < cycles; i++ {
		for _, mode := range []Mode{ModeMlock, ModeOnfault, ModePopulate} {
			if res := r.Probe(context.Background(), string(mode), Module{Mode: mode, Size: size}, discard); !res.Success {
				t.Fatalf("cycle %d %s: %s: %v", i, mode, res.Reason, res.Err)
			}
		}
		if i%10 == 0 { // the failing paths too
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			r.Probe(ctx, "mlock", Module{Mode: ModeMlock, Size: size}, discard)
			env.hook = func(_ context.Context, p Phase, _ []byte) {
				if p == PhaseVerify {
					panic("injected")
				}
			}
			r.Probe(context.Background(), "populate", Module{Mode: ModePopulate, Size: size}, discard)
			env.hook = nil
		}
		if i%50 == 0 { // a child each: slow under the race detector
			if res := r.Probe(context.Background(), "mlockall", Module{Mode: ModeMlockall, Size: size}, discard); !res.Success {
				t.Fatalf("cycle %d mlockall: %s: %v", i, res.Reason, res.Err)
			}
		}
	}
	if n := liveRegions.Load(); n != 0 {
		t.Errorf("%d regions left mapped", n)
	}
	if got := vmLck(t); got != base {
		t.Errorf("VmLck %d after %d cycles, want %d", got, cycles, base)
	}
	// The Go runtime maps a little as it goes (9 more seen after 200
	// cycles); a leak would add a mapping (and a guard-sized one) per cycle,
	// so allow a quarter of the cycles, and at least 16.
	if got := countMaps(t); got > baseMaps+max(16, cycles/4) {
		t.Errorf("%d mappings after %d cycles, %d before", got, cycles, baseMaps)
	}
	maps, _ := os.ReadFile("/proc/self/maps")
	for _, line := range strings.Split(string(maps), "\n") {
		var lo, hi uint64
		if _, err := fmtSscanRange(line, &lo, &hi); err == nil && (hi-lo == size || hi-lo == size+3*4096) {
			t.Errorf("a probe-sized mapping is left: %s", line)
		}
	}
}

func countMaps(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// Stop (what SIGTERM calls) while a probe holds its region: the probe ends
// at its next deadline check, releases, and only then does Stop return.
func TestStopReleasesProbeInProgress(t *testing.T) {
	needLockable(t, 64<<10)
	base := vmLck(t)
	env := testEnv(t)
	r := newTestRunner(t, env)
	stopped := make(chan struct{})
	env.hook = func(ctx context.Context, p Phase, _ []byte) {
		if p == PhaseMap {
			go func() { r.Stop(); close(stopped) }()
			<-ctx.Done() // Stop has cancelled this probe
		}
	}
	res := r.Probe(context.Background(), "mlock", Module{Mode: ModeMlock, Size: 64 << 10}, slog.New(slog.DiscardHandler))
	<-stopped
	if res.Success || res.Reason != ReasonTimeout {
		t.Errorf("success %t reason %q (%v), want timeout", res.Success, res.Reason, res.Err)
	}
	if n := liveRegions.Load(); n != 0 {
		t.Errorf("%d regions left mapped", n)
	}
	if got := vmLck(t); got != base {
		t.Errorf("VmLck %d, want %d", got, base)
	}
}
