package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/memlock-exporter/memlock_exporter/internal/metricutil"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
)

// processCollector reports the processes that hold locked or pinned memory,
// or that ProcessConfig.Include names, and counts what it scanned.
type processCollector struct {
	cfg     ProcessConfig
	scanner *processScanner
	logger  *slog.Logger

	locked, pinned, resident      *prometheus.Desc
	limitSoft, limitHard, ipcLock *prometheus.Desc
	userNSInitial                 *prometheus.Desc
	scanned, reported, omitted    *prometheus.Desc
	stale, tasks, systemTasks     *prometheus.Desc
	readFailures                  *prometheus.Desc
}

// processLabels name a process: pid, comm (never the command line, which
// may hold secrets), real uid, and the container and pod identity its
// cgroup path gives (empty outside containers).
var processLabels = []string{"pid", "comm", "uid", "pod_uid", "container_id"}

func newProcessCollector(en *env) (Collector, error) {
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "process", name), help, labels, nil)
	}
	scanner, err := en.processScan()
	if err != nil {
		return nil, err
	}
	return &processCollector{
		cfg:     en.cfg.Process,
		scanner: scanner,
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
			"Whether the process may lock past RLIMIT_MEMLOCK (1): CAP_IPC_LOCK in its effective set and the process in the initial user namespace, where the kernel's mlock and SHM_LOCK test the capability. A process in another user namespace (rootless or user-namespaced container) shows the bit in CapEff and is still held to its limit: 0 here.", processLabels),
		userNSInitial: d("user_namespace_initial",
			"Whether the process is in the initial user namespace (1) or in a user namespace of its own (0), e.g. a rootless or user-namespaced container: read from /proc/<pid>/ns/user (the initial namespace has the fixed inode 4026531837), or from /proc/<pid>/uid_map (0 0 4294967295) where that link cannot be read.", processLabels),
		scanned: prometheus.NewDesc("memlock_processes_scanned",
			"Processes scanned in the last scrape: their /proc/<pid>/status read, or their record taken from the BPF task iterator pass (memlock_scan_source_info).", nil, nil),
		reported: prometheus.NewDesc("memlock_processes_reported",
			"Processes reported with series of their own in the last scrape, stale ones included.", nil, nil),
		omitted: prometheus.NewDesc("memlock_processes_omitted",
			"Processes that qualified for series but were left out by --collector.process.max-processes.", nil, nil),
		stale: prometheus.NewDesc("memlock_processes_stale",
			"Processes reported with the previous scrape's values because this scrape's scan ran out of time before their pid (the collector's success is then 0).", nil, nil),
		tasks: prometheus.NewDesc("memlock_processes_scanned_tasks",
			"Threads of the processes scanned in the last scrape (the sum of their Threads lines, signal->nr_threads): below memlock_kernel_tasks by more than the tasks created meanwhile when the exporter's view of /proc is partial (hidepid=2, another pid namespace).", nil, nil),
		systemTasks: prometheus.NewDesc("memlock_kernel_tasks",
			"Every task the kernel has, in every pid namespace, kernel threads included (nr_threads, the number after the slash in /proc/loadavg), read at the start of the scan.", nil, nil),
		readFailures: d("read_failures",
			"Per-process files that could not be read in the last scrape, by file and reason (permission, malformed, error).", []string{"file", "reason"}),
	}, nil
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.locked, c.pinned, c.resident, c.limitSoft, c.limitHard, c.ipcLock,
		c.userNSInitial, c.scanned, c.reported, c.omitted, c.stale, c.tasks, c.systemTasks, c.readFailures} {
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

func (c *processCollector) Update(ctx context.Context, s *Scrape, ch chan<- prometheus.Metric) error {
	scan := s.processes(ctx)
	if scan.err != nil && !scan.incomplete {
		return scan.err
	}
	procs, omitted := selectProcesses(slices.Clone(scan.candidates), c.cfg.MaxProcesses)
	rep, err := c.reportProcesses(ctx, ch, procs, scan.failures)
	if err != nil {
		return err
	}
	c.emitScanSummary(ch, scan, rep, omitted)
	return rep.err(ctx, scan)
}

// processReport is what reportProcesses did.
type processReport struct {
	reported, late int
	// failures: the scan's read failures and this collector's own (the
	// scan is shared with the user collector, so they are counted apart).
	failures  map[readFailure]int
	malformed []error
}

// reportProcesses reads and emits the selected processes. A process the
// scan marked stale, or every process once ctx is done, is reported from
// what the last scrape read of it, so that its series go on.
func (c *processCollector) reportProcesses(ctx context.Context, ch chan<- prometheus.Metric, procs []procInfo, scanFailures map[readFailure]int) (*processReport, error) {
	rep := &processReport{failures: maps.Clone(scanFailures)}
	if rep.failures == nil {
		rep.failures = map[readFailure]int{}
	}
	dir, err := linux.OpenDir(c.scanner.procPath)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	bufs := c.scanner.bufs.get()
	defer c.scanner.bufs.put(bufs)
	r := bufs.r

	fail := func(file string, pid int, err error) {
		reason := classify(err)
		rep.failures[readFailure{file, reason}]++
		if reason == "malformed" {
			rep.malformed = append(rep.malformed, fmt.Errorf("pid %d: %w", pid, err))
		}
	}
	now := make(map[int]reportedProc, len(procs))
	if ic := c.scanner.idents; ic != nil {
		ic.begin()
		defer ic.end()
	}
	for _, p := range procs {
		var rp reportedProc
		if p.stale || ctx.Err() != nil {
			rp = c.fromLastScrape(p)
			if !p.stale {
				rep.late++
			}
		} else {
			var ok bool
			if rp, ok = c.read(r, dir, p, fail); !ok {
				continue // vanished
			}
		}
		c.emit(ch, rp)
		now[p.pid] = rp
		rep.reported++
	}
	c.scanner.setReported(now)
	return rep, nil
}

// fromLastScrape is what the last scrape read of p, with the sizes of this
// scan; p itself when the last scrape did not report it.
func (c *processCollector) fromLastScrape(p procInfo) reportedProc {
	last, ok := c.scanner.lastReported(p.pid)
	if !ok {
		return reportedProc{procInfo: p}
	}
	last.procInfo.locked, last.procInfo.pinned = p.locked, p.pinned
	last.procInfo.stale = p.stale
	return last
}

// emitScanSummary sends the collector's own series: how many processes
// were scanned, reported, omitted and stale, and the read failures.
func (c *processCollector) emitScanSummary(ch chan<- prometheus.Metric, scan *processScan, rep *processReport, omitted int) {
	ch <- prometheus.MustNewConstMetric(c.scanned, prometheus.GaugeValue, float64(scan.scanned))
	ch <- prometheus.MustNewConstMetric(c.reported, prometheus.GaugeValue, float64(rep.reported))
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(omitted))
	ch <- prometheus.MustNewConstMetric(c.stale, prometheus.GaugeValue, float64(scan.stale))
	ch <- prometheus.MustNewConstMetric(c.tasks, prometheus.GaugeValue, float64(scan.tasks))
	if scan.systemTasks >= 0 {
		ch <- prometheus.MustNewConstMetric(c.systemTasks, prometheus.GaugeValue, float64(scan.systemTasks))
	}
	for k, v := range rep.failures {
		ch <- prometheus.MustNewConstMetric(c.readFailures, prometheus.GaugeValue, float64(v), k.file, k.reason)
	}
}

