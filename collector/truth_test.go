package collector

// Real-kernel tests of what the collectors say in namespaces, of exited
// thread-group leaders, of comm and of late scans: each runs children of
// this test binary (re-executed, see truthChild) that do what the kernel
// must be seen doing, and checks the collectors' series against what the children did.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"
)

// truthEnv selects the child's mode; its parameters come in the
// MEMLOCK_TRUTH_* variables read by truthChild.
const truthEnv = "MEMLOCK_TRUTH_CHILD"

// The child runs from init, on the main thread (locked to it), before the
// test framework: PR_SET_NAME names that thread, which is the process's
// comm, and the leader-exit mode exits that thread alone.
func init() {
	mode := os.Getenv(truthEnv)
	if mode == "" {
		return
	}
	runtime.LockOSThread()
	os.Exit(truthChild(mode))
}

func envInt(name string) int {
	v, _ := strconv.Atoi(os.Getenv(name))
	return v
}

// truthChild is a child process. Modes that hold something print
// "ready <details>" and hold it until stdin closes; the scrape modes print
// an exposition and exit.
func truthChild(mode string) int {
	if name, ok := os.LookupEnv("MEMLOCK_TRUTH_NAME"); ok {
		b := append([]byte(name), 0)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0); err != nil {
			fmt.Println("fail prctl:", err)
			return 1
		}
	}
	if os.Getenv("MEMLOCK_TRUTH_NODUMP") != "" {
		if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
			fmt.Println("fail prctl:", err)
			return 1
		}
	}
	if lim := envInt("MEMLOCK_TRUTH_LIMIT"); lim > 0 {
		rl := unix.Rlimit{Cur: uint64(lim), Max: uint64(lim)}
		if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
			fmt.Println("fail setrlimit:", err)
			return 1
		}
	}
	size := envInt("MEMLOCK_TRUTH_BYTES")
	details := ""
	switch mode {
	case "lock", "leader-exit":
		if try := envInt("MEMLOCK_TRUTH_TRY"); try > 0 {
			mem, err := unix.Mmap(-1, 0, try, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				fmt.Println("fail mmap:", err)
				return 1
			}
			details += fmt.Sprintf("try=%v ", errnoName(unix.Mlock(mem)))
			unix.Munmap(mem)
		}
		if size > 0 {
			mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				fmt.Println("fail mmap:", err)
				return 1
			}
			if err := unix.Mlock(mem); err != nil {
				fmt.Println("fail mlock:", err)
				return 1
			}
		}
	case "uring":
		err := registerBuffers(size)
		details += fmt.Sprintf("register=%v ", errnoName(err))
	case "shmlock":
		id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
		if err != nil {
			fmt.Println("fail shmget:", err)
			return 1
		}
		_, err = unix.SysvShmCtl(id, shmLock, nil)
		details += fmt.Sprintf("shmlock=%v ", errnoName(err))
		unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	case "ipcns-scrape":
		return childScrape(DefaultConfig(), "sysvipc")
	case "process-scrape":
		return childScrape(DefaultConfig(), "process")
	case "hidepid-scrape":
		return hidepidScrape()
	default:
		fmt.Println("fail: unknown mode", mode)
		return 2
	}
	if mode == "leader-exit" {
		return leaderExit(details)
	}
	fmt.Println("ready", details)
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func errnoName(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// leaderExit ends the main thread alone (SYS_exit, not exit_group) while
// a goroutine on another thread says so and holds the process until stdin
// closes: the process lives on with a zombie leader.
func leaderExit(details string) int {
	go func() {
		runtime.LockOSThread()
		status := fmt.Sprintf("/proc/%d/status", os.Getpid())
		for i := 0; ; i++ {
			b, err := os.ReadFile(status)
			if err == nil && !strings.Contains(string(b), "VmLck:") {
				break
			}
			if i > 5000 {
				fmt.Println("fail: the leader's status kept its Vm lines")
				os.Exit(1)
			}
			time.Sleep(time.Millisecond)
		}
		fmt.Println("ready", details)
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	unix.Syscall(unix.SYS_EXIT, 0, 0, 0)
	return 1 // not reached
}

// registerBuffers registers one buffer of size bytes with a new io_uring:
// the kernel pins it (VmPin) and charges the user unless the caller has
// CAP_IPC_LOCK (io_uring/rsrc.c io_account_mem).
func registerBuffers(size int) error {
	var params [120]byte // struct io_uring_params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		return errno
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	iov := unix.Iovec{Base: &mem[0], Len: uint64(size)}
	const ioringRegisterBuffers = 0
	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_REGISTER, fd, ioringRegisterBuffers, uintptr(unsafe.Pointer(&iov)), 1, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// childScrape prints one scrape of the named collectors.
func childScrape(cfg Config, names ...string) int {
	reg := prometheus.NewPedanticRegistry()
	e, err := New(cfg, names, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Println("fail:", err)
		return 1
	}
	reg.MustRegister(e)
	mfs, err := reg.Gather()
	if err != nil {
		fmt.Println("fail gather:", err)
		return 1
	}
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(os.Stdout, mf)
	}
	return 0
}

// hidepidScrape mounts a procfs with hidepid=2 in its own mount namespace,
// becomes nobody, and scrapes the process collector from that mount.
func hidepidScrape() int {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fmt.Println("fail make-rprivate:", err)
		return 1
	}
	dir := os.Getenv("MEMLOCK_TRUTH_DIR")
	if err := unix.Mount("proc", dir, "proc", 0, "hidepid=2"); err != nil {
		fmt.Println("fail mount:", err)
		return 1
	}
	if err := syscall.Setgid(65534); err != nil {
		fmt.Println("fail setgid:", err)
		return 1
	}
	if err := syscall.Setuid(65534); err != nil {
		fmt.Println("fail setuid:", err)
		return 1
	}
	cfg := DefaultConfig()
	cfg.ProcPath = dir
	return childScrape(cfg, "process")
}

var (
	truthBinOnce sync.Once
	truthBin     string
	truthBinErr  error
)

// truthBinary is a copy of this test binary in a directory every user may
// enter, so that children running as other users can exec it.
func truthBinary(t testing.TB) string {
	t.Helper()
	truthBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "memlock-truth-")
		if err != nil {
			truthBinErr = err
			return
		}
		os.Chmod(dir, 0o755)
		b, err := os.ReadFile(os.Args[0])
		if err != nil {
			truthBinErr = err
			return
		}
		truthBin = filepath.Join(dir, "collector.test")
		truthBinErr = os.WriteFile(truthBin, b, 0o755)
	})
	if truthBinErr != nil {
		t.Fatal(truthBinErr)
	}
	return truthBin
}

