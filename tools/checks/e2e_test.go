package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// The locker children of TestPrometheusEndToEnd: the test binary itself,
// re-executed with lockerEnv set to "comm,soft limit bytes,bytes to
// lock[,bytes to pin]" (TestMain runs runLocker instead of the tests). It
// names itself comm, lowers its soft RLIMIT_MEMLOCK, mlocks that many
// bytes of a fresh mapping, registers the bytes to pin as an io_uring
// buffer, says "locked" on stdout and sleeps until killed.
const lockerEnv = "MEMLOCK_E2E_LOCKER"

// cgroupEnv names the memory cgroup directory a locker joins first.
const cgroupEnv = "MEMLOCK_E2E_CGROUP"

func runLocker(spec string) {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "locker:", err); os.Exit(3) }
	parts := strings.Split(spec, ",")
	if len(parts) == 3 {
		parts = append(parts, "0")
	}
	if len(parts) != 4 {
		fail(fmt.Errorf("spec %q", spec))
	}
	pin, err := strconv.Atoi(parts[3])
	if err != nil {
		fail(err)
	}
	soft, err1 := strconv.ParseUint(parts[1], 10, 64)
	n, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		fail(fmt.Errorf("spec %q", spec))
	}
	if err := os.WriteFile("/proc/self/comm", []byte(parts[0]), 0); err != nil {
		fail(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		fail(err)
	}
	lim.Cur = soft
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		fail(err)
	}
	if cg := os.Getenv(cgroupEnv); cg != "" {
		// Into the cgroup before locking: a v1 memory cgroup keeps
		// charges where they were made.
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			fail(err)
		}
	}
	if n > 0 {
		b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fail(err)
		}
		if err := unix.Mlock(b); err != nil {
			fail(err)
		}
	}
	if pin > 0 {
		// io_uring registered buffers: pinned (VmPin) and charged to the
		// user against the soft RLIMIT_MEMLOCK (io_uring/rsrc.c).
		var params [120]byte // struct io_uring_params, zeroed
		fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&params[0])), 0)
		if errno != 0 {
			fail(fmt.Errorf("io_uring_setup: %v", errno))
		}
		b, err := unix.Mmap(-1, 0, pin, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			fail(err)
		}
		iov := unix.Iovec{Base: &b[0]}
		iov.SetLen(pin)
		const registerBuffers = 0 // IORING_REGISTER_BUFFERS
		if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, fd, registerBuffers, uintptr(unsafe.Pointer(&iov)), 1, 0, 0); errno != 0 {
			fail(fmt.Errorf("io_uring_register: %v", errno))
		}
	}
	fmt.Println("locked")
	for {
		time.Sleep(time.Hour)
	}
}

// execLimitEnv makes the test binary a wrapper: it lowers its soft
// RLIMIT_MEMLOCK to the variable's value and executes its arguments (the
// test cannot lower another process's limit without CAP_SYS_RESOURCE).
const execLimitEnv = "MEMLOCK_E2E_EXEC_SOFT_MEMLOCK"

func execWithLimit(soft string) {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "exec wrapper:", err); os.Exit(3) }
	n, err := strconv.ParseUint(soft, 10, 64)
	if err != nil || len(os.Args) < 2 {
		fail(fmt.Errorf("%s=%q, args %q", execLimitEnv, soft, os.Args))
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		fail(err)
	}
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		fail(err)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, execLimitEnv+"=") {
			env = append(env, e)
		}
	}
	fail(syscall.Exec(os.Args[1], os.Args[1:], env))
}

// startLocker runs a locker as uid 65534, which has no capability (so
// none of CAP_IPC_LOCK: its limit holds), and waits until it has locked.
// The test binary is copied where uid 65534 may run it (go test's build
// directory is root's only).
func startLocker(t *testing.T, self, comm string, soft, n int) int {
	t.Helper()
	return startPinner(t, self, 65534, comm, soft, n, 0)
}