// err is the scrape's error: an incomplete scan, processes reported late,
// malformed files, in that order.
func (rep *processReport) err(ctx context.Context, scan *processScan) error {
	if scan.err != nil {
		return fmt.Errorf("%w; reported %d processes, %d of them from the last scrape", scan.err, rep.reported, scan.stale)
	}
	if rep.late > 0 {
		return fmt.Errorf("reported %d processes, %d without their limits and smaps read: %w", rep.reported, rep.late, ctx.Err())
	}
	if err := scan.malformedErr(); err != nil {
		return err
	}
	if len(rep.malformed) > 0 {
		return fmt.Errorf("%d malformed process files: %w", len(rep.malformed), rep.malformed[0])
	}
	return nil
}

// read reads what a reported process's series need beyond its status:
// limits, resident locked bytes, user namespace, cgroup identity. It
// returns false when the process has vanished.
func (c *processCollector) read(r *linux.Reader, dir *linux.Dir, p procInfo, fail func(string, int, error)) (reportedProc, bool) {
	rp := reportedProc{procInfo: p}
	if p.fromPass {
		// The BPF pass read the limits and user namespace already.
		rp.lim, rp.haveLim = p.pass.lim, true
		rp.userNSInitial, rp.haveNS = p.pass.initialNS, true
	} else {
		lim, err := c.scanner.memlockLimit(r, dir, p.pid, p.tid)
		switch {
		case err == nil:
			rp.lim, rp.haveLim = lim, true
		case classify(err) == "vanished":
			return rp, false
		default:
			fail("limits", p.pid, err)
		}
	}
	if c.cfg.Smaps && p.locked > 0 {
		v, file, err := c.residentLocked(r, dir, p.pid, p.tid)
		switch {
		case err == nil:
			rp.resident, rp.haveResident = v, true
		case classify(err) == "vanished":
			return rp, false
		default:
			fail(file, p.pid, err)
		}
	}
	if !p.fromPass {
		initial, err := c.scanner.userNS.Initial(r, dir, p.pid, p.tid)
		switch {
		case err == nil:
			rp.userNSInitial, rp.haveNS = initial, true
		case classify(err) == "vanished":
			return rp, false
		default:
			fail("uid_map", p.pid, err)
		}
	}
	// A missing cgroup file (a kernel without cgroups, or the process
	// exiting now) leaves the identity empty, uncounted.
	id, err := c.cachedIdentity(r, dir, p)
	if err != nil && classify(err) != "vanished" {
		fail("cgroup", p.pid, err)
	}
	rp.id = id
	return rp, true
}

