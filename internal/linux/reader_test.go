package linux

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReaderRealProc(t *testing.T) {
	d, err := OpenDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer d.Close()
	r := NewReader(64) // small, so the buffer has to grow
	pids, err := r.Pids(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pids, os.Getpid()) || !slices.Contains(pids, 1) {
		t.Fatalf("own pid %d or pid 1 missing from %d pids", os.Getpid(), len(pids))
	}
	b, err := r.ReadPid(d, os.Getpid(), "status")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile("/proc/self/status")
	// The files differ only in fields that change between reads (e.g. context switches).
	if !strings.HasPrefix(string(b), "Name:") || len(b) < len(want)/2 {
		t.Fatalf("read %q", b)
	}
	var s Status
	if err := ParseStatus(b, &s); err != nil {
		t.Fatal(err)
	}
	if int(s.UID) != os.Getuid() {
		t.Errorf("uid %d, want %d", s.UID, os.Getuid())
	}
	// A pid that does not exist reads as ENOENT, which the scanner treats as vanished.
	if _, err := r.ReadPid(d, 1<<30, "status"); !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing pid: %v", err)
	}
}

func TestReaderBounds(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "42"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	huge := make([]byte, MaxFileSize+1)
	if err := os.WriteFile(filepath.Join(dir, "42", "status"), huge, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "42", "limits"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := NewReader(16)
	pids, err := r.Pids(d, nil)
	if err != nil || !slices.Equal(pids, []int{42}) {
		t.Fatalf("pids %v, %v", pids, err)
	}
	if _, err := r.ReadPid(d, 42, "status"); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge file: %v", err)
	}
	if b, err := r.ReadPid(d, 42, "limits"); err != nil || len(b) != 0 {
		t.Errorf("empty file: %q, %v", b, err)
	}
	// Symlinks are not followed: a hostile tree cannot point a pid file elsewhere.
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "42", "smaps_rollup")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadPid(d, 42, "smaps_rollup"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("symlink: %v", err)
	}
}

func TestAtoiName(t *testing.T) {
	for in, want := range map[string]int{"1\x00": 1, "4194304\x00": 4194304, "12": 12} {
		if got, ok := atoiName([]byte(in)); !ok || got != want {
			t.Errorf("%q: %d %v", in, got, ok)
		}
	}
	for _, in := range []string{"\x00", "self\x00", "0\x00", "12a\x00", "99999999999\x00", ""} {
		if got, ok := atoiName([]byte(in)); ok {
			t.Errorf("%q parsed as %d", in, got)
		}
	}
}

// TestReadPidFollowsNoLink: a pid directory that is a symlink is not
// followed by ReadPid (nor listed by Pids), while ReadFile may pass
// through a link that is not the last element ("self/status").
func TestReadPidFollowsNoLink(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "100"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "100", "status"), []byte("Name:\tx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"111", "self"} {
		if err := os.Symlink("100", filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := NewReader(64)
	if pids, err := r.Pids(d, nil); err != nil || !slices.Equal(pids, []int{100}) {
		t.Errorf("pids %v, %v: want only the directory 100", pids, err)
	}
	if _, err := r.ReadPid(d, 111, "status"); err == nil {
		t.Error("ReadPid followed the pid directory link 111 -> 100")
	}
	if b, err := r.ReadFile(d, "self/status"); err != nil || string(b) != "Name:\tx\n" {
		t.Errorf("ReadFile self/status: %q, %v", b, err)
	}
}
