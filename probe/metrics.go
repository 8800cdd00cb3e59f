package probe

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

const namespace = "memlock"

// latencyBuckets resolve from 1 µs to 10 s, three buckets a decade
// (factor 10^(1/3) ≈ 2.15): a one-page lock and a GiB lock both land
// inside the range.
var latencyBuckets = prometheus.ExponentialBucketsRange(1e-6, 10, 22)

// Native histograms beside the classic buckets: 1.1 is about 8 buckets per
// factor of two.
const (
	nativeFactor     = 1.1
	nativeMaxBuckets = 160
)

func histogramOpts(name, help string) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "probe", Name: name, Help: help,
		Buckets:                         latencyBuckets,
		NativeHistogramBucketFactor:     nativeFactor,
		NativeHistogramMaxBucketNumber:  nativeMaxBuckets,
		NativeHistogramMinResetDuration: time.Hour,
	}
}

// modeState is the last background run of a mode and its counters.
type modeState struct {
	ran            bool
	success        float64
	timestamp      float64
	bytes          float64
	secondsPerPage float64
	runs           uint64
	failures       map[Reason]uint64
}

// metrics are the background schedule's metrics, and the exporter's own
// headroom read at scrape time.
type metrics struct {
	phase    *prometheus.HistogramVec
	duration *prometheus.HistogramVec

	success, lastRun, bytes, perPage, runs, failures *prometheus.Desc
	headroom                                         *prometheus.Desc
	reloadOK                                         *prometheus.Desc

	mu       sync.Mutex
	modes    []Mode
	state    map[Mode]*modeState
	reloadOn float64
}

func newMetrics(scheduled []NamedModule) *metrics {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
	}
	m := &metrics{
		phase: prometheus.NewHistogramVec(histogramOpts("phase_duration_seconds",
			"Duration of each phase of background probes: map, lock, touch, verify, unlock, unmap."), []string{"mode", "phase"}),
		duration: prometheus.NewHistogramVec(histogramOpts("duration_seconds",
			"Duration of whole background probes, headroom check and verification included."), []string{"mode"}),
		success:  d("probe", "success", "Whether the last background probe of the mode locked and verified its region (1) or not (0).", "mode"),
		lastRun:  d("probe", "last_run_timestamp_seconds", "When the last background probe of the mode ended, in seconds since the epoch.", "mode"),
		bytes:    d("probe", "bytes", "Size of the region the last background probe of the mode locked.", "mode"),
		perPage:  d("probe", "seconds_per_page", "Lock phase of the last background probe of the mode divided by its pages.", "mode"),
		runs:     d("probe", "runs_total", "Background probes run, by mode.", "mode"),
		failures: d("probe", "failures_total", "Background probes that failed, by mode and reason.", "mode", "reason"),
		headroom: d("probe", "headroom_bytes", "Bytes this exporter could lock now, per constraint (rlimit, cgroup, memory_available) and their least (effective); +Inf where a constraint does not bind.", "constraint"),
		reloadOK: d("probe", "config_last_reload_successful", "Whether the last load of --probe.config.file succeeded."),
		state:    map[Mode]*modeState{},
	}
	for _, s := range scheduled {
		m.modes = append(m.modes, s.Mode)
		m.state[s.Mode] = &modeState{failures: map[Reason]uint64{}}
		for _, p := range Phases() {
			m.phase.WithLabelValues(string(s.Mode), p.String()) // show empty histograms from the start
		}
		m.duration.WithLabelValues(string(s.Mode))
	}
	return m
}

func (m *metrics) reloaded(ok bool) {
	m.mu.Lock()
	m.reloadOn = map[bool]float64{true: 1, false: 0}[ok]
	m.mu.Unlock()
}

