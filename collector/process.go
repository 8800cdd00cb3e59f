package collector

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
)

// processCollector reports the processes that hold locked or pinned memory,
// or that ProcessConfig.Include names, and counts what it scanned.
type processCollector struct {
	cfg     ProcessConfig
	scanner *processScanner
	logger  *slog.Logger

	locked, pinned, resident      *prometheus.Desc
	limitSoft, limitHard, ipcLock *prometheus.Desc
	scanned, reported, omitted    *prometheus.Desc
	readFailures                  *prometheus.Desc
}

// processLabels name a process: pid, comm (never the command line, which
// may hold secrets), real uid, and the container and pod identity its
// cgroup path gives (empty outside containers).
var processLabels = []string{"pid", "comm", "uid", "pod_uid", "container_id", "qos_class"}

func newProcessCollector(en *env) (Collector, error) {
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "process", name), help, labels, nil)
	}
	return &processCollector{
		cfg:     en.cfg.Process,
		scanner: en.scanner,
		logger:  en.logger,
		locked: d("locked_bytes",
			"Size of the process's locked mappings (VmLck in /proc/<pid>/status), faulted in or not.", processLabels),
		pinned: d("pinned_bytes",
			"Memory pinned by the kernel for the process, e.g. io_uring buffers or RDMA registrations (VmPin in /proc/<pid>/status).", processLabels),
		resident: d("locked_resident_bytes",
			"Resident locked memory, proportional for shared pages (Locked in /proc/<pid>/smaps_rollup). Absent where smaps cannot be read.", processLabels),
		limitSoft: d("limit_soft_bytes",
			"Soft RLIMIT_MEMLOCK of the process; +Inf when unlimited.", processLabels),
		limitHard: d("limit_hard_bytes",
			"Hard RLIMIT_MEMLOCK of the process; +Inf when unlimited.", processLabels),
		ipcLock: d("cap_ipc_lock",
			"Whether CAP_IPC_LOCK is in the process's effective set (1), which lets it lock past RLIMIT_MEMLOCK.", processLabels),
		scanned: d("scanned_processes",
			"Processes whose status was read in the last scrape.", nil),
		reported: d("reported_processes",
			"Processes reported with series of their own in the last scrape.", nil),
		omitted: d("omitted_processes",
			"Processes that qualified for series but were left out by --collector.process.max-processes.", nil),
		readFailures: d("read_failures",
			"Per-process files that could not be read in the last scrape, by file and reason (permission, malformed, error).", []string{"file", "reason"}),
	}, nil
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.locked, c.pinned, c.resident, c.limitSoft, c.limitHard, c.ipcLock,
		c.scanned, c.reported, c.omitted, c.readFailures} {
		ch <- d
	}
}

