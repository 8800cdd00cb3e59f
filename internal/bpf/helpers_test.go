package bpf

import (
	"context"
	"errors"
	"testing"
)

// openModule loads the iterator or skips the test with the reason the
// kernel gave.
func openModule(t testing.TB) *Module {
	t.Helper()
	m, err := Open()
	if errors.Is(err, ErrPermission) || errors.Is(err, ErrNoBTF) || errors.Is(err, ErrNoTaskIter) {
		t.Skipf("cannot load the task iterator here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

func snapshot(t testing.TB, m *Module) *Snapshot {
	t.Helper()
	s, err := m.Tasks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *Snapshot) find(pid int) *Task {
	for i := range s.Tasks {
		if int(s.Tasks[i].PID) == pid {
			return &s.Tasks[i]
		}
	}
	return nil
}
