package linux

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
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

// Exists reports whether name exists below the directory (a pid's
// directory, say), following no link.
func (d *Dir) Exists(name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
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
// Errors wrap the errno, so errors.Is(err, unix.ENOENT) works. No symlink
// is followed anywhere on the path (see openat): a pid directory that is a
// link (a hostile tree's "111 -> 1") fails with ELOOP instead of reading
// another process's file as pid's.
func (r *Reader) ReadPid(d *Dir, pid int, name string) ([]byte, error) {
	return r.ReadTask(d, pid, 0, name)
}

// ReadTask reads the file name of thread tid of process pid
// (<pid>/task/<tid>/<name>), or of the process itself when tid is 0, as
// ReadPid does.
func (r *Reader) ReadTask(d *Dir, pid, tid int, name string) ([]byte, error) {
	r.taskPath(pid, tid, name)
	var kind readKind
	if d.procfs {
		kind = pidFileKind(name)
	}
	kind.noLinks = true
	return r.read(d.fd, r.path, kind)
}

// taskPath sets r.path to <pid>/<name> or <pid>/task/<tid>/<name>, NUL
// terminated.
func (r *Reader) taskPath(pid, tid int, name string) {
	r.path = strconv.AppendInt(r.path[:0], int64(pid), 10)
	if tid != 0 {
		r.path = append(r.path, "/task/"...)
		r.path = strconv.AppendInt(r.path, int64(tid), 10)
	}
	r.path = append(r.path, '/')
	r.path = append(r.path, name...)
	r.path = append(r.path, 0)
}

// Tids appends the thread ids of process pid (the entries of
// <pid>/task) to tids.
func (r *Reader) Tids(d *Dir, pid int, tids []int) ([]int, error) {
	r.path = strconv.AppendInt(r.path[:0], int64(pid), 10)
	r.path = append(r.path, "/task"...)
	r.path = append(r.path, 0)
	fd, err := openDirAt(d.fd, r.path)
	if err != nil {
		return tids, &pathError{op: "open", path: string(r.path[:len(r.path)-1]), err: err}
	}
	defer unix.Close(fd)
	return r.numericEntries(fd, tids)
}

// Readlink reads the symbolic link name (e.g. "1/ns/ipc") below dir into
// the Reader's buffer; the bytes are valid until the next call.
func (r *Reader) Readlink(d *Dir, name string) ([]byte, error) {
	r.path = append(append(r.path[:0], name...), 0)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(d.fd), uintptr(unsafe.Pointer(&r.path[0])),
			uintptr(unsafe.Pointer(&r.buf[0])), uintptr(len(r.buf)), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return nil, &pathError{op: "readlink", path: name, err: errno}
		}
		if int(n) == len(r.buf) {
			return nil, &pathError{op: "readlink", path: name, err: ErrTooLarge}
		}
		return r.buf[:n], nil
	}
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
	// noLinks: no element of the path may be a symlink (a pid's files).
	// Other paths may pass through one (the probe's "self/status").
	noLinks bool
	// system: a system-wide file read once per scrape (meminfo, vmstat,
	// sysvipc/shm, a node's meminfo). It must be a regular file (fstat:
	// procfs and sysfs files are; a device or directory under a hostile
	// mount is refused) and end in a newline, as every line the kernel
	// writes does: a file cut short would parse to wrong numbers. The
	// fstat is one more syscall, paid once per file per scrape, never on
	// the per-pid path.
	system bool
	// limit bounds the file's size; 0 means MaxFileSize.
	limit int
}

func pidFileKind(name string) readKind {
	switch name {
	case "status", "limits", "smaps_rollup", "stat", "statm", "cgroup":
		return readKind{single: true}
	}
	return readKind{}
}

// ReadFile reads the file at the relative path name below dir.
func (r *Reader) ReadFile(d *Dir, name string) ([]byte, error) {
	r.path = append(append(r.path[:0], name...), 0)
	return r.read(d.fd, r.path, readKind{})
}

// ReadSystemFile reads the whole system-wide kernel file at path (meminfo,
// vmstat, sysvipc/shm, a NUMA node's meminfo) of at most limit bytes into
// a new buffer. What a broken or hostile mount may put there instead is
// refused, never waited on or read without end: a symlink as the last
// element (O_NOFOLLOW: no link to /dev/zero), a FIFO (O_NONBLOCK), a
// device or directory (not a regular file: ErrMalformed), anything longer
// than limit (ErrTooLarge), and a file without a final newline
// (ErrMalformed).
func ReadSystemFile(path string, limit int) ([]byte, error) {
	r := Reader{buf: make([]byte, min(16<<10, limit+1))}
	p := append([]byte(path), 0)
	return r.read(unix.AT_FDCWD, p, readKind{system: true, limit: limit})
}

func (r *Reader) read(dirfd int, path []byte, kind readKind) ([]byte, error) {
	fd, err := openat(dirfd, path, kind.noLinks)
	if err != nil {
		return nil, r.pathErr("open", path, err)
	}
	defer unix.Close(fd)
	limit := kind.limit
	if limit <= 0 {
		limit = MaxFileSize
	}
	if kind.system {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, r.pathErr("fstat", path, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, r.pathErr("open", path, fmt.Errorf("%w: not a regular file (mode %#o)", ErrMalformed, st.Mode&unix.S_IFMT))
		}
		if st.Size > int64(limit) {
			// procfs and sysfs files say 0; a file on disk (a copy of
			// /proc) says how long it is, and need not be read to be
			// refused.
			return nil, r.pathErr("read", path, ErrTooLarge)
		}
	}
	n := 0
	for {
		if n == len(r.buf) {
			// The buffer grows to limit+1 bytes, so that a file of
			// exactly limit bytes is read and a longer one is seen.
			if n > limit {
				return nil, r.pathErr("read", path, ErrTooLarge)
			}
			nb := make([]byte, min(2*len(r.buf), limit+1))
			copy(nb, r.buf[:n])
			r.buf = nb
		}
		m, err := sysRead(fd, r.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, r.pathErr("read", path, err)
		}
		if m == 0 {
			if n > limit { // a Reader made with a buffer above limit
				return nil, r.pathErr("read", path, ErrTooLarge)
			}
			if kind.system && n > 0 && r.buf[n-1] != '\n' {
				return nil, r.pathErr("read", path, fmt.Errorf("%w: truncated (no final newline)", ErrMalformed))
			}
			return r.buf[:n], nil
		}
		n += m
		if kind.single && n < len(r.buf) && n <= limit {
			return r.buf[:n], nil
		}
	}
}

