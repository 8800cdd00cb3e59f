package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ChildEnv is the environment variable that turns the exporter's binary
// into the mlockall probe's child. main checks it before anything else.
const ChildEnv = "MEMLOCK_EXPORTER_PROBE_CHILD"

// childSpecEnv carries the child's parameters.
const childSpecEnv = "MEMLOCK_EXPORTER_PROBE_SPEC"

// IsChild reports whether this process was started as the mlockall child.
func IsChild() bool { return os.Getenv(ChildEnv) == string(ModeMlockall) }

// childReport is what the child prints on stdout, one JSON object.
type childReport struct {
	Phases         [numPhases]int64 `json:"phases_ns"`
	Ran            [numPhases]bool  `json:"ran"`
	Op             string           `json:"op,omitempty"`
	Errno          int              `json:"errno,omitempty"`
	Verify         string           `json:"verify,omitempty"`
	LockedDelta    uint64           `json:"locked_delta"`
	ResidentLocked uint64           `json:"resident_locked"`
	Resident       uint64           `json:"resident"`
	Touched        uint64           `json:"touched"`
	HugeBytes      uint64           `json:"huge_bytes"`
	ProcessLocked  uint64           `json:"process_locked"`
	VmSize         uint64           `json:"vm_size"` // before mlockall: what MCL_CURRENT checks
	FutureLocked   bool             `json:"future_locked"`
	KpageChecked   bool             `json:"kpage_checked"`
	KpagePages     uint64           `json:"kpage_pages"`
	KpageMlocked   uint64           `json:"kpage_mlocked"`
}

// mlockallFlags returns the mlockall(2) flags of a module.
func mlockallFlags(m Module) int {
	f := unix.MCL_FUTURE
	if m.mlockallCurrent() {
		f |= unix.MCL_CURRENT
	}
	if m.mlockallOnFault() {
		f |= unix.MCL_ONFAULT
	}
	return f
}

// probeMlockall runs mlockall(MCL_CURRENT|MCL_FUTURE[|MCL_ONFAULT]) in a
// child process started from the exporter's own binary, never in the
// exporter: with MCL_FUTURE every later mapping of the Go runtime would be
// locked too, and an arena mapping over the limit is fatal. The child maps
// the region, calls mlockall, touches and verifies the region, checks that
// a mapping made afterwards is locked (MCL_FUTURE), calls munlockall and
// reports on stdout. Whatever it locked dies with it.
func probeMlockall(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger) bool {
	res.Pages = res.Bytes / uint64(env.page)
	spec := fmt.Sprintf("bytes=%d,flags=%d,huge=%t", res.Bytes, mlockallFlags(m), m.HugePages)
	cmd := exec.CommandContext(ctx, env.Exe)
	cmd.Env = []string{ChildEnv + "=" + string(ModeMlockall), childSpecEnv + "=" + spec}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &limitWriter{b: &stdout, n: 64 << 10}, &limitWriter{b: &stderr, n: 16 << 10}
	cmd.WaitDelay = time.Second
	logger.Debug("starting mlockall child", "exe", env.Exe, "spec", spec)
	err := cmd.Run()
	if ctx.Err() != nil {
		return res.fail(ReasonTimeout, fmt.Errorf("mlockall child: %w", ctx.Err()))
	}
	var rep childReport
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		return res.fail(ReasonOther, fmt.Errorf("mlockall child failed (%v): %s", err, lastLines(stderr.String(), 5)))
	}
	for p := range numPhases {
		res.Phases[p], res.Ran[p] = time.Duration(rep.Phases[p]), rep.Ran[p]
	}
	res.LockedDelta, res.ResidentLocked, res.Resident = rep.LockedDelta, rep.ResidentLocked, rep.Resident
	res.Touched, res.HugeBytes = rep.Touched, rep.HugeBytes
	res.KpageflagsChecked, res.KpageflagsPages, res.KpageflagsMlocked = rep.KpageChecked, rep.KpagePages, rep.KpageMlocked
	logger.Debug("mlockall child reported", "process_locked_bytes", rep.ProcessLocked, "future_locked", rep.FutureLocked,
		"locked_delta_bytes", rep.LockedDelta, "smaps_locked_bytes", rep.ResidentLocked, "resident_bytes", rep.Resident)
	if rep.Errno != 0 {
		errno := unix.Errno(rep.Errno)
		reason := classify(errno, res.Bytes, &res.Headroom)
		// mlockall(MCL_CURRENT) checks the whole address space (total_vm)
		// against the limit, not only the region (mm/mlock.c).
		if rep.Op == "mlockall" && errno == unix.ENOMEM && !res.Headroom.CapIPCLock && res.Headroom.Soft != unlimited {
			return res.fail(ReasonENOMEMLimit, fmt.Errorf("mlockall(MCL_CURRENT) in child: %w: it checks the child's whole address space (VmSize %d bytes) against RLIMIT_MEMLOCK (%d bytes); needs CAP_IPC_LOCK or a larger limit, or use current: false to probe mlockall(MCL_FUTURE)",
				errno, rep.VmSize, res.Headroom.Soft))
		}
		return res.fail(reason, fmt.Errorf("%s in child: %w", rep.Op, errno))
	}
	if rep.Verify != "" {
		return res.fail(ReasonVerification, fmt.Errorf("%w in child: %s", ErrVerification, rep.Verify))
	}
	if err != nil {
		return res.fail(ReasonOther, fmt.Errorf("mlockall child: %v: %s", err, lastLines(stderr.String(), 5)))
	}
	res.Success = true
	return true
}

