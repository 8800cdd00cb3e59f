package checks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lockCallEnv makes the test binary a child of TestLockCallAlertEndToEnd
// (see runLockCaller): "comm,soft limit bytes,action".
const lockCallEnv = "MEMLOCK_E2E_LOCKCALL"

func init() {
	// Before TestMain: the child never runs the tests.
	if spec := os.Getenv(lockCallEnv); spec != "" {
		runLockCaller(spec)
	}
}

// runLockCaller names itself comm, lowers its soft RLIMIT_MEMLOCK and
// does action: "mlockall" is Elasticsearch's bootstrap.memory_lock
// (mlockall(MCL_CURRENT), which fails when the whole address space is over
// the limit: a Go program's always is over 128 MiB), says "ready <errno>"
// and runs on unlocked; "none" is a java that never tries to lock;
// "mlock-exit" asks mlock for 1 MiB over a smaller limit, says "ready
// <errno>" and exits at once.
func runLockCaller(spec string) {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "lock caller:", err); os.Exit(3) }
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fail(fmt.Errorf("spec %q", spec))
	}
	soft, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		fail(err)
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
	errno := func(err error) int {
		var e unix.Errno
		if errors.As(err, &e) {
			return int(e)
		}
		return 0
	}
	switch parts[2] {
	case "mlockall":
		err = unix.Mlockall(unix.MCL_CURRENT)
		if err == nil {
			_ = unix.Munlockall()
		}
	case "mlock-exit":
		b, merr := unix.Mmap(-1, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if merr != nil {
			fail(merr)
		}
		err = unix.Mlock(b)
		fmt.Printf("ready %d\n", errno(err))
		os.Exit(0)
	case "none":
	default:
		fail(fmt.Errorf("action %q", parts[2]))
	}
	fmt.Printf("ready %d\n", errno(err))
	for {
		time.Sleep(time.Hour)
	}
}

// startLockCaller runs a lock caller as uid 65534 (no capability, so its
// limit holds) and returns its pid and the errno it said.
func startLockCaller(t *testing.T, self, comm string, soft int, action string) (int, int) {
	t.Helper()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%s", lockCallEnv, comm, soft, action))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
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
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	var got int
	if _, serr := fmt.Sscanf(line, "ready %d\n", &got); err != nil || serr != nil {
		t.Fatalf("lock caller %s: %q %v %s", comm, line, err, stderr.String())
	}
	if action == "mlock-exit" {
		// Reaped, as a parent does: until then /proc/<pid> of the zombie
		// is there, and the exporter rightly takes it for alive.
		if err := cmd.Wait(); err != nil {
			t.Fatalf("lock caller %s: %v %s", comm, err, stderr.String())
		}
	}
	return cmd.Process.Pid, got
}

// copyTracepointIDs copies the ids of the syscall exit tracepoints the
// exporter attaches into dir/events/syscalls/<event>/id, as the bpf
// overlay's init container and the systemd drop-in's ExecStartPre do, and
// returns dir for --collector.lockcalls.tracefs. Where the host mounts no
// tracefs at /sys/kernel/tracing (this VM), it reads one mounted in a
// private mount namespace of a thread of its own, which nothing else sees
// and which ends with the thread.
func copyTracepointIDs(t *testing.T, dir string) string {
	t.Helper()
	events := []string{"mlock", "mlock2", "mlockall", "mmap", "shmctl", "io_uring_register", "io_uring_setup", "setrlimit", "prlimit64"}
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread, and its namespace, leave with the goroutine
		const tracefs = "/sys/kernel/tracing"
		var st unix.Statfs_t
		if unix.Statfs(tracefs, &st) != nil || st.Type != unix.TRACEFS_MAGIC {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				errc <- err
				return
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				errc <- err
				return
			}
			if err := unix.Mount("nodev", tracefs, "tracefs", 0, ""); err != nil {
				errc <- err
				return
			}
		}
		for _, e := range events {
			b, err := os.ReadFile(filepath.Join(tracefs, "events", "syscalls", "sys_exit_"+e, "id"))
			if err != nil {
				errc <- err
				return
			}
			d := filepath.Join(dir, "events", "syscalls", "sys_exit_"+e)
			if err := os.MkdirAll(d, 0o755); err != nil {
				errc <- err
				return
			}
			if err := os.WriteFile(filepath.Join(d, "id"), b, 0o444); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Skipf("no syscall tracepoint ids to copy (%v): lock-call tracing cannot be tested here", err)
	}
	return dir
}

