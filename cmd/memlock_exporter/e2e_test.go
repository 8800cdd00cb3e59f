package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// The child that locks memory is this test binary re-executed: TestMain
// sends it to lockerMain when this variable is set.
const childEnv = "MEMLOCK_E2E_LOCKER"

// What the locker locks, and the limits it sets on itself.
const (
	lockerComm     = "mlk-e2e-locker"
	plainBytes     = 256 << 10 // mlock: locked and resident at once
	onfaultBytes   = 1 << 20   // mlock2(MLOCK_ONFAULT): locked whole, resident as touched
	onfaultTouched = 64 << 10
	softLimit      = 2 << 20
	hardLimit      = 4 << 20
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(lockerMain())
	}
	os.Exit(m.Run())
}

// lockerMain locks known amounts, says "ready" with its numbers, and holds
// them until its stdin closes.
func lockerMain() int {
	fail := func(what string, err error) int {
		fmt.Printf("error %s: %v\n", what, err)
		return 1
	}
	if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte(lockerComm + "\x00")[0])), 0, 0, 0); err != nil {
		return fail("prctl", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: softLimit, Max: hardLimit}); err != nil {
		return fail("setrlimit", err)
	}
	plain, err := unix.Mmap(-1, 0, plainBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fail("mmap", err)
	}
	if err := unix.Mlock(plain); err != nil {
		return fail("mlock", err)
	}
	onfault, err := unix.Mmap(-1, 0, onfaultBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fail("mmap", err)
	}
	// golang.org/x/sys/unix has no Mlock2: the raw syscall.
	if _, _, errno := unix.Syscall(unix.SYS_MLOCK2, uintptr(unsafe.Pointer(&onfault[0])), onfaultBytes, unix.MLOCK_ONFAULT); errno != 0 {
		return fail("mlock2", errno)
	}
	for i := 0; i < onfaultTouched; i += os.Getpagesize() {
		onfault[i] = 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

type locker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int
}