// RunChild is the mlockall probe's child: main calls it, and exits with
// its status, when IsChild. It allocates what it needs before mlockall and
// turns the garbage collector off, so that the Go runtime maps as little
// as possible while MCL_FUTURE is in effect.
func RunChild() int {
	var c childRun
	c.run()
	b, _ := json.Marshal(&c.rep)
	os.Stdout.Write(append(b, '\n'))
	return 0
}

// childRun is the mlockall child's state, from its spec to its report.
type childRun struct {
	rep      childReport
	res      Result
	env      *Env
	r        *region
	length   int
	flags    int
	huge     bool
	baseline uint64 // VmLck before mlockall
}

// run fills c.rep: set up, map and lock, touch and verify, unlock.
func (c *childRun) run() {
	if !c.setup() {
		return
	}
	// The reservation is made before mlockall either way, so that it is
	// never locked itself.
	t := time.Now()
	r, err := reserve(c.length, c.huge)
	if err != nil {
		c.rep.Op, c.rep.Errno = "mmap", errnoOf(err)
		return
	}
	c.r = r
	defer r.release()
	if !c.mapAndLock(t) {
		copyPhases(&c.rep, &c.res)
		return
	}
	c.touchVerifyUnlock()
	copyPhases(&c.rep, &c.res)
}

// setup parses the spec, turns the GC off and reads the VmLck baseline.
func (c *childRun) setup() bool {
	length, flags, huge, err := parseChildSpec(os.Getenv(childSpecEnv))
	if err != nil {
		c.rep.Op, c.rep.Errno = "spec", int(unix.EINVAL)
		fmt.Fprintln(os.Stderr, err)
		return false
	}
	if raceEnabled && flags&unix.MCL_ONFAULT == 0 {
		c.rep.Op, c.rep.Errno = "race-detector build refuses mlockall without MCL_ONFAULT", int(unix.EINVAL)
		return false
	}
	c.length, c.flags, c.huge = length, flags, huge
	debug.SetGCPercent(-1)
	c.env = NewEnv("/proc", "")
	_, _ = c.env.read("self/smaps") // grow the buffer now, not under MCL_FUTURE
	c.env.vec = make([]byte, length/c.env.page)
	st, err := c.env.status()
	if err != nil {
		c.rep.Verify = err.Error()
		return false
	}
	c.baseline = st.Locked
	c.rep.VmSize = vmSize(c.env)
	return true
}

// mapAndLock maps the region and calls mlockall. With MCL_CURRENT the
// region is mapped first and mlockall locks it; with MCL_FUTURE alone
// mlockall comes first and the region's mapping, locked as the kernel
// makes it, is the lock phase. t is when the map phase began.
func (c *childRun) mapAndLock(t time.Time) bool {
	r, res := c.r, &c.res
	current := c.flags&unix.MCL_CURRENT != 0
	if current {
		if err := r.mapFixed(0, c.length, 0); err != nil {
			c.rep.Op, c.rep.Errno = "mmap", errnoOf(err)
			return false
		}
		if c.huge {
			_ = unix.Madvise(r.mem, unix.MADV_HUGEPAGE)
		}
	}
	res.timed(PhaseMap, t)

	t = time.Now()
	err := unix.Mlockall(c.flags)
	if err == nil && !current {
		r.mayBeLocked = true
		// Over the limit the kernel refuses the locked mapping with EAGAIN.
		if err = r.mapFixed(0, c.length, 0); err != nil {
			res.timed(PhaseLock, t)
			unix.Munlockall()
			c.rep.Op, c.rep.Errno = "mmap after mlockall(MCL_FUTURE)", errnoOf(err)
			return false
		}
		if c.huge {
			_ = unix.Madvise(r.mem, unix.MADV_HUGEPAGE)
		}
	}
	res.timed(PhaseLock, t)
	if err != nil {
		c.rep.Op, c.rep.Errno = "mlockall", errnoOf(err)
		return false
	}
	r.mayBeLocked = true
	return true
}

