// Package collector holds memlock_exporter's passive collectors: each reads
// one kind of kernel file per scrape and emits const metrics. Collectors
// keep no global state: everything they need comes in a Config, and the
// Exporter that runs them can be embedded in any program.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "memlock"

// Config configures every collector. Command-line flags live in
// cmd/memlock_exporter; a library user fills this in directly.
type Config struct {
	// ProcPath is where procfs is mounted (the host's /proc, possibly at
	// another path inside a container).
	ProcPath string
	// SysPath is where sysfs is mounted.
	SysPath string
	Process ProcessConfig
	Cgroup  CgroupConfig
	// Tasks, when set, gives the process and user collectors their
	// per-process numbers from one BPF task iterator pass per scrape
	// (a *bpf.Module); nil reads /proc/<pid>/status of every pid.
	// TasksUnavailable is why it is nil (memlock_scan_source_info's
	// reason label; "disabled" when empty).
	Tasks            TaskSource
	TasksUnavailable string
	// LockCalls configures the lockcalls collector (failed lock calls
	// counted by BPF at the syscalls' exits).
	LockCalls LockCallConfig
}

// ProcessConfig selects which processes get series of their own.
type ProcessConfig struct {
	// Include reports processes whose name (comm) matches, even when they
	// hold no locked or pinned memory: a service that failed to lock shows
	// VmLck 0 and its too-small limit. Nil matches nothing.
	Include *regexp.Regexp
	// Exclude hides processes whose name matches. It wins over Include.
	Exclude *regexp.Regexp
	// MaxProcesses caps the processes reported per scrape (0: no cap). Those
	// named by Include come first, then the largest by locked+pinned bytes.
	MaxProcesses int
	// Smaps enables reading smaps_rollup for resident locked bytes, only of
	// processes whose VmLck is above zero.
	Smaps bool
}

// CgroupConfig configures the cgroup collector and the container identity
// labels of process metrics.
type CgroupConfig struct {
	// Include names cgroups (by path) reported even without unevictable
	// memory. Nil matches nothing.
	Include *regexp.Regexp
	// MaxCgroups caps the cgroups reported per scrape (0: no cap), in the
	// walk's order, a parent before its children: a node with thousands
	// of pods must not answer with tens of thousands of series.
	MaxCgroups int
}

// DefaultConfig returns the configuration the exporter's flags default to.
func DefaultConfig() Config {
	return Config{
		ProcPath:  "/proc",
		SysPath:   "/sys",
		Process:   ProcessConfig{MaxProcesses: 200, Smaps: true},
		Cgroup:    CgroupConfig{MaxCgroups: 500},
		LockCalls: LockCallConfig{MaxSeries: 1000},
	}
}

// Collector is one data source.
type Collector interface {
	// Describe sends every descriptor the collector may emit.
	Describe(ch chan<- *prometheus.Desc)
	// Update reads the source and emits metrics. An error marks the
	// collector failed for this scrape; metrics already sent are kept.
	Update(ctx context.Context, s *Scrape, ch chan<- prometheus.Metric) error
}

// ErrNoData is what a collector returns (wrapped) when an optional source
// does not exist on this host: a cgroup v2 host without the memory
// controller, a kernel without the memory cgroup. It is not a failure: the
// collector read all there is, so its success stays 1, and the reason is
// logged once at Info, then at Debug on every scrape (node_exporter's
// ErrNoData, without failing the collector, so that
// MemlockCollectorFailing means a failure).
var ErrNoData = errors.New("collector returned no data")

// Info describes an available collector.
type Info struct {
	Name           string
	DefaultEnabled bool
	Help           string
}

type factory struct {
	Info
	new func(env *env) (Collector, error)
}

// env is what a collector's constructor gets: the configuration, the
// logger, and the process scan the collectors that read every process
// share (the first to ask creates it; each scrape runs it once).
type env struct {
	cfg     Config
	logger  *slog.Logger
	scanner *processScanner
}

// processScan returns the shared process scanner, creating it on first use.
func (en *env) processScan() (*processScanner, error) {
	if en.scanner == nil {
		s, err := newProcessScanner(en.cfg, en.logger)
		if err != nil {
			return nil, err
		}
		en.scanner = s
	}
	return en.scanner, nil
}

// factories is the fixed table of collectors, in a stable order.
var factories = []factory{
	{Info{"system", true, "system-wide and per NUMA node mlocked and unevictable memory (meminfo, vmstat)"}, newSystemCollector},
	{Info{"process", true, "per process locked, pinned and resident locked bytes, memlock limits, CAP_IPC_LOCK"}, newProcessCollector},
	{Info{"user", true, "per user locked and pinned bytes, which the kernel checks per user for pinned and SHM_LOCK memory"}, newUserCollector},
	{Info{"sysvipc", true, "SysV shared memory segments locked with SHM_LOCK, per owner"}, newSysvipcCollector},
	{Info{"lockcalls", true, "failed lock calls (mlock, mlockall, MAP_LOCKED, SHM_LOCK, io_uring buffers, RLIMIT_MEMLOCK changes) by process, syscall and errno, counted by BPF on the syscalls' exit tracepoints; needs --collector.bpf and tracefs"}, newLockCallCollector},
	{Info{"cgroup", true, "unevictable memory per cgroup (memory.stat, cgroup v1 and v2) beside the cgroup's memory limit, with pod and container identity"}, newCgroupCollector},
}