// startCgroupLocker makes a v1 memory cgroup under the root of the memory
// hierarchy with a limit, and runs a locker as root (CAP_IPC_LOCK: no
// RLIMIT_MEMLOCK) that joins it and locks n bytes. It returns the
// cgroup's path as the exporter labels it, or "" where no v1 memory
// cgroup can be made (then the cgroup alert is not checked).
func startCgroupLocker(t *testing.T, self, name string, limit, n int) string {
	t.Helper()
	paths := startNestedCgroupLocker(t, self, name, []int{limit}, n)
	if paths == nil {
		return ""
	}
	return paths[0]
}

// startNestedCgroupLocker is startCgroupLocker with nested cgroups, one
// per limit (the first under the root, each next one inside the one
// before, as a pod's slice holds its container's scope), the locker in
// the innermost. It returns their paths, outermost first, or nil.
func startNestedCgroupLocker(t *testing.T, self, name string, limits []int, n int) []string {
	t.Helper()
	const v1 = "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(v1, "memory.limit_in_bytes")); err != nil {
		t.Logf("no v1 memory cgroup hierarchy at %s (%v): MemlockCgroupUnevictableNearLimit not checked", v1, err)
		return nil
	}
	var paths []string
	rel := fmt.Sprintf("/memlock-e2e-%d-%s", os.Getpid(), name)
	for i, limit := range limits {
		if i > 0 {
			rel += fmt.Sprintf("/level%d", i)
		}
		dir := filepath.Join(v1, rel)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Logf("cannot make a memory cgroup (%v): MemlockCgroupUnevictableNearLimit not checked", err)
			return nil
		}
		// Removed once the child is reaped and the cgroups inside it are
		// gone (cleanups run last registered first).
		t.Cleanup(func() {
			for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
		})
		if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, rel)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=e2e-cg-%s,%d,%d", lockerEnv, name, 8<<20, n), cgroupEnv+"="+filepath.Join(v1, rel))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("cgroup locker %s: %q %v %s", name, buf, err, stderr.String())
	}
	return paths
}

// startPinner is startLocker as uid, also pinning pin bytes.
func startPinner(t *testing.T, self string, uid uint32, comm string, soft, n, pin int) int {
	t.Helper()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d,%d", lockerEnv, comm, soft, n, pin))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		t.Fatalf("locker %s: %q %v %s", comm, buf, err, stderr.String())
	}
	return cmd.Process.Pid
}

// promAPI is a Prometheus server's HTTP API.
type promAPI string

