package bench

import (
	"bytes"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FloorResult is one pass of the floor reader over /proc.
type FloorResult struct {
	Pids      int           // status files read
	Reported  int           // processes with locked or pinned memory
	Lockers   int           // processes with VmLck > 0 (smaps_rollup read)
	CPU       time.Duration // user+sys of the reading thread
	User, Sys time.Duration
	Wall      time.Duration
	// StatusCPU is the share of CPU spent on getdents and status alone,
	// SmapsCPU that of the smaps_rollup reads (the rest: limits and
	// cgroup of the reported processes).
	StatusCPU, SmapsCPU time.Duration
}

// floorReader is the least a program can do to get what the exporter
// reports: getdents of /proc, then for every pid openat+read+close of its
// status into one reused buffer, a byte search for VmLck and VmPin, and for
// the processes holding locked or pinned memory their limits and cgroup
// files and (when VmLck > 0) their smaps_rollup. Raw syscalls, no parsing beyond that, no
// allocation. The files read per reported process are those the exporter
// reads for it: limits (the exporter uses prlimit(2) where it may), cgroup
// (its container labels) and smaps_rollup. One read per file: per-pid files are single-record seq files
// that the kernel renders whole into a large enough buffer.
type floorReader struct {
	procfd  int
	dirents []byte
	buf     []byte
	path    []byte
	pids    []int
	report  []int
	locked  []bool
}

func newFloorReader() (*floorReader, error) {
	fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &floorReader{procfd: fd, dirents: make([]byte, 32<<10), buf: make([]byte, 4096),
		path: make([]byte, 0, 64), pids: make([]int, 0, 16384)}, nil
}

func (f *floorReader) Close() { unix.Close(f.procfd) }

func threadCPU() (user, sys time.Duration) {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// threadClock is the calling thread's CPU time from
// CLOCK_THREAD_CPUTIME_ID (the scheduler's exact run time), for the shares
// of a pass: getrusage's user/sys split is scaled from ticks and lags on
// intervals of a few milliseconds.
func threadClock() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// Run does one pass on a thread of its own and measures that thread's CPU.
func (f *floorReader) Run() FloorResult {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var res FloorResult
	u0, s0 := threadCPU()
	c0 := threadClock()
	w0 := time.Now()

	f.pids = f.pids[:0]
	unix.Seek(f.procfd, 0, 0)
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_GETDENTS64, uintptr(f.procfd), uintptr(unsafe.Pointer(&f.dirents[0])), uintptr(len(f.dirents)))
		if errno != 0 || int(n) <= 0 {
			break
		}
		b := f.dirents[:n]
		for len(b) >= 19 {
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			pid := 0
			for _, c := range b[19:reclen] {
				if c < '0' || c > '9' {
					break
				}
				pid = pid*10 + int(c-'0')
			}
			if pid > 0 {
				f.pids = append(f.pids, pid)
			}
			b = b[reclen:]
		}
	}
	f.report, f.locked = f.report[:0], f.locked[:0]
	for _, pid := range f.pids {
		data := f.read(pid, "status")
		if data == nil {
			continue
		}
		res.Pids++
		lck := fieldNonZero(data, "VmLck:")
		if lck || fieldNonZero(data, "VmPin:") {
			f.report = append(f.report, pid)
			f.locked = append(f.locked, lck)
		}
	}
	c1 := threadClock()
	for _, pid := range f.report {
		f.read(pid, "limits")
		f.read(pid, "cgroup")
	}
	// smaps_rollup in a loop of its own, so that its share is known: the
	// one read both paths must make for every locker, whatever the source
	// of the per-process numbers.
	c2 := threadClock()
	for i, pid := range f.report {
		if f.locked[i] {
			f.read(pid, "smaps_rollup")
			res.Lockers++
		}
	}
	res.Reported = len(f.report)
	c3 := threadClock()
	u2, s2 := threadCPU()
	res.SmapsCPU = c3 - c2
	res.Wall = time.Since(w0)
	res.User, res.Sys = u2-u0, s2-s0
	res.CPU = res.User + res.Sys
	res.StatusCPU = c1 - c0
	return res
}

func (f *floorReader) read(pid int, name string) []byte {
	f.path = strconv.AppendInt(f.path[:0], int64(pid), 10)
	f.path = append(f.path, '/')
	f.path = append(f.path, name...)
	f.path = append(f.path, 0)
	// Raw syscalls: no Go scheduler bookkeeping around them, as a C
	// program would do it.
	fd, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(f.procfd), uintptr(unsafe.Pointer(&f.path[0])),
		uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
	if errno != 0 {
		return nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&f.buf[0])), uintptr(len(f.buf)))
	unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
	if errno != 0 {
		return nil
	}
	return f.buf[:n]
}

// fieldNonZero reports whether the "<key>   N kB" line of status has N > 0.
func fieldNonZero(b []byte, key string) bool {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return false
	}
	for _, c := range b[i+len(key):] {
		switch {
		case c >= '1' && c <= '9':
			return true
		case c == '\n':
			return false
		}
	}
	return false
}
