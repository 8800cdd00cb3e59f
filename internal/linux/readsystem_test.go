package linux

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadSystemFile: the one bounded reader of system-wide files reads the
// real /proc/meminfo whole, takes a file of exactly its limit, and refuses
// one byte more, a file without a final newline, a directory, a FIFO and a
// symlink as the last element.
func TestReadSystemFile(t *testing.T) {
	b, err := ReadSystemFile("/proc/meminfo", MaxFileSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMeminfo(b); err != nil {
		t.Errorf("real meminfo: %v", err)
	}

	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const limit = 64
	exact := write("exact", strings.Repeat("x", limit-1)+"\n")
	if b, err := ReadSystemFile(exact, limit); err != nil || len(b) != limit {
		t.Errorf("file of exactly the limit: %d bytes, %v", len(b), err)
	}
	over := write("over", strings.Repeat("x", limit)+"\n")
	if _, err := ReadSystemFile(over, limit); !errors.Is(err, ErrTooLarge) {
		t.Errorf("file one byte over the limit: %v, want ErrTooLarge", err)
	}
	cut := write("cut", "MemTotal: 1 kB\nMlocked: 2")
	if _, err := ReadSystemFile(cut, limit); !errors.Is(err, ErrMalformed) {
		t.Errorf("file without final newline: %v, want ErrMalformed", err)
	}
	if _, err := ReadSystemFile(dir, limit); !errors.Is(err, ErrMalformed) {
		t.Errorf("directory: %v, want ErrMalformed", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSystemFile(fifo, limit); !errors.Is(err, ErrMalformed) {
		t.Errorf("FIFO: %v, want ErrMalformed (and no wait for a writer)", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(exact, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSystemFile(link, limit); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("symlink: %v, want ELOOP", err)
	}
	if _, err := ReadSystemFile(filepath.Join(dir, "missing"), limit); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want os.ErrNotExist", err)
	}
}
