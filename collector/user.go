package collector

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// userCollector sums locked and pinned memory per real uid over every
// process, excluded ones too. None of these sums is a counter the kernel
// keeps per user: mlock is checked per process (VmLck), RDMA per process
// (VmPin), and what io_uring, perf and SHM_LOCK charge per user
// (user_struct->locked_vm, ucounts) is in no /proc file. The charged
// pinned figure approximates io_uring's charge as far as /proc allows.
type userCollector struct {
	locked, pinned, charged, procs *prometheus.Desc
}

func newUserCollector(en *env) (Collector, error) {
	// The sums come from the scrape's shared process scan.
	if _, err := en.processScan(); err != nil {
		return nil, err
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "user", name), help, []string{"uid"}, nil)
	}
	return &userCollector{
		locked: d("processes_locked_bytes",
			"Sum of VmLck (mm->locked_vm) over the real uid's processes. Not a kernel per-user charge: the kernel checks mlock against each process's own RLIMIT_MEMLOCK, and a page locked by two processes counts in both."),
		pinned: d("processes_pinned_bytes",
			"Sum of VmPin (mm->pinned_vm: io_uring buffers, RDMA registrations, perf ring pages) over the real uid's processes. Not a kernel per-user charge: RDMA checks each process; see memlock_user_charged_pinned_bytes."),
		charged: d("charged_pinned_bytes",
			"Approximation of what io_uring buffer registrations charge to the user (user_struct->locked_vm, checked against the registering process's RLIMIT_MEMLOCK): the sum of VmPin over the uid's processes that lack CAP_IPC_LOCK in the initial user namespace, which io_uring exempts. It counts RDMA and perf pins of such processes too, which the kernel does not charge per user, and misses perf, MSG_ZEROCOPY, AF_XDP and SHM_LOCK charges, which no /proc file shows."),
		procs: d("processes", "Number of the real uid's processes (kernel threads excluded)."),
	}, nil
}

func (c *userCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.locked
	ch <- c.pinned
	ch <- c.charged
	ch <- c.procs
}

// Update reports the users that hold locked or pinned memory. A scan that
// ran out of time reports no user: a partial sum would read as memory
// released. A status file left out as malformed fails the collector, its
// sums being short.
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
		ch <- prometheus.MustNewConstMetric(c.charged, prometheus.GaugeValue, float64(u.chargedPinned), id)
		ch <- prometheus.MustNewConstMetric(c.procs, prometheus.GaugeValue, float64(u.procs), id)
	}
	return scan.malformedErr()
}
