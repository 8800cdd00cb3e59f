package linux

import (
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// BenchmarkPidStatusSyscalls: what a pass over every /proc/<pid>/status
// costs in CPU per pid through the exporter's Reader (openat2
// RESOLVE_NO_SYMLINKS, then read and close through unix.Syscall, which
// lets the Go scheduler run others while the kernel works) against the
// same reads through openat(2) instead of openat2, and through
// RawSyscall (no entersyscall/exitsyscall; what the floor of bench/ does).
// The variants alternate within each iteration so that a loaded machine
// weighs on all of them alike; the CPU is the locked thread's
// (RUSAGE_THREAD), kernel time included.
//
//	go test -run '^$' -bench PidStatusSyscalls -benchtime 20x ./internal/linux/
func BenchmarkPidStatusSyscalls(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dir, err := OpenDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	r := NewReader(4096)
	pids, err := r.Pids(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	path := make([]byte, 0, 64)
	setPath := func(pid int) {
		path = append(appendInt(path[:0], pid), "/status\x00"...)
	}
	variants := []struct {
		name string
		read func(pid int)
	}{
		{"reader", func(pid int) { _, _ = r.ReadPid(dir, pid, "status") }},
		{"openat+syscall", func(pid int) {
			setPath(pid)
			fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dir.fd), uintptr(unsafe.Pointer(&path[0])),
				uintptr(unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK), 0, 0, 0)
			if e != 0 {
				return
			}
			unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			unix.Syscall(unix.SYS_CLOSE, fd, 0, 0)
		}},
		{"openat2+raw", func(pid int) {
			setPath(pid)
			fd, _, e := unix.RawSyscall6(unix.SYS_OPENAT2, uintptr(dir.fd), uintptr(unsafe.Pointer(&path[0])),
				uintptr(unsafe.Pointer(&pidOpenHow)), unsafe.Sizeof(pidOpenHow), 0, 0)
			if e != 0 {
				return
			}
			unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		}},
		{"openat+raw", func(pid int) {
			setPath(pid)
			fd, _, e := unix.RawSyscall6(unix.SYS_OPENAT, uintptr(dir.fd), uintptr(unsafe.Pointer(&path[0])),
				uintptr(unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK), 0, 0, 0)
			if e != 0 {
				return
			}
			unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			unix.RawSyscall(unix.SYS_CLOSE, fd, 0, 0)
		}},
	}
	cpu := make([]time.Duration, len(variants))
	thread := func() time.Duration {
		var ru unix.Rusage
		_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for b.Loop() {
		for i, v := range variants {
			t0 := thread()
			for _, pid := range pids {
				v.read(pid)
			}
			cpu[i] += thread() - t0
		}
	}
	for i, v := range variants {
		b.ReportMetric(float64(cpu[i].Nanoseconds())/float64(b.N*len(pids))/1e3, "us/pid-"+v.name)
	}
	b.ReportMetric(float64(len(pids)), "pids")
}

func appendInt(b []byte, v int) []byte {
	var d [20]byte
	i := len(d)
	for {
		i--
		d[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, d[i:]...)
}
