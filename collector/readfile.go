package collector

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// readRegular reads a whole system-wide kernel file (meminfo, vmstat,
// sysvipc/shm, a node's meminfo) of at most limit bytes. What a broken or
// hostile mount may put there instead is refused, never waited on or read
// without end: a symlink (O_NOFOLLOW: no link to /dev/zero), a FIFO
// (O_NONBLOCK: open does not wait for a writer), a device, a directory
// (fstat: regular files only; procfs and sysfs files are regular), and
// anything longer than limit (linux.ErrTooLarge), and a file cut short
// (no final newline, linux.ErrMalformed). os.ReadFile does none of
// this: a node meminfo linked to /dev/zero ran the exporter out of memory.
func readRegular(path string, limit int) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, &os.PathError{Op: "open", Path: path, Err: fmt.Errorf("%w: not a regular file (mode %#o)", linux.ErrMalformed, st.Mode&unix.S_IFMT)}
	}
	if st.Size > int64(limit) {
		// procfs and sysfs files say 0; a file on disk (a copy of /proc)
		// says how long it is, and need not be read to be refused.
		return nil, &os.PathError{Op: "read", Path: path, Err: linux.ErrTooLarge}
	}
	buf := make([]byte, min(16<<10, limit+1))
	n := 0
	for {
		if n == len(buf) {
			if n > limit {
				return nil, &os.PathError{Op: "read", Path: path, Err: linux.ErrTooLarge}
			}
			nb := make([]byte, min(2*len(buf), limit+1))
			copy(nb, buf[:n])
			buf = nb
		}
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			// The kernel ends every line of these files with a newline: a
			// file cut short would parse to silently wrong numbers.
			if n > 0 && buf[n-1] != '\n' {
				return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: truncated (no final newline)", linux.ErrMalformed)}
			}
			return buf[:n], nil
		}
		n += m
	}
}
