package probe

import (
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/metricutil"
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

// This file is the background schedule's collector (Runner as a
// prometheus.Collector); result_metrics.go is the /probe one,
// self_metrics.go the exporter's own limits.

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

func rlimitOrInf(v uint64) float64 {
	if v == unix.RLIM_INFINITY {
		return math.Inf(1)
	}
	return float64(v)
}

func emitHeadroom(ch chan<- prometheus.Metric, d *prometheus.Desc, h Headroom) {
	if h.RlimitKnown {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, metricutil.BytesOrInf(h.Rlimit), "rlimit")
	}
	if h.CgroupKnown {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, metricutil.BytesOrInf(h.Cgroup), "cgroup")
	}
	if h.MemAvailableKnown {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, metricutil.BytesOrInf(h.MemAvailable), "memory_available")
	}
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, metricutil.BytesOrInf(h.Effective), "effective")
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