// startLocker starts the locking child, as uid (or as ourselves if uid < 0).
func startLocker(t *testing.T, uid int) *locker {
	t.Helper()
	bin := lockerBin
	if bin == "" {
		bin = os.Args[0]
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &locker{cmd: cmd, stdin: stdin, pid: cmd.Process.Pid}
	t.Cleanup(l.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		l.stop()
		if strings.Contains(line, "mlock2") && strings.Contains(line, "function not implemented") {
			t.Skipf("kernel has no mlock2: %s", line)
		}
		t.Fatalf("locker: %q %v", line, err)
	}
	return l
}

func (l *locker) stop() {
	l.stdin.Close()
	l.cmd.Wait()
}

// buildExporter builds the real binary into a directory any user can read,
// so it can also run unprivileged, and copies this test binary (the locker)
// beside it for the same reason.
func buildExporter(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "memlock-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "memlock_exporter")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	lockerBin = filepath.Join(dir, "locker")
	if err := os.WriteFile(lockerBin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// lockerBin is the world-executable copy of this test binary.
var lockerBin string

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type exporterProc struct {
	cmd    *exec.Cmd
	addr   string
	logs   *syncBuffer
	exited chan struct{} // closed when the process has exited; err is then set
	err    error
}

// wait waits for the process to exit, up to within, and returns its error
// (nil for exit status 0). Any number of callers may wait.
func (e *exporterProc) wait(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case <-e.exited:
		return e.err
	case <-time.After(within):
		t.Fatalf("no exit within %v\n%s", within, e.logs)
		return nil
	}
}

// syncBuffer collects a child's output, written by exec's copying goroutine
// and read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startExporter runs the binary (as uid when uid >= 0) and waits until it
// answers /-/ready.
func startExporter(t *testing.T, bin string, uid int, args ...string) *exporterProc {
	t.Helper()
	return startExporterCmd(t, func(addr string) *exec.Cmd {
		cmd := exec.Command(bin, append([]string{"--web.listen-address=" + addr}, args...)...)
		if uid >= 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		}
		return cmd
	}, nil)
}

// startExporterCmd starts what newCmd builds for a free address (the
// exporter, possibly behind a wrapper, with credentials) and waits until
// ready answers 200 (plain HTTP /-/ready when ready is nil). The process is
// killed when the test ends.
func startExporterCmd(t *testing.T, newCmd func(addr string) *exec.Cmd, ready func(addr string) (*http.Response, error)) *exporterProc {
	t.Helper()
	if ready == nil {
		ready = func(addr string) (*http.Response, error) { return http.Get("http://" + addr + "/-/ready") }
	}
	addr := freePort(t)
	cmd := newCmd(addr)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &exporterProc{cmd: cmd, addr: addr, logs: logs, exited: make(chan struct{})}
	go func() {
		e.err = cmd.Wait()
		close(e.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-e.exited
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := ready(addr)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return e
			}
		}
		select {
		case <-e.exited:
			t.Fatalf("exporter exited: %v\n%s", e.err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("exporter not ready: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *exporterProc) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// value returns the value of the series of name whose labels include want,
// and whether there is one.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func meminfo(t *testing.T, key string) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == key+":" {
			v, _ := strconv.ParseFloat(f[1], 64)
			return v * 1024
		}
	}
	t.Fatalf("no %s in /proc/meminfo", key)
	return 0
}

func capIPCLock(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var s linux.Status
	if err := linux.ParseStatus(b, &s); err != nil {
		t.Fatal(err)
	}
	if s.IPCLock() {
		return 1
	}
	return 0
}

func requireLinuxProc(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/proc/self/smaps_rollup"); err != nil {
		t.Skipf("needs a Linux /proc with smaps_rollup (4.14+): %v", err)
	}
}

// TestEndToEnd runs the real binary against the real /proc while a child
// holds known locked, ONFAULT and limit values, and checks the HTTP endpoint
// reports exactly those.
func TestEndToEnd(t *testing.T) {
	requireLinuxProc(t)
	bin := buildExporter(t)
	l := startLocker(t, -1)
	exp := startExporter(t, bin, -1, "--collector.process.include="+lockerComm, "--log.level=debug")

	before := meminfo(t, "Mlocked")
	mfs := exp.scrape(t)
	after := meminfo(t, "Mlocked")

	pid := map[string]string{"pid": strconv.Itoa(l.pid), "comm": lockerComm, "uid": strconv.Itoa(os.Getuid())}
	for name, want := range map[string]float64{
		"memlock_process_locked_bytes":          plainBytes + onfaultBytes,
		"memlock_process_locked_resident_bytes": plainBytes + onfaultTouched,
		"memlock_process_pinned_bytes":          0,
		"memlock_process_limit_soft_bytes":      softLimit,
		"memlock_process_limit_hard_bytes":      hardLimit,
		"memlock_process_cap_ipc_lock":          capIPCLock(t, l.pid),
	} {
		got, ok := value(mfs, name, pid)
		if !ok || got != want {
			t.Errorf("%s{pid=%d} = %v (present %v), want %v", name, l.pid, got, ok, want)
		}
	}
	// The system totals are the kernel's: MemTotal exactly; Mlocked within
	// what other processes (other tests run in parallel) locked meanwhile.
	if got, _ := value(mfs, "memlock_system_memory_total_bytes", nil); got != meminfo(t, "MemTotal") {
		t.Errorf("memory_total %v, /proc/meminfo says %v", got, meminfo(t, "MemTotal"))
	}
	got, _ := value(mfs, "memlock_system_mlocked_bytes", nil)
	const slack = 64 << 20
	if got < plainBytes+onfaultTouched || got < math.Min(before, after)-slack || got > math.Max(before, after)+slack {
		t.Errorf("mlocked %v outside /proc/meminfo's %v..%v", got, before, after)
	}
	if u, _ := value(mfs, "memlock_user_processes_locked_bytes", map[string]string{"uid": strconv.Itoa(os.Getuid())}); u < plainBytes+onfaultBytes {
		t.Errorf("user locked %v below the child's own", u)
	}
	for _, c := range []string{"system", "process", "user", "sysvipc"} {
		if v, ok := value(mfs, "memlock_scrape_collector_success", map[string]string{"collector": c}); !ok || v != 1 {
			t.Errorf("collector %s success %v (present %v)\n%s", c, v, ok, exp.logs)
		}
	}
	if _, ok := value(mfs, "memlock_exporter_build_info", nil); !ok {
		t.Error("no build_info")
	}

	// Once the child exits, its series are gone from the next scrape.
	l.stop()
	if _, ok := value(exp.scrape(t), "memlock_process_locked_bytes", pid); ok {
		t.Error("a dead process is still reported")
	}

	// SIGTERM ends it cleanly.
	exp.cmd.Process.Signal(syscall.SIGTERM)
	if err := exp.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, exp.logs)
	}
}

