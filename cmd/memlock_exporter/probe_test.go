package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/collector"
	"github.com/memlock-exporter/memlock_exporter/probe"
)

// The mlockall probe's child is the exporter's own binary, here this test
// binary: init runs before TestMain, as main's first line does.
func init() {
	if probe.IsChild() {
		os.Exit(probe.RunChild())
	}
}

func probeGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func probePost(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func probeMustContain(t *testing.T, what, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, l) {
			t.Errorf("%s lacks %q", what, l)
		}
	}
}

// TestProbeEndToEnd runs every mode for real through /probe and through
// the background schedule onto /metrics, reloads the config file by POST
// and by SIGHUP, and checks the exporter holds no locked memory after.
func TestProbeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "probes.yml")
	if err := os.WriteFile(cfg, []byte("modules:\n  onfault_128k:\n    mode: onfault\n    size: 128KiB\n    touch_size: 32KiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var o options
	args := []string{"--probe.enable", "--probe.interval=0", "--probe.modes=mlock,onfault,populate,mlockall",
		"--probe.size=64KiB", "--probe.config.file=" + cfg, "--web.disable-exporter-metrics"}
	if _, err := newApp(&o).Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	exp, err := collector.New(o.cfg, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runner, err := startProbes(ctx, &o.probe, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Stop()
	if h := probe.NewEnv("", "").Headroom(); h.Effective < 256<<10 {
		t.Skipf("this process can lock only %d bytes", h.Effective)
	}
	mux, err := newMux(&o, exp, runner, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, m := range []string{"mlock", "onfault", "populate", "mlockall", "onfault_128k"} {
		code, body := probeGet(t, srv.URL+"/probe?module="+m)
		if code != 200 {
			t.Fatalf("/probe?module=%s: %d %s", m, code, body)
		}
		probeMustContain(t, "/probe?module="+m, body, "probe_success 1", `probe_memlock_phase_duration_seconds{phase="lock"}`,
			`probe_memlock_failed_due_to{reason="verification"} 0`, `probe_memlock_headroom_bytes{constraint="effective"}`)
	}
	_, body := probeGet(t, srv.URL+"/probe?module=onfault_128k")
	probeMustContain(t, "onfault_128k", body, "probe_memlock_bytes 131072", "probe_memlock_locked_delta_bytes 131072",
		"probe_memlock_resident_locked_bytes 32768", "probe_memlock_touched_bytes 32768")
	_, body = probeGet(t, srv.URL+"/probe?module=mlock&debug=true")
	probeMustContain(t, "debug=true", body, "Logs for the probe:", "probe succeeded", "msg=verified", "Metrics that would have been returned:", "probe_success 1")
	if code, _ := probeGet(t, srv.URL+"/probe"); code != http.StatusBadRequest {
		t.Errorf("/probe without module: %d", code)
	}
	if code, _ := probeGet(t, srv.URL+"/probe?module=nope"); code != http.StatusBadRequest {
		t.Errorf("/probe?module=nope: %d", code)
	}

	runner.RunScheduled(ctx)
	_, body = probeGet(t, srv.URL+"/metrics")
	for _, m := range []string{"mlock", "onfault", "populate", "mlockall"} {
		probeMustContain(t, "/metrics", body,
			`memlock_probe_success{mode="`+m+`"} 1`,
			`memlock_probe_runs_total{mode="`+m+`"} 1`,
			`memlock_probe_bytes{mode="`+m+`"} 65536`,
			`memlock_probe_failures_total{mode="`+m+`",reason="eperm"} 0`,
			`memlock_probe_phase_duration_seconds_count{mode="`+m+`",phase="lock"} 1`,
			`memlock_probe_duration_seconds_count{mode="`+m+`"} 1`,
			`memlock_probe_seconds_per_page{mode="`+m+`"}`,
			`memlock_probe_last_run_timestamp_seconds{mode="`+m+`"}`)
	}
	probeMustContain(t, "/metrics", body, `memlock_probe_phase_duration_seconds_bucket{mode="mlock",phase="lock",le="1e-06"}`,
		`memlock_probe_headroom_bytes{constraint="effective"}`, `memlock_probe_headroom_bytes{constraint="rlimit"}`,
		`memlock_probe_headroom_bytes{constraint="memory_available"}`, "memlock_exporter_limit_soft_bytes",
		"memlock_exporter_limit_hard_bytes", "memlock_exporter_cap_ipc_lock", "memlock_exporter_locked_bytes 0",
		"memlock_probe_config_last_reload_successful 1")

	// The runner's metrics pass the linter, and the histograms are native too.
	if problems, err := testutil.CollectAndLint(runner); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(runner)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	native := false
	for _, mf := range mfs {
		if mf.GetName() == "memlock_probe_phase_duration_seconds" {
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				native = native || (h.Schema != nil && h.GetSampleCount() > 0 && len(h.GetPositiveSpan()) > 0)
			}
		}
	}
	if !native {
		t.Error("memlock_probe_phase_duration_seconds has no native histogram buckets")
	}

	// Reload by POST: a bad file keeps the modules in use.
	if err := os.WriteFile(cfg, []byte("modules:\n  mlock_8k:\n    mode: mlock\n    size: 8KiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := probePost(t, srv.URL+"/-/reload"); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	if _, body := probeGet(t, srv.URL+"/probe?module=mlock_8k"); !strings.Contains(body, "probe_success 1") {
		t.Errorf("reloaded module: %s", body)
	}
	if err := os.WriteFile(cfg, []byte("modules:\n  broken:\n    mode: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := probePost(t, srv.URL+"/-/reload"); code != http.StatusInternalServerError {
		t.Errorf("bad reload: %d, want 500", code)
	}
	if code, _ := probeGet(t, srv.URL+"/-/reload"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload: %d, want 405", code)
	}
	if _, ok := runner.Module("mlock_8k"); !ok {
		t.Error("a failed reload dropped the modules in use")
	}
	_, body = probeGet(t, srv.URL+"/metrics")
	probeMustContain(t, "/metrics", body, "memlock_probe_config_last_reload_successful 0")

	// Reload by SIGHUP (run's handler, reloadOnHUP).
	if err := os.WriteFile(cfg, []byte("modules:\n  by_hup:\n    mode: populate\n    size: 8KiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHUP(ctx, hup, runner, logger)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := runner.Module("by_hup"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the probe config")
		}
	}

	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(st), "VmLck:\t       0 kB") {
		t.Errorf("the exporter holds locked memory after its probes:\n%s", st)
	}
}

// Bad --probe.* values exit 2 with a message that names the flag.
func TestProbeBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--probe.size=lots"}, "probe.size"},
		{[]string{"--probe.max-bytes=12parsecs"}, "probe.max-bytes"},
		{[]string{"--probe.enable", "--probe.modes=mlock,mlockx"}, "--probe.modes"},
		{[]string{"--probe.enable", "--probe.modes=mlock,mlock"}, "--probe.modes"},
		{[]string{"--probe.size=1GiB"}, "--probe.max-bytes"},
		{[]string{"--probe.max-bytes=1"}, "--probe.max-bytes"},
		{[]string{"--probe.interval=-1s"}, "--probe.interval"},
		{[]string{"--probe.timeout=0s"}, "--probe.timeout"},
		{[]string{"--probe.config.file=/nonexistent/probes.yml"}, "--probe.config.file"},
		// 0 meant auto (16 MiB locked), and max-bytes 0 said "not auto".
		{[]string{"--probe.size=0"}, `--probe.size="0": size "0": malformed: zero bytes; write auto for half the headroom`},
		{[]string{"--probe.size=0KiB"}, `zero bytes`},
		{[]string{"--probe.max-bytes=0"}, `--probe.max-bytes="0": size "0": malformed: zero bytes`},
		{[]string{"--probe.max-bytes=auto"}, `--probe.max-bytes="auto": takes a size (e.g. 16MiB), not auto`},
		{[]string{"--probe.max-bytes=100"}, "--probe.max-bytes must be at least one page"},
		{[]string{"--probe.max-requests=0"}, "--probe.max-requests must be at least 1"},
	} {
		var stderr strings.Builder
		if code := run(tc.args, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", tc.args, code, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.flag) {
			t.Errorf("%v: message %q does not name %s", tc.args, stderr.String(), tc.flag)
		}
		if strings.Contains(stderr.String(), "not auto\n") && !strings.Contains(stderr.String(), "=\"auto\"") {
			t.Errorf("%v: message %q calls a number auto", tc.args, stderr.String())
		}
	}
}

// TestProbeSizeAuto runs the built exporter as nobody (no capability) with
// RLIMIT_MEMLOCK set by prlimit(1), --probe.size=auto and a background
// schedule, and reads what the first background probe locked: half the
// headroom rounded up to whole pages, and never above --probe.max-bytes.
// The limit is the binding constraint (a few hundred KiB, far below any
// cgroup or MemAvailable here); the test skips if another one binds.
func TestProbeSizeAuto(t *testing.T) {
	requireLinuxProc(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the exporter as another user")
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("needs prlimit(1) (util-linux) to start the exporter with a lowered RLIMIT_MEMLOCK")
	}
	var hard unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &hard); err != nil {
		t.Fatal(err)
	}
	page := uint64(os.Getpagesize())
	bin, _ := sharedBuild(t)
	for _, tc := range []struct {
		name     string
		limit    uint64
		maxBytes string
		want     uint64
	}{
		// 51 pages: half is 25.5 pages, rounded up to 26.
		{"half_headroom", 51 * page, "16MiB", 26 * page},
		// half of 4 MiB is 2 MiB, above the 1 MiB budget.
		{"capped_by_max_bytes", 4 << 20, "1MiB", 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if hard.Max != unix.RLIM_INFINITY && tc.limit > hard.Max {
				t.Skipf("RLIMIT_MEMLOCK hard limit %d is below the %d the case sets", hard.Max, tc.limit)
			}
			lim := strconv.FormatUint(tc.limit, 10)
			e := startExporterCmd(t, func(addr string) *exec.Cmd {
				cmd := exec.Command(prlimit, "--memlock="+lim+":"+lim, "--", bin, "--web.listen-address="+addr,
					"--probe.enable", "--probe.interval=1h", "--probe.modes=mlock", "--probe.size=auto",
					"--probe.max-bytes="+tc.maxBytes)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
				return cmd
			}, nil)
			mlock := map[string]string{"mode": "mlock"}
			// The first background round starts with the schedule; wait
			// for its result (a wait, not a timed assertion).
			var mfs map[string]*dto.MetricFamily
			for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				mfs = e.scrape(t)
				if runs, _ := value(mfs, "memlock_probe_runs_total", mlock); runs >= 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no background probe result yet\n%s", e.logs)
				}
			}
			if v, _ := value(mfs, "memlock_exporter_cap_ipc_lock", nil); v != 0 {
				t.Fatalf("the exporter has CAP_IPC_LOCK: the limit does not bind")
			}
			rl, _ := value(mfs, "memlock_probe_headroom_bytes", map[string]string{"constraint": "rlimit"})
			eff, _ := value(mfs, "memlock_probe_headroom_bytes", map[string]string{"constraint": "effective"})
			if rl != float64(tc.limit) {
				t.Fatalf("rlimit headroom %v, want the limit %d (VmLck 0 between probes)", rl, tc.limit)
			}
			if eff != rl {
				t.Skipf("another constraint binds below the limit: effective headroom %v, rlimit %v", eff, rl)
			}
			got, _ := value(mfs, "memlock_probe_bytes", mlock)
			ok, _ := value(mfs, "memlock_probe_success", mlock)
			t.Logf("RLIMIT_MEMLOCK %d, --probe.max-bytes=%s: auto probe locked %.0f bytes, success %v", tc.limit, tc.maxBytes, got, ok)
			if got != float64(tc.want) {
				t.Errorf("memlock_probe_bytes %v, want %d\n%s", got, tc.want, e.logs)
			}
			if ok != 1 {
				t.Errorf("the auto-sized probe failed\n%s", e.logs)
			}
		})
	}
}