func (p promAPI) get(t *testing.T, path string, q url.Values, v any) {
	t.Helper()
	resp, err := http.Get(string(p) + path + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if body.Status != "success" {
		t.Fatalf("%s %v: %s", path, q, body.Error)
	}
	if err := json.Unmarshal(body.Data, v); err != nil {
		t.Fatal(err)
	}
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (p promAPI) alerts(t *testing.T) []promAlert {
	t.Helper()
	var d struct {
		Alerts []promAlert `json:"alerts"`
	}
	p.get(t, "/api/v1/alerts", nil, &d)
	return d.Alerts
}

// shortFor is the rule files with every for: shortened to 3s, for a test
// that cannot wait 15 minutes; nothing else changes.
var forLine = regexp.MustCompile(`(?m)^(\s+for:\s*)\S+\s*$`)

// TestPrometheusEndToEnd runs the exporter built from this repository
// with probes on, three lockers (children that mlock known amounts under
// known limits, as uid 65534; two of them pin io_uring buffers, one as
// uid 65533; four, as root, in v1 memory cgroups with limits, two of them
// in nested cgroups both limited), a second exporter whose probes fail (uid
// 65534 under a 64 KiB memlock limit, probing 1 MiB) and whose cgroup
// collector fails (an empty sysfs), and a real Prometheus (built from the
// module tools/go.mod pins, by make test-e2e) that scrapes it every
// second with deploy/prometheus's rules loaded, their for: shortened to
// 3s, plus a second target where nothing listens. Then
//
//   - every alert that has a failing case here fires in it, end to end
//     (/api/v1/alerts), and stays quiet in the healthy case beside it;
//   - every panel query of every dashboard, with its variables
//     substituted as Grafana does, returns data, unless the panel's
//     description says why it is empty ("Empty ...").
//
// It runs under make test-e2e, which builds Prometheus and sets
// PROMETHEUS; without it it skips.
func TestPrometheusEndToEnd(t *testing.T) {
	promBin := os.Getenv("PROMETHEUS")
	if promBin == "" {
		t.Skip("PROMETHEUS is not set: run make test-e2e")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lockers run as uid 65534")
	}
	bin, err := buildExporter()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shared, err := os.MkdirTemp("", "memlock-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	locker := filepath.Join(shared, "locker")
	if b, err := os.ReadFile(self); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(locker, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	nearPid := startLocker(t, locker, "e2e-nearlimit", mib, mib-64<<10) // 94% of its limit
	healthyPid := startLocker(t, locker, "e2e-healthy", 8*mib, mib)     // 12.5%
	failedPid := startLocker(t, locker, "e2e-lockfail", 64<<10, 0)      // locked nothing, 64 KiB limit
	// The same, but not one of the services MemlockServiceLockFailed is
	// enabled for (a java that never meant to lock): quiet.
	javaPid := startLocker(t, locker, "e2e-java", 64<<10, 0)
	// io_uring pins, charged per user: uid 65534 above the smallest limit
	// among its processes (64 KiB), uid 65533 at 12.5% of its only one.
	// Unevictable memory against a cgroup's limit: 42 of 48 MiB (87.5%),
	// and 8 of 64 MiB.
	nearCgroup := startCgroupLocker(t, locker, "near", 48*mib, 42*mib)
	healthyCgroup := startCgroupLocker(t, locker, "healthy", 64*mib, 8*mib)
	// Nested limits, one locker each: a "pod" and its "container" both
	// at 48 MiB, 42 MiB locked in the container (one alert: the
	// container's); a "slice" at 44 MiB around a "service" at 50 MiB, 42
	// MiB locked in the service (one alert: the slice's, whose lower
	// limit binds first, though the service is at 84% of its own).
	pod := startNestedCgroupLocker(t, locker, "pod", []int{48 * mib, 48 * mib}, 42*mib)
	slice := startNestedCgroupLocker(t, locker, "slice", []int{44 * mib, 50 * mib}, 42*mib)
	pinnerPid := startPinner(t, locker, 65534, "e2e-pinner", mib, 0, mib-64<<10)
	startPinner(t, locker, 65533, "e2e-pinhealthy", 8*mib, 0, mib)

	exporterPort := freePort(t)
	start(t, ctx, dir, "exporter", bin,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", exporterPort),
		"--collector.process.include=e2e-.*",
		// The /proc heuristic (MemlockServiceLockFailed) is what this
		// test shows, and it is silent where lock-call tracing is on, which
		// root here gets through a private tracefs: off, as on a node
		// without BPF. TestLockCallAlertEndToEnd shows the tracing side.
		"--no-collector.lockcalls",
		"--probe.enable", "--probe.interval=1s", "--probe.size=64KiB",
		"--probe.modes=mlock,onfault,populate,mlockall", "--log.level=warn")

	// A second exporter whose probes fail: uid 65534 (no CAP_IPC_LOCK)
	// under a 64 KiB soft limit, probing 1 MiB; and whose cgroup
	// collector fails: an empty directory as its sysfs.
	exporterCopy := filepath.Join(shared, "memlock_exporter")
	if b, err := os.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(exporterCopy, b, 0o755); err != nil {
		t.Fatal(err)
	}
	emptySys := filepath.Join(shared, "sys")
	if err := os.Mkdir(emptySys, 0o755); err != nil {
		t.Fatal(err)
	}
	failingPort := freePort(t)
	failing := exec.CommandContext(ctx, locker, exporterCopy,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", failingPort),
		"--probe.enable", "--probe.interval=1s", "--probe.size=1MiB", "--probe.modes=mlock", "--log.level=error",
		"--path.sysfs="+emptySys) // no memory cgroup hierarchy there: the cgroup collector fails
	failing.Env = append(os.Environ(), execLimitEnv+"=65536")
	failing.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var failingLog strings.Builder
	failing.Stdout, failing.Stderr = &failingLog, &failingLog
	failing.WaitDelay = 10 * time.Second
	if err := failing.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = failing.Process.Kill()
		_ = failing.Wait()
		if t.Failed() {
			t.Logf("failing exporter's log:\n%s", failingLog.String())
		}
	})

	// The rule files, for: shortened: deploy/prometheus's rules.yml, and
	// the alerts the mixin generates (as TestMixin does for alerts.yml)
	// with MemlockServiceLockFailed enabled for the lockers' comms, not
	// for e2e-java.
	optIn := evalMixin(t, `{ _config+:: { serviceLockFailedComms: ['e2e-lockfail', 'e2e-nearlimit', 'e2e-healthy', 'e2e-pinner'] } }`)
	var ruleFiles []string
	for f, b := range map[string][]byte{"rules.yml": readFile(t, "deploy", "prometheus", "rules.yml"), "alerts.yml": optIn["alerts"]} {
		p := filepath.Join(dir, f)
		writeFile(t, p, forLine.ReplaceAll(b, []byte("${1}3s")))
		ruleFiles = append(ruleFiles, p)
	}
	deadPort := freePort(t)
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q, %q]
scrape_configs:
  - job_name: memlock-exporter
    static_configs:
      - targets: ["127.0.0.1:%d", "127.0.0.1:%d", "127.0.0.1:%d"]
`, ruleFiles[0], ruleFiles[1], exporterPort, failingPort, deadPort)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), []byte(cfg))
	promPort := freePort(t)
	start(t, ctx, dir, "prometheus", promBin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	prom := promAPI(fmt.Sprintf("http://127.0.0.1:%d", promPort))
	instance := fmt.Sprintf("127.0.0.1:%d", exporterPort)
	dead := fmt.Sprintf("127.0.0.1:%d", deadPort)
	failingInstance := fmt.Sprintf("127.0.0.1:%d", failingPort)

	// (b) Alerts: each failing case firing, its healthy neighbour quiet.
	type want struct{ alert, label, value string }
	firing := []want{
		{"MemlockProcessNearLimit", "pid", strconv.Itoa(nearPid)},
		{"MemlockServiceLockFailed", "pid", strconv.Itoa(failedPid)},
		{"MemlockExporterDown", "instance", dead},
		{"MemlockProbeFailing", "instance", failingInstance},
		{"MemlockUserPinnedNearLimit", "uid", "65534"},
		{"MemlockCollectorFailing", "instance", failingInstance},
	}
	quiet := []want{
		{"MemlockProcessNearLimit", "pid", strconv.Itoa(healthyPid)},
		{"MemlockServiceLockFailed", "pid", strconv.Itoa(healthyPid)},
		{"MemlockServiceLockFailed", "pid", strconv.Itoa(nearPid)},
		{"MemlockServiceLockFailed", "pid", strconv.Itoa(pinnerPid)}, // pins, locks nothing
		{"MemlockServiceLockFailed", "pid", strconv.Itoa(javaPid)},   // not enabled for it
		{"MemlockUserPinnedNearLimit", "uid", "65533"},
		{"MemlockExporterDown", "instance", instance},
		{"MemlockProbeFailing", "instance", instance},
		{"MemlockCollectorFailing", "instance", instance},
	}
	if nearCgroup != "" && healthyCgroup != "" {
		firing = append(firing, want{"MemlockCgroupUnevictableNearLimit", "cgroup", nearCgroup})
		quiet = append(quiet, want{"MemlockCgroupUnevictableNearLimit", "cgroup", healthyCgroup})
	}
	if pod != nil && slice != nil {
		firing = append(firing, want{"MemlockCgroupUnevictableNearLimit", "cgroup", pod[1]},
			want{"MemlockCgroupUnevictableNearLimit", "cgroup", slice[0]})
		quiet = append(quiet, want{"MemlockCgroupUnevictableNearLimit", "cgroup", pod[0]},
			want{"MemlockCgroupUnevictableNearLimit", "cgroup", slice[1]})
	}
	find := func(alerts []promAlert, w want) string {
		for _, a := range alerts {
			if a.Labels["alertname"] == w.alert && a.Labels[w.label] == w.value {
				return a.State
			}
		}
		return ""
	}
	var alerts []promAlert
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		if _, err := http.Get(string(prom) + "/-/ready"); err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("Prometheus never answered: %v", err)
			}
			continue
		}
		alerts = prom.alerts(t)
		all := true
		for _, w := range firing {
			all = all && find(alerts, w) == "firing"
		}
		if all || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range firing {
		if s := find(alerts, w); s != "firing" {
			var series []map[string]string
			prom.get(t, "/api/v1/series", url.Values{"match[]": {fmt.Sprintf("{%s=%q}", w.label, w.value)}}, &series)
			t.Errorf("%s{%s=%q}: want firing, got %q; its series: %v", w.alert, w.label, w.value, s, series)
		} else {
			t.Logf("firing: %s{%s=%q}", w.alert, w.label, w.value)
		}
	}
	// Quiet after the failing cases had time to fire: the healthy ones
	// had as long.
	for _, w := range quiet {
		if s := find(alerts, w); s != "" {
			t.Errorf("%s{%s=%q}: want quiet, got %q", w.alert, w.label, w.value, s)
		}
	}

	// (a) Every dashboard panel query returns data. A 2-minute dashboard
	// range at Grafana's default 1,000 points is below the 1 s scrape
	// interval, so $__interval is the scrape interval, and
	// $__rate_interval = max($__interval + scrape interval, 4 * scrape
	// interval) = 4s; $__range is the range.
	time.Sleep(5 * time.Second) // a few rate windows of data
	end := time.Now()
	begin := end.Add(-2 * time.Minute)
	vars := map[string]string{
		"__interval": "1s", "__rate_interval": "4s", "__range": "120s", "__range_s": "120",
	}
	checkDashboardsLive(t, prom, vars, begin, end)
}

// checkDashboardsLive resolves each dashboard's query variables as Grafana
// does (label_values through the label values API, all values selected:
// a multi-value variable becomes (v1|v2) with regexp characters escaped),
// then runs every panel's query over [begin, end].
func checkDashboardsLive(t *testing.T, prom promAPI, fixed map[string]string, begin, end time.Time) {
	t.Helper()
	files, err := filepath.Glob(repoPath("dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("dashboards: %v %v", files, err)
	}
	for _, f := range files {
		var d dashboard
		if err := json.Unmarshal(readFile(t, "dashboards", filepath.Base(f)), &d); err != nil {
			t.Fatal(err)
		}
		vars, subst := dashboardVars(t, prom, d, fixed, begin, end)
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				if len(p.Targets) == 0 {
					continue
				}
				emptyByDesign := regexp.MustCompile(`(?i)\bempty\b`).MatchString(p.Description)
				// A panel's min interval raises $__interval (and with it
				// $__rate_interval and the step) as Grafana does:
				// $__rate_interval = max($__interval + scrape interval,
				// 4 * scrape interval), the scrape interval being 1s.
				step := time.Second
				saved := map[string]string{}
				if p.Interval != "" {
					iv, err := model.ParseDuration(p.Interval)
					if err != nil {
						t.Errorf("%s / %q: interval %q: %v", d.Title, p.Title, p.Interval, err)
					} else if time.Duration(iv) > step {
						step = time.Duration(iv)
						for _, k := range []string{"__interval", "__rate_interval"} {
							saved[k] = vars[k]
						}
						vars["__interval"] = model.Duration(step).String()
						vars["__rate_interval"] = model.Duration(max(step+time.Second, 4*time.Second)).String()
					}
				}
				var data bool
				for _, tg := range p.Targets {
					expr := subst(tg.Expr)
					var res struct {
						Result []struct {
							Metric map[string]string `json:"metric"`
							Values [][2]any          `json:"values"`
						} `json:"result"`
					}
					// A NaN (histogram_quantile of no increase, 0/0) is
					// a gap in Grafana: not data.
					if tg.Instant { // an instant query at the range's end, as Grafana sends it
						var inst struct {
							Result []struct {
								Metric map[string]string `json:"metric"`
								Value  [2]any            `json:"value"`
							} `json:"result"`
						}
						prom.get(t, "/api/v1/query", url.Values{"query": {expr}, "time": {strconv.FormatInt(end.Unix(), 10)}}, &inst)
						for _, r := range inst.Result {
							data = data || r.Value[1] != "NaN"
							// A table merges its queries' rows by their
							// labels: a __name__ would keep them apart.
							if p.Type == "table" && len(p.Targets) > 1 && r.Metric["__name__"] != "" {
								t.Errorf("%s / %q %s: a merged table's row carries __name__ %s", d.Title, p.Title, tg.RefID, r.Metric["__name__"])
							}
						}
						continue
					}
					prom.get(t, "/api/v1/query_range", url.Values{"query": {expr},
						"start": {strconv.FormatInt(begin.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)},
						"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}, &res)
					points, numbers := 0, 0
					for _, r := range res.Result {
						for _, v := range r.Values {
							points++
							if v[1] != "NaN" {
								numbers++
							}
						}
					}
					data = data || numbers > 0
					if strings.Contains(expr, "histogram_quantile") {
						t.Logf("%s / %q %s: %d of %d points are numbers", d.Title, p.Title, tg.RefID, numbers, points)
					}
				}
				for k, v := range saved {
					vars[k] = v
				}
				switch {
				case !data && !emptyByDesign:
					t.Errorf("%s / %q (panel %d): no data on a healthy node, and its description does not say why it is empty", d.Title, p.Title, p.ID)
				case !data:
					t.Logf("%s / %q: empty by design: %s", d.Title, p.Title, p.Description)
				}
			}
		}
		walk(d.Panels)
	}
}

// dashboardVars resolves d's variables as Grafana does (label_values
// through the label values API over [begin, end], all values selected: a
// multi-value variable becomes (v1|v2) with regexp characters escaped;
// All's allValue where there are none; a textbox's default, a custom
// variable's first option), starting from fixed ($__interval and the
// like). subst replaces them in a query; it reads vars, so a change to
// vars (a panel's min interval) reaches it.
func dashboardVars(t *testing.T, prom promAPI, d dashboard, fixed map[string]string, begin, end time.Time) (vars map[string]string, subst func(string) string) {
	t.Helper()
	vars = map[string]string{}
	for k, v := range fixed {
		vars[k] = v
	}
	subst = func(expr string) string {
		return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
			name := grafanaVar.FindStringSubmatch(v)[1]
			if val, ok := vars[name]; ok {
				return val
			}
			if _, err := strconv.Atoi(name); err == nil {
				return v // label_replace's $1: Grafana has no such variable and leaves it
			}
			t.Errorf("%s: variable $%s unresolved in %s", d.Title, name, expr)
			return v
		})
	}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
		case "textbox":
			var q string
			_ = json.Unmarshal(v.Query, &q)
			vars[v.Name] = q // its default
		case "custom":
			var q string
			_ = json.Unmarshal(v.Query, &q)
			vars[v.Name] = strings.Split(q, ",")[0] // Grafana's default: the first option
		case "query":
			m := labelValues.FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("%s: variable %s: %q is not label_values(selector, label)", d.Title, v.Name, v.Definition)
				continue
			}
			var values []string
			prom.get(t, "/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {subst(m[1])},
				"start": {strconv.FormatInt(begin.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)}}, &values)
			if len(values) == 0 && v.IncludeAll && v.AllValue != "" {
				// No values (the cluster label on a Prometheus of
				// one cluster): Grafana's All is the allValue.
				vars[v.Name] = v.AllValue
				continue
			}
			if len(values) == 0 {
				t.Errorf("%s: variable %s has no values: %s", d.Title, v.Name, subst(m[1]))
			}
			// Escaped for a regexp inside a PromQL string, as
			// Grafana's Prometheus data source does (\\. for a dot).
			for i := range values {
				values[i] = strings.ReplaceAll(regexp.QuoteMeta(values[i]), `\`, `\\`)
			}
			vars[v.Name] = "(" + strings.Join(values, "|") + ")"
		}
	}
	return vars, subst
}
