package probe

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/metricutil"
)

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
		ch <- prometheus.MustNewConstMetric(c.capIPCLock, prometheus.GaugeValue, metricutil.Bool(st.IPCLock()))
		ch <- prometheus.MustNewConstMetric(c.locked, prometheus.GaugeValue, float64(st.Locked))
	}
}