// selectProcesses orders candidates (named first, then by locked+pinned
// bytes, then pid) and applies the cap. It returns the kept ones and how
// many were left out.
func selectProcesses(cands []procInfo, max int) ([]procInfo, int) {
	slices.SortFunc(cands, func(a, b procInfo) int {
		if a.named != b.named {
			if a.named {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(b.locked+b.pinned, a.locked+a.pinned); c != 0 {
			return c
		}
		return cmp.Compare(a.pid, b.pid)
	})
	if max > 0 && len(cands) > max {
		return cands[:max], len(cands) - max
	}
	return cands, 0
}

func bytesOrInf(v uint64) float64 {
	if v == linux.Unlimited {
		return math.Inf(1)
	}
	return float64(v)
}

func (c *processCollector) Update(ctx context.Context, s *Scrape, ch chan<- prometheus.Metric) error {
	scan := s.processes(ctx)
	if scan.err != nil {
		return scan.err
	}
	// The scan is shared with the user collector: count this collector's own
	// read failures separately.
	failures := map[readFailure]int{}
	for k, v := range scan.failures {
		failures[k] = v
	}
	procs, omitted := selectProcesses(slices.Clone(scan.candidates), c.cfg.MaxProcesses)

	dir, err := linux.OpenDir(c.scanner.procPath)
	if err != nil {
		return err
	}
	defer dir.Close()
	bufs := c.scanner.bufs.get()
	defer c.scanner.bufs.put(bufs)
	r := bufs.r

	var malformed []error
	reported := 0
	for _, p := range procs {
		if ctx.Err() != nil {
			return fmt.Errorf("reported %d of %d processes: %w", reported, len(procs), ctx.Err())
		}
		lim, limErr := c.scanner.memlockLimit(r, dir, p.pid)
		if limErr != nil {
			reason := classify(limErr)
			if reason == "vanished" {
				continue
			}
			failures[readFailure{"limits", reason}]++
			if reason == "malformed" {
				malformed = append(malformed, fmt.Errorf("pid %d: %w", p.pid, limErr))
			}
		}
		var resident uint64
		haveResident := false
		if c.cfg.Smaps && p.locked > 0 {
			b, err := r.ReadPid(dir, p.pid, "smaps_rollup")
			if err == nil {
				resident, err = linux.ParseSmapsRollupLocked(b)
			}
			if err == nil {
				haveResident = true
			} else if reason := classify(err); reason == "vanished" {
				continue
			} else {
				failures[readFailure{"smaps_rollup", reason}]++
				if reason == "malformed" {
					malformed = append(malformed, fmt.Errorf("pid %d: %w", p.pid, err))
				}
			}
		}

		// A missing cgroup file (a kernel without cgroups, or the process
		// exiting now) leaves the identity empty, uncounted.
		id, idErr := c.identity(r, dir, p.pid)
		if reason := classify(idErr); idErr != nil && reason != "vanished" {
			failures[readFailure{"cgroup", reason}]++
			if reason == "malformed" {
				malformed = append(malformed, fmt.Errorf("pid %d: %w", p.pid, idErr))
			}
		}

		lv := []string{strconv.Itoa(p.pid), p.name, strconv.FormatUint(uint64(p.uid), 10), id.PodUID, id.ContainerID, id.QOSClass}
		ch <- prometheus.MustNewConstMetric(c.locked, prometheus.GaugeValue, float64(p.locked), lv...)
		ch <- prometheus.MustNewConstMetric(c.pinned, prometheus.GaugeValue, float64(p.pinned), lv...)
		if haveResident {
			ch <- prometheus.MustNewConstMetric(c.resident, prometheus.GaugeValue, float64(resident), lv...)
		}
		if limErr == nil {
			ch <- prometheus.MustNewConstMetric(c.limitSoft, prometheus.GaugeValue, bytesOrInf(lim.Soft), lv...)
			ch <- prometheus.MustNewConstMetric(c.limitHard, prometheus.GaugeValue, bytesOrInf(lim.Hard), lv...)
		}
		ch <- prometheus.MustNewConstMetric(c.ipcLock, prometheus.GaugeValue, boolFloat(p.ipcLock), lv...)
		reported++
	}

	ch <- prometheus.MustNewConstMetric(c.scanned, prometheus.GaugeValue, float64(scan.scanned))
	ch <- prometheus.MustNewConstMetric(c.reported, prometheus.GaugeValue, float64(reported))
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(omitted))
	for k, v := range failures {
		ch <- prometheus.MustNewConstMetric(c.readFailures, prometheus.GaugeValue, float64(v), k.file, k.reason)
	}
	if err := scan.malformedErr(); err != nil {
		return err
	}
	if len(malformed) > 0 {
		return fmt.Errorf("%d malformed process files: %w", len(malformed), malformed[0])
	}
	return nil
}

// identity reads /proc/<pid>/cgroup of a reported process for its container
// and pod identity; it is read for reported processes only, never during
// the scan of all of them.
func (c *processCollector) identity(r *linux.Reader, dir *linux.Dir, pid int) (linux.CgroupIdentity, error) {
	b, err := r.ReadPid(dir, pid, "cgroup")
	if err != nil {
		return linux.CgroupIdentity{}, err
	}
	path, err := linux.ParseProcCgroup(b)
	if err != nil {
		return linux.CgroupIdentity{}, err
	}
	return linux.ParseCgroupPath(string(path)), nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