// TestUnprivileged runs the exporter as nobody, without capabilities: it
// still serves every collector, reports its own user's locker in full, and
// counts (not logs at error level) the smaps it may not read.
func TestUnprivileged(t *testing.T) {
	requireLinuxProc(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to start processes as another user")
	}
	const nobody = 65534
	bin := buildExporter(t)
	own := startLocker(t, nobody) // same user as the exporter
	rootL := startLocker(t, -1)   // root's: smaps unreadable for nobody
	exp := startExporter(t, bin, nobody, "--collector.process.include="+lockerComm)
	mfs := exp.scrape(t)

	ownPid := map[string]string{"pid": strconv.Itoa(own.pid), "uid": strconv.Itoa(nobody)}
	rootPid := map[string]string{"pid": strconv.Itoa(rootL.pid), "uid": "0"}
	for _, tc := range []struct {
		name   string
		pid    map[string]string
		want   float64
		wantOK bool
	}{
		{"memlock_process_locked_bytes", ownPid, plainBytes + onfaultBytes, true},
		{"memlock_process_locked_resident_bytes", ownPid, plainBytes + onfaultTouched, true},
		{"memlock_process_limit_soft_bytes", ownPid, softLimit, true},
		{"memlock_process_cap_ipc_lock", ownPid, 0, true},
		{"memlock_process_locked_bytes", rootPid, plainBytes + onfaultBytes, true},
		{"memlock_process_limit_hard_bytes", rootPid, hardLimit, true}, // limits is world-readable
		{"memlock_process_locked_resident_bytes", rootPid, 0, false},   // smaps is not
	} {
		got, ok := value(mfs, tc.name, tc.pid)
		if ok != tc.wantOK || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v (present %v)", tc.name, tc.pid, got, ok, tc.want, tc.wantOK)
		}
	}
	if n, _ := value(mfs, "memlock_process_read_failures", map[string]string{"file": "smaps_rollup", "reason": "permission"}); n < 1 {
		t.Errorf("unreadable smaps not counted\n%s", exp.logs)
	}
	for _, c := range []string{"system", "process", "user", "sysvipc"} {
		if v, _ := value(mfs, "memlock_scrape_collector_success", map[string]string{"collector": c}); v != 1 {
			t.Errorf("collector %s failed as nobody\n%s", c, exp.logs)
		}
	}
	if !strings.Contains(exp.logs.String(), "CAP_SYS_PTRACE") {
		t.Errorf("the exporter did not say it runs without CAP_SYS_PTRACE:\n%s", exp.logs)
	}
	if strings.Contains(exp.logs.String(), "level=ERROR") {
		t.Errorf("errors logged for what a non-root exporter may not read:\n%s", exp.logs)
	}
}

// TestBadInvocations checks that bad flags and files exit with status 2 and
// a message naming the problem, without serving.
func TestBadInvocations(t *testing.T) {
	dir := t.TempDir()
	badWeb := filepath.Join(dir, "web.yml")
	os.WriteFile(badWeb, []byte("tls_server_config:\n  cert_file: /nonexistent\n"), 0o644)
	secretWeb := filepath.Join(dir, "secret.yml")
	os.WriteFile(secretWeb, []byte("root:$6$Xq9sEcReT7hash:19000:0:99999:7:::\n"), 0o644)
	secretKey := filepath.Join(dir, "secret-key.yml")
	os.WriteFile(secretKey, []byte("Xq9sEcReT7hash: 1\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		// A web config that is another file entirely: named, not quoted.
		{[]string{"--web.config.file=" + secretWeb}, "--web.config.file"},
		{[]string{"--web.config.file=" + secretKey}, "unknown field in type"},
		// kingpin's IntVar parses floats: these became -9223372036854775808, 1000 and 0.
		{[]string{"--web.max-requests=99999999999999999999"}, `--web.max-requests="99999999999999999999": "99999999999999999999" is out of range: at most 2147483647`},
		{[]string{"--web.max-requests=1e3"}, `"1e3" is not a whole number`},
		{[]string{"--web.max-requests=NaN"}, `"NaN" is not a whole number`},
		{[]string{"--collector.process.max-processes=1.5"}, `--collector.process.max-processes="1.5": "1.5" is not a whole number`},
		{[]string{"--web.max-requests=3000000000"}, "out of range"},
		// A regular file ended in "<nil>" before.
		{[]string{"--path.procfs=" + badWeb}, `--path.procfs "` + badWeb + `" is not a directory (it is a regular file)`},
		{[]string{"--path.sysfs=" + badWeb}, `--path.sysfs "` + badWeb + `" is not a directory (it is a regular file)`},
		{[]string{"--path.sysfs=" + filepath.Join(dir, "nope")}, "--path.sysfs"},
		{[]string{"--path.procfs=/dev/null"}, "is not a directory (it is a device)"},
		{[]string{"--scrape.timeout=1m"}, "--scrape.max-timeout 30s is shorter than --scrape.timeout 1m0s"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--collector.process.include=("}, "collector.process.include"},
		{[]string{"--collector.process.exclude=[z-a]"}, "collector.process.exclude"},
		{[]string{"--collector.process.max-processes=-1"}, "max-processes"},
		{[]string{"--collector.process.max-processes=lots"}, "max-processes"},
		{[]string{"--collector.cgroup.max-cgroups=-1"}, "max-cgroups"},
		{[]string{"--web.max-requests=-3"}, "web.max-requests"},
		{[]string{"--scrape.timeout=0s"}, "scrape.timeout"},
		{[]string{"--web.telemetry-path=metrics"}, "telemetry-path"},
		{[]string{"--path.procfs=" + filepath.Join(dir, "nope")}, "path.procfs"},
		{[]string{"--web.config.file=" + badWeb}, "web.config.file"},
		{[]string{"--web.config.file=" + filepath.Join(dir, "missing.yml")}, "web.config.file"},
		{[]string{"--log.level=loud"}, "log.level"},
	} {
		var stderr strings.Builder
		code := run(tc.args, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
		if strings.Contains(stderr.String(), "<nil>") || strings.Contains(stderr.String(), "-9223372036854775808") || strings.Contains(stderr.String(), "Xq9sEcReT7hash") {
			t.Errorf("%v: message %q", tc.args, stderr.String())
		}
	}
}
