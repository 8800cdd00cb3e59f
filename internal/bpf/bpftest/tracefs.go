package bpftest

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// WithTracefs runs fn on an OS thread that sees tracefs at
// /sys/kernel/tracing: where the host mounts none there, the thread gets a
// private mount namespace of its own with tracefs mounted in it (nothing
// outside the thread sees the mount). A child started by fn (exec.Cmd.Start
// forks from the calling thread) inherits that namespace. The thread is
// never given back to the Go scheduler: it ends with the goroutine.
func WithTracefs(fn func() error) error {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves with the goroutine
		var st unix.Statfs_t
		if unix.Statfs("/sys/kernel/tracing", &st) != nil || st.Type != unix.TRACEFS_MAGIC {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				errc <- err
				return
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				errc <- err
				return
			}
			if err := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
				errc <- err
				return
			}
		}
		errc <- fn()
	}()
	return <-errc
}