func (r *Reader) pathErr(op string, path []byte, err error) error {
	return &pathError{op: op, path: string(path[:len(path)-1]), err: err}
}

// The pid-file reads go through unix.Syscall, never RawSyscall: a read of
// /proc/<pid>/status or limits takes a reference on the target's mm, and
// when the target exits meanwhile the reader drops the last one and
// mmput tears down (and munlocks) the whole address space in the reader's
// context, seconds for a process that locked gigabytes. Inside a raw
// syscall the Go scheduler cannot hand the P to another goroutine and a GC
// stop-the-world waits for it; inside Syscall it can and does not.

// noOpenat2 is set once openat2(2) is found missing (kernel < 5.6) or
// refused (a seccomp profile); openat and the d_type check of Pids are used
// then.
var noOpenat2 atomic.Bool

// openHow is struct open_how of openat2(2).
type openHow struct {
	flags, mode, resolve uint64
}

var pidOpenHow = openHow{
	flags: uint64(unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK),
	// No symlink on any element of the path: O_NOFOLLOW alone guards only
	// the last one, and a pid directory that is a link would be followed.
	resolve: unix.RESOLVE_NO_SYMLINKS,
}

// openat opens path below dirfd with O_NOFOLLOW, so the last element may
// not be a symlink (a link to /dev/zero is refused), and with noLinks no
// element at all (openat2 RESOLVE_NO_SYMLINKS; where the kernel has no
// openat2, Pids' d_type check guards the pid directory), and with
// O_NONBLOCK, so a FIFO in place of a file does not block the open until a
// writer comes (reads of procfs and sysfs files are unaffected).
func openat(dirfd int, path []byte, noLinks bool) (int, error) {
	for {
		if noLinks && !noOpenat2.Load() {
			fd, _, errno := unix.Syscall6(unix.SYS_OPENAT2, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])),
				uintptr(unsafe.Pointer(&pidOpenHow)), unsafe.Sizeof(pidOpenHow), 0, 0)
			switch errno {
			case 0:
				return int(fd), nil
			case unix.EINTR, unix.EAGAIN: // EAGAIN: a rename raced the lookup
				continue
			case unix.ENOSYS, unix.EPERM:
				noOpenat2.Store(true)
			default:
				return -1, errno
			}
		}
		return openatRetry(dirfd, path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK)
	}
}

// openDirAt opens the directory path below dirfd, following no link.
func openDirAt(dirfd int, path []byte) (int, error) {
	return openatRetry(dirfd, path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_DIRECTORY)
}

// openatRetry is openat(2) of a NUL-terminated path, retried on EINTR.
func openatRetry(dirfd int, path []byte, flags int) (int, error) {
	for {
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&path[0])),
			uintptr(flags), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
}

var errEINTR error = unix.EINTR

func closeFD(fd int) { unix.Close(fd) }

func sysRead(fd int, b []byte) (int, error) {
	n, _, errno := unix.Syscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Pids appends the numeric entries of the procfs root dir to pids, in the
// order the kernel lists them (ascending for /proc). Only directories
// count: an entry of another type (a hostile tree's symlink "111 -> 1")
// is not a process.
func (r *Reader) Pids(d *Dir, pids []int) ([]int, error) {
	if _, err := unix.Seek(d.fd, 0, 0); err != nil {
		return pids, &pathError{op: "seek", path: "procfs", err: err}
	}
	return r.numericEntries(d.fd, pids)
}

// The offsets in a struct linux_dirent64 (include/linux/dirent.h), as
// unix.Dirent lays it out: d_ino, d_off, d_reclen, d_type, d_name.
const (
	direntReclen = int(unsafe.Offsetof(unix.Dirent{}.Reclen))
	direntType   = int(unsafe.Offsetof(unix.Dirent{}.Type))
	direntName   = int(unsafe.Offsetof(unix.Dirent{}.Name))
)

func (r *Reader) numericEntries(fd int, ids []int) ([]int, error) {
	if r.dirents == nil {
		r.dirents = make([]byte, 32<<10)
	}
	for {
		n, err := unix.Getdents(fd, r.dirents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ids, &pathError{op: "getdents", path: "procfs", err: err}
		}
		if n <= 0 {
			return ids, nil
		}
		b := r.dirents[:n]
		for len(b) >= direntName {
			reclen := int(*(*uint16)(unsafe.Pointer(&b[direntReclen])))
			if reclen < direntName || reclen > len(b) {
				return ids, &pathError{op: "getdents", path: "procfs", err: errors.New("bad record length")}
			}
			// DT_UNKNOWN (a file system that does not fill d_type in) is
			// left to openat2.
			typ := b[direntType]
			name := b[direntName:reclen]
			if id, ok := atoiName(name); ok && (typ == unix.DT_DIR || typ == unix.DT_UNKNOWN) {
				ids = append(ids, id)
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
