package collector

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
)

// TaskSource is one pass of the BPF task iterator (*bpf.Module). The
// Snapshot it returns may be reused by its next call.
type TaskSource interface {
	Tasks(ctx context.Context) (*bpf.Snapshot, error)
}

// Scan sources, the values of memlock_scan_source_info's source label.
const (
	SourceBPF    = "bpf"
	SourceProcfs = "procfs"
)

// passInfo is what the BPF pass knows of a process that the process
// collector would otherwise read from /proc: its limits (signal->rlim, the
// same numbers as /proc/<pid>/limits) and whether its credentials are in
// the initial user namespace (cred->user_ns, the namespace /proc/<pid>/ns/user
// names).
type passInfo struct {
	lim       linux.Limit
	initialNS bool
	// cgKey keys the identity cache (hasKey: the pass read the cgroup ids).
	cgKey  cgroupKey
	hasKey bool
}

// userCharge is a user's locked_vm (user_struct, one per uid host-wide);
// shmCharge a ucounts' SHM_LOCK count (one per uid and user namespace).
type userCharge struct {
	uid    uint32
	locked uint64
}

type shmCharge struct {
	uid, userNS uint32
	locked      uint64
}

// passState is the scanner's BPF side. mu is held from the pass until its
// snapshot has been read, since the next pass overwrites it.
type passState struct {
	src   TaskSource
	mu    sync.Mutex
	byPID map[int32]int
	// wholeView: the procfs at ProcPath hides no pid (no hidepid), so a
	// pass proven whole may replace its listing.
	wholeView bool
}

// scanWithPass fills res from one iterator pass, reading
// /proc/<pid>/status only for the pids the pass lacks or handles
// differently: on some hosts the kernel gives the iterator no task of
// pid 1 (docs/bpf.md), and an exited leader, a zombie or a record with a
// failed kernel read is read from /proc as without BPF. The pids are /proc's
// listing, the authority on which processes exist, unless the pass is
// proven whole (passComplete): then they are the pass's own, and the
// listing, which costs about a microsecond a pid in the kernel, is not
// made. It returns false, with res untouched, when the pass fails: the
// caller then scans /proc.
func (ps *processScanner) scanWithPass(ctx context.Context, res *processScan, bufs *readBufs, dir *linux.Dir) bool {
	r := bufs.r
	p := ps.pass
	p.mu.Lock()
	defer p.mu.Unlock()
	snap, err := p.src.Tasks(ctx)
	if err != nil {
		if ctx.Err() == nil {
			ps.logger.Warn("BPF task pass failed, reading /proc for this scrape", "err", err)
		}
		return false
	}
	clear(p.byPID)
	for i := range snap.Tasks {
		p.byPID[snap.Tasks[i].PID] = i
	}
	pids := bufs.pids[:0]
	if ps.passComplete(res, snap, r, dir) {
		for i := range snap.Tasks {
			pids = append(pids, int(snap.Tasks[i].PID))
		}
		if _, ok := p.byPID[1]; !ok {
			pids = append(pids, 1) // withheld by the kernel: read from /proc
		}
		res.pidsFromPass = true
	} else {
		pids, err = r.Pids(dir, pids)
		if err != nil {
			bufs.pids = pids
			res.err = err
			return true
		}
	}
	bufs.pids = pids
	res.source = SourceBPF
	var st linux.Status
	var comm [linux.MaxComm]byte
	var name [16]byte
	for i, pid := range pids {
		if i%ctxCheckEvery == 0 && ctx.Err() != nil {
			res.err = fmt.Errorf("scanned %d of %d processes: %w", i, len(pids), ctx.Err())
			res.incomplete = true
			ps.carryOver(res, pids[i:])
			return true
		}
		j, ok := p.byPID[int32(pid)]
		if !ok {
			res.procfsFallback++
			ps.scanPid(res, r, dir, pid, &st, &comm)
			continue
		}
		t := &snap.Tasks[j]
		if t.Flags&(bpf.FlagThread|bpf.FlagExited|bpf.FlagReadError) != 0 || t.Flags&bpf.FlagLeader == 0 {
			res.procfsFallback++
			ps.scanPid(res, r, dir, pid, &st, &comm)
			continue
		}
		e := procEntry{
			pid: pid, uid: t.UID, name: t.AppendComm(name[:0]), threads: int(t.Threads),
			hasMM: t.Flags&bpf.FlagMM != 0, locked: t.LockedBytes, pinned: t.PinnedBytes,
			ipcLock: t.CapIPCLock(),
		}
		e.fromPass = true
		e.pass = passInfo{lim: linux.Limit{Soft: t.MemlockSoft, Hard: t.MemlockHard}, initialNS: t.InitUserNS()}
		e.pass.cgKey, e.pass.hasKey = keyOf(t)
		ps.account(res, r, dir, e)
	}
	for _, u := range snap.Users {
		if u.Valid {
			res.userCharges = append(res.userCharges, userCharge{uid: u.UID, locked: u.LockedBytes})
		}
	}
	for _, c := range snap.Charges {
		if c.Valid {
			res.shmCharges = append(res.shmCharges, shmCharge{uid: c.UID, userNS: c.UserNSInode, locked: c.LockedBytes})
		}
	}
	return true
}

