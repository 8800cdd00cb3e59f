package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const openChildEnv = "MEMLOCK_BPF_OPEN_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(openChildEnv) == "1" {
		os.Exit(openChild())
	}
	code := m.Run()
	if childPath != "" {
		os.RemoveAll(filepath.Dir(childPath)) // the gcc-built testdata/child.c
	}
	os.Exit(code)
}

// openChild is the test binary run as another user: it loads the iterator,
// runs it once and prints what happened on one line.
func openChild() int {
	if os.Getenv("MEMLOCK_BPF_ZERO_LIMIT") == "1" {
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{}); err != nil {
			fmt.Println("error", err)
			return 0
		}
	}
	mod, err := Open()
	switch {
	case errors.Is(err, ErrPermission):
		fmt.Println("permission", err)
		return 0
	case err != nil:
		fmt.Println("error", err)
		return 0
	}
	defer mod.Close()
	s, err := mod.Tasks(context.Background())
	if err != nil {
		fmt.Println("error", err)
		return 0
	}
	fmt.Println("ok", len(s.Tasks), s.find(os.Getpid()) != nil)
	return 0
}

// TestPrivileges: what loading needs, as uid 65534 with only the given
// capabilities (ambient, so they survive exec as a non-root user). CAP_BPF
// and CAP_PERFMON suffice; either alone is refused with ErrPermission
// (kernel/bpf/syscall.c bpf_prog_load: CAP_BPF for a non-socket-filter
// program, CAP_PERFMON for a tracing one); CAP_SYS_ADMIN stands in for both
// (bpf_capable, perfmon_capable) but is never needed.
func TestPrivileges(t *testing.T) {
	requireRoot(t)
	openModule(t) // skips where this kernel cannot load it at all
	self := copyTestBinary(t)
	const nobody = 65534
	for _, tc := range []struct {
		name      string
		caps      []uintptr
		zeroLimit bool // RLIMIT_MEMLOCK 0: BPF memory is charged to the memcg (5.11+)
		want      string
	}{
		{"CAP_BPF+CAP_PERFMON,RLIMIT_MEMLOCK=0", []uintptr{unix.CAP_BPF, unix.CAP_PERFMON}, true, "ok"},
		{"CAP_BPF+CAP_PERFMON", []uintptr{unix.CAP_BPF, unix.CAP_PERFMON}, false, "ok"},
		{"none", nil, false, "permission"},
		{"CAP_BPF", []uintptr{unix.CAP_BPF}, false, "permission"},
		{"CAP_PERFMON", []uintptr{unix.CAP_PERFMON}, false, "permission"},
		{"CAP_SYS_ADMIN", []uintptr{unix.CAP_SYS_ADMIN}, false, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(self, "-test.run=^$")
			cmd.Env = []string{openChildEnv + "=1"}
			if tc.zeroLimit {
				cmd.Env = append(cmd.Env, "MEMLOCK_BPF_ZERO_LIMIT=1")
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: nobody, Gid: nobody},
				AmbientCaps: tc.caps,
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			line := strings.TrimSpace(string(out))
			kind, rest, _ := strings.Cut(line, " ")
			if kind != tc.want {
				t.Fatalf("got %q, want %s", line, tc.want)
			}
			if kind == "ok" && !strings.HasSuffix(rest, " true") {
				t.Errorf("child's pass lacks the child: %q", line)
			}
			t.Logf("uid %d with %s: %s", nobody, tc.name, line)
		})
	}
}

// copyTestBinary copies the running test binary where uid 65534 may run it
// (go test's build directory is private to root).
func copyTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "memlock-bpf-priv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "bpf.test")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