// Available lists every collector, in a stable order.
func Available() []Info {
	out := make([]Info, len(factories))
	for i, f := range factories {
		out[i] = f.Info
	}
	return out
}

// Exporter runs a set of collectors and reports each one's duration and
// success. It is a prometheus.Collector (with no scrape deadline); use
// Scrape for one bound to a request's context.
type Exporter struct {
	names      []string
	collectors map[string]Collector
	logger     *slog.Logger
	scanner    *processScanner
	// noData holds the collectors whose ErrNoData was logged at Info.
	noData sync.Map

	durationDesc *prometheus.Desc
	successDesc  *prometheus.Desc
}

// New builds the named collectors. An unknown name is an error.
func New(cfg Config, enabled []string, logger *slog.Logger) (*Exporter, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{
		collectors: map[string]Collector{},
		logger:     logger,
		durationDesc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "scrape", "collector_duration_seconds"),
			"How long a collector took in the last scrape.", []string{"collector"}, nil),
		successDesc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "scrape", "collector_success"),
			"Whether a collector succeeded in the last scrape (1) or failed (0).", []string{"collector"}, nil),
	}
	en := &env{cfg: cfg, logger: logger}
	for _, name := range enabled {
		i := slices.IndexFunc(factories, func(f factory) bool { return f.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("unknown collector %q", name)
		}
		if _, dup := e.collectors[name]; dup {
			continue
		}
		c, err := factories[i].new(en)
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", name, err)
		}
		e.collectors[name] = c
		e.names = append(e.names, name)
	}
	e.scanner = en.scanner
	slices.Sort(e.names)
	return e, nil
}

// Names returns the enabled collectors, sorted.
func (e *Exporter) Names() []string { return slices.Clone(e.names) }

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	ch <- e.durationDesc
	ch <- e.successDesc
	if e.scanner != nil {
		ch <- scanSourceDesc
	}
	for _, name := range e.names {
		e.collectors[name].Describe(ch)
	}
}

// Collect implements prometheus.Collector, with no deadline.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	e.collect(context.Background(), e.names, ch)
}

// Scrape returns a prometheus.Collector that collects once per Collect call
// within ctx, running only the named collectors (all enabled ones if names
// is empty). Unknown or disabled names are an error.
func (e *Exporter) Scrape(ctx context.Context, names []string) (prometheus.Collector, error) {
	if len(names) == 0 {
		names = e.names
	}
	for _, n := range names {
		if _, ok := e.collectors[n]; !ok {
			return nil, fmt.Errorf("collector %q is unknown or not enabled", n)
		}
	}
	return &boundExporter{e: e, ctx: ctx, names: names}, nil
}

type boundExporter struct {
	e     *Exporter
	ctx   context.Context
	names []string
}

func (b *boundExporter) Describe(ch chan<- *prometheus.Desc) { b.e.Describe(ch) }
func (b *boundExporter) Collect(ch chan<- prometheus.Metric) { b.e.collect(b.ctx, b.names, ch) }

// Scrape is the state of one collection shared between collectors, so that
// nothing is read twice in one scrape.
type Scrape struct {
	scanner  *processScanner
	procOnce sync.Once
	procs    *processScan
}

// processes scans /proc once per scrape, whichever collector asks first.
func (s *Scrape) processes(ctx context.Context) *processScan {
	s.procOnce.Do(func() { s.procs = s.scanner.scan(ctx) })
	return s.procs
}

func (e *Exporter) collect(ctx context.Context, names []string, ch chan<- prometheus.Metric) {
	s := &Scrape{scanner: e.scanner}
	if e.scanner != nil {
		e.scanner.emitSource(ch)
	}
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.run(ctx, name, s, ch)
		}()
	}
	wg.Wait()
}

func (e *Exporter) run(ctx context.Context, name string, s *Scrape, ch chan<- prometheus.Metric) {
	start := time.Now()
	err := safeUpdate(ctx, e.collectors[name], s, ch)
	d := time.Since(start).Seconds()
	success := 1.0
	switch {
	case err == nil:
		e.logger.Debug("collector succeeded", "collector", name, "duration_seconds", d)
	case errors.Is(err, ErrNoData):
		if _, seen := e.noData.LoadOrStore(name, true); !seen {
			e.logger.Info("collector has no source on this host", "collector", name, "err", err)
		} else {
			e.logger.Debug("collector returned no data", "collector", name, "err", err)
		}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		success = 0
		e.logger.Warn("collector ran out of time", "collector", name, "duration_seconds", d, "err", err)
	default:
		success = 0
		e.logger.Error("collector failed", "collector", name, "duration_seconds", d, "err", err)
	}
	ch <- prometheus.MustNewConstMetric(e.durationDesc, prometheus.GaugeValue, d, name)
	ch <- prometheus.MustNewConstMetric(e.successDesc, prometheus.GaugeValue, success, name)
}

// safeUpdate turns a panic inside a collector into an error, so one broken
// collector never takes the scrape, or the exporter, down.
func safeUpdate(ctx context.Context, c Collector, s *Scrape, ch chan<- prometheus.Metric) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	return c.Update(ctx, s, ch)
}