// TestLockCallAlertEndToEnd: the exporter built from this repository with
// lock-call tracing attached (the tracepoint ids copied as the deploy files
// do), a real Prometheus scraping it every second with deploy/prometheus's
// rules (for: shortened to 3s), and three unprivileged children under
// known limits: an "elasticsearch" whose mlockall(MCL_CURRENT) fails under
// 128 MiB (or the hard limit, when lower) and runs on, a "java" that never locks, and a "locktool" whose
// mlock of 1 MiB fails under 64 KiB and that exits at once. Then
// MemlockLockCallFailing fires, critical, for elasticsearch (mlockall,
// enomem) and for the locktool that exited (shown by one scrape), with
// each failure counted once; java has no failure series and no alert; and
// the exited locktool's series ends. Run by make test-e2e (PROMETHEUS set,
// root); it skips without them, or where the tracepoints cannot attach.
func TestLockCallAlertEndToEnd(t *testing.T) {
	promBin := os.Getenv("PROMETHEUS")
	if promBin == "" {
		t.Skip("PROMETHEUS is not set: run make test-e2e")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: BPF, and the children run as uid 65534")
	}
	bin, err := buildExporter()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ids := copyTracepointIDs(t, filepath.Join(dir, "tracefs"))

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shared, err := os.MkdirTemp("", "memlock-e2e-lockcalls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	caller := filepath.Join(shared, "caller")
	if b, err := os.ReadFile(self); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(caller, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}

	exporterPort := freePort(t)
	start(t, ctx, dir, "exporter", bin,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", exporterPort),
		"--collector.bpf=on", "--collector.lockcalls.tracefs="+ids,
		"--collector.process.include=elasticsearch|java", "--log.level=warn")
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", exporterPort)
	// The children start once the tracepoints are attached: a failure
	// before that is not counted by anyone.
	var body string
	for deadline := time.Now().Add(30 * time.Second); ; {
		if resp, err := http.Get(metricsURL); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			if strings.Contains(body, "memlock_lock_call_tracing_enabled{") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exporter did not serve memlock_lock_call_tracing_enabled in 30s; log:\n%s", readFile(t, dir, "exporter.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(body, `memlock_lock_call_tracing_enabled{reason="attached"} 1`) {
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "memlock_lock_call_tracing_enabled{") {
				t.Skipf("lock-call tracing did not attach here: %s", l)
			}
		}
	}

	// Elasticsearch's and java's soft limit: 128 MiB where the hard
	// limit allows (this VM's test runner has no CAP_SYS_RESOURCE and a
	// hard limit of 8 MiB, the containers' usual default: mlockall fails
	// under either).
	const mib = 1 << 20
	var own unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &own); err != nil {
		t.Fatal(err)
	}
	soft := int(min(own.Max, 128*mib))
	t.Logf("elasticsearch and java run under a soft RLIMIT_MEMLOCK of %d MiB", soft/mib)
	esPid, esErrno := startLockCaller(t, caller, "elasticsearch", soft, "mlockall")
	javaPid, _ := startLockCaller(t, caller, "java", soft, "none")
	toolPid, toolErrno := startLockCaller(t, caller, "locktool", 64<<10, "mlock-exit")
	if esErrno != int(unix.ENOMEM) || toolErrno != int(unix.ENOMEM) {
		t.Fatalf("elasticsearch's mlockall said errno %d, locktool's mlock %d: want ENOMEM (%d) for both", esErrno, toolErrno, unix.ENOMEM)
	}

	var ruleFiles []string
	for _, f := range []string{"rules.yml", "alerts.yml"} {
		b := forLine.ReplaceAll(readFile(t, "deploy", "prometheus", f), []byte("${1}3s"))
		p := filepath.Join(dir, f)
		writeFile(t, p, b)
		ruleFiles = append(ruleFiles, p)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q, %q]