// touchVerifyUnlock writes the pattern, verifies the region and that a
// mapping made now is locked (MCL_FUTURE), then munlockall and unmaps.
func (c *childRun) touchVerifyUnlock() {
	env, r, res, rep := c.env, c.r, &c.res, &c.rep
	pages := c.length / env.page
	seed := uint64(time.Now().UnixNano())
	t := time.Now()
	touch(r.mem, env.page, pages, seed)
	res.timed(PhaseTouch, t)

	t = time.Now()
	verr := env.verifyRegion(r, res, lockedShape{onfault: c.flags&unix.MCL_ONFAULT != 0, huge: c.huge, wholeProcess: true}, c.baseline, pages, seed)
	if st, err := env.status(); err == nil {
		rep.ProcessLocked = st.Locked
	}
	if verr == nil {
		verr = c.checkFutureLocked()
	}
	res.timed(PhaseVerify, t)

	t = time.Now()
	if err := unix.Munlockall(); err != nil {
		rep.Op, rep.Errno = "munlockall", errnoOf(err)
	}
	res.timed(PhaseUnlock, t)
	r.mayBeLocked = false
	t = time.Now()
	r.release()
	res.timed(PhaseUnmap, t)
	if verr != nil {
		rep.Verify = verr.Error()
	}
	rep.LockedDelta, rep.ResidentLocked, rep.Resident = res.LockedDelta, res.ResidentLocked, res.Resident
	rep.Touched, rep.HugeBytes = uint64(pages*env.page), res.HugeBytes
	rep.KpageChecked, rep.KpagePages, rep.KpageMlocked = res.KpageflagsChecked, res.KpageflagsPages, res.KpageflagsMlocked
}

// checkFutureLocked maps one page and checks smaps says it is locked, as
// mlockall(MCL_FUTURE) promises for every later mapping.
func (c *childRun) checkFutureLocked() error {
	if f, err := reserve(c.env.page, false); err == nil {
		if err := f.mapFixed(0, c.env.page, 0); err == nil {
			if sm, err := c.env.smaps(f.addr()); err == nil {
				c.rep.FutureLocked = sm.VmLocked
			}
		}
		f.release()
	}
	if !c.rep.FutureLocked {
		return fmt.Errorf("a mapping made after mlockall(MCL_FUTURE) is not locked")
	}
	return nil
}

// vmSize is this process's VmSize in bytes (total_vm, which
// mlockall(MCL_CURRENT) compares with the limit), or 0 if unknown.
func vmSize(env *Env) uint64 {
	b, err := env.read("self/status")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("\nVmSize:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	kb, err := strconv.ParseUint(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(line), []byte("kB")))), 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}

func copyPhases(rep *childReport, res *Result) {
	for p := range numPhases {
		rep.Phases[p], rep.Ran[p] = int64(res.Phases[p]), res.Ran[p]
	}
}

func errnoOf(err error) int {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return int(errno)
	}
	return int(unix.EIO)
}

func parseChildSpec(s string) (length, flags int, huge bool, err error) {
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "bytes":
			length, err = strconv.Atoi(v)
		case "flags":
			flags, err = strconv.Atoi(v)
		case "huge":
			huge, err = strconv.ParseBool(v)
		default:
			err = fmt.Errorf("unknown key %q", k)
		}
		if err != nil {
			return 0, 0, false, fmt.Errorf("bad %s: %q: %v", childSpecEnv, s, err)
		}
	}
	if length <= 0 || length%unix.Getpagesize() != 0 || flags&^(unix.MCL_CURRENT|unix.MCL_FUTURE|unix.MCL_ONFAULT) != 0 {
		return 0, 0, false, fmt.Errorf("bad %s: %q", childSpecEnv, s)
	}
	return length, flags, huge, nil
}

// limitWriter keeps the first n bytes written and drops the rest.
type limitWriter struct {
	b *bytes.Buffer
	n int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if room := w.n - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
