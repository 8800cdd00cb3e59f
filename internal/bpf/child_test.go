package bpf

import (
	"bufio"
	"bytes"
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

var (
	childOnce sync.Once
	childPath string
	childErr  error
)

// childBinary builds testdata/child.c once per test binary.
func childBinary(t testing.TB) string {
	t.Helper()
	childOnce.Do(func() {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			childErr = fmt.Errorf("needs gcc to build testdata/child.c: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "memlock-bpf-child")
		if err != nil {
			childErr = err
			return
		}
		childPath = filepath.Join(dir, "child")
		if out, err := exec.Command(gcc, "-O2", "-Wall", "-Werror", "-pthread", "-o", childPath, "testdata/child.c").CombinedOutput(); err != nil {
			childErr = fmt.Errorf("gcc: %v\n%s", err, out)
			return
		}
		// Other uids run it from the temporary directory.
		childErr = os.Chmod(dir, 0o755)
	})
	if childErr != nil {
		t.Skip(childErr)
	}
	return childPath
}

// childOpts is who the child runs as.
type childOpts struct {
	uid  int // -1: the test's own
	caps []uintptr
	// memlock sets RLIMIT_MEMLOCK soft and hard in the child (nil: inherit).
	memlock *[2]uint64
}

type child struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	pid   int
}

// startChild runs child MODE ARG and waits for its "setup" line.
func startChild(t testing.TB, o childOpts, mode string, arg uint64) *child {
	t.Helper()
	cmd := exec.Command(childBinary(t), mode, strconv.FormatUint(arg, 10))
	cmd.Env = []string{}
	if o.memlock != nil {
		cmd.Env = append(cmd.Env, fmt.Sprintf("CHILD_MEMLOCK=%d %d", o.memlock[0], o.memlock[1]))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{AmbientCaps: o.caps}
	if o.uid >= 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(o.uid), Gid: uint32(o.uid)}
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
	c := &child{t: t, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), pid: cmd.Process.Pid}
	t.Cleanup(c.kill)
	c.expect("setup")
	return c
}

func (c *child) expect(want string) {
	c.t.Helper()
	line, err := c.out.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != want {
		c.t.Fatalf("child %d (%v): got %q (%v), want %q", c.pid, c.cmd.Args[1:], line, err, want)
	}
}

// next makes the child take its charge and waits for "ready".
func (c *child) next() {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, "\n"); err != nil {
		c.t.Fatal(err)
	}
	c.expect("ready")
}

// stop sends SIGSTOP and waits until the kernel reports the child stopped,
// so nothing in it moves while /proc and the iterator are read.
func (c *child) stop() {
	c.t.Helper()
	if err := unix.Kill(c.pid, unix.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, c.pid, &info, unix.WSTOPPED|unix.WNOWAIT, nil); err != nil {
		c.t.Fatal(err)
	}
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	_ = c.stdin.Close()
	_ = c.cmd.Wait()
}

// procStatus parses /proc/<pid>/status, or /proc/<pid>/task/<tid>/status
// when tid != pid.
func procStatus(t testing.TB, pid, tid int) (linux.Status, []byte) {
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

func procLimit(t testing.TB, pid int) linux.Limit {
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

// freshUID returns a uid no process on the host runs as, so its
// user_struct and ucounts start at zero when the child creates them.
var (
	uidMu    sync.Mutex
	uidGiven = map[int]bool{}
)

func freshUID(t testing.TB) int {
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

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start children as other users with chosen capabilities")
	}
}