type truthProc struct {
	pid     int
	details string
}

func truthCmd(t testing.TB, mode string, env []string, attr *syscall.SysProcAttr) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(truthBinary(t))
	cmd.Env = append(append(os.Environ(), truthEnv+"="+mode), env...)
	cmd.Dir = filepath.Dir(truthBinary(t))
	cmd.SysProcAttr = attr
	return cmd
}

// startTruth starts a holding child and waits for its ready line; it
// holds until the test ends.
func startTruth(t testing.TB, mode string, env []string, attr *syscall.SysProcAttr) truthProc {
	t.Helper()
	cmd := truthCmd(t, mode, env, attr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		if attr != nil && attr.Cloneflags != 0 {
			t.Skipf("cannot start a child in new namespaces (%#x): %v", attr.Cloneflags, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "ready") {
		t.Fatalf("child %s: %q, %v", mode, line, err)
	}
	return truthProc{pid: cmd.Process.Pid, details: strings.TrimSpace(strings.TrimPrefix(line, "ready"))}
}

// runTruth runs a scrape child and returns its exposition.
func runTruth(t *testing.T, mode string, env []string, attr *syscall.SysProcAttr) string {
	t.Helper()
	cmd := truthCmd(t, mode, env, attr)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if stderr.Len() > 0 {
		t.Logf("child %s's log:\n%s", mode, stderr.String())
	}
	if err != nil || strings.HasPrefix(string(out), "fail") {
		if attr != nil && attr.Cloneflags != 0 && len(out) == 0 {
			t.Skipf("cannot start a child in new namespaces (%#x): %v", attr.Cloneflags, err)
		}
		t.Fatalf("child %s: %v\n%s", mode, err, out)
	}
	return string(out)
}

// series gathers e and returns each sample of metric as its labels and
// value.
func series(t *testing.T, g prometheus.Gatherer, metric string) []labelled {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []labelled
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			out = append(out, labelled{labels: labelMap(m), value: m.GetGauge().GetValue()})
		}
	}
	return out
}

