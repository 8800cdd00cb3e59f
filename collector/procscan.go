package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
}

func newProcessScanner(cfg Config, logger *slog.Logger) (*processScanner, error) {
	s := &processScanner{procPath: cfg.ProcPath, cfg: cfg.Process, logger: logger}
	if self, err := os.Readlink(filepath.Join(cfg.ProcPath, "self")); err == nil && self == strconv.Itoa(os.Getpid()) {
		s.samePidNS = true
	}
	s.bufs = newBufPool(4)
	return s, nil
}

// procInfo is a process that qualifies for series of its own.
type procInfo struct {
	pid            int
	uid            uint32
	name           string
	locked, pinned uint64
	ipcLock        bool
	named          bool // matched ProcessConfig.Include
}

type userTotal struct {
	locked, pinned uint64
	procs          int
}

// readFailure counts files that could not be read, by file and reason.
type readFailure struct{ file, reason string }

type processScan struct {
	err        error // the scan could not run at all
	scanned    int
	candidates []procInfo
	users      map[uint32]*userTotal
	failures   map[readFailure]int
	malformed  []error
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
	res := &processScan{users: map[uint32]*userTotal{}, failures: map[readFailure]int{}}
	dir, err := linux.OpenDir(ps.procPath)
	if err != nil {
		res.err = err
		return res
	}
	defer dir.Close()
	bufs := ps.bufs.get()
	defer ps.bufs.put(bufs)
	r := bufs.r
	pids, err := r.Pids(dir, bufs.pids[:0])
	bufs.pids = pids
	if err != nil {
		res.err = err
		return res
	}
	var st linux.Status
	for i, pid := range pids {
		if i%ctxCheckEvery == 0 && ctx.Err() != nil {
			res.err = fmt.Errorf("scanned %d of %d processes: %w", i, len(pids), ctx.Err())
			return res
		}
		b, err := r.ReadPid(dir, pid, "status")
		if err == nil {
			err = linux.ParseStatus(b, &st)
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
			continue
		}
		res.scanned++
		if !st.HasMM {
			continue // kernel thread: nothing to lock
		}
		u := res.users[st.UID]
		if u == nil {
			u = &userTotal{}
			res.users[st.UID] = u
		}
		u.locked += st.Locked
		u.pinned += st.Pinned
		u.procs++

		named := ps.cfg.Include != nil && ps.cfg.Include.Match(st.Name)
		if !named && st.Locked == 0 && st.Pinned == 0 {
			continue
		}
		if ps.cfg.Exclude != nil && ps.cfg.Exclude.Match(st.Name) {
			continue
		}
		res.candidates = append(res.candidates, procInfo{
			pid:     pid,
			uid:     st.UID,
			name:    strings.ToValidUTF8(string(st.Name), "\uFFFD"),
			locked:  st.Locked,
			pinned:  st.Pinned,
			ipcLock: st.IPCLock(),
			named:   named,
		})
	}
	return res
}

// memlockLimit returns the memlock limit of pid: by prlimit(2) where that
// is allowed and means the same process, otherwise from /proc/<pid>/limits.
func (ps *processScanner) memlockLimit(r *linux.Reader, dir *linux.Dir, pid int) (linux.Limit, error) {
	if ps.samePidNS {
		var rl unix.Rlimit
		if err := unix.Prlimit(pid, unix.RLIMIT_MEMLOCK, nil, &rl); err == nil {
			return linux.Limit{Soft: rl.Cur, Hard: rl.Max}, nil
		} else if errors.Is(err, unix.ESRCH) {
			return linux.Limit{}, err
		}
		// EPERM: other credentials and no CAP_SYS_RESOURCE; read the file.
	}
	b, err := r.ReadPid(dir, pid, "limits")
	if err != nil {
		return linux.Limit{}, err
	}
	return linux.ParseMemlockLimit(b)
}