func (m *metrics) record(res *Result, now time.Time) {
	mode := string(res.Mode)
	for p := range numPhases {
		if res.Ran[p] {
			m.phase.WithLabelValues(mode, p.String()).Observe(res.Phases[p].Seconds())
		}
	}
	m.duration.WithLabelValues(mode).Observe(res.Duration.Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.state[res.Mode]
	if !ok {
		return
	}
	s.ran = true
	s.runs++
	s.success = 0
	if res.Success {
		s.success = 1
	} else {
		s.failures[res.Reason]++
	}
	s.timestamp = float64(now.UnixNano()) / 1e9
	s.bytes = float64(res.Bytes)
	if res.Ran[PhaseLock] && res.Reason == "" {
		s.secondsPerPage = res.SecondsPerPage()
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.phase.Describe(ch)
	m.duration.Describe(ch)
	for _, d := range []*prometheus.Desc{m.success, m.lastRun, m.bytes, m.perPage, m.runs, m.failures,
		m.headroom, m.reloadOK} {
		ch <- d
	}
}

func (m *metrics) collect(h Headroom, ch chan<- prometheus.Metric) {
	m.phase.Collect(ch)
	m.duration.Collect(ch)
	m.mu.Lock()
	for _, mode := range m.modes {
		s := m.state[mode]
		l := string(mode)
		ch <- prometheus.MustNewConstMetric(m.runs, prometheus.CounterValue, float64(s.runs), l)
		for _, r := range reasons {
			ch <- prometheus.MustNewConstMetric(m.failures, prometheus.CounterValue, float64(s.failures[r]), l, string(r))
		}
		if !s.ran {
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.success, prometheus.GaugeValue, s.success, l)
		ch <- prometheus.MustNewConstMetric(m.lastRun, prometheus.GaugeValue, s.timestamp, l)
		ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, s.bytes, l)
		ch <- prometheus.MustNewConstMetric(m.perPage, prometheus.GaugeValue, s.secondsPerPage, l)
	}
	ch <- prometheus.MustNewConstMetric(m.reloadOK, prometheus.GaugeValue, m.reloadOn)
	m.mu.Unlock()
	emitHeadroom(ch, m.headroom, h)
}

// SelfCollector exports the exporter's own memlock limits, CAP_IPC_LOCK
// and VmLck. They describe the exporter itself, so they are exported
// whether probes are enabled or not.
type SelfCollector struct {
	mu  sync.Mutex // env's read buffer
	env *Env

	limitSoft, limitHard, capIPCLock, locked *prometheus.Desc
}

// NewSelfCollector returns a collector of this process's own limits.
func NewSelfCollector() *SelfCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "exporter", name), help, nil, nil)
	}
	return &SelfCollector{env: NewEnv("/proc", ""),
		limitSoft:  d("limit_soft_bytes", "The exporter's own soft RLIMIT_MEMLOCK; +Inf when unlimited."),
		limitHard:  d("limit_hard_bytes", "The exporter's own hard RLIMIT_MEMLOCK; +Inf when unlimited."),
		capIPCLock: d("cap_ipc_lock", "1 when CAP_IPC_LOCK is in the exporter's effective set (/proc/self/status CapEff)."),
		locked:     d("locked_bytes", "The exporter's own VmLck: 0 except while a probe holds its region."),
	}
}

// Describe implements prometheus.Collector.
func (c *SelfCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.limitSoft
	ch <- c.limitHard
	ch <- c.capIPCLock
	ch <- c.locked
}

// Collect implements prometheus.Collector.
func (c *SelfCollector) Collect(ch chan<- prometheus.Metric) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err == nil {
		ch <- prometheus.MustNewConstMetric(c.limitSoft, prometheus.GaugeValue, rlimitOrInf(rl.Cur))
		ch <- prometheus.MustNewConstMetric(c.limitHard, prometheus.GaugeValue, rlimitOrInf(rl.Max))
	}
	c.mu.Lock()
	st, err := c.env.status()
	c.mu.Unlock()
	if err == nil {
		ch <- prometheus.MustNewConstMetric(c.capIPCLock, prometheus.GaugeValue, boolFloat(st.IPCLock()))
		ch <- prometheus.MustNewConstMetric(c.locked, prometheus.GaugeValue, float64(st.Locked))
	}
}

func rlimitOrInf(v uint64) float64 {
	if v == unix.RLIM_INFINITY {
		return math.Inf(1)
	}
	return float64(v)
}

func emitHeadroom(ch chan<- prometheus.Metric, d *prometheus.Desc, h Headroom) {
	if h.RlimitKnown {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, bytesOrInf(h.Rlimit), "rlimit")
	}
	if h.CgroupKnown {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, bytesOrInf(h.Cgroup), "cgroup")
	}
	if h.MemAvailableKnown {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, bytesOrInf(h.MemAvailable), "memory_available")
	}
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, bytesOrInf(h.Effective), "effective")
}