// passComplete reports whether snap holds every task of the kernel, so
// that its pids may stand in for /proc's listing: the procfs hides no pid
// (no hidepid, checked at start), and the kernel's count of tasks
// (/proc/loadavg, read before the pass into res.systemTasks and again
// now) is the sum of the pass's Threads, plus those of pid 1 (from its
// status) when the pass lacks it. A task created or ended meanwhile makes
// the counts differ, and /proc is listed.
func (ps *processScanner) passComplete(res *processScan, snap *bpf.Snapshot, r *linux.Reader, dir *linux.Dir) bool {
	if !ps.pass.wholeView || res.systemTasks < 0 {
		return false
	}
	sum := 0
	for i := range snap.Tasks {
		sum += int(snap.Tasks[i].Threads)
	}
	if _, ok := ps.pass.byPID[1]; !ok {
		var st linux.Status
		b, err := r.ReadPid(dir, 1, "status")
		if err != nil || linux.ParseStatus(b, &st) != nil {
			return false
		}
		sum += st.Threads
	}
	if sum != res.systemTasks {
		return false
	}
	b, err := r.ReadFile(dir, "loadavg")
	if err != nil {
		return false
	}
	n, err := linux.ParseLoadavgTasks(b)
	return err == nil && int(n) == sum
}

// ScanSource says where the process and user collectors take their
// per-process numbers from (SourceBPF or SourceProcfs) and, for procfs,
// why. It is empty when neither collector is enabled.
func (e *Exporter) ScanSource() (source, reason string) {
	if e.scanner == nil {
		return "", ""
	}
	return e.scanner.source, e.scanner.reason
}

// setupPass decides the scan source at start: the BPF pass only when the
// /proc the scanner reads shows the exporter's own pid namespace, whose
// pids the iterator walks.
func (ps *processScanner) setupPass(cfg Config) {
	ps.source, ps.reason = SourceProcfs, cfg.TasksUnavailable
	switch {
	case cfg.Tasks == nil:
		if ps.reason == "" {
			ps.reason = "disabled"
		}
	case !ps.samePidNS:
		ps.reason = "other_pid_namespace"
	default:
		ps.pass = &passState{src: cfg.Tasks, byPID: make(map[int32]int), wholeView: procShowsAll(cfg.ProcPath)}
		ps.idents = newIdentityCache()
		ps.source, ps.reason = SourceBPF, ""
	}
}

// procShowsAll reports whether the procfs at path hides no pid from the
// exporter (no hidepid in /proc/self/mountinfo for that mount point).
func procShowsAll(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		abs = p
	}
	b, err := linux.ReadSystemFile("/proc/self/mountinfo", 4<<20)
	if err != nil {
		return false
	}
	return !linux.ProcHidesPids(b, abs)
}

var scanSourceDesc = prometheus.NewDesc("memlock_scan_source_info",
	"Where the process and user collectors take per-process numbers from (1): source=\"bpf\", one BPF task iterator pass per scrape (/proc/<pid>/status only for the pids the pass lacks), or source=\"procfs\", /proc/<pid>/status of every pid; reason says why procfs (disabled, permission, no_btf, no_task_iter, other_pid_namespace, error). Set at start.",
	[]string{"source", "reason"}, nil)

// emitSource sends memlock_scan_source_info.
func (ps *processScanner) emitSource(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(scanSourceDesc, prometheus.GaugeValue, 1, ps.source, ps.reason)
}

// userPassDescs are the user collector's metrics that only the BPF pass
// has: per-user kernel counters no /proc or /sys file shows.
type userPassDescs struct {
	lockedVM, shmLocked *prometheus.Desc
}

func newUserPassDescs() userPassDescs {
	return userPassDescs{
		lockedVM: prometheus.NewDesc("memlock_user_kernel_locked_vm_bytes",
			"The kernel's per-user memlock charge (user_struct->locked_vm, read by the BPF task iterator): io_uring registered buffers and rings of processes without CAP_IPC_LOCK, perf ring buffers past perf_event_mlock_kb, MSG_ZEROCOPY, AF_XDP, iommufd. Checked against the charging process's RLIMIT_MEMLOCK. Only with --collector.bpf (absent on the procfs path), for uids with a process the pass saw.",
			[]string{"uid"}, nil),
		shmLocked: prometheus.NewDesc("memlock_user_kernel_shm_locked_bytes",
			"The kernel's per-user SysV SHM_LOCK and SHM_HUGETLB charge (ucounts UCOUNT_RLIMIT_MEMLOCK, read by the BPF task iterator), charged to the caller of shmctl(SHM_LOCK), not the segment's owner, in whole pages, per uid and user namespace (its inode; 4026531837 is the initial one). Only with --collector.bpf (absent on the procfs path), for uids with a process the pass saw.",
			[]string{"uid", "user_namespace"}, nil),
	}
}

func (d userPassDescs) describe(ch chan<- *prometheus.Desc) {
	ch <- d.lockedVM
	ch <- d.shmLocked
}

// emit reports the pass's per-user charges: every uid with a charge, and
// every uid the user collector reports (a zero there is a fact).
func (d userPassDescs) emit(ch chan<- prometheus.Metric, scan *processScan) {
	shown := func(uid uint32, v uint64) bool {
		if v > 0 {
			return true
		}
		u := scan.users[uid]
		return u != nil && (u.locked > 0 || u.pinned > 0)
	}
	for _, u := range scan.userCharges {
		if shown(u.uid, u.locked) {
			ch <- prometheus.MustNewConstMetric(d.lockedVM, prometheus.GaugeValue, float64(u.locked), strconv.FormatUint(uint64(u.uid), 10))
		}
	}
	for _, c := range scan.shmCharges {
		if shown(c.uid, c.locked) {
			ch <- prometheus.MustNewConstMetric(d.shmLocked, prometheus.GaugeValue, float64(c.locked),
				strconv.FormatUint(uint64(c.uid), 10), strconv.FormatUint(uint64(c.userNS), 10))
		}
	}
}
