package collector

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// FailureSource is the BPF lock-call failure counter (*bpf.Module with
// AttachFailures done).
type FailureSource interface {
	Failures(dst *bpf.FailureCounts) error
	ForgetFailures(fs []bpf.Failure) error
}

// LockCallConfig configures the lockcalls collector.
type LockCallConfig struct {
	// Source, when set, is the attached failure counter; nil reports
	// memlock_lock_call_tracing_enabled 0 with Unavailable as the reason.
	Source      FailureSource
	Unavailable string
	// MaxSeries caps the failure series (process, syscall, errno) per
	// scrape, the most recent failures first (0: no cap).
	MaxSeries int
}

// Reasons of memlock_lock_call_tracing_enabled.
const (
	LockCallsAttached = "attached"
	LockCallsDisabled = "disabled"
)

// lockCallLabels are a failure series' labels: the process labels of the
// process collector plus the syscall and errno.
var lockCallLabels = []string{"syscall", "errno", "pid", "comm", "uid", "pod_uid", "container_id"}

type lockCallCollector struct {
	cfg      LockCallConfig
	procPath string
	logger   *slog.Logger

	failures, failedBytes, lastFailure *prometheus.Desc
	succeeded, dropped, omitted        *prometheus.Desc
	enabled                            *prometheus.Desc

	mu      sync.Mutex // one scrape at a time: a scrape may forget entries
	counts  bpf.FailureCounts
	r       *linux.Reader
	entries map[failureEntry]*entryState
	series  map[failureSeries]*seriesState
	// identity is the pod and container identity of a process, read from
	// /proc/<pid>/cgroup while it lived, by pid and cgroup id.
	identity map[identityKey]linux.CgroupIdentity
}

// failureEntry is a key of the BPF failure map.
type failureEntry struct {
	pid     int32
	syscall bpf.Syscall
	errno   unix.Errno
}

type identityKey struct {
	pid    int32
	cgroup uint64
}

// failureSeries is one label set.
type failureSeries struct {
	failureEntry
	comm string
	uid  uint32
	id   linux.CgroupIdentity
}

// entryState is what the last scrape saw of a map entry, so that each
// scrape adds only what is new to its series' totals.
type entryState struct {
	count, bytes uint64
	series       failureSeries
}

// seriesState holds a series' totals in Go: they only grow while the
// series exists, whatever happens to the map entries behind it (an entry
// forgotten and created again for a reused pid, say).
type seriesState struct {
	count, bytes float64
	lastNS       uint64
	entries      int
}

func newLockCallCollector(en *env) (Collector, error) {
	cfg := en.cfg.LockCalls
	if cfg.Source != nil && !initialPidNS(en.cfg.ProcPath) {
		// The programs count by the pids of the initial pid namespace:
		// a /proc of another one would name other processes.
		cfg.Source, cfg.Unavailable = nil, "other_pid_namespace"
	}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "lock_call", name), help, labels, nil)
	}
	return &lockCallCollector{
		cfg:      cfg,
		procPath: en.cfg.ProcPath,
		logger:   en.logger,
		failures: d("failures_total",
			"Lock calls (mlock, mlock2, mlockall, mmap with MAP_LOCKED, shmctl SHM_LOCK, io_uring buffer registration, io_uring_setup, setrlimit and prlimit64 of RLIMIT_MEMLOCK) that returned an error, by process, syscall and errno, counted at the syscall's exit by BPF. comm is the thread that failed first.", lockCallLabels),
		failedBytes: d("failed_bytes_total",
			"Bytes the failed lock calls asked for: the length argument of mlock, mlock2 and mmap; for mlockall with MCL_CURRENT the process's whole address space (total_vm, VmSize), which the kernel holds against RLIMIT_MEMLOCK; for shmctl SHM_LOCK the segment's size (0 if it was removed before the call returned); for io_uring_register the sum of the buffers' iovec lengths. Not for io_uring_setup, setrlimit and prlimit64, which ask for no bytes.", lockCallLabels),
		lastFailure: d("last_failure_timestamp_seconds",
			"Unix time of the last failed lock call of the series.", lockCallLabels),
		succeeded: prometheus.NewDesc("memlock_lock_calls_succeeded_total",
			"Lock calls that succeeded, host-wide, by syscall (the same calls memlock_lock_call_failures_total counts when they fail).", []string{"syscall"}, nil),
		dropped: d("failures_dropped_total",
			"Failed lock calls not counted by process because the kernel's failure map ("+strconv.Itoa(bpf.MaxFailureEntries)+" process, syscall and errno entries) was full.", nil),
		omitted: d("failure_series_omitted",
			"Failure series left out of the last scrape by --collector.lockcalls.max-series (the oldest last failures first).", nil),
		enabled: d("tracing_enabled",
			"Whether the lock-call tracepoints are attached (1) or not (0); reason is attached, or why not: disabled (--collector.bpf=off), permission (no CAP_BPF and CAP_PERFMON), no_btf, no_task_iter, no_tracefs (no tracefs at /sys/kernel/tracing, /sys/kernel/debug/tracing or --collector.lockcalls.tracefs), tracefs_permission (its tracepoint ids cannot be read: tracefs is root's), no_syscall_tracepoints, other_pid_namespace (the exporter or --path.procfs is not in the host's pid namespace), error. Set at start.", []string{"reason"}),
		r:        linux.NewReader(4096),
		entries:  map[failureEntry]*entryState{},
		series:   map[failureSeries]*seriesState{},
		identity: map[identityKey]linux.CgroupIdentity{},
	}, nil
}

