package linux

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/procfs"
)

// TestParseMemAvailableReal reads this machine's /proc/meminfo and checks
// the value against procfs' parse of the same bytes.
func TestParseMemAvailableReal(t *testing.T) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skipf("no /proc/meminfo: %v", err)
	}
	got, err := ParseMemAvailable(b)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "meminfo"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := fs.Meminfo()
	if err != nil || mi.MemAvailableBytes == nil {
		t.Fatalf("procfs: %v", err)
	}
	if got != *mi.MemAvailableBytes {
		t.Errorf("MemAvailable %d bytes, procfs says %d", got, *mi.MemAvailableBytes)
	}
}

func TestParseMemAvailableMalformed(t *testing.T) {
	for _, in := range []string{"", "MemTotal: 1 kB\n", "MemAvailable: 12 MB\n", "MemAvailable: -1 kB\n", "MemAvailable: 99999999999999999999 kB\n"} {
		if _, err := ParseMemAvailable([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseMemAvailable(%q): %v, want ErrMalformed", in, err)
		}
	}
}
