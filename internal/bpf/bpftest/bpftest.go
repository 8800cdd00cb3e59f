// Package bpftest runs the test children that make kernel memlock charges
// known to the byte (mlock, io_uring registration, perf ring
// buffers, SHM_LOCK, failing calls; testdata/child.c) as chosen users with chosen
// capabilities and limits. internal/bpf's tests and the collectors' tests
// that compare the BPF path with /proc share it; it is imported only by
// tests.
package bpftest

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"golang.org/x/sys/unix"
)

//go:embed testdata/child.c
var childSource []byte

var (
	childOnce sync.Once
	childDir  string
	childPath string
	childErr  error
)

// Binary builds child.c once per test binary, or skips the test without gcc.
func Binary(t testing.TB) string {
	t.Helper()
	childOnce.Do(func() {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			childErr = fmt.Errorf("needs gcc to build bpftest/testdata/child.c: %w", err)
			return
		}
		if childDir, err = os.MkdirTemp("", "memlock-bpf-child"); err != nil {
			childErr = err
			return
		}
		src := filepath.Join(childDir, "child.c")
		if childErr = os.WriteFile(src, childSource, 0o644); childErr != nil {
			return
		}
		childPath = filepath.Join(childDir, "child")
		if out, err := exec.Command(gcc, "-O2", "-Wall", "-Werror", "-pthread", "-o", childPath, src).CombinedOutput(); err != nil {
			childErr = fmt.Errorf("gcc: %v\n%s", err, out)
			return
		}
		// Other uids run it from the temporary directory.
		childErr = os.Chmod(childDir, 0o755)
	})
	if childErr != nil {
		t.Skip(childErr)
	}
	return childPath
}

// Cleanup removes the built child; call it from TestMain after m.Run.
func Cleanup() {
	if childDir != "" {
		os.RemoveAll(childDir)
	}
}

// Opts is who the child runs as.
type Opts struct {
	UID  int // -1: the test's own
	Caps []uintptr
	// Memlock sets RLIMIT_MEMLOCK soft and hard in the child (nil: inherit).
	Memlock *[2]uint64
	// Name, when set, is the child's command name (comm): it runs through
	// a symbolic link of that name.
	Name string
}

// Child is a running child.
type Child struct {
	T     testing.TB
	Cmd   *exec.Cmd
	Stdin io.WriteCloser
	Out   *bufio.Reader
	Pid   int
}

// VmSize is VmSize of the child's /proc/<pid>/status in bytes: its
// total_vm, what mlockall(MCL_CURRENT) asks the kernel to lock.
func (c *Child) VmSize() uint64 {
	c.T.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.Pid) + "/status")
	if err != nil {
		c.T.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				c.T.Fatal(err)
			}
			return kb << 10
		}
	}
	c.T.Fatalf("no VmSize in /proc/%d/status", c.Pid)
	return 0
}

// Start runs child MODE ARG and waits for its "setup" line; the test's
// cleanup kills it.
func Start(t testing.TB, o Opts, mode string, arg uint64) *Child {
	t.Helper()
	bin := Binary(t)
	if o.Name != "" {
		link := filepath.Join(filepath.Dir(bin), o.Name)
		if err := os.Symlink(bin, link); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		bin = link
	}
	cmd := exec.Command(bin, mode, strconv.FormatUint(arg, 10))
	cmd.Env = []string{}
	if o.Memlock != nil {
		cmd.Env = append(cmd.Env, fmt.Sprintf("CHILD_MEMLOCK=%d %d", o.Memlock[0], o.Memlock[1]))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{AmbientCaps: o.Caps}
	if o.UID >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(o.UID), Gid: uint32(o.UID)}
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &Child{T: t, Cmd: cmd, Stdin: stdin, Out: bufio.NewReader(stdout), Pid: cmd.Process.Pid}
	t.Cleanup(c.Kill)
	c.Expect("setup")
	return c
}

// Expect reads the child's next line and fails the test unless it is want.
func (c *Child) Expect(want string) {
	c.T.Helper()
	line, err := c.Out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		c.T.Fatalf("child %d (%v): got %q (%v), want %q", c.Pid, c.Cmd.Args[1:], line, err, want)
	}
}

// Next makes the child take its charge and waits for "ready".
func (c *Child) Next() {
	c.T.Helper()
	if _, err := io.WriteString(c.Stdin, "\n"); err != nil {
		c.T.Fatal(err)
	}
	c.Expect("ready")
}

// Stop sends SIGSTOP and waits until the kernel reports the child stopped,
// so nothing in it moves while /proc and the iterator are read.
func (c *Child) Stop() {
	c.T.Helper()
	if err := unix.Kill(c.Pid, unix.SIGSTOP); err != nil {
		c.T.Fatal(err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, c.Pid, &info, unix.WSTOPPED|unix.WNOWAIT, nil); err != nil {
		c.T.Fatal(err)
	}
}

// Kill ends the child and reaps it.
func (c *Child) Kill() {
	_ = c.Cmd.Process.Kill()
	_ = c.Stdin.Close()
	_ = c.Cmd.Wait()
}

// ProcStatus parses /proc/<pid>/status, or /proc/<pid>/task/<tid>/status
// when tid != pid.
func ProcStatus(t testing.TB, pid, tid int) (linux.Status, []byte) {
	t.Helper()
	p := fmt.Sprintf("/proc/%d/status", pid)
	if tid != pid {
		p = fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var s linux.Status
	if err := linux.ParseStatus(b, &s); err != nil {
		t.Fatal(err)
	}
	s.Name = bytes.Clone(s.Name)
	return s, b
}

// ProcLimit reads RLIMIT_MEMLOCK from /proc/<pid>/limits.
func ProcLimit(t testing.TB, pid int) linux.Limit {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	l, err := linux.ParseMemlockLimit(b)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var (
	uidMu    sync.Mutex
	uidGiven = map[int]bool{}
)

// FreshUID returns a uid no process on the host runs as, so its
// user_struct and ucounts start at zero when the child creates them.
func FreshUID(t testing.TB) int {
	t.Helper()
	uidMu.Lock()
	defer uidMu.Unlock()
	used := map[uint32]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		var s linux.Status
		if linux.ParseStatus(b, &s) == nil {
			used[s.UID] = true
		}
	}
	for uid := 61000; uid < 62000; uid++ {
		if !used[uint32(uid)] && !uidGiven[uid] {
			uidGiven[uid] = true
			return uid
		}
	}
	t.Fatal("no free uid")
	return 0
}

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start children as other users with chosen capabilities")
	}
}