// initialPidNS reports whether the exporter runs in the initial pid
// namespace (whose pids bpf_get_current_pid_tgid returns) and procPath
// shows it.
func initialPidNS(procPath string) bool {
	const initPidNS = "pid:[4026531836]" // PROC_PID_INIT_INO
	self, err := os.Readlink(filepath.Join(procPath, "self"))
	if err != nil || self != strconv.Itoa(os.Getpid()) {
		return false
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	return err == nil && ns == initPidNS
}

// LockCallTracing says whether the lockcalls collector counts failed lock
// calls and, if not, why (memlock_lock_call_tracing_enabled's reason); ok
// is false when the collector is not enabled.
func (e *Exporter) LockCallTracing() (enabled bool, reason string, ok bool) {
	c, ok := e.collectors["lockcalls"].(*lockCallCollector)
	if !ok {
		return false, "", false
	}
	if c.cfg.Source != nil {
		return true, LockCallsAttached, true
	}
	if c.cfg.Unavailable == "" {
		return false, LockCallsDisabled, true
	}
	return false, c.cfg.Unavailable, true
}

func (c *lockCallCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.failures, c.failedBytes, c.lastFailure, c.succeeded, c.dropped, c.omitted, c.enabled} {
		ch <- d
	}
}

// errnoLabel is the errno label: the lower-case name (enomem), or
// errno_<n> for a number without one.
func errnoLabel(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return strings.ToLower(n)
	}
	return "errno_" + strconv.Itoa(int(e))
}

func (c *lockCallCollector) Update(ctx context.Context, _ *Scrape, ch chan<- prometheus.Metric) error {
	if c.cfg.Source == nil {
		reason := c.cfg.Unavailable
		if reason == "" {
			reason = LockCallsDisabled
		}
		ch <- prometheus.MustNewConstMetric(c.enabled, prometheus.GaugeValue, 0, reason)
		return fmt.Errorf("%w: lock-call tracing is off (%s)", ErrNoData, reason)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.cfg.Source.Failures(&c.counts); err != nil {
		return err
	}
	dir, err := linux.OpenDir(c.procPath)
	if err != nil {
		return err
	}
	defer dir.Close()
	ch <- prometheus.MustNewConstMetric(c.enabled, prometheus.GaugeValue, 1, LockCallsAttached)
	for i, n := range c.counts.Successes {
		ch <- prometheus.MustNewConstMetric(c.succeeded, prometheus.CounterValue, float64(n), bpf.Syscall(i).String())
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.counts.Dropped))

	exited, seen := c.account(dir)
	shown, omitted := c.selectSeries()
	bootNow, unixNow := clocks()
	for _, s := range shown {
		st := c.series[s]
		lv := []string{s.syscall.String(), errnoLabel(s.errno), strconv.Itoa(int(s.pid)), s.comm,
			strconv.FormatUint(uint64(s.uid), 10), s.id.PodUID, s.id.ContainerID}
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, st.count, lv...)
		if s.syscall.HasBytes() {
			ch <- prometheus.MustNewConstMetric(c.failedBytes, prometheus.CounterValue, st.bytes, lv...)
		}
		ago := time.Duration(bootNow - min(st.lastNS, bootNow))
		ch <- prometheus.MustNewConstMetric(c.lastFailure, prometheus.GaugeValue, float64(unixNow.Add(-ago).UnixNano())/1e9, lv...)
	}
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(omitted))

	// The processes that have exited were shown (or omitted) once: their
	// entries leave the kernel's map and their series end.
	err = c.cfg.Source.ForgetFailures(exited)
	for _, f := range exited {
		c.drop(failureEntry{f.PID, f.Syscall, f.Errno})
	}
	for e := range c.entries {
		if !seen[e] { // gone from the map without being forgotten here
			c.drop(e)
		}
	}
	if err != nil {
		return fmt.Errorf("forget failures of exited processes: %w", err)
	}
	return ctx.Err()
}

