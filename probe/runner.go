package probe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// NamedModule is a module and its name.
type NamedModule struct {
	Name string
	Module
}

// Options configures a Runner.
type Options struct {
	// Env is the probers' environment; nil for NewEnv("/proc", "").
	Env *Env
	// MaxBytes is the hard byte budget: no probe locks more.
	MaxBytes uint64
	// Interval between background rounds; 0 disables the schedule.
	Interval time.Duration
	// Timeout of each background probe.
	Timeout time.Duration
	// Scheduled are the modules the background schedule runs, in order;
	// they are also available to Probe by name. Their modes must differ:
	// background metrics are labelled by mode.
	Scheduled []NamedModule
	// OnDemand are more modules available to Probe by name only (not
	// scheduled), e.g. each built-in mode the schedule does not run.
	OnDemand []NamedModule
	// ConfigFile holds more modules (see Config); "" for none.
	ConfigFile string
	Logger     *slog.Logger
}

// Runner runs probes one at a time: on a schedule, whose results it
// exports as a prometheus.Collector, and on demand through Probe.
type Runner struct {
	o       Options
	env     *Env
	logger  *slog.Logger
	sem     chan struct{} // one probe at a time
	demand  chan struct{} // one on-demand probe at a time waits for sem
	metrics *metrics

	mu      sync.RWMutex
	modules map[string]Module // flag modules, then config file modules

	scrapeMu  sync.Mutex
	scrapeEnv *Env // for headroom at scrape time, apart from env

	stopCtx context.Context // cancelled by Stop: ends every probe
	stop    context.CancelFunc
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewRunner checks the options and loads the configuration file.
func NewRunner(o Options) (*Runner, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Env == nil {
		o.Env = NewEnv("/proc", "")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	r := &Runner{o: o, env: o.Env, logger: o.Logger, sem: make(chan struct{}, 1), demand: make(chan struct{}, 1),
		scrapeEnv: NewEnv(o.Env.ProcPath, o.Env.Exe)}
	r.stopCtx, r.stop = context.WithCancel(context.Background())
	seen := map[Mode]bool{}
	for _, m := range o.OnDemand {
		if err := m.Validate(o.MaxBytes); err != nil {
			return nil, fmt.Errorf("module %q: %w", m.Name, err)
		}
	}
	for _, m := range o.Scheduled {
		if err := m.Validate(o.MaxBytes); err != nil {
			return nil, fmt.Errorf("module %q: %w", m.Name, err)
		}
		if seen[m.Mode] {
			return nil, fmt.Errorf("mode %q scheduled twice", m.Mode)
		}
		seen[m.Mode] = true
	}
	r.metrics = newMetrics(o.Scheduled)
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload rereads the configuration file. On error the modules in use stay.
func (r *Runner) Reload() error {
	mods := map[string]Module{}
	for _, m := range r.o.OnDemand {
		mods[m.Name] = m.Module
	}
	for _, m := range r.o.Scheduled {
		mods[m.Name] = m.Module
	}
	if r.o.ConfigFile != "" {
		c, err := LoadConfig(r.o.ConfigFile, r.o.MaxBytes)
		if err != nil {
			r.metrics.reloaded(false)
			return fmt.Errorf("probe config %s: %w", r.o.ConfigFile, err)
		}
		maps.Copy(mods, c.Modules)
	}
	r.mu.Lock()
	r.modules = mods
	r.mu.Unlock()
	r.metrics.reloaded(true)
	return nil
}

// Module returns the named module.
func (r *Runner) Module(name string) (Module, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.modules[name]
	return m, ok
}

// ModuleNames lists the modules, sorted.
func (r *Runner) ModuleNames() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.modules))
}

// Probe runs one probe of module m on demand, waiting within ctx for the
// probe in progress; on-demand probes wait one at a time, so a background
// probe waits for at most one of them. The module's timeout, if any,
// shortens ctx once the probe has its turn.
func (r *Runner) Probe(ctx context.Context, name string, m Module, logger *slog.Logger) Result {
	return r.run(ctx, name, m, logger, false, 0)
}

