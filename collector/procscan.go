package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"golang.org/x/sys/unix"
)

// processScanner reads /proc/<pid>/status of every process once per scrape.
// It keeps per-user totals of all processes and the few processes that
// qualify for series of their own; nothing is allocated for the others.
type processScanner struct {
	procPath string
	cfg      ProcessConfig
	logger   *slog.Logger
	// samePidNS is true when procPath shows our own pid namespace, so that
	// prlimit(2) on its pids means the same processes.
	samePidNS bool
	// bufs serves the scan and the process collector's per-process reads,
	// so that a scrape allocates nothing per process.
	bufs bufPool
	// userNS tells processes of the initial user namespace from others.
	userNS linux.UserNS

	// mu guards last: the series of the last scrape's reported processes,
	// which a scan cut short by its deadline reports again for the pids it
	// did not reach (see processScan.stale).
	mu   sync.Mutex
	last map[int]reportedProc

	// pass is the BPF task iterator, nil on the procfs path; source and
	// reason are memlock_scan_source_info's labels (bpfscan.go).
	pass           *passState
	source, reason string
	// idents caches pod and container identities by cgroup key on the
	// BPF path (bpfscan_identity.go); nil on the procfs path.
	idents *identityCache
}

// reportedProc is what the process collector reported of one process.
type reportedProc struct {
	procInfo
	id                    linux.CgroupIdentity
	lim                   linux.Limit
	haveLim               bool
	resident              uint64
	haveResident          bool
	userNSInitial, haveNS bool
}

func newProcessScanner(cfg Config, logger *slog.Logger) (*processScanner, error) {
	s := &processScanner{procPath: cfg.ProcPath, cfg: cfg.Process, logger: logger}
	if self, err := os.Readlink(filepath.Join(cfg.ProcPath, "self")); err == nil && self == strconv.Itoa(os.Getpid()) {
		s.samePidNS = true
	}
	s.bufs = newBufPool(4)
	if dir, err := linux.OpenDir(cfg.ProcPath); err == nil {
		s.userNS = linux.NewUserNS(linux.NewReader(256), dir)
		dir.Close()
	}
	s.setupPass(cfg)
	return s, nil
}

// procInfo is a process that qualifies for series of its own.
type procInfo struct {
	pid int
	// tid is a live thread to read the process's mm-related files
	// through when its leader has exited (0: the leader is alive).
	tid            int
	uid            uint32
	name           string
	locked, pinned uint64
	ipcLock        bool // CAP_IPC_LOCK in CapEff (the process's own user namespace)
	named          bool // matched ProcessConfig.Include
	// stale: the scan ran out of time before this pid; the values are
	// the last scrape's.
	stale bool
	// fromPass: the numbers came from the BPF pass, with the limits and
	// user namespace (pass) the process collector would otherwise read.
	fromPass bool
	pass     passInfo
}

type userTotal struct {
	locked, pinned uint64
	// chargedPinned sums VmPin of the processes that lack CAP_IPC_LOCK
	// in the initial user namespace: what io_uring charges to the user.
	chargedPinned uint64
	procs         int
}

// readFailure counts files that could not be read, by file and reason.
type readFailure struct{ file, reason string }

type processScan struct {
	// err: the scan could not run at all, or (deadline) did not finish:
	// then candidates hold what it read plus, marked stale, the last
	// scrape's reported processes among the pids it did not reach.
	err        error
	incomplete bool
	scanned    int
	// tasks sums the Threads lines of the scanned processes;
	// systemTasks is the kernel's count of every task (loadavg), or -1.
	tasks, systemTasks int
	stale              int
	candidates         []procInfo
	users              map[uint32]*userTotal
	failures           map[readFailure]int
	malformed          []error

	// source is SourceBPF when the BPF pass gave the numbers; then
	// procfsFallback counts the pids read from /proc/<pid>/status
	// instead, and userCharges and shmCharges hold the pass's per-user
	// kernel counters.
	source         string
	pidsFromPass   bool // the pass was whole: /proc was not listed
	procfsFallback int
	userCharges    []userCharge
	shmCharges     []shmCharge
}

func (s *processScan) fail(file, reason string) {
	s.failures[readFailure{file, reason}]++
}

// classify sorts an error reading a pid's file: vanished (the process exited,
// which is normal and silent), permission (counted), or anything else.
func classify(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return "vanished"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return "permission"
	case errors.Is(err, linux.ErrTooLarge), errors.Is(err, linux.ErrMalformed):

		return "malformed"
	default:
		return "error"
	}
}

// maxMalformedKept bounds the parse errors kept for the log line.
const maxMalformedKept = 3

