package collector

import (
	"context"
	"log/slog"
	"os"
	"strconv"
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

// TestPassReplacesListing: when the kernel's task count proves the pass
// whole, the scan takes its pids from the pass, pid 1 included where the
// kernel withholds it from iterators (read from /proc then), and every pid
// /proc lists before and after the scan is among them; the scanned count
// equals that list.
func TestPassReplacesListing(t *testing.T) {
	bpftest.RequireRoot(t)
	m, err := bpf.Open()
	if err != nil {
		t.Skipf("cannot load the task iterator here: %v", err)
	}
	defer m.Close()
	cfg := DefaultConfig()
	cfg.Tasks = m
	ps, err := newProcessScanner(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if !ps.pass.wholeView {
		t.Skip("this host's /proc hides pids (hidepid): the listing is always made")
	}
	var res *processScan
	var before, pids []int
	for try := 0; try < 20; try++ { // other processes starting or ending make the counts differ
		before = listPids(t)
		res = ps.scan(context.Background())
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.pidsFromPass {
			bufs := ps.bufs.get()
			pids = append([]int(nil), bufs.pids...)
			ps.bufs.put(bufs)
			break
		}
	}
	if !res.pidsFromPass {
		t.Skip("the task count never matched the pass in 20 tries (a busy host)")
	}
	after := listPids(t)
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	if !in[1] {
		t.Error("pid 1 not scanned")
	}
	stable := map[int]bool{}
	for _, p := range after {
		stable[p] = true
	}
	for _, p := range before {
		if stable[p] && !in[p] {
			t.Errorf("pid %d listed by /proc before and after is not in the pass's list", p)
		}
	}
	if res.scanned > len(pids) || res.scanned < len(pids)-5 {
		t.Errorf("scanned %d of %d pids", res.scanned, len(pids))
	}
}

func listPids(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		if p, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}