// run runs one probe once it holds sem. timeout (background probes) and the
// module's own start when the probe has its turn: waiting for another
// probe is not this probe's time, and a background probe is never failed
// for it.
func (r *Runner) run(ctx context.Context, name string, m Module, logger *slog.Logger, background bool, timeout time.Duration) Result {
	waitStart := time.Now()
	res := Result{Module: name, Mode: m.Mode}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.stopCtx, cancel)()
	if !background {
		select {
		case r.demand <- struct{}{}:
			defer func() { <-r.demand }()
		case <-ctx.Done():
			res.fail(ReasonTimeout, fmt.Errorf("waiting for the probe in progress: %w", ctx.Err()))
			res.Waited = time.Since(waitStart)
			return res
		}
	}
	select {
	case r.sem <- struct{}{}:
		defer func() { <-r.sem }()
	case <-ctx.Done():
		res.fail(ReasonTimeout, fmt.Errorf("waiting for the probe in progress: %w", ctx.Err()))
		res.Waited = time.Since(waitStart)
		return res
	}
	res.Waited = time.Since(waitStart)
	start := time.Now()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if m.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.Timeout)
		defer cancel()
	}
	r.probe(ctx, m, &res, logger)
	res.Duration = time.Since(start)
	if n := liveRegions.Load(); n != 0 {
		r.logger.Error("probe regions still mapped after a probe", "regions", n)
	}
	if res.Success {
		logger.Info("probe succeeded", "bytes", res.Bytes, "duration_seconds", res.Duration.Seconds(), "waited_seconds", res.Waited.Seconds(),
			"lock_seconds", res.Phases[PhaseLock].Seconds(), "seconds_per_page", res.SecondsPerPage())
	} else {
		logger.Warn("probe failed", "reason", res.Reason, "err", res.Err, "duration_seconds", res.Duration.Seconds(), "waited_seconds", res.Waited.Seconds())
	}
	return res
}

func (r *Runner) probe(ctx context.Context, m Module, res *Result, logger *slog.Logger) {
	fn, ok := prober(m.Mode)
	if !ok {
		res.fail(ReasonEINVAL, fmt.Errorf("unknown mode %q", m.Mode))
		return
	}
	h := r.env.Headroom()
	res.Headroom = h
	page := uint64(r.env.page)
	size := uint64(m.Size)
	if size == 0 { // auto: half the headroom, within the budget
		size = min(r.o.MaxBytes, h.Effective/2)
	}
	size = (size + page - 1) / page * page
	if size > r.o.MaxBytes {
		size = r.o.MaxBytes / page * page
	}
	if size == 0 {
		size = page
	}
	res.Bytes, res.Pages = size, size/page
	logger.Debug("headroom", "rlimit_bytes", h.Rlimit, "cgroup_bytes", h.Cgroup, "cgroup_known", h.CgroupKnown,
		"memory_available_bytes", h.MemAvailable, "effective_bytes", h.Effective, "cap_ipc_lock", h.CapIPCLock,
		"probe_bytes", size, "mode", string(m.Mode))
	if size > h.Effective && !m.IgnoreHeadroom {
		res.fail(ReasonHeadroom, fmt.Errorf("%w: probe of %d bytes, headroom %d bytes", ErrHeadroom, size, h.Effective))
		return
	}
	safeProbe(ctx, fn, r.env, m, res, logger)
}

// safeProbe turns a panic inside a prober into a failure. The prober's own
// deferred release has run by the time the panic reaches here.
func safeProbe(ctx context.Context, fn ProbeFn, env *Env, m Module, res *Result, logger *slog.Logger) {
	defer func() {
		if p := recover(); p != nil {
			res.fail(ReasonOther, fmt.Errorf("panic: %v\n%s", p, debug.Stack()))
		}
	}()
	if !fn(ctx, env, m, res, logger) && res.Reason == "" {
		res.fail(ReasonOther, errors.New("prober failed without a reason"))
	}
}

// Start runs the background schedule until Stop, if an interval is set.
func (r *Runner) Start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		if r.o.Interval <= 0 || len(r.o.Scheduled) == 0 {
			<-ctx.Done()
			return
		}
		t := time.NewTicker(r.o.Interval)
		defer t.Stop()
		for {
			r.RunScheduled(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop cancels the schedule and any probe in progress, and returns once
// its region is released.
func (r *Runner) Stop() {
	r.stop() // every probe's AfterFunc cancels its context
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	// Wait out an on-demand probe, which stop has cancelled.
	r.sem <- struct{}{}
	<-r.sem
}

// RunScheduled runs every scheduled module once and records the results.
func (r *Runner) RunScheduled(ctx context.Context) {
	for _, m := range r.o.Scheduled {
		if ctx.Err() != nil {
			return
		}
		res := r.run(ctx, m.Name, m.Module, r.logger.With("module", m.Name, "schedule", "background"), true, r.o.Timeout)
		if ctx.Err() != nil && !res.Success {
			return // shutting down: not a timeout worth counting
		}
		r.metrics.record(&res, time.Now())
	}
}
