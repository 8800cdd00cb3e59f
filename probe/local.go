package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// defaultChunk is how much one lock call covers when a module sets no
// chunk_size: 1,024 pages of 4 KiB, about 5.5 ms of mlock on fresh memory
// as `make bench-probe` measured it (docs/probes.md; mm/mlock.c faults in
// and locks every page of the range), so a deadline is overrun by about that.
const defaultChunk = 4 << 20

// localSpec is what differs between the probers that lock in the
// exporter's own process.
type localSpec struct {
	// populate: the map phase only reserves; the lock phase maps with
	// MAP_LOCKED|MAP_POPULATE.
	populate bool
	// lock locks the region (chunk by chunk, checking ctx between chunks).
	lock func(ctx context.Context, r *region, chunk int) error
	// want is what verification expects; touchPages how many pages to write.
	want       lockedShape
	touchPages func(pages int) int
}

// runLocal runs one probe in this process: map, lock, touch, verify,
// unlock, unmap. The region is released on every path, panics included.
func runLocal(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger, spec localSpec) bool {
	res.Pages = res.Bytes / uint64(env.page)
	chunk := int(m.ChunkSize)
	if chunk <= 0 {
		chunk = defaultChunk
	}
	baseline, ok := lockedBaseline(env, res)
	if !ok {
		return false
	}
	t := time.Now()
	// A plain mapping is not checked against RLIMIT_MEMLOCK, so its ENOMEM
	// is address space or mappings whatever the headroom: classify it
	// without one.
	r, err := reserve(int(res.Bytes), m.HugePages)
	if err != nil {
		res.timed(PhaseMap, t)
		return res.failErrno("mmap", err, nil)
	}
	defer func() {
		if err := r.release(); err != nil {
			logger.Error("cannot release probe region", "err", err)
		}
	}()
	if !mapRegion(ctx, env, m, res, logger, spec, r, t) || !lockRegion(ctx, env, m, res, logger, spec, r, chunk) {
		return false
	}
	verr := touchAndVerify(ctx, env, res, logger, spec, r, baseline)
	return unlockAndUnmap(ctx, env, res, r, baseline, verr)
}

// lockedBaseline reads VmLck before the probe locks anything.
func lockedBaseline(env *Env, res *Result) (uint64, bool) {
	t := time.Now()
	st, err := env.status()
	res.timed(PhaseVerify, t)
	if err != nil {
		return 0, res.fail(ReasonVerification, fmt.Errorf("%w: status: %v", ErrVerification, err))
	}
	return st.Locked, true
}

// mapRegion maps the reserved region (populate leaves that to the lock
// phase) and asks for huge pages if the module does; t is when the map
// phase began.
func mapRegion(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger, spec localSpec, r *region, t time.Time) bool {
	if !spec.populate {
		if err := r.mapFixed(0, len(r.mem), 0); err != nil {
			res.timed(PhaseMap, t)
			return res.failErrno("mmap", err, nil)
		}
		if m.HugePages {
			if err := unix.Madvise(r.mem, unix.MADV_HUGEPAGE); err != nil {
				logger.Debug("madvise(MADV_HUGEPAGE) failed; continuing with base pages", "err", err)
			}
		}
	}
	res.timed(PhaseMap, t)
	env.runHook(ctx, PhaseMap, r.mem)
	logger.Debug("mapped", "bytes", len(r.mem), "map_seconds", res.Phases[PhaseMap].Seconds())
	return true
}

// lockRegion locks the region chunk by chunk; a deadline between chunks is
// a timeout, an errno is classified against the headroom.
func lockRegion(ctx context.Context, env *Env, m Module, res *Result, logger *slog.Logger, spec localSpec, r *region, chunk int) bool {
	t := time.Now()
	err := spec.lock(ctx, r, chunk)
	res.timed(PhaseLock, t)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return res.fail(ReasonTimeout, fmt.Errorf("deadline reached between lock chunks: %w", err))
		}
		return res.failErrno(string(m.Mode), err, &res.Headroom)
	}
	env.runHook(ctx, PhaseLock, r.mem)
	logger.Debug("locked", "lock_seconds", res.Phases[PhaseLock].Seconds(), "chunk_bytes", chunk)
	return true
}

// touchAndVerify writes a pattern into the pages the mode touches and
// checks the locked region against what the kernel reports.
func touchAndVerify(ctx context.Context, env *Env, res *Result, logger *slog.Logger, spec localSpec, r *region, baseline uint64) error {
	page := env.page
	pages := len(r.mem) / page
	n := pages
	if spec.touchPages != nil {
		n = spec.touchPages(pages)
	}
	seed := uint64(time.Now().UnixNano())
	t := time.Now()
	touch(r.mem, page, n, seed)
	res.timed(PhaseTouch, t)
	res.Touched = uint64(n * page)
	env.runHook(ctx, PhaseTouch, r.mem)

	t = time.Now()
	verr := env.verifyRegion(r, res, spec.want, baseline, n, seed)
	res.timed(PhaseVerify, t)
	env.runHook(ctx, PhaseVerify, r.mem)
	logger.Debug("verified", "locked_delta_bytes", res.LockedDelta, "smaps_locked_bytes", res.ResidentLocked,
		"resident_bytes", res.Resident, "touched_bytes", res.Touched, "anon_huge_bytes", res.HugeBytes,
		"kpageflags_checked", res.KpageflagsChecked, "kpageflags_pages", res.KpageflagsPages,
		"kpageflags_mlocked", res.KpageflagsMlocked, "err", verr)
	return verr
}

// unlockAndUnmap munlocks and unmaps the region, checks VmLck is back at
// baseline, and reports the probe's outcome (verr from verification).
func unlockAndUnmap(ctx context.Context, env *Env, res *Result, r *region, baseline uint64, verr error) bool {
	t := time.Now()
	err := unix.Munlock(r.mem)
	res.timed(PhaseUnlock, t)
	if err != nil {
		return res.fail(ReasonOther, fmt.Errorf("munlock: %w", err))
	}
	r.mayBeLocked = false
	env.runHook(ctx, PhaseUnlock, r.mem)
	if verr == nil {
		t = time.Now()
		verr = env.verifyUnlocked(baseline)
		res.timed(PhaseVerify, t)
	}

	t = time.Now()
	err = r.release()
	res.timed(PhaseUnmap, t)
	if err != nil {
		return res.fail(ReasonOther, fmt.Errorf("munmap: %w", err))
	}
	if verr != nil {
		return res.fail(ReasonVerification, verr)
	}
	res.Success = true
	return true
}

func (e *Env) runHook(ctx context.Context, p Phase, mem []byte) {
	if e.hook != nil {
		e.hook(ctx, p, mem)
	}
}