func bytesOrInf(v uint64) float64 {
	if v == unlimited {
		return math.Inf(1)
	}
	return float64(v)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Describe implements prometheus.Collector for the background schedule's
// metrics and the exporter's own headroom.
func (r *Runner) Describe(ch chan<- *prometheus.Desc) { r.metrics.Describe(ch) }

// Collect implements prometheus.Collector. Headroom is read afresh.
func (r *Runner) Collect(ch chan<- prometheus.Metric) {
	r.scrapeMu.Lock()
	h := r.scrapeEnv.Headroom()
	r.scrapeMu.Unlock()
	r.metrics.collect(h, ch)
}

// ResultCollector exports one on-demand probe, blackbox_exporter style:
// probe_success, probe_duration_seconds and probe_memlock_*. Register it
// in a fresh registry per request.
type ResultCollector struct {
	res *Result
}

// NewResultCollector returns a collector of res.
func NewResultCollector(res *Result) *ResultCollector { return &ResultCollector{res: res} }

var (
	probeSuccessDesc   = prometheus.NewDesc("probe_success", "Whether the probe locked and verified its region.", nil, nil)
	probeDurationDesc  = prometheus.NewDesc("probe_duration_seconds", "How long the probe took, headroom check and verification included.", nil, nil)
	probePhaseDesc     = prometheus.NewDesc("probe_memlock_phase_duration_seconds", "Duration of each phase of the probe that ran.", []string{"phase"}, nil)
	probeBytesDesc     = prometheus.NewDesc("probe_memlock_bytes", "Size of the probed region.", nil, nil)
	probePerPageDesc   = prometheus.NewDesc("probe_memlock_seconds_per_page", "Lock phase divided by the region's pages.", nil, nil)
	probeFailedDesc    = prometheus.NewDesc("probe_memlock_failed_due_to", "1 for the reason the probe failed, 0 for the others.", []string{"reason"}, nil)
	probeHeadroomDesc  = prometheus.NewDesc("probe_memlock_headroom_bytes", "Bytes the exporter could lock before the probe, per constraint; +Inf where it does not bind.", []string{"constraint"}, nil)
	probeDeltaDesc     = prometheus.NewDesc("probe_memlock_locked_delta_bytes", "Rise of VmLck while the region was locked (mlockall: of the whole child).", nil, nil)
	probeResLockedDesc = prometheus.NewDesc("probe_memlock_resident_locked_bytes", "smaps Locked of the region.", nil, nil)
	probeResidentDesc  = prometheus.NewDesc("probe_memlock_resident_bytes", "Bytes of the region mincore reports resident.", nil, nil)
	probeTouchedDesc   = prometheus.NewDesc("probe_memlock_touched_bytes", "Bytes of the region written with a pattern and read back.", nil, nil)
	probeHugeDesc      = prometheus.NewDesc("probe_memlock_anon_huge_bytes", "smaps AnonHugePages of the region: transparent huge pages.", nil, nil)
	probeKpageDesc     = prometheus.NewDesc("probe_memlock_kpageflags_pages", "Pages looked up in /proc/kpageflags (state=checked) and of those marked mlocked and unevictable (state=mlocked); only with CAP_SYS_ADMIN.", []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (c *ResultCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{probeSuccessDesc, probeDurationDesc, probePhaseDesc, probeBytesDesc, probePerPageDesc,
		probeFailedDesc, probeHeadroomDesc, probeDeltaDesc, probeResLockedDesc, probeResidentDesc, probeTouchedDesc,
		probeHugeDesc, probeKpageDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ResultCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.res
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	g(probeSuccessDesc, boolFloat(r.Success))
	g(probeDurationDesc, r.Duration.Seconds())
	for p := range numPhases {
		if r.Ran[p] {
			g(probePhaseDesc, r.Phases[p].Seconds(), p.String())
		}
	}
	g(probeBytesDesc, float64(r.Bytes))
	if r.Ran[PhaseLock] && r.Reason == "" {
		g(probePerPageDesc, r.SecondsPerPage())
	}
	for _, reason := range reasons {
		g(probeFailedDesc, boolFloat(r.Reason == reason), string(reason))
	}
	if r.Headroom.StatusKnown || r.Headroom.MemAvailableKnown {
		emitHeadroom(ch, probeHeadroomDesc, r.Headroom)
	}
	if r.Ran[PhaseVerify] {
		g(probeDeltaDesc, float64(r.LockedDelta))
		g(probeResLockedDesc, float64(r.ResidentLocked))
		g(probeResidentDesc, float64(r.Resident))
		g(probeTouchedDesc, float64(r.Touched))
		g(probeHugeDesc, float64(r.HugeBytes))
	}
	if r.KpageflagsChecked {
		g(probeKpageDesc, float64(r.KpageflagsPages), "checked")
		g(probeKpageDesc, float64(r.KpageflagsMlocked), "mlocked")
	}
}