// account adds what is new in c.counts to the series totals. It returns
// the entries of processes that have exited and the set of entries seen.
func (c *lockCallCollector) account(dir *linux.Dir) ([]bpf.Failure, map[failureEntry]bool) {
	var exited []bpf.Failure
	seen := make(map[failureEntry]bool, len(c.counts.Failures))
	alive := map[int32]bool{}
	for _, f := range c.counts.Failures {
		e := failureEntry{f.PID, f.Syscall, f.Errno}
		seen[e] = true
		live, ok := alive[f.PID]
		if !ok {
			live = dir.Exists(strconv.Itoa(int(f.PID)))
			alive[f.PID] = live
		}
		if !live {
			exited = append(exited, f)
		}
		st := c.entries[e]
		if st == nil {
			st = &entryState{series: failureSeries{failureEntry: e, comm: f.Comm(), uid: f.UID, id: c.identityOf(dir, f, live)}}
			c.entries[e] = st
			ss := c.series[st.series]
			if ss == nil {
				ss = &seriesState{}
				c.series[st.series] = ss
			}
			ss.entries++
		}
		dc, db := f.Count, f.Bytes
		if f.Count >= st.count { // else the entry was created anew
			dc, db = f.Count-st.count, f.Bytes-st.bytes
		}
		st.count, st.bytes = f.Count, f.Bytes
		ss := c.series[st.series]
		ss.count += float64(dc)
		ss.bytes += float64(db)
		ss.lastNS = max(ss.lastNS, f.LastBootNS)
	}
	return exited, seen
}

// identityOf is the pod and container identity of f's process: read from
// /proc/<pid>/cgroup while the process lives, the last one read once it
// has exited (empty for a process that exited before any scrape).
func (c *lockCallCollector) identityOf(dir *linux.Dir, f bpf.Failure, live bool) linux.CgroupIdentity {
	k := identityKey{f.PID, f.CgroupID}
	if id, ok := c.identity[k]; ok || !live {
		return id
	}
	var id linux.CgroupIdentity
	if b, err := c.r.ReadPid(dir, int(f.PID), "cgroup"); err == nil {
		if path, err := linux.ParseProcCgroup(b); err == nil {
			id = linux.ParseCgroupPath(string(path))
		}
	}
	c.identity[k] = id
	return id
}

// drop forgets an entry, and its series and identity with the last entry.
func (c *lockCallCollector) drop(e failureEntry) {
	st := c.entries[e]
	if st == nil {
		return
	}
	delete(c.entries, e)
	ss := c.series[st.series]
	if ss == nil {
		return
	}
	if ss.entries--; ss.entries <= 0 {
		delete(c.series, st.series)
	}
	if c.pidHasEntries(e.pid) {
		return
	}
	for k := range c.identity {
		if k.pid == e.pid {
			delete(c.identity, k)
		}
	}
}

func (c *lockCallCollector) pidHasEntries(pid int32) bool {
	for e := range c.entries {
		if e.pid == pid {
			return true
		}
	}
	return false
}

// selectSeries orders the series by their last failure, newest first, and
// applies the cap.
func (c *lockCallCollector) selectSeries() ([]failureSeries, int) {
	all := make([]failureSeries, 0, len(c.series))
	for s := range c.series {
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b failureSeries) int {
		if x := cmp.Compare(c.series[b].lastNS, c.series[a].lastNS); x != 0 {
			return x
		}
		if x := cmp.Compare(a.pid, b.pid); x != 0 {
			return x
		}
		if x := cmp.Compare(a.syscall, b.syscall); x != 0 {
			return x
		}
		if x := cmp.Compare(a.errno, b.errno); x != 0 {
			return x
		}
		return cmp.Compare(a.comm, b.comm)
	})
	if max := c.cfg.MaxSeries; max > 0 && len(all) > max {
		return all[:max], len(all) - max
	}
	return all, 0
}

// clocks reads CLOCK_BOOTTIME (what bpf_ktime_get_boot_ns returns) and the
// wall clock together, to turn a failure's boot time into Unix time.
func clocks() (uint64, time.Time) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) // cannot fail on Linux 2.6.39+
	return uint64(ts.Nano()), time.Now()
}
