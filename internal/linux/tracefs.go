package linux

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// TracefsDir is where the kernel's tracefs is mounted by convention.
const TracefsDir = "/sys/kernel/tracing"

// IsTracefs reports whether dir is a mounted tracefs.
func IsTracefs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TRACEFS_MAGIC
}

// WithPrivateTracefs runs fn on an OS thread of its own that sees tracefs at
// TracefsDir: where none is mounted there, the thread enters a private
// mount namespace of its own and mounts tracefs in it, which needs
// CAP_SYS_ADMIN; nothing outside the thread sees the mount. A child
// started by fn (exec.Cmd.Start forks from the calling thread) inherits
// that namespace. The thread is never given back to the Go scheduler: it
// ends, with its namespace, when fn returns.
func WithPrivateTracefs(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		if !IsTracefs(TracefsDir) {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				errc <- &MountError{Op: "unshare(CLONE_NEWNS)", Err: err}
				return
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				errc <- &MountError{Op: "mount --make-rprivate /", Err: err}
				return
			}
			if err := unix.Mount("nodev", TracefsDir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
				errc <- &MountError{Op: "mount -t tracefs " + TracefsDir, Err: err}
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}

// MountError says which step of WithPrivateTracefs failed. It does not
// unwrap: an EPERM here means "may not mount" (no CAP_SYS_ADMIN), not a
// file that could not be read.
type MountError struct {
	Op  string
	Err error
}

func (e *MountError) Error() string { return e.Op + ": " + e.Err.Error() }
