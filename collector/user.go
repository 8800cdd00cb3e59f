package collector

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// userCollector sums locked and pinned memory per real uid over every
// process, excluded ones too: the kernel checks pinned pages (io_uring,
// RDMA) and SHM_LOCK against RLIMIT_MEMLOCK per user, not per process.
type userCollector struct {
	locked, pinned, procs *prometheus.Desc
}

func newUserCollector(*env) (Collector, error) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "user", name), help, []string{"uid"}, nil)
	}
	return &userCollector{
		locked: d("locked_bytes", "Sum of VmLck over the user's processes."),
		pinned: d("pinned_bytes", "Sum of VmPin over the user's processes."),
		procs:  d("processes", "Number of the user's processes (kernel threads excluded)."),
	}, nil
}

func (c *userCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.locked
	ch <- c.pinned
	ch <- c.procs
}

// Update reports the users that hold locked or pinned memory.
func (c *userCollector) Update(ctx context.Context, s *Scrape, ch chan<- prometheus.Metric) error {
	scan := s.processes(ctx)
	if scan.err != nil {
		return scan.err
	}
	for uid, u := range scan.users {
		if u.locked == 0 && u.pinned == 0 {
			continue
		}
		id := strconv.FormatUint(uint64(uid), 10)
		ch <- prometheus.MustNewConstMetric(c.locked, prometheus.GaugeValue, float64(u.locked), id)
		ch <- prometheus.MustNewConstMetric(c.pinned, prometheus.GaugeValue, float64(u.pinned), id)
		ch <- prometheus.MustNewConstMetric(c.procs, prometheus.GaugeValue, float64(u.procs), id)
	}
	return nil
}
