package linux

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/procfs"
)

// TestParseMemAvailableReal reads this machine's /proc/meminfo and checks
// ParseMeminfo's MemAvailable against procfs' parse of the same bytes.
func TestParseMemAvailableReal(t *testing.T) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Skipf("no /proc/meminfo: %v", err)
	}
	m, err := ParseMeminfo(b)
	if err != nil || !m.HasMemAvailable {
		t.Fatalf("ParseMeminfo: %v, MemAvailable read: %v", err, m.HasMemAvailable)
	}
	got := m.MemAvailable
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
	const req = "MemTotal: 100 kB\nMlocked: 2 kB\nUnevictable: 3 kB\n"
	for _, in := range []string{"MemAvailable: 12 MB\n", "MemAvailable: -1 kB\n", "MemAvailable: 99999999999999999999 kB\n"} {
		if _, err := ParseMeminfo([]byte(req + in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseMeminfo(%q): %v, want ErrMalformed", req+in, err)
		}
	}
	// A node's meminfo has no MemAvailable: parsed, and said absent.
	m, err := ParseMeminfo([]byte(req))
	if err != nil || m.HasMemAvailable {
		t.Errorf("without MemAvailable: %+v, %v; want it parsed and absent", m, err)
	}
}