scrape_configs:
  - job_name: memlock-exporter
    static_configs:
      - targets: ["127.0.0.1:%d"]
`, ruleFiles[0], ruleFiles[1], exporterPort)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), []byte(cfg))
	promPort := freePort(t)
	start(t, ctx, dir, "prometheus", promBin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	prom := promAPI(fmt.Sprintf("http://127.0.0.1:%d", promPort))
	for deadline := time.Now().Add(60 * time.Second); ; {
		if resp, err := http.Get(string(prom) + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus not ready in 60s; log:\n%s", readFile(t, dir, "prometheus.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	state := func(alerts []promAlert, pid int) (string, map[string]string) {
		for _, a := range alerts {
			if a.Labels["alertname"] == "MemlockLockCallFailing" && a.Labels["pid"] == strconv.Itoa(pid) {
				return a.State, a.Labels
			}
		}
		return "", nil
	}
	var alerts []promAlert
	for deadline := time.Now().Add(90 * time.Second); ; {
		alerts = prom.alerts(t)
		es, _ := state(alerts, esPid)
		tool, _ := state(alerts, toolPid)
		if es == "firing" && tool == "firing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MemlockLockCallFailing: elasticsearch (pid %d) %q, locktool (pid %d) %q after 90s, want both firing; alerts %+v\nexporter log:\n%s",
				esPid, es, toolPid, tool, alerts, readFile(t, dir, "exporter.log"))
		}
		time.Sleep(time.Second)
	}
	for _, c := range []struct {
		pid           int
		comm, syscall string
	}{{esPid, "elasticsearch", "mlockall"}, {toolPid, "locktool", "mlock"}} {
		_, l := state(alerts, c.pid)
		if l["severity"] != "critical" || l["syscall"] != c.syscall || l["errno"] != "enomem" || l["comm"] != c.comm || l["uid"] != "65534" {
			t.Errorf("%s's alert labels %v: want severity critical, syscall %s, errno enomem, comm %s, uid 65534", c.comm, l, c.syscall, c.comm)
		}
	}
	if s, l := state(alerts, javaPid); s != "" {
		t.Errorf("MemlockLockCallFailing %s for java (pid %d), which never locked: %v", s, javaPid, l)
	}

	// Each failure counted once, from the kernel: one series each (the
	// locktool's shown by at least one scrape before it left), value 1;
	// none for java.
	query := func(q string) []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	} {
		var d struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		}
		prom.get(t, "/api/v1/query", url.Values{"query": {q}}, &d)
		return d.Result
	}
	for _, c := range []struct {
		pid  int
		want string
	}{{esPid, "1"}, {toolPid, "1"}} {
		r := query(fmt.Sprintf(`max_over_time(memlock_lock_call_failures_total{pid="%d"}[5m])`, c.pid))
		if len(r) != 1 || r[0].Value[1] != c.want {
			t.Errorf("memlock_lock_call_failures_total of pid %d: %+v, want one series of %s", c.pid, r, c.want)
		}
	}
	if r := query(fmt.Sprintf(`max_over_time(memlock_lock_call_failed_bytes_total{pid="%d"}[5m])`, toolPid)); len(r) != 1 || r[0].Value[1] != strconv.Itoa(mib) {
		t.Errorf("memlock_lock_call_failed_bytes_total of the locktool: %+v, want %d (the mlock's length)", r, mib)
	}
	if r := query(fmt.Sprintf(`max_over_time({__name__=~"memlock_lock_call_.*",pid="%d"}[5m])`, javaPid)); len(r) != 0 {
		t.Errorf("java (pid %d), which never locked, has lock-call series: %+v", javaPid, r)
	}
	// The exited locktool's series ends after the scrape that showed it.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if r := query(fmt.Sprintf(`memlock_lock_call_failures_total{pid="%d"}`, toolPid)); len(r) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the exited locktool's (pid %d) failure series is still exported after 30s", toolPid)
			break
		}
		time.Sleep(time.Second)
	}
	if r := query(fmt.Sprintf(`memlock_lock_call_failures_total{pid="%d"}`, esPid)); len(r) != 1 {
		t.Errorf("the live elasticsearch's (pid %d) failure series: %+v, want it still exported", esPid, r)
	}
}