type labelled struct {
	labels map[string]string
	value  float64
}

func labelMap(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// ofPid returns the value of metric for pid, and whether there is one.
func ofPid(t *testing.T, g prometheus.Gatherer, metric string, pid int) (float64, map[string]string, bool) {
	t.Helper()
	for _, s := range series(t, g, metric) {
		if s.labels["pid"] == strconv.Itoa(pid) {
			return s.value, s.labels, true
		}
	}
	return 0, nil, false
}

func ofLabel(t *testing.T, g prometheus.Gatherer, metric, label, value string) (float64, bool) {
	t.Helper()
	for _, s := range series(t, g, metric) {
		if s.labels[label] == value {
			return s.value, true
		}
	}
	return 0, false
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: children run as other users and in new namespaces")
	}
}

func realRegistry(t *testing.T, cfg Config, names ...string) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newExporter(t, cfg, names...))
	return reg
}

// TestTruthUserNamespaceCapIPCLock (9.1): a child in a new user namespace
// (unshare -U -r: uid 0 mapped to 0) has every capability in CapEff, yet
// the kernel refuses its mlock past its limit: CAP_IPC_LOCK counts only in
// the initial user namespace. The exporter must say it may not lock past
// its limit, and that it is not in the initial namespace; a root child in
// the initial namespace may.
func TestTruthUserNamespaceCapIPCLock(t *testing.T) {
	needRoot(t)
	const limit, try, locked = 1 << 20, 2 << 20, 512 << 10
	env := []string{"MEMLOCK_TRUTH_LIMIT=" + strconv.Itoa(limit), "MEMLOCK_TRUTH_TRY=" + strconv.Itoa(try), "MEMLOCK_TRUTH_BYTES=" + strconv.Itoa(locked)}
	inNS := startTruth(t, "lock", env, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	})
	if inNS.details != "try=ENOMEM" {
		t.Fatalf("in a user namespace a 2 MiB mlock under a 1 MiB limit gave %q, want ENOMEM: the kernel's rule differs", inNS.details)
	}
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", inNS.pid))
	if !regexp.MustCompile(`(?m)^CapEff:\s+[0-9a-f]*[4567cdef][0-9a-f]{3}$`).Match(st) {
		t.Fatalf("the child in the user namespace lacks CAP_IPC_LOCK in CapEff:\n%s", st)
	}
	host := startTruth(t, "lock", []string{"MEMLOCK_TRUTH_LIMIT=" + strconv.Itoa(limit), "MEMLOCK_TRUTH_TRY=" + strconv.Itoa(try), "MEMLOCK_TRUTH_BYTES=" + strconv.Itoa(locked)}, nil)
	if host.details != "try=ok" {
		t.Fatalf("root in the initial namespace: 2 MiB mlock under a 1 MiB limit gave %q, want ok", host.details)
	}
	reg := realRegistry(t, DefaultConfig(), "process")
	for _, tc := range []struct {
		p       truthProc
		initial float64
	}{{inNS, 0}, {host, 1}} {
		if v, _, ok := ofPid(t, reg, "memlock_process_locked_bytes", tc.p.pid); !ok || v < locked {
			t.Errorf("pid %d: locked_bytes %v (%v), want at least %d", tc.p.pid, v, ok, locked)
		}
		if v, _, ok := ofPid(t, reg, "memlock_process_cap_ipc_lock", tc.p.pid); !ok || v != tc.initial {
			t.Errorf("pid %d: cap_ipc_lock %v (%v), want %v", tc.p.pid, v, ok, tc.initial)
		}
		if v, _, ok := ofPid(t, reg, "memlock_process_user_namespace_initial", tc.p.pid); !ok || v != tc.initial {
			t.Errorf("pid %d: user_namespace_initial %v (%v), want %v", tc.p.pid, v, ok, tc.initial)
		}
	}
}