// residentLocked reads the Locked: line of smaps_rollup, or, where the
// kernel has none (before 4.14) while the pid is there, sums those of
// smaps. It returns the file whose read failed.
func (c *processCollector) residentLocked(r *linux.Reader, dir *linux.Dir, pid, tid int) (uint64, string, error) {
	b, err := r.ReadTask(dir, pid, tid, "smaps_rollup")
	if err == nil {
		v, err := linux.ParseSmapsRollupLocked(b)
		return v, "smaps_rollup", err
	}
	if !errors.Is(err, unix.ENOENT) || !pidExists(dir, pid) {
		return 0, "smaps_rollup", err
	}
	v, err := r.SmapsLocked(dir, pid, tid)
	if errors.Is(err, unix.ENOENT) && pidExists(dir, pid) {
		err = errNoSmaps // not a vanished process: counted
	}
	return v, "smaps", err
}

var errNoSmaps = errors.New("neither smaps_rollup nor smaps")

// pidExists tells a pid that has exited (ENOENT) from one whose directory
// lacks a file.
func pidExists(dir *linux.Dir, pid int) bool {
	return dir.Exists(strconv.Itoa(pid))
}

func (c *processCollector) emit(ch chan<- prometheus.Metric, p reportedProc) {
	lv := []string{strconv.Itoa(p.pid), p.name, strconv.FormatUint(uint64(p.uid), 10), p.id.PodUID, p.id.ContainerID}
	for _, v := range lv {
		if !utf8.ValidString(v) {
			c.emitConst(ch, p, lv) // MustNewConstMetric's error path, as before
			return
		}
	}
	// Every series of the process has the same label pairs: build them
	// once, not once a series (client_golang's per-series label pairs were
	// the largest allocation of a scrape at 10,000 processes).
	labels := prometheus.MakeLabelPairs(c.locked, lv)
	g := func(d *prometheus.Desc, v float64) { ch <- &sharedLabelGauge{desc: d, labels: labels, value: v} }
	g(c.locked, float64(p.locked))
	g(c.pinned, float64(p.pinned))
	if p.haveResident {
		g(c.resident, float64(p.resident))
	}
	if p.haveLim {
		g(c.limitSoft, metricutil.BytesOrInf(p.lim.Soft))
		g(c.limitHard, metricutil.BytesOrInf(p.lim.Hard))
	}
	if p.haveNS {
		g(c.ipcLock, metricutil.Bool(p.ipcLock && p.userNSInitial))
		g(c.userNSInitial, metricutil.Bool(p.userNSInitial))
	}
}

