// Package probe holds memlock_exporter's active probes: each one locks a
// small anonymous region of its own, in one of four ways, times every phase
// and proves the lock took the way the kernel selftests do (VmLck, smaps,
// mincore, a pattern read back).
//
// The shape is blackbox_exporter's prober package: one prober per file, a
// shared ProbeFn signature, and a fresh registry per on-demand probe. A
// ProbeFn fills a Result instead of a registry, because the same result
// feeds both the background histograms on /metrics and the /probe answer.
package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is a way of locking memory; each has a prober of its own.
type Mode string

// The modes.
const (
	ModeMlock    Mode = "mlock"    // mmap, then mlock(2)
	ModeOnfault  Mode = "onfault"  // mlock2(MLOCK_ONFAULT), then touch part of it
	ModePopulate Mode = "populate" // mmap(MAP_LOCKED|MAP_POPULATE)
	ModeMlockall Mode = "mlockall" // mlockall(MCL_CURRENT|MCL_FUTURE) in a child process
)

func (m Mode) String() string { return string(m) }

// modes lists every mode, in a stable order; Modes hands out copies.
var modes = [...]Mode{ModeMlock, ModeOnfault, ModePopulate, ModeMlockall}

// Modes lists every mode, in a stable order (a fresh slice each call).
func Modes() []Mode { return append([]Mode(nil), modes[:]...) }

// ProbeFn is the signature every prober has. It locks m's region of
// res.Bytes bytes (set by the caller, a whole number of pages), fills res
// with phase durations and verification results, releases every byte it
// mapped or locked before it returns (panics included) and reports success.
// On failure res.Reason and res.Err say why.
type ProbeFn func(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger) bool

// prober returns mode m's prober.
func prober(m Mode) (ProbeFn, bool) {
	switch m {
	case ModeMlock:
		return probeMlock, true
	case ModeOnfault:
		return probeOnfault, true
	case ModePopulate:
		return probePopulate, true
	case ModeMlockall:
		return probeMlockall, true
	}
	return nil, false
}

// Phase is one timed step of a probe.
type Phase int

// The phases, in the order a probe runs them.
const (
	PhaseMap Phase = iota
	PhaseLock
	PhaseTouch
	PhaseVerify
	PhaseUnlock
	PhaseUnmap
	numPhases
)

var phaseNames = [numPhases]string{"map", "lock", "touch", "verify", "unlock", "unmap"}

func (p Phase) String() string { return phaseNames[p] }

// Phases lists every phase, in order.
func Phases() []Phase {
	out := make([]Phase, numPhases)
	for i := range out {
		out[i] = Phase(i)
	}
	return out
}

// Reason classifies a failed probe; it is the reason label of
// memlock_probe_failures_total.
type Reason string

// The failure reasons.
const (
	ReasonEPERM          Reason = "eperm"           // limit 0 and no CAP_IPC_LOCK
	ReasonENOMEMLimit    Reason = "enomem_limit"    // ENOMEM, and the region exceeds RLIMIT_MEMLOCK headroom
	ReasonENOMEMMappings Reason = "enomem_mappings" // ENOMEM within the limit: too many mappings, or out of memory
	ReasonEAGAIN         Reason = "eagain"          // some pages could not be locked (mmap(MAP_LOCKED) also says EAGAIN over the limit)
	ReasonEINVAL         Reason = "einval"
	ReasonENOSYS         Reason = "enosys" // no mlock2 (kernel < 4.4)
	ReasonVerification   Reason = "verification"
	ReasonHeadroom       Reason = "headroom" // not attempted: larger than the headroom
	ReasonTimeout        Reason = "timeout"
	ReasonOther          Reason = "other" // any other errno, a crashed mlockall child, a recovered panic
)

func (r Reason) String() string { return string(r) }

// reasons lists every failure reason, in a stable order.
var reasons = [...]Reason{ReasonEPERM, ReasonENOMEMLimit, ReasonENOMEMMappings, ReasonEAGAIN, ReasonEINVAL,
	ReasonENOSYS, ReasonVerification, ReasonHeadroom, ReasonTimeout, ReasonOther}

// Reasons lists every failure reason, in a stable order (a fresh slice
// each call).
func Reasons() []Reason { return append([]Reason(nil), reasons[:]...) }

// ErrVerification is wrapped by every verification failure.
var ErrVerification = errors.New("verification failed")

// ErrHeadroom is returned for a probe larger than the headroom.
var ErrHeadroom = errors.New("insufficient headroom")

// Result is what one probe measured.
type Result struct {
	Module string
	Mode   Mode
	// Bytes is the size of the probed region; Pages its number of pages.
	Bytes, Pages uint64
	// Phases holds each phase's duration; Ran says which phases ran.
	Phases [numPhases]time.Duration
	Ran    [numPhases]bool
	// Duration is the whole probe, headroom check and verification
	// included, from when it had its turn.
	Duration time.Duration
	// Waited is how long the probe waited for the one in progress.
	Waited   time.Duration
	Success  bool
	Reason   Reason // empty on success
	Err      error
	Headroom Headroom

	// Verification: what the kernel said.
	LockedDelta    uint64 // rise of VmLck while the region was locked
	ResidentLocked uint64 // smaps Locked: of the region
	Resident       uint64 // bytes mincore says are resident
	Touched        uint64 // bytes written with the pattern (and read back)
	HugeBytes      uint64 // smaps AnonHugePages of the region
	// Page flags from /proc/kpageflags, only with CAP_SYS_ADMIN.
	KpageflagsChecked bool
	KpageflagsPages   uint64 // pages looked up
	KpageflagsMlocked uint64 // of those, with KPF_MLOCKED
}

func (r *Result) timed(p Phase, start time.Time) {
	r.Phases[p] += time.Since(start)
	r.Ran[p] = true
}

// SecondsPerPage is the lock phase divided by the pages, or 0.
func (r *Result) SecondsPerPage() float64 {
	if !r.Ran[PhaseLock] || r.Pages == 0 {
		return 0
	}
	return r.Phases[PhaseLock].Seconds() / float64(r.Pages)
}

// fail records a failure and returns false, for `return res.fail(...)`.
func (r *Result) fail(reason Reason, err error) bool {
	r.Success, r.Reason, r.Err = false, reason, err
	return false
}

// failErrno classifies a failed lock call. ENOMEM means the limit when the
// region did not fit in RLIMIT_MEMLOCK headroom (and the process lacks
// CAP_IPC_LOCK); otherwise mappings or memory.
func (r *Result) failErrno(op string, err error, h *Headroom) bool {
	return r.fail(classify(err, r.Bytes, h), fmt.Errorf("%s: %w", op, err))
}

func classify(err error, size uint64, h *Headroom) Reason {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return ReasonTimeout
		}
		return ReasonOther
	}
	switch errno {
	case unix.EPERM:
		return ReasonEPERM
	case unix.ENOMEM:
		if h != nil && !h.CapIPCLock && h.RlimitKnown && size > h.Rlimit {
			return ReasonENOMEMLimit
		}
		return ReasonENOMEMMappings
	case unix.EAGAIN:
		return ReasonEAGAIN
	case unix.EINVAL:
		return ReasonEINVAL
	case unix.ENOSYS:
		return ReasonENOSYS
	}
	return ReasonOther
}
