package collector

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/bpf/bpftest"
)

// TestBPFMetricsLint: the process and user collectors on the BPF path, on
// the real /proc and kernel, pass the linter, and serve the per-user kernel
// charges and memlock_scan_source_info{source="bpf"} for a locking child.
func TestBPFMetricsLint(t *testing.T) {
	bpftest.RequireRoot(t)
	m, err := bpf.Open()
	if err != nil {
		t.Skipf("cannot load the task iterator here: %v", err)
	}
	defer m.Close()
	c := bpftest.Start(t, bpftest.Opts{UID: bpftest.FreshUID(t)}, "lock", 64<<10)
	c.Expect("ready")
	cfg := DefaultConfig()
	cfg.Tasks = m
	e, err := New(cfg, []string{"process", "user"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if src, reason := e.ScanSource(); src != SourceBPF || reason != "" {
		t.Fatalf("scan source %q (%q), want bpf", src, reason)
	}
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	n := testutil.CollectAndCount(e, "memlock_user_kernel_locked_vm_bytes", "memlock_user_kernel_shm_locked_bytes", "memlock_scan_source_info")
	if n < 3 {
		t.Errorf("%d series of the BPF-only metrics, want the child's user's two and the source", n)
	}
	out, err := testutil.CollectAndFormat(e, expfmt.TypeTextPlain, "memlock_scan_source_info")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `memlock_scan_source_info{reason="",source="bpf"} 1`) {
		t.Errorf("source metric:\n%s", out)
	}
}
