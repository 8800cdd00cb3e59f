package bpf

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTasksSelf: the test process itself, as the kernel reports it through
// getrlimit, getuid and /proc/self/comm.
func TestTasksSelf(t *testing.T) {
	m := openModule(t)
	s := snapshot(t, m)
	self := s.find(os.Getpid())
	if self == nil {
		t.Fatalf("own pid %d missing from %d tasks", os.Getpid(), len(s.Tasks))
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		t.Fatal(err)
	}
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	if self.MemlockSoft != lim.Cur || self.MemlockHard != lim.Max {
		t.Errorf("limits %d/%d, getrlimit says %d/%d", self.MemlockSoft, self.MemlockHard, lim.Cur, lim.Max)
	}
	if self.UID != uint32(os.Getuid()) {
		t.Errorf("uid %d, getuid %d", self.UID, os.Getuid())
	}
	if got, want := self.Comm(), strings.TrimSpace(string(comm)); got != want {
		t.Errorf("comm %q, /proc/self/comm %q", got, want)
	}
	if self.Flags&(FlagLeader|FlagMM) != FlagLeader|FlagMM || self.Flags&FlagKernelThread != 0 {
		t.Errorf("flags %#x", self.Flags)
	}
	if self.User < 0 || self.Charge < 0 {
		t.Errorf("no user (%d) or ucounts (%d)", self.User, self.Charge)
	}
}

// TestTasksContext: a cancelled context stops the read.
func TestTasksContext(t *testing.T) {
	m := openModule(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Tasks(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	snapshot(t, m) // and the module still works
}

// TestClosed: Tasks after Close is an error, not a crash.
func TestClosed(t *testing.T) {
	m := openModule(t)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Tasks(context.Background()); err == nil {
		t.Fatal("Tasks after Close succeeded")
	}
}
