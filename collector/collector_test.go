package collector

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fixtureConfig reads the fixture tree in testdata.
func fixtureConfig() Config {
	cfg := DefaultConfig()
	cfg.ProcPath = filepath.Join("testdata", "proc")
	cfg.SysPath = filepath.Join("testdata", "sys")
	return cfg
}

func newExporter(t testing.TB, cfg Config, names ...string) *Exporter {
	t.Helper()
	e, err := New(cfg, names, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// gatherText gathers reg and renders it in the text format, leaving out the
// scrape durations and the exporter's own IPC namespace.
func gatherText(t testing.TB, g prometheus.Gatherer) []byte {
	t.Helper()
	b, err := renderText(g, func(name string) bool {
		// The IPC namespace is where the test runs, not what a fixture
		// says (TestTruthSysvIPC checks it).
		return name != "memlock_sysvipc_host_ipc_namespace"
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// renderText gathers g and renders the families keep accepts in the text
// format, never the scrape durations, which differ on every run.
func renderText(g prometheus.Gatherer, keep func(name string) bool) ([]byte, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for _, mf := range mfs {
		if mf.GetName() == "memlock_scrape_collector_duration_seconds" || !keep(mf.GetName()) {
			continue
		}
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// assertGolden scrapes collector with cfg and compares the families whose
// name starts with prefix (all for "") and the collectors' success with
// the file at path, or rewrites it with -update. The collector must
// succeed.
func assertGolden(t *testing.T, cfg Config, collector, prefix, path string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newExporter(t, cfg, collector))
	got, err := renderText(reg, func(name string) bool {
		return name != "memlock_sysvipc_host_ipc_namespace" &&
			(strings.HasPrefix(name, prefix) || name == "memlock_scrape_collector_success")
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `memlock_scrape_collector_success{collector="`+collector+`"} 1`) {
		t.Errorf("collector %s did not succeed:\n%s", collector, got)
	}
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./collector -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("exposition differs from %s (go test ./collector -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		collector string
		cfg       func(*Config)
		file      string
	}{
		{"system", nil, "system.prom"},
		{"process", nil, "process.prom"},
		{"process", func(c *Config) {
			c.Process.Include = regexp.MustCompile("^(?:nginx)$")
			c.Process.Exclude = regexp.MustCompile("^(?:fio)$")
			c.Process.MaxProcesses = 2
		}, "process_include_exclude_cap.prom"},
		{"process", func(c *Config) { c.Process.Smaps = false }, "process_no_smaps.prom"},
		{"user", nil, "user.prom"},
		{"sysvipc", nil, "sysvipc.prom"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cfg := fixtureConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			assertGolden(t, cfg, tc.collector, "", filepath.Join("testdata", "golden", tc.file))
		})
	}
}

// TestLint runs the Prometheus linter (promtool check metrics) over every
// collector, on the fixtures and on this machine's /proc.
func TestLint(t *testing.T) {
	names := []string{}
	for _, c := range Available() {
		names = append(names, c.Name)
	}
	for name, cfg := range map[string]Config{"fixture": fixtureConfig(), "real": DefaultConfig()} {
		problems, err := testutil.CollectAndLint(newExporter(t, cfg, names...))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
}

// TestRealProc checks the pedantic registry accepts a real scrape and every
// collector succeeds on this machine.
func TestRealProc(t *testing.T) {
	names := []string{}
	for _, c := range Available() {
		names = append(names, c.Name)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newExporter(t, DefaultConfig(), names...))
	out := string(gatherText(t, reg))
	for _, n := range names {
		if !strings.Contains(out, `memlock_scrape_collector_success{collector="`+n+`"} 1`) {
			t.Errorf("collector %s failed on the real /proc:\n%s", n, out)
		}
	}
	if !strings.Contains(out, "memlock_processes_scanned ") {
		t.Error("no scanned count")
	}
}

// copyTree copies the fixture tree so a test can break part of it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func scrapeText(t *testing.T, cfg Config, names ...string) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newExporter(t, cfg, names...))
	return string(gatherText(t, reg))
}

func TestMalformedFileFailsOnlyItsCollector(t *testing.T) {
	cfg := fixtureConfig()
	cfg.ProcPath = copyTree(t, cfg.ProcPath)
	if err := os.WriteFile(filepath.Join(cfg.ProcPath, "vmstat"), []byte("nr_mlock banana\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// One process's status is garbage: the others are still reported.
	if err := os.WriteFile(filepath.Join(cfg.ProcPath, "200", "status"), []byte("\x00\x01garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := scrapeText(t, cfg, "system", "process", "user", "sysvipc")
	for _, want := range []string{
		`memlock_scrape_collector_success{collector="system"} 0`,
		`memlock_scrape_collector_success{collector="process"} 0`,
		// The user sums lack the process left out: they are short, and say so.
		`memlock_scrape_collector_success{collector="user"} 0`,
		`memlock_scrape_collector_success{collector="sysvipc"} 1`,
		`memlock_system_mlocked_bytes 9.453568e+06`, // meminfo was read before vmstat failed
		`memlock_process_locked_bytes{comm="java",container_id="",pid="100",pod_uid="",uid="1000"} 1.073741824e+09`,
		`memlock_process_read_failures{file="status",reason="malformed"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, `pid="200"`) {
		t.Error("the process with a malformed status was reported")
	}
}

func TestVanishedAndUnreadable(t *testing.T) {
	cfg := fixtureConfig()
	cfg.ProcPath = copyTree(t, cfg.ProcPath)
	// 100 exits between the scan and the limits read; 600's smaps cannot be read.
	if err := os.Remove(filepath.Join(cfg.ProcPath, "100", "limits")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(cfg.ProcPath, "600", "smaps_rollup")); err != nil {
		t.Fatal(err)
	}
	// A pid directory whose status is already gone.
	if err := os.MkdirAll(filepath.Join(cfg.ProcPath, "700"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := scrapeText(t, cfg, "process")
	if !strings.Contains(out, `memlock_scrape_collector_success{collector="process"} 1`) {
		t.Errorf("vanished processes failed the collector:\n%s", out)
	}
	if strings.Contains(out, `pid="100"`) || strings.Contains(out, `pid="700"`) {
		t.Errorf("a vanished process was reported:\n%s", out)
	}
	// A pid whose directory lacks smaps_rollup and smaps has not vanished:
	// it is reported without resident bytes, and the missing file counted.
	if !strings.Contains(out, `memlock_process_locked_bytes{comm="java",container_id="",pid="600"`) ||
		strings.Contains(out, `memlock_process_locked_resident_bytes{comm="java",container_id="",pid="600"`) {
		t.Errorf("pid 600 without smaps files must be reported, without resident bytes:\n%s", out)
	}
	if !strings.Contains(out, `memlock_process_read_failures{file="smaps",reason="error"} 1`) ||
		strings.Contains(out, `file="limits"`) {
		t.Errorf("the missing smaps files (and only they) must be counted:\n%s", out)
	}
	if !strings.Contains(out, "memlock_processes_scanned 6") {
		t.Errorf("scanned count (six status files, the kernel thread included) should leave out pid 700:\n%s", out)
	}
}

// TestSmapsWithoutRollup: a kernel before 4.14 has no smaps_rollup. The
// resident locked bytes come from summing smaps' Locked: lines then. The
// smaps file is a real one (a process that locked 8 KiB of a shared
// mapping on this machine, trimmed to three entries), matching pid 600's
// VmLck of 8 kB.
func TestSmapsWithoutRollup(t *testing.T) {
	cfg := fixtureConfig()
	cfg.ProcPath = copyTree(t, cfg.ProcPath)
	if err := os.Remove(filepath.Join(cfg.ProcPath, "600", "smaps_rollup")); err != nil {
		t.Fatal(err)
	}
	smaps := readFixture(t, filepath.Join("testdata", "smaps_600_no_rollup"))
	if err := os.WriteFile(filepath.Join(cfg.ProcPath, "600", "smaps"), smaps, 0o644); err != nil {
		t.Fatal(err)
	}
	out := scrapeText(t, cfg, "process")
	want := `memlock_process_locked_resident_bytes{comm="java",container_id="",pid="600",pod_uid="",uid="1000"} 8192`
	if !strings.Contains(out, want) || strings.Contains(out, "read_failures") ||
		!strings.Contains(out, `memlock_scrape_collector_success{collector="process"} 1`) {
		t.Errorf("want %s from smaps, no failure:\n%s", want, out)
	}
}

func TestPermissionDeniedIsCounted(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root reads mode 000 files; drop to an unprivileged user in cmd's tests instead.
		t.Skip("root bypasses file permissions; covered by the unprivileged end-to-end test")
	}
	cfg := fixtureConfig()
	cfg.ProcPath = copyTree(t, cfg.ProcPath)
	if err := os.Chmod(filepath.Join(cfg.ProcPath, "100", "smaps_rollup"), 0); err != nil {
		t.Fatal(err)
	}
	out := scrapeText(t, cfg, "process")
	if !strings.Contains(out, `memlock_process_read_failures{file="smaps_rollup",reason="permission"} 1`) {
		t.Errorf("permission failure not counted:\n%s", out)
	}
}

type panicCollector struct{}

func (panicCollector) Describe(chan<- *prometheus.Desc) {}
func (panicCollector) Update(context.Context, *Scrape, chan<- prometheus.Metric) error {
	panic("boom")
}

func TestPanicIsRecovered(t *testing.T) {
	e := newExporter(t, fixtureConfig(), "system")
	e.collectors["boom"] = panicCollector{}
	e.names = append(e.names, "boom")
	reg := prometheus.NewRegistry()
	reg.MustRegister(e)
	out := string(gatherText(t, reg))
	if !strings.Contains(out, `memlock_scrape_collector_success{collector="boom"} 0`) ||
		!strings.Contains(out, `memlock_scrape_collector_success{collector="system"} 1`) {
		t.Errorf("panic not contained:\n%s", out)
	}
}

func TestDeadline(t *testing.T) {
	e := newExporter(t, DefaultConfig(), "process", "system")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := e.Scrape(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	out := string(gatherText(t, reg))
	if !strings.Contains(out, `memlock_scrape_collector_success{collector="process"} 0`) {
		t.Errorf("a process scan past its deadline succeeded:\n%s", out)
	}
}

func TestScrapeFilter(t *testing.T) {
	e := newExporter(t, fixtureConfig(), "system", "user")
	if _, err := e.Scrape(context.Background(), []string{"process"}); err == nil {
		t.Error("a collector that is not enabled was accepted")
	}
	c, err := e.Scrape(context.Background(), []string{"user"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	out := string(gatherText(t, reg))
	if strings.Contains(out, "memlock_system_") || !strings.Contains(out, "memlock_user_processes_locked_bytes") {
		t.Errorf("filter not applied:\n%s", out)
	}
}

func TestNewRejectsUnknownCollector(t *testing.T) {
	if _, err := New(fixtureConfig(), []string{"nope"}, nil); err == nil {
		t.Error("unknown collector accepted")
	}
}

func TestSelectProcesses(t *testing.T) {
	c := []procInfo{
		{pid: 1, locked: 10}, {pid: 2, locked: 30}, {pid: 3, named: true}, {pid: 4, pinned: 30}, {pid: 5, locked: 5},
	}
	got, omitted := selectProcesses(c, 3)
	var pids []int
	for _, p := range got {
		pids = append(pids, p.pid)
	}
	// Named first, then by locked+pinned, ties by pid.
	if omitted != 2 || len(pids) != 3 || pids[0] != 3 || pids[1] != 2 || pids[2] != 4 {
		t.Errorf("got %v, omitted %d", pids, omitted)
	}
	if _, omitted := selectProcesses(c, 0); omitted != 0 {
		t.Error("no cap still omitted processes")
	}
}

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("open 12/status: %w", err) }
	for err, want := range map[error]string{
		wrap(unix.ENOENT):            "vanished",
		wrap(unix.ESRCH):             "vanished",
		wrap(unix.EACCES):            "permission",
		wrap(unix.EPERM):             "permission",
		wrap(linux.ErrMalformed):     "malformed",
		wrap(linux.ErrTooLarge):      "malformed",
		wrap(unix.EIO):               "error",
		errors.New("something else"): "error",
	} {
		if got := classify(err); got != want {
			t.Errorf("%v: %s, want %s", err, got, want)
		}
	}
}
