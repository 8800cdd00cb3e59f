package bench

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed csrc/helper.c
var helperSource []byte

// ChildComm is the comm of every child the helper starts.
const ChildComm = "memlock-child"

// CompileHelper compiles helper.c with gcc into dir: static where the C
// library allows it, so that each child maps as little as possible.
func CompileHelper(dir string) (string, error) {
	src := filepath.Join(dir, "helper.c")
	if err := os.WriteFile(src, helperSource, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "memlock-bench-helper")
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("the harness needs gcc to build its child processes: %w", err)
	}
	var lastErr error
	for _, static := range []bool{true, false} {
		args := []string{"-O2", "-Wall", "-o", bin, src}
		if static {
			args = append([]string{"-static"}, args...)
		}
		out, err := exec.Command(gcc, args...).CombinedOutput()
		if err == nil {
			return bin, nil
		}
		lastErr = fmt.Errorf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return "", lastErr
}

// Children is the helper process and the N children it keeps alive.
type Children struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	N     int

	mu        sync.Mutex
	alive     map[int]string    // pid -> role
	died      map[int]time.Time // pid -> when its exit was reported
	born      map[int]time.Time // pid -> when its (latest) start was reported
	failures  map[string]string // role -> errno of a failed setup
	exits     int
	ready     chan struct{}
	done      chan struct{}
	readErr   error
	waitOnce  sync.Once
	waitErr   error
	startedAt time.Time
}

// StartChildren starts the helper with n children and waits until every
// child has set up its role.
func StartChildren(helper string, n int, timeout time.Duration) (*Children, error) {
	c := &Children{N: n, alive: map[int]string{}, died: map[int]time.Time{}, born: map[int]time.Time{},
		failures: map[string]string{}, ready: make(chan struct{}), done: make(chan struct{})}
	c.cmd = exec.Command(helper, strconv.Itoa(n))
	// Killed with the harness, whatever kills the harness; its children
	// have the same death signal towards it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	c.cmd.Stderr = os.Stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.startedAt = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go c.read(out)
	select {
	case <-c.ready:
		return c, nil
	case <-c.done:
		c.Stop()
		return nil, fmt.Errorf("helper exited before its %d children were ready: %v", n, c.readErr)
	case <-time.After(timeout):
		c.Stop()
		return nil, fmt.Errorf("%d children not ready after %s", n, timeout)
	}
}

func (c *Children) read(out io.Reader) {
	defer close(c.done)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		now := time.Now()
		c.mu.Lock()
		switch f[0] {
		case "S":
			if len(f) == 3 {
				pid, _ := strconv.Atoi(f[1])
				c.alive[pid] = f[2]
				c.born[pid] = now
			}
		case "X":
			if len(f) == 2 {
				pid, _ := strconv.Atoi(f[1])
				delete(c.alive, pid)
				c.died[pid] = now
				c.exits++
			}
		case "F":
			if len(f) == 3 {
				n, _ := strconv.Atoi(f[2])
				c.failures[f[1]] = syscall.Errno(n).Error()
			}
		case "R":
			close(c.ready)
		}
		c.mu.Unlock()
	}
	c.readErr = sc.Err()
}

// Churn asks the helper to kill and replace perSecond random children every
// second (0 stops).
func (c *Children) Churn(perSecond float64) error {
	_, err := fmt.Fprintf(c.stdin, "churn %g\n", perSecond)
	return err
}

// Alive returns the number of children and, by role, how many hold what.
func (c *Children) Alive() (int, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	roles := map[string]int{}
	for _, r := range c.alive {
		roles[r]++
	}
	return len(c.alive), roles
}

// Exits is how many children have exited and been replaced so far.
func (c *Children) Exits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exits
}

// Failures returns, by role, the error of a child that could not set its
// role up (e.g. a kernel refusing io_uring).
func (c *Children) Failures() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]string{}
	for k, v := range c.failures {
		out[k] = v
	}
	return out
}

// DeadSince reports whether pid was reported dead at or before t and has
// not been started again since (pids are reused).
func (c *Children) DeadSince(pid int, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.died[pid]
	if !ok || d.After(t) {
		return false
	}
	b, reborn := c.born[pid]
	return !reborn || b.Before(d)
}

// Stop asks the helper to kill every child and waits for it; after a few
// seconds it kills the helper, whose children then die by their death
// signal. It is safe to call more than once.
func (c *Children) Stop() error {
	c.waitOnce.Do(func() {
		fmt.Fprintln(c.stdin, "quit")
		c.stdin.Close()
		exited := make(chan error, 1)
		go func() { exited <- c.cmd.Wait() }()
		select {
		case c.waitErr = <-exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			c.cmd.Process.Kill()
			c.waitErr = errors.Join(errors.New("helper did not quit in time; killed"), <-exited)
		}
	})
	return c.waitErr
}

// Pid is the helper's pid.
func (c *Children) Pid() int { return c.cmd.Process.Pid }

// AnyPid returns the pid of a live child of the given role, or 0.
func (c *Children) AnyPid(role string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pid, r := range c.alive {
		if r == role {
			return pid
		}
	}
	return 0
}