// limitsField returns the soft and hard "Max locked memory" of
// /proc/self/limits ("unlimited" as -1).
func limitsField(t *testing.T) (soft, hard float64) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/limits")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "Max locked memory"); ok {
			f := strings.Fields(rest)
			conv := func(s string) float64 {
				if s == "unlimited" {
					return -1
				}
				v, err := strconv.ParseFloat(s, 64)
				if err != nil {
					t.Fatalf("limits: %q", l)
				}
				return v
			}
			return conv(f[0]), conv(f[1])
		}
	}
	t.Fatal("no Max locked memory line in /proc/self/limits")
	return 0, 0
}

// TestSelfMetricsWithoutProbes: memlock_exporter_limit_*_bytes,
// _cap_ipc_lock and _locked_bytes describe the exporter itself and are
// served without --probe.enable (before, only with it), with the values
// the kernel shows in /proc/self/limits and /proc/self/status.
func TestSelfMetricsWithoutProbes(t *testing.T) {
	requireLinuxProc(t)
	var o options
	if _, err := newApp(&o).Parse([]string{"--web.disable-exporter-metrics"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	exp, err := collector.New(o.cfg, []string{"system"}, logger)
	if err != nil {
		t.Fatal(err)
	}
	mux, err := newMux(&o, exp, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	body := get(mux, "/metrics").Body.String()
	soft, hard := limitsField(t)
	for name, want := range map[string]float64{
		"memlock_exporter_limit_soft_bytes": soft,
		"memlock_exporter_limit_hard_bytes": hard,
		"memlock_exporter_cap_ipc_lock":     capIPCLock(t, os.Getpid()),
		"memlock_exporter_locked_bytes":     float64(atoiKB(procStatusField(t, os.Getpid(), "VmLck")) << 10),
	} {
		got, ok := metricValue(body, name)
		if want == -1 {
			want = math.Inf(1)
		}
		if !ok || got != want {
			t.Errorf("%s: %v (present %t), want %v", name, got, ok, want)
		}
	}
	if strings.Contains(body, "memlock_probe_") {
		t.Error("probe metrics without --probe.enable")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(probe.NewSelfCollector())
	if problems, err := testutil.CollectAndLint(probe.NewSelfCollector()); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Error(err)
	}
}

// TestOnDemandModesUnscheduled: every built-in mode is a /probe module,
// whether --probe.modes schedules it or not (before, /probe?module=mlockall
// was refused unless --probe.modes named it); the schedule runs only
// --probe.modes.
func TestOnDemandModesUnscheduled(t *testing.T) {
	var o options
	if _, err := newApp(&o).Parse([]string{"--probe.enable", "--probe.interval=0", "--probe.modes=mlock", "--probe.size=16KiB"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	runner, err := startProbes(ctx, &o.probe, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Stop()
	if h := probe.NewEnv("", "").Headroom(); h.Effective < 64<<10 {
		t.Skipf("this process can lock only %d bytes", h.Effective)
	}
	exp, err := collector.New(o.cfg, []string{"system"}, logger)
	if err != nil {
		t.Fatal(err)
	}
	mux, err := newMux(&o, exp, runner, logger)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"mlock", "onfault", "populate"} {
		if w := get(mux, "/probe?module="+m); w.Code != 200 || !strings.Contains(w.Body.String(), "probe_success 1") {
			t.Errorf("/probe?module=%s: %d\n%s", m, w.Code, w.Body)
		}
	}
	// mlockall: served (not 400) whatever its outcome, which depends on the
	// limit (docs/probes.md); with CAP_IPC_LOCK it must succeed.
	w := get(mux, "/probe?module=mlockall")
	if w.Code != 200 {
		t.Errorf("/probe?module=mlockall: %d\n%s", w.Code, w.Body)
	}
	if capIPCLock(t, os.Getpid()) == 1 && !strings.Contains(w.Body.String(), "probe_success 1") {
		t.Errorf("/probe?module=mlockall with CAP_IPC_LOCK:\n%s", w.Body)
	}
	runner.RunScheduled(ctx)
	body := get(mux, "/metrics").Body.String()
	probeMustContain(t, "/metrics", body, `memlock_probe_runs_total{mode="mlock"} 1`)
	if strings.Contains(body, `memlock_probe_runs_total{mode="onfault"}`) || strings.Contains(body, `memlock_probe_runs_total{mode="mlockall"}`) {
		t.Errorf("unscheduled modes on the schedule's metrics:\n%s", body)
	}
}