// emitConst is emit through MustNewConstMetric, which checks the label
// values itself.
func (c *processCollector) emitConst(ch chan<- prometheus.Metric, p reportedProc, lv []string) {
	ch <- prometheus.MustNewConstMetric(c.locked, prometheus.GaugeValue, float64(p.locked), lv...)
	ch <- prometheus.MustNewConstMetric(c.pinned, prometheus.GaugeValue, float64(p.pinned), lv...)
	if p.haveResident {
		ch <- prometheus.MustNewConstMetric(c.resident, prometheus.GaugeValue, float64(p.resident), lv...)
	}
	if p.haveLim {
		ch <- prometheus.MustNewConstMetric(c.limitSoft, prometheus.GaugeValue, metricutil.BytesOrInf(p.lim.Soft), lv...)
		ch <- prometheus.MustNewConstMetric(c.limitHard, prometheus.GaugeValue, metricutil.BytesOrInf(p.lim.Hard), lv...)
	}
	if p.haveNS {
		ch <- prometheus.MustNewConstMetric(c.ipcLock, prometheus.GaugeValue, metricutil.Bool(p.ipcLock && p.userNSInitial), lv...)
		ch <- prometheus.MustNewConstMetric(c.userNSInitial, prometheus.GaugeValue, metricutil.Bool(p.userNSInitial), lv...)
	}
}

// sharedLabelGauge is a constant gauge whose label pairs (sorted, as
// prometheus.MakeLabelPairs returns them) are shared with the other series
// of the same process; the registry and encoders only read them. All the
// process collector's descriptors have the same variable labels and no
// constant ones, so one set of pairs fits every one of them.
type sharedLabelGauge struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
}

func (m *sharedLabelGauge) Desc() *prometheus.Desc { return m.desc }

func (m *sharedLabelGauge) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Gauge = &dto.Gauge{Value: &m.value}
	return nil
}

// cachedIdentity is identity through the scanner's cache when the BPF pass
// gave p's cgroup key: a confirmed key's identity without a read.
func (c *processCollector) cachedIdentity(r *linux.Reader, dir *linux.Dir, p procInfo) (linux.CgroupIdentity, error) {
	ic := c.scanner.idents
	if ic == nil || !p.fromPass || !p.pass.hasKey {
		return c.identity(r, dir, p.pid)
	}
	now := time.Now()
	if id, ok := ic.lookup(p.pass.cgKey, now); ok {
		return id, nil
	}
	b, err := r.ReadPid(dir, p.pid, "cgroup")
	if err != nil {
		return linux.CgroupIdentity{}, err
	}
	path, err := linux.ParseProcCgroup(b)
	if err != nil {
		return linux.CgroupIdentity{}, err
	}
	id := linux.ParseCgroupPath(string(path))
	ic.store(p.pass.cgKey, path, id, now)
	return id, nil
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