// TestTruthLeaderExited (9.4): the main thread of a process that locked
// 4 MiB calls SYS_exit while another thread lives on; its status loses the
// Vm lines, and the process must still be reported, from a live thread.
func TestTruthLeaderExited(t *testing.T) {
	needRoot(t)
	const locked = 4 << 20
	p := startTruth(t, "leader-exit", []string{"MEMLOCK_TRUTH_BYTES=" + strconv.Itoa(locked)}, nil)
	reg := realRegistry(t, DefaultConfig(), "process", "user")
	if v, _, ok := ofPid(t, reg, "memlock_process_locked_bytes", p.pid); !ok || v != locked {
		t.Errorf("a process whose leader exited: locked_bytes %v (reported %v), want %d", v, ok, locked)
	}
	if v, _ := ofLabel(t, reg, "memlock_user_processes_locked_bytes", "uid", "0"); v < locked {
		t.Errorf("uid 0's sum %v lacks the 4 MiB of the process whose leader exited", v)
	}
}

// TestTruthComm (9.5): names set with PR_SET_NAME come out as the kernel
// holds them (at most 15 bytes), not as status escapes them, and
// --collector.process.include matches that name.
func TestTruthComm(t *testing.T) {
	needRoot(t)
	names := []string{" ", `"quoted" 'x'`, `back\slash`, "new\nline", "tab\there", "ünïcödé", "a-name-longer-than-15"}
	procs := map[int]string{}
	for _, n := range names {
		env := []string{"MEMLOCK_TRUTH_NAME=" + n}
		if n != " " {
			env = append(env, "MEMLOCK_TRUTH_BYTES=4096")
		}
		p := startTruth(t, "lock", env, nil)
		want := n
		if len(want) > 15 {
			want = want[:15] // TASK_COMM_LEN - 1
		}
		procs[p.pid] = want
	}
	cfg := DefaultConfig()
	// The space-named child locks nothing: only the exact name reports it.
	cfg.Process.Include = regexp.MustCompile(`^(?: )$`)
	reg := realRegistry(t, cfg, "process")
	for pid, want := range procs {
		_, labels, ok := ofPid(t, reg, "memlock_process_locked_bytes", pid)
		if !ok {
			t.Errorf("pid %d (%q) not reported", pid, want)
			continue
		}
		if labels["comm"] != want {
			t.Errorf("pid %d: comm %q, want %q", pid, labels["comm"], want)
		}
	}
}

// TestTruthHidepid (9.6): a non-root exporter reading a procfs mounted with
// hidepid=2 sees only its own processes, nothing fails, and the scanned
// tasks against the kernel's count say how partial the view is.
func TestTruthHidepid(t *testing.T) {
	needRoot(t)
	// t.TempDir's parent is private: nobody could not reach the mount.
	dir, err := os.MkdirTemp("", "memlock-hidepid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	os.Chmod(dir, 0o755)
	out := runTruth(t, "hidepid-scrape", []string{"MEMLOCK_TRUTH_DIR=" + dir}, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS})
	scanned := expoValue(t, out, "memlock_processes_scanned_tasks")
	total := expoValue(t, out, "memlock_kernel_tasks")
	// This test binary's own process and the child hold far fewer than
	// half the tasks of a machine with kernel threads and other users.
	if scanned <= 0 || total <= 0 || scanned*2 > total {
		t.Errorf("hidepid=2: scanned tasks %v of the kernel's %v: the partial view is not visible\n%s", scanned, total, out)
	}
	if !strings.Contains(out, `memlock_scrape_collector_success{collector="process"} 1`) {
		t.Errorf("hidepid=2 hides pids, it fails no read:\n%s", out)
	}
}

