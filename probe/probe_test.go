package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// testChildEnv runs the test binary as a child that probes under limits it
// sets itself (see runTestChild).
const testChildEnv = "MEMLOCK_PROBE_TEST_CHILD"

func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(RunChild())
	}
	if spec := os.Getenv(testChildEnv); spec != "" {
		os.Exit(runTestChild(spec))
	}
	os.Exit(m.Run())
}

// childRequest is what a test child does: lower its own RLIMIT_MEMLOCK to
// Limit (lowering needs no privilege), then run each module.
type childRequest struct {
	Limit   uint64
	Modules []NamedModule
	// Seccomp installs a filter answering mlock2 with ENOSYS (a kernel
	// without mlock2) before the probes; HoleAtMap unmaps a page in the
	// middle of the region once mapped, so the lock call meets a hole;
	// ASSlack, when nonzero, lowers RLIMIT_AS to VmSize plus this much
	// just before the probes (see failure_more_test.go).
	Seccomp   bool   `json:",omitempty"`
	HoleAtMap bool   `json:",omitempty"`
	ASSlack   uint64 `json:",omitempty"`
}

// childSkip is the exit status of a test child that the machine denied
// what it needed (seccomp, say); runUnprivileged skips with its stderr.
const childSkip = 5

// childOutcome is one module's result as the test child reports it.
type childOutcome struct {
	Name, Reason, Err string
	Success           bool
	CapIPCLock        bool
	Rlimit            uint64
	// VmLck of the child before and after the probe.
	VmLckBefore, VmLckAfter uint64
}

func runTestChild(spec string) int {
	var req childRequest
	if err := json.Unmarshal([]byte(spec), &req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: req.Limit, Max: req.Limit}); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		return 3
	}
	exe, _ := os.Executable()
	env := NewEnv("/proc", exe)
	if req.HoleAtMap {
		env.hook = punchHoleAtMap
	}
	r, err := NewRunner(Options{Env: env, MaxBytes: 64 << 20})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	if code := childSetup(req); code != 0 {
		return code
	}
	var out []childOutcome
	for _, m := range req.Modules {
		before, _ := env.status()
		res := r.Probe(context.Background(), m.Name, m.Module, slog.New(slog.DiscardHandler))
		after, _ := env.status()
		o := childOutcome{Name: m.Name, Reason: string(res.Reason), Success: res.Success,
			CapIPCLock: res.Headroom.CapIPCLock, Rlimit: res.Headroom.Rlimit,
			VmLckBefore: before.Locked, VmLckAfter: after.Locked}
		if res.Err != nil {
			o.Err = res.Err.Error()
		}
		out = append(out, o)
	}
	if n := liveRegions.Load(); n != 0 {
		fmt.Fprintln(os.Stderr, "regions left mapped:", n)
		return 4
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}

// runUnprivileged runs req in a copy of the test binary as uid and gid
// 65534 (nobody), which has no capabilities, and returns each outcome.
func runUnprivileged(t *testing.T, req childRequest) map[string]childOutcome {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("dropping to an unprivileged uid needs root")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The go test binary lives in a directory only its owner may enter.
	dir, err := os.MkdirTemp("", "memlock-probe-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "probe.test")
	copyFile(t, exe, bin)
	spec, _ := json.Marshal(req)
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Dir = dir
	cmd.Env = []string{testChildEnv + "=" + string(spec)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == childSkip {
		t.Skipf("the unprivileged child could not set up: %s", strings.TrimSpace(stderr.String()))
	}
	if err != nil {
		t.Fatalf("unprivileged child: %v: %s", err, stderr.String())
	}
	var outs []childOutcome
	if err := json.Unmarshal(b, &outs); err != nil {
		t.Fatalf("child output %q: %v", b, err)
	}
	m := map[string]childOutcome{}
	for _, o := range outs {
		if o.CapIPCLock {
			t.Fatalf("child %s still has CAP_IPC_LOCK", o.Name)
		}
		m[o.Name] = o
	}
	return m
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// testEnv is an Env whose mlockall child is this test binary (TestMain
// hands it to RunChild).
func testEnv(t *testing.T) *Env {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return NewEnv("/proc", exe)
}

// needIPCLock skips when the locks the test makes could exceed the limit.
func needLockable(t *testing.T, bytes uint64) {
	t.Helper()
	h := testEnv(t).Headroom()
	if h.Effective < bytes {
		t.Skipf("this process can lock only %d bytes, the test needs %d", h.Effective, bytes)
	}
}

func runProbe(t *testing.T, m Module, size uint64) Result {
	t.Helper()
	r, err := NewRunner(Options{Env: testEnv(t), MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	m.Size = Bytes(size)
	var logs strings.Builder
	res := r.Probe(context.Background(), string(m.Mode), m, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if testing.Verbose() || !res.Success {
		t.Log(logs.String())
	}
	return res
}

func TestEveryModeLocksAndVerifies(t *testing.T) {
	const size = 256 << 10
	needLockable(t, size)
	for _, mode := range Modes() {
		t.Run(string(mode), func(t *testing.T) {
			res := runProbe(t, Module{Mode: mode}, size)
			if !res.Success {
				t.Fatalf("probe failed: %s: %v", res.Reason, res.Err)
			}
			for _, p := range Phases() {
				if !res.Ran[p] {
					t.Errorf("phase %s did not run", p)
				}
			}
			if res.Bytes != size || res.Pages != size/uint64(os.Getpagesize()) {
				t.Errorf("bytes %d pages %d", res.Bytes, res.Pages)
			}
			if res.LockedDelta < size {
				t.Errorf("VmLck rose by %d, want at least %d", res.LockedDelta, size)
			}
			if res.ResidentLocked != res.Touched || res.Resident != res.Touched {
				t.Errorf("smaps Locked %d, mincore resident %d, touched %d: want all equal", res.ResidentLocked, res.Resident, res.Touched)
			}
		})
	}
}

func fmtSscanRange(line string, lo, hi *uint64) (int, error) {
	return fmt.Sscanf(line, "%x-%x", lo, hi)
}

// TestTablesAreCopies: a caller that changes what Modes or Reasons
// returned changes nothing the package uses.
func TestTablesAreCopies(t *testing.T) {
	m := Modes()
	m[0] = "changed"
	if got := Modes()[0]; got != ModeMlock {
		t.Errorf("Modes()[0] = %q after a caller wrote to its copy, want %q", got, ModeMlock)
	}
	r := Reasons()
	r[0] = "changed"
	if got := Reasons()[0]; got != ReasonEPERM {
		t.Errorf("Reasons()[0] = %q after a caller wrote to its copy, want %q", got, ReasonEPERM)
	}
	for _, mode := range Modes() {
		if _, ok := prober(mode); !ok {
			t.Errorf("mode %q has no prober", mode)
		}
	}
	if _, ok := prober("changed"); ok {
		t.Error("an unknown mode has a prober")
	}
}