func (s *processScan) addMalformed(err error) {
	if len(s.malformed) < maxMalformedKept {
		s.malformed = append(s.malformed, err)
	} else {
		s.malformed = append(s.malformed[:maxMalformedKept], errors.New("and more"))
	}
}

// malformedErr summarises malformed files of one scrape as one error.
func (s *processScan) malformedErr() error {
	n := 0
	for k, v := range s.failures {
		if k.reason == "malformed" {
			n += v
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d malformed process files: %w", n, errors.Join(s.malformed...))
}

// ctxCheckEvery is how many pids are read between deadline checks.
const ctxCheckEvery = 256

func (ps *processScanner) scan(ctx context.Context) *processScan {
	res := &processScan{users: map[uint32]*userTotal{}, failures: map[readFailure]int{}, systemTasks: -1}
	dir, err := linux.OpenDir(ps.procPath)
	if err != nil {
		res.err = err
		return res
	}
	defer dir.Close()
	bufs := ps.bufs.get()
	defer ps.bufs.put(bufs)
	r := bufs.r
	// Read before the pids are listed, so that a task count above what
	// the scan saw is not the scan's own fault of timing alone.
	if b, err := r.ReadFile(dir, "loadavg"); err == nil {
		if n, err := linux.ParseLoadavgTasks(b); err == nil {
			res.systemTasks = int(n)
		}
	}
	if ps.pass != nil && ps.scanWithPass(ctx, res, bufs, dir) {
		return res
	}
	pids, err := r.Pids(dir, bufs.pids[:0])
	bufs.pids = pids
	if err != nil {
		res.err = err
		return res
	}
	res.source = SourceProcfs
	var st linux.Status
	var comm [linux.MaxComm]byte
	for i, pid := range pids {
		if i%ctxCheckEvery == 0 && ctx.Err() != nil {
			res.err = fmt.Errorf("scanned %d of %d processes: %w", i, len(pids), ctx.Err())
			res.incomplete = true
			ps.carryOver(res, pids[i:])
			return res
		}
		ps.scanPid(res, r, dir, pid, &st, &comm)
	}
	return res
}

// scanPid reads /proc/<pid>/status of one process into res.
func (ps *processScanner) scanPid(res *processScan, r *linux.Reader, dir *linux.Dir, pid int, st *linux.Status, comm *[linux.MaxComm]byte) {
	b, err := r.ReadPid(dir, pid, "status")
	if err == nil {
		err = linux.ParseStatus(b, st)
	}
	tid := 0
	if err == nil && st.LeaderExited() {
		// The leader called exit while other threads live on: its
		// status has lost the mm's lines, a live thread's has them.
		name := comm[:copy(comm[:], st.Name)]
		tid, err = ps.liveThreadStatus(r, dir, pid, st)
		st.Name = name
	}
	if err != nil {
		switch reason := classify(err); reason {
		case "vanished":
		case "malformed":
			res.fail("status", reason)
			res.addMalformed(fmt.Errorf("pid %d: %w", pid, err))
		default:
			res.fail("status", reason)
			ps.logger.Debug("cannot read process status", "pid", pid, "err", err)
		}
		return
	}
	ps.account(res, r, dir, procEntry{
		pid: pid, tid: tid, uid: st.UID, name: st.Name, threads: st.Threads, hasMM: st.HasMM,
		locked: st.Locked, pinned: st.Pinned, ipcLock: st.IPCLock(),
	})
}

// procEntry is one process's numbers, from its status file or from the
// BPF pass (pass set: its limits and user namespace come with it).
type procEntry struct {
	pid, tid       int
	uid            uint32
	name           []byte
	threads        int
	hasMM          bool
	locked, pinned uint64
	ipcLock        bool
	fromPass       bool
	pass           passInfo
}

// account adds one scanned process to the per-user totals and, when it
// qualifies, to the candidates for series of their own.
func (ps *processScanner) account(res *processScan, r *linux.Reader, dir *linux.Dir, e procEntry) {
	pid := e.pid
	res.scanned++
	res.tasks += max(e.threads, 1)
	if !e.hasMM {
		return // kernel thread: nothing to lock
	}
	// Whether the process may lock past its limit: asked only of the
	// few with the capability bit and pinned memory here; the process
	// collector asks it of every process it reports.
	charged := e.pinned
	if e.pinned > 0 && e.ipcLock {
		if e.fromPass {
			if e.pass.initialNS {
				charged = 0
			}
		} else if initial, err := ps.readUserNS(r, dir, e.pid, e.tid, &e.name); err != nil {
			if reason := classify(err); reason != "vanished" {
				res.fail("uid_map", reason)
			}
		} else if initial {
			charged = 0
		}
	}
	u := res.users[e.uid]
	if u == nil {
		u = &userTotal{}
		res.users[e.uid] = u
	}
	var overflow bool
	u.locked, overflow = addSat(u.locked, e.locked, overflow)
	u.pinned, overflow = addSat(u.pinned, e.pinned, overflow)
	u.chargedPinned, overflow = addSat(u.chargedPinned, charged, overflow)
	u.procs++
	if overflow {
		// No real process set sums past 2^64 bytes: some status file
		// lies. The sum stays saturated and the scrape says so.
		res.fail("status", "malformed")
		res.addMalformed(fmt.Errorf("pid %d: uid %d: per-user sum overflows", pid, e.uid))
	}

	named := ps.cfg.Include != nil && ps.cfg.Include.Match(e.name)
	if !named && e.locked == 0 && e.pinned == 0 {
		return
	}
	if ps.cfg.Exclude != nil && ps.cfg.Exclude.Match(e.name) {
		return
	}
	res.candidates = append(res.candidates, procInfo{
		pid:      pid,
		tid:      e.tid,
		uid:      e.uid,
		name:     strings.ToValidUTF8(string(e.name), "\uFFFD"),
		locked:   e.locked,
		pinned:   e.pinned,
		ipcLock:  e.ipcLock,
		named:    named,
		fromPass: e.fromPass,
		pass:     e.pass,
	})
}

// readUserNS asks whether pid is in the initial user namespace. name may
// point into r's buffer, which that read overwrites: it is copied first.
func (ps *processScanner) readUserNS(r *linux.Reader, dir *linux.Dir, pid, tid int, name *[]byte) (bool, error) {
	*name = append([]byte(nil), *name...)
	return ps.userNS.Initial(r, dir, pid, tid)
}

// addSat adds b to a, saturating at the maximum, and says whether it did
// (or already had, per overflow).
func addSat(a, b uint64, overflow bool) (uint64, bool) {
	if a+b < a {
		return math.MaxUint64, true
	}
	return a + b, overflow
}

// liveThreadStatus reads the status of a live thread of pid other than
// its exited leader into st, and returns that thread's id.
func (ps *processScanner) liveThreadStatus(r *linux.Reader, dir *linux.Dir, pid int, st *linux.Status) (int, error) {
	var buf [64]int
	tids, err := r.Tids(dir, pid, buf[:0])
	if err != nil {
		return 0, err
	}
	for _, tid := range tids {
		if tid == pid {
			continue
		}
		b, err := r.ReadTask(dir, pid, tid, "status")
		if err != nil {
			if classify(err) == "vanished" {
				continue // that thread exited: try the next
			}
			return 0, err
		}
		var ts linux.Status
		if err := linux.ParseStatus(b, &ts); err != nil {
			return 0, err
		}
		if ts.HasMM {
			st.Locked, st.Pinned, st.HasMM = ts.Locked, ts.Pinned, true
			return tid, nil
		}
	}
	return 0, nil // every thread has exited meanwhile: no mm left
}

// carryOver adds to res, marked stale, the last scrape's reported
// processes among pids (those the scan did not reach), so that a scan cut
// short by its deadline does not drop their series for a scrape.
func (ps *processScanner) carryOver(res *processScan, pids []int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if len(ps.last) == 0 {
		return
	}
	for _, pid := range pids {
		if p, ok := ps.last[pid]; ok {
			p.procInfo.stale = true
			res.candidates = append(res.candidates, p.procInfo)
			res.stale++
		}
	}
}

// lastReported returns what the last scrape reported of pid.
func (ps *processScanner) lastReported(pid int) (reportedProc, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.last[pid]
	return p, ok
}

// setReported records the processes a scrape reported.
func (ps *processScanner) setReported(m map[int]reportedProc) {
	ps.mu.Lock()
	ps.last = m
	ps.mu.Unlock()
}

// memlockLimit returns the memlock limit of pid: by prlimit(2) where that
// is allowed and means the same process, otherwise from /proc/<pid>/limits.
func (ps *processScanner) memlockLimit(r *linux.Reader, dir *linux.Dir, pid, tid int) (linux.Limit, error) {
	if ps.samePidNS {
		target := pid
		if tid != 0 {
			target = tid // limits are the thread group's: any live thread answers
		}
		if lim, err := linux.MemlockRlimit(target); err == nil {
			return lim, nil
		} else if errors.Is(err, unix.ESRCH) {
			return linux.Limit{}, err
		}
		// EPERM: other credentials and no CAP_SYS_RESOURCE; read the file.
	}
	b, err := r.ReadTask(dir, pid, tid, "limits")
	if err != nil {
		return linux.Limit{}, err
	}
	return linux.ParseMemlockLimit(b)
}
