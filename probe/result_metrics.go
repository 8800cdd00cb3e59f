package probe

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/memlock-exporter/memlock_exporter/internal/metricutil"
)

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
	g(probeSuccessDesc, metricutil.Bool(r.Success))
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
		g(probeFailedDesc, metricutil.Bool(r.Reason == reason), string(reason))
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
