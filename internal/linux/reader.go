package linux

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxFileSize bounds how much of one file a Reader reads: a status file is
// about 1.5 KiB, limits 1.3 KiB, smaps_rollup under 1 KiB. A larger file is
// not the kernel's and is refused with ErrTooLarge instead of growing memory.
const MaxFileSize = 1 << 20

// ErrTooLarge is returned for a file larger than MaxFileSize.
var ErrTooLarge = errors.New("file too large")

// Dir is an open directory (a procfs mount or a pid's directory) from which
// a Reader reads files by relative path, without allocating per file.
type Dir struct {
	fd int
	// procfs is true when the directory is on a proc filesystem: only
	// there are per-pid files known to be kernel seq files (see readKind);
	// anything else (a test fixture, a hostile mount) is read plainly.
	procfs bool
}

// OpenDir opens path as a directory.
func OpenDir(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &pathError{op: "open", path: path, err: err}
	}
	d := &Dir{fd: fd}
	var st unix.Statfs_t
	if unix.Fstatfs(fd, &st) == nil && st.Type == unix.PROC_SUPER_MAGIC {
		d.procfs = true
	}
	return d, nil
}

// Close closes the directory.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Reader reads small kernel files into a buffer it reuses. It is not safe
// for concurrent use; give each goroutine its own.
type Reader struct {
	buf     []byte
	path    []byte
	dirents []byte
}

// NewReader returns a Reader with a buffer of the given initial size. The
// buffer of directory entries is allocated by the first Pids call, so that
// readers of files alone stay small.
func NewReader(size int) *Reader {
	return &Reader{buf: make([]byte, max(size, 1)), path: make([]byte, 0, 64)}
}

// ReadPid reads the file name (e.g. "status") of process pid in dir, which
// must be a procfs root. The returned bytes are valid until the next call.
// Errors wrap the errno, so errors.Is(err, unix.ENOENT) works.
func (r *Reader) ReadPid(d *Dir, pid int, name string) ([]byte, error) {
	r.path = strconv.AppendInt(r.path[:0], int64(pid), 10)
	r.path = append(r.path, '/')
	r.path = append(r.path, name...)
	r.path = append(r.path, 0)
	var kind readKind
	if d.procfs {
		kind = pidFileKind(name)
	}
	return r.read(d.fd, r.path, kind)
}

// readKind says how a file may be read.
type readKind struct {
	// single: the file is a seq_file of a single record (single_open in
	// fs/proc: status, limits, smaps_rollup, ...). The kernel renders it
	// whole and hands out all of it when the buffer is large enough, so a
	// short read is its end and the read that would return 0 is skipped.
	// Files of many records (smaps, maps, sysvipc) stop a read at a page
	// and are read to 0.
	single bool
	// raw: opening, reading and closing the file never sleeps for long in
	// the kernel (no mmap_lock, no I/O), so it bypasses the Go scheduler's
	// syscall bookkeeping (entersyscall/exitsyscall, and sysmon handing the
	// P off and waking threads): the scan does three syscalls per process,
	// 30,000 a scrape at 10,000 processes. smaps_rollup takes the target's
	// mmap_lock, which a process locking gigabytes holds for seconds, so it
	// is not raw.
	raw bool
}

func pidFileKind(name string) readKind {
	switch name {
	case "status", "limits":
		return readKind{single: true, raw: true}
	case "smaps_rollup", "stat", "statm", "cgroup":
		return readKind{single: true}
	}
	return readKind{}
}

// ReadFile reads the file at the relative path name below dir.
func (r *Reader) ReadFile(d *Dir, name string) ([]byte, error) {
	r.path = append(append(r.path[:0], name...), 0)
	return r.read(d.fd, r.path, readKind{})
}

func (r *Reader) read(dirfd int, path []byte, kind readKind) ([]byte, error) {
	fd, err := openat(dirfd, path, kind.raw)
	if err != nil {
		return nil, &pathError{op: "open", path: string(path[:len(path)-1]), err: err}
	}
	defer sysClose(fd, kind.raw)
	n := 0
	for {
		if n == len(r.buf) {
			if len(r.buf) >= MaxFileSize {
				return nil, &pathError{op: "read", path: string(path[:len(path)-1]), err: ErrTooLarge}
			}
			nb := make([]byte, min(2*len(r.buf), MaxFileSize))
			copy(nb, r.buf[:n])
			r.buf = nb
		}
		m, err := sysRead(fd, r.buf[n:], kind.raw)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &pathError{op: "read", path: string(path[:len(path)-1]), err: err}
		}
		if m == 0 {
			return r.buf[:n], nil
		}
		n += m
		if kind.single && n < len(r.buf) {
			return r.buf[:n], nil
		}
	}
}

func syscall6(raw bool, trap, a1, a2, a3, a4, a5, a6 uintptr) (uintptr, unix.Errno) {
	if raw {
		r, _, errno := unix.RawSyscall6(trap, a1, a2, a3, a4, a5, a6)
		return r, errno
	}
	r, _, errno := unix.Syscall6(trap, a1, a2, a3, a4, a5, a6)
	return r, errno
}

// openat opens with O_NOFOLLOW, so a link (to /dev/zero, say) is refused,
// and O_NONBLOCK, so a FIFO in place of a file does not block the open
// until a writer comes (reads of procfs and sysfs files are unaffected).
func openat(dirfd int, path []byte, raw bool) (int, error) {
	for {
		fd, errno := syscall6(raw, unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])),
			uintptr(unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

func sysRead(fd int, b []byte, raw bool) (int, error) {
	n, errno := syscall6(raw, unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func sysClose(fd int, raw bool) {
	syscall6(raw, unix.SYS_CLOSE, uintptr(fd), 0, 0, 0, 0, 0)
}

// Pids appends the numeric entries of the procfs root dir to pids, in the
// order the kernel lists them (ascending for /proc).
func (r *Reader) Pids(d *Dir, pids []int) ([]int, error) {
	if r.dirents == nil {
		r.dirents = make([]byte, 32<<10)
	}
	if _, err := unix.Seek(d.fd, 0, 0); err != nil {
		return pids, &pathError{op: "seek", path: "procfs", err: err}
	}
	for {
		n, err := unix.Getdents(d.fd, r.dirents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return pids, &pathError{op: "getdents", path: "procfs", err: err}
		}
		if n <= 0 {
			return pids, nil
		}
		b := r.dirents[:n]
		for len(b) >= 19 {
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen < 19 || reclen > len(b) {
				return pids, &pathError{op: "getdents", path: "procfs", err: errors.New("bad record length")}
			}
			name := b[19:reclen]
			if pid, ok := atoiName(name); ok {
				pids = append(pids, pid)
			}
			b = b[reclen:]
		}
	}
}

// atoiName parses a NUL-terminated directory name as a positive pid.
func atoiName(name []byte) (int, bool) {
	v := 0
	i := 0
	for ; i < len(name) && name[i] != 0; i++ {
		c := name[i]
		if c < '0' || c > '9' || i >= 10 {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, i > 0 && v > 0
}

// pathError is os.PathError without the os dependency on allocation-free
// paths; errors.Is sees through it to the errno.
type pathError struct {
	op, path string
	err      error
}

func (e *pathError) Error() string { return fmt.Sprintf("%s %s: %v", e.op, e.path, e.err) }
func (e *pathError) Unwrap() error { return e.err }