// expoValue returns the value of an unlabelled metric in an exposition.
func expoValue(t *testing.T, out, metric string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + metric + ` (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in\n%s", metric, out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestTruthIOUringCharge (9.3): io_uring pins registered buffers in VmPin
// whoever registers them, but charges the user only when the caller lacks
// CAP_IPC_LOCK. uid 54321 without it and uid 54322 with it each register
// 1 MiB; a second 1 MiB registration of uid 54321 under a 1.5 MiB limit
// fails, which shows the per-user charge on the kernel itself.
func TestTruthIOUringCharge(t *testing.T) {
	needRoot(t)
	const size = 1 << 20
	env := []string{"MEMLOCK_TRUTH_BYTES=" + strconv.Itoa(size)}
	plain := startTruth(t, "uring", env, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 54321, Gid: 54321, Groups: []uint32{}}})
	if plain.details != "register=ok" {
		t.Skipf("io_uring buffer registration unavailable: %s", plain.details)
	}
	capable := startTruth(t, "uring", env, &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 54322, Gid: 54322, Groups: []uint32{}},
		AmbientCaps: []uintptr{unix.CAP_IPC_LOCK},
	})
	if capable.details != "register=ok" {
		t.Fatalf("uid 54322 with CAP_IPC_LOCK: %s", capable.details)
	}
	second := startTruth(t, "uring", append(env, "MEMLOCK_TRUTH_LIMIT="+strconv.Itoa(size+size/2)),
		&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 54321, Gid: 54321, Groups: []uint32{}}})
	if second.details != "register=ENOMEM" {
		t.Fatalf("uid 54321's second 1 MiB under a 1.5 MiB limit: %s, want ENOMEM (the per-user charge)", second.details)
	}
	reg := realRegistry(t, DefaultConfig(), "user")
	for _, tc := range []struct {
		uid             string
		pinned, charged float64
	}{{"54321", size, size}, {"54322", size, 0}} {
		if v, ok := ofLabel(t, reg, "memlock_user_processes_pinned_bytes", "uid", tc.uid); !ok || v != tc.pinned {
			t.Errorf("uid %s: processes_pinned_bytes %v (%v), want %v", tc.uid, v, ok, tc.pinned)
		}
		if v, ok := ofLabel(t, reg, "memlock_user_charged_pinned_bytes", "uid", tc.uid); !ok || v != tc.charged {
			t.Errorf("uid %s: charged_pinned_bytes %v (%v), want %v", tc.uid, v, ok, tc.charged)
		}
	}
}

// TestTruthSysvIPC (9.2, 9.3): root locks a 2 MiB segment that uid 54321
// owns. The exporter attributes it to the owner, and the kernel did not
// charge the owner: 54321 still locks a segment of its own under a limit
// of that size. A child in a new IPC namespace sees none of it, and the
// collector says its view is not the host's.
func TestTruthSysvIPC(t *testing.T) {
	needRoot(t)
	const size = 2 << 20
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Skipf("shmget: %v", err)
	}
	t.Cleanup(func() { unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		t.Fatal(err)
	}
	ds.Perm.Uid = 54321
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.SysvShmCtl(id, shmLock, nil); err != nil {
		t.Fatal(err)
	}
	owner := startTruth(t, "shmlock", []string{"MEMLOCK_TRUTH_BYTES=" + strconv.Itoa(size), "MEMLOCK_TRUTH_LIMIT=" + strconv.Itoa(size)},
		&syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 54321, Gid: 54321, Groups: []uint32{}}})
	if owner.details != "shmlock=ok" {
		t.Errorf("uid 54321 could not lock 2 MiB under a 2 MiB limit (%s): root's lock of its segment was charged to it", owner.details)
	}

	reg := realRegistry(t, DefaultConfig(), "sysvipc")
	if v, ok := ofLabel(t, reg, "memlock_sysvipc_shm_locked_bytes", "uid", "54321"); !ok || v < size {
		t.Errorf("owner 54321: shm_locked_bytes %v (%v), want at least %d", v, ok, size)
	}
	if s := series(t, reg, "memlock_sysvipc_host_ipc_namespace"); len(s) != 1 || s[0].value != 1 {
		t.Errorf("in the host's IPC namespace: host_ipc_namespace %v, want 1", s)
	}
	out := runTruth(t, "ipcns-scrape", nil, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWIPC})
	if strings.Contains(out, `uid="54321"`) {
		t.Errorf("a new IPC namespace shows the host's segment:\n%s", out)
	}
	if v := expoValue(t, out, "memlock_sysvipc_host_ipc_namespace"); v != 0 {
		t.Errorf("in a new IPC namespace: host_ipc_namespace %v, want 0\n%s", v, out)
	}
}

// TestTruthLateScan (9.7): a scrape whose deadline has passed before the
// scan starts still reports the processes the previous scrape reported,
// marked stale, and fails the collector.
func TestTruthLateScan(t *testing.T) {
	needRoot(t)
	const locked = 64 << 10
	p := startTruth(t, "lock", []string{"MEMLOCK_TRUTH_BYTES=" + strconv.Itoa(locked)}, nil)
	e := newExporter(t, DefaultConfig(), "process", "user")
	first := prometheus.NewPedanticRegistry()
	first.MustRegister(e)
	if v, _, ok := ofPid(t, first, "memlock_process_locked_bytes", p.pid); !ok || v != locked {
		t.Fatalf("first scrape: locked_bytes %v (%v), want %d", v, ok, locked)
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	late, err := e.Scrape(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(late)
	if v, _, ok := ofPid(t, reg, "memlock_process_locked_bytes", p.pid); !ok || v != locked {
		t.Errorf("late scrape: locked_bytes %v (%v), want the last scrape's %d", v, ok, locked)
	}
	if v, _, ok := ofPid(t, reg, "memlock_process_limit_soft_bytes", p.pid); !ok || v <= 0 {
		t.Errorf("late scrape: the last scrape's limit is missing (%v, %v)", v, ok)
	}
	if s := series(t, reg, "memlock_processes_stale"); len(s) != 1 || s[0].value < 1 {
		t.Errorf("late scrape: processes_stale %v, want at least 1", s)
	}
	if v, ok := ofLabel(t, reg, "memlock_scrape_collector_success", "collector", "process"); !ok || v != 0 {
		t.Errorf("late scrape: process collector success %v, want 0", v)
	}
	if s := series(t, reg, "memlock_user_processes_locked_bytes"); len(s) != 0 {
		t.Errorf("late scrape: partial user sums reported: %v", s)
	}
}

// shmLock is shmctl's SHM_LOCK command (linux/shm.h).
const shmLock = 11

// setStatusLine replaces the line starting with prefix in a fixture status.
func setStatusLine(t *testing.T, path, prefix, line string) {
	t.Helper()
	b := readFixture(t, path)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix) + `.*$`)
	if !re.Match(b) {
		t.Fatalf("%s has no %s line", path, prefix)
	}
	replaceWith(t, path, re.ReplaceAllLiteral(b, []byte(line)))
}

// TestHostilePidSymlink (10.6): a pid directory that is a symbolic link
// ("111 -> 100") is not a process: pid 100's files must not be reported
// again as pid 111's.
func TestHostilePidSymlink(t *testing.T) {
	cfg := hostileConfig(t)
	if err := os.Symlink("100", filepath.Join(cfg.ProcPath, "111")); err != nil {
		t.Fatal(err)
	}
	out := scrapeWithin(t, newExporter(t, cfg, "process", "user"))
	if hasSeries(out, "memlock_process_locked_bytes", "111") {
		t.Errorf("the symlink 111 -> 100 was followed and reported as a process:\n%s", out)
	}
	if !hasSeries(out, "memlock_process_locked_bytes", "100") {
		t.Errorf("pid 100 itself is missing:\n%s", out)
	}
	// uid 1000 is java 100 (1 GiB) and java 600 (8 KiB), once each.
	if !strings.Contains(out, `memlock_user_processes_locked_bytes{uid="1000"} 1.073750016e+09`) {
		t.Errorf("uid 1000's sum counts the link's target twice or misses it:\n%s", out)
	}
}

// TestHostileSumOverflow (10.6): two VmLck values near 2^64 bytes of one
// uid must not wrap the user's sum around to a small number while the
// collector reports success.
func TestHostileSumOverflow(t *testing.T) {
	cfg := hostileConfig(t)
	// The largest kB count whose bytes fit in 64 bits.
	const huge = "VmLck:\t18014398509481983 kB"
	setStatusLine(t, filepath.Join(cfg.ProcPath, "100", "status"), "VmLck:", huge)
	setStatusLine(t, filepath.Join(cfg.ProcPath, "600", "status"), "VmLck:", huge)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newExporter(t, cfg, "process", "user"))
	v, ok := ofLabel(t, reg, "memlock_user_processes_locked_bytes", "uid", "1000")
	if ok && v < 1<<63 {
		t.Errorf("uid 1000's sum wrapped to %v", v)
	}
	if s, _ := ofLabel(t, reg, "memlock_scrape_collector_success", "collector", "user"); s != 0 {
		t.Errorf("user collector success %v with an overflowing sum, want 0", s)
	}
	if f, _ := ofLabel(t, reg, "memlock_process_read_failures", "reason", "malformed"); f < 1 {
		t.Errorf("the overflow is not counted as malformed (%v)", f)
	}
}

// TestHostileHugeName (10.6): a 500 KB Name line must not become a 500 KB
// label: a process's comm has at most 15 bytes.
func TestHostileHugeName(t *testing.T) {
	cfg := hostileConfig(t)
	setStatusLine(t, filepath.Join(cfg.ProcPath, "100", "status"), "Name:", "Name:\t"+strings.Repeat("A", 500<<10))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newExporter(t, cfg, "process"))
	_, labels, ok := ofPid(t, reg, "memlock_process_locked_bytes", 100)
	if !ok || labels["comm"] != strings.Repeat("A", 15) {
		t.Errorf("pid 100: comm of %d bytes (reported %v), want the first 15", len(labels["comm"]), ok)
	}
}

// TestTruthNonDumpableSmaps (9.9): an exporter without CAP_SYS_PTRACE
// reads the smaps of its own uid's processes, but not of one of them that
// is not dumpable (PR_SET_DUMPABLE 0, as ssh-agent and gpg-agent set):
// the kernel's ptrace check refuses it, and the startup message says so.
func TestTruthNonDumpableSmaps(t *testing.T) {
	needRoot(t)
	const uid = 54323
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	dumpable := startTruth(t, "lock", []string{"MEMLOCK_TRUTH_BYTES=65536"}, cred)
	hidden := startTruth(t, "lock", []string{"MEMLOCK_TRUTH_BYTES=65536", "MEMLOCK_TRUTH_NODUMP=1"}, cred)
	out := runTruth(t, "process-scrape", nil, cred)
	if !hasSeries(out, "memlock_process_locked_resident_bytes", strconv.Itoa(dumpable.pid)) {
		t.Errorf("the dumpable process of the exporter's own uid has no resident bytes:\n%s", out)
	}
	if hasSeries(out, "memlock_process_locked_resident_bytes", strconv.Itoa(hidden.pid)) ||
		!hasSeries(out, "memlock_process_locked_bytes", strconv.Itoa(hidden.pid)) {
		t.Errorf("the non-dumpable process must be reported without resident bytes:\n%s", out)
	}
	if !strings.Contains(out, `memlock_process_read_failures{file="smaps_rollup",reason="permission"}`) {
		t.Errorf("the refused smaps_rollup is not counted:\n%s", out)
	}
}
