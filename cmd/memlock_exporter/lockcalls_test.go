package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf/bpftest"
	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// tracefsCmd runs bin with args where it sees tracefs at
// /sys/kernel/tracing: this host mounts none, so the command runs in a
// private mount namespace of its own with tracefs mounted there
// (util-linux unshare), which the test's cleanup ends with the process.
func tracefsCmd(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	var st unix.Statfs_t
	if unix.Statfs("/sys/kernel/tracing", &st) == nil && st.Type == unix.TRACEFS_MAGIC {
		return exec.Command(bin, args...)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skipf("no tracefs at /sys/kernel/tracing and no unshare to mount one: %v", err)
	}
	return exec.Command(unshare, append([]string{"--mount", "--propagation", "private", "sh", "-c",
		`mount -t tracefs nodev /sys/kernel/tracing && exec "$0" "$@"`, bin}, args...)...)
}

// startTracingExporter starts the built exporter with --collector.bpf=on
// where it sees tracefs, and fails unless lock-call tracing is attached.
func startTracingExporter(t *testing.T, args ...string) *exporterProc {
	t.Helper()
	bin, _ := sharedBuild(t)
	e := startExporterCmd(t, func(addr string) *exec.Cmd {
		return tracefsCmd(t, bin, append([]string{"--web.listen-address=" + addr, "--collector.bpf=on"}, args...)...)
	}, nil)
	if v, ok := value(e.scrape(t), "memlock_lock_call_tracing_enabled", map[string]string{"reason": "attached"}); !ok || v != 1 {
		t.Fatalf("lock-call tracing not attached:\n%s", e.logs)
	}
	if !strings.Contains(e.logs.String(), "lock-call tracing attached") {
		t.Errorf("no start-up line saying lock-call tracing is attached:\n%s", e.logs)
	}
	return e
}

// lockCallSeries returns the failure series of pid: labels (without pid)
// to value, for one family.
func lockCallSeries(mfs map[string]*dto.MetricFamily, name string, pid int) map[string]float64 {
	out := map[string]float64{}
	for _, m := range mfs[name].GetMetric() {
		var ls []string
		mine := false
		for _, l := range m.GetLabel() {
			if l.GetName() == "pid" {
				mine = l.GetValue() == strconv.Itoa(pid)
				continue
			}
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		if !mine {
			continue
		}
		v := m.GetCounter().GetValue()
		if m.GetGauge() != nil {
			v = m.GetGauge().GetValue()
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}

// TestLockCallFailures: unprivileged children (fresh uids, no
// capabilities, known limits) make lock calls the kernel refuses; the built
// exporter's /metrics counts each exactly once, with the syscall and errno
// the child saw, its pid, comm and uid and, where the arguments say, the
// bytes asked; the child's successful mlock is counted; a storm of 100,000
// failures is one series counting all of them with nothing dropped; the
// series of the children that exited are served by one more scrape, then
// gone; the lock-call families pass promlint.
func TestLockCallFailures(t *testing.T) {
	requireLinuxProc(t)
	requireBPF(t)
	e := startTracingExporter(t)
	before := e.scrape(t)
	mlockOK, _ := value(before, "memlock_lock_calls_succeeded_total", map[string]string{"syscall": "mlock"})

	const mib = 1 << 20
	small := &[2]uint64{64 << 10, 64 << 10}
	type tc struct {
		name, mode string
		arg        uint64
		limit      *[2]uint64
		syscall    string
		errno      unix.Errno
		bytes      float64 // -1: no failed_bytes series
		count      float64
	}
	cases := []tc{
		{"mlock", "mlock", mib, small, "mlock", unix.ENOMEM, mib, 1},
		{"mlock2", "fail-mlock2", mib, small, "mlock2", unix.ENOMEM, mib, 1},
		{"elasticsearch", "fail-mlockall", 256 * mib, esLimit(t, 128*mib), "mlockall", unix.ENOMEM, 0, 1}, // bytes: its VmSize
		{"mmap", "fail-mmap", mib, small, "mmap", unix.EAGAIN, mib, 1},
		{"shm", "fail-shm", 0, &[2]uint64{0, 0}, "shmctl", unix.EPERM, mib, 1}, // bytes: the segment's size
		{"uring", "fail-uring", mib, small, "io_uring_register", unix.ENOMEM, mib, 1},
		{"uringv", "fail-uringv", 8 << 10, small, "io_uring_register", unix.ENOMEM, 37 * 8 << 10, 1}, // 37 iovecs, BUFFERS2
		{"setrlimit", "fail-setrlimit", mib, small, "setrlimit", unix.EPERM, -1, 1},
		{"prlimit", "fail-prlimit", mib, small, "prlimit64", unix.EPERM, -1, 1},
		{"storm", "fail-storm", 100000, small, "mlock", unix.ENOMEM, 100000 * mib, 100000},
	}
	start := time.Now()
	kids := make([]*bpftest.Child, len(cases))
	uids := make([]int, len(cases))
	for i, c := range cases {
		uids[i] = bpftest.FreshUID(t)
		arg := c.arg
		if c.mode == "fail-shm" {
			arg = uint64(shmOwnedBy(t, uids[i], mib))
		}
		kids[i] = bpftest.Start(t, bpftest.Opts{UID: uids[i], Memlock: c.limit, Name: c.name}, c.mode, arg)
		if _, err := kids[i].Stdin.Write([]byte("\n")); err != nil {
			t.Fatal(err)
		}
		kids[i].Expect("error " + strconv.Itoa(int(c.errno)))
	}
	end := time.Now()

	mfs := e.scrape(t)
	for i, c := range cases {
		pid := kids[i].Pid
		labels := "comm=" + c.name + ",container_id=,errno=" + strings.ToLower(unix.ErrnoName(c.errno)) +
			",pod_uid=,syscall=" + c.syscall + ",uid=" + strconv.Itoa(uids[i])
		if got := lockCallSeries(mfs, "memlock_lock_call_failures_total", pid); len(got) != 1 || got[labels] != c.count {
			t.Errorf("%s (pid %d): failures %v, want {%s} %v", c.name, pid, got, labels, c.count)
		}
		got := lockCallSeries(mfs, "memlock_lock_call_failed_bytes_total", pid)
		if c.syscall == "mlockall" {
			// mlockall(MCL_CURRENT) asks for the whole address space
			// (total_vm), which the child, blocked since, still has.
			c.bytes = float64(kids[i].VmSize())
		}
		switch {
		case c.bytes < 0 && len(got) != 0:
			t.Errorf("%s: failed bytes %v for a call without a length argument", c.name, got)
		case c.bytes >= 0 && (len(got) != 1 || got[labels] != c.bytes):
			t.Errorf("%s: failed bytes %v, want {%s} %v", c.name, got, labels, c.bytes)
		}
		ts := lockCallSeries(mfs, "memlock_lock_call_last_failure_timestamp_seconds", pid)[labels]
		if lo, hi := float64(start.Add(-time.Second).Unix()), float64(end.Add(time.Second).Unix()); ts < lo || ts > hi {
			t.Errorf("%s: last failure at %v, want within [%v, %v]", c.name, ts, lo, hi)
		}
	}
	if v, _ := value(mfs, "memlock_lock_calls_succeeded_total", map[string]string{"syscall": "mlock"}); v < mlockOK+1 {
		t.Errorf("mlock successes %v -> %v: the mlock child's first page was locked", mlockOK, v)
	}
	if v, ok := value(mfs, "memlock_lock_call_failures_dropped_total", nil); !ok || v != 0 {
		t.Errorf("dropped %v (served %v), want 0", v, ok)
	}
	if v, ok := value(mfs, "memlock_lock_call_failure_series_omitted", nil); !ok || v != 0 {
		t.Errorf("omitted %v (served %v), want 0", v, ok)
	}
	lintLockCalls(t, e)

	for _, k := range kids {
		k.Kill()
	}
	shown := e.scrape(t)
	gone := e.scrape(t)
	for i, c := range cases {
		if got := lockCallSeries(shown, "memlock_lock_call_failures_total", kids[i].Pid); len(got) != 1 {
			t.Errorf("%s: the scrape after the exit shows %v, want its series once more", c.name, got)
		}
		if got := lockCallSeries(gone, "memlock_lock_call_failures_total", kids[i].Pid); len(got) != 0 {
			t.Errorf("%s: still served two scrapes after the exit: %v", c.name, got)
		}
	}
}

// esLimit is the memlock limit of the Elasticsearch-like child: n, or
// this process's hard limit where that is lower (an unprivileged child
// cannot raise it, and this host's root lacks CAP_SYS_RESOURCE: 8 MiB).
// The child reserves 256 MiB of address space, so mlockall(MCL_CURRENT)
// fails under either.
func esLimit(t *testing.T, n uint64) *[2]uint64 {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &lim); err != nil {
		t.Fatal(err)
	}
	n = min(n, lim.Max)
	return &[2]uint64{n, n}
}

// shmOwnedBy creates a SysV segment of size bytes owned by uid, removed
// when the test ends.
func shmOwnedBy(t *testing.T, uid int, size int) int {
	t.Helper()
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Skipf("shmget: %v", err)
	}
	t.Cleanup(func() { _, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		t.Fatal(err)
	}
	ds.Perm.Uid, ds.Perm.Gid = uint32(uid), uint32(uid)
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		t.Fatal(err)
	}
	return id
}

// lintLockCalls runs promlint (what testutil.CollectAndLint and promtool
// check metrics run) over the lock-call families of a scrape.
func lintLockCalls(t *testing.T, e *exporterProc) {
	t.Helper()
	resp, err := http.Get("http://" + e.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var mine bytes.Buffer
	for _, line := range strings.SplitAfter(string(body), "\n") {
		if strings.Contains(line, "memlock_lock_call") {
			mine.WriteString(line)
		}
	}
	problems, err := promlint.New(&mine).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestLockCallsMaxSeries: with --collector.lockcalls.max-series=2 and
// three failing processes, two series are served (the latest failures)
// and memlock_lock_call_failure_series_omitted says 1.
func TestLockCallsMaxSeries(t *testing.T) {
	requireLinuxProc(t)
	requireBPF(t)
	e := startTracingExporter(t, "--collector.lockcalls.max-series=2")
	var pids []int
	for range 3 {
		c := bpftest.Start(t, bpftest.Opts{UID: bpftest.FreshUID(t), Memlock: &[2]uint64{64 << 10, 64 << 10}}, "fail-mlock2", 1<<20)
		if _, err := c.Stdin.Write([]byte("\n")); err != nil {
			t.Fatal(err)
		}
		c.Expect("error 12")
		pids = append(pids, c.Pid)
		time.Sleep(10 * time.Millisecond) // distinct last-failure times
	}
	mfs := e.scrape(t)
	if v, _ := value(mfs, "memlock_lock_call_failure_series_omitted", nil); v != 1 {
		t.Errorf("omitted %v, want 1", v)
	}
	if n := len(mfs["memlock_lock_call_failures_total"].GetMetric()); n != 2 {
		t.Errorf("%d failure series, want 2", n)
	}
	if got := lockCallSeries(mfs, "memlock_lock_call_failures_total", pids[0]); len(got) != 0 {
		t.Errorf("the oldest failure is served (%v), the newest two should be", got)
	}
	for _, pid := range pids[1:] {
		if got := lockCallSeries(mfs, "memlock_lock_call_failures_total", pid); len(got) != 1 {
			t.Errorf("pid %d: %v, want one series", pid, got)
		}
	}
}

// TestLockCallsWithoutPrivileges: as uid 65534 without capabilities, where
// tracefs is mounted, the exporter serves memlock_lock_call_tracing_enabled
// 0 with reason permission, no other lock-call series, and one start-up
// line saying why. Without tracefs on the host, as root it mounts one
// privately and attaches; with only CAP_BPF and CAP_PERFMON the reason is
// no_tracefs.
func TestLockCallsWithoutPrivileges(t *testing.T) {
	requireLinuxProc(t)
	requireBPF(t)
	bin, _ := sharedBuild(t)
	e := startExporterCmd(t, func(addr string) *exec.Cmd {
		// unshare needs root: setpriv drops to nobody for the exporter.
		return tracefsCmd(t, "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "--web.listen-address="+addr)
	}, nil)
	mfs := e.scrape(t)
	if v, ok := value(mfs, "memlock_lock_call_tracing_enabled", map[string]string{"reason": "permission"}); !ok || v != 0 {
		t.Errorf("no memlock_lock_call_tracing_enabled{reason=\"permission\"} 0:\n%v", mfs["memlock_lock_call_tracing_enabled"])
	}
	for name := range mfs {
		if strings.HasPrefix(name, "memlock_lock_call") && name != "memlock_lock_call_tracing_enabled" {
			t.Errorf("%s served without the tracepoints", name)
		}
	}
	if v, ok := value(mfs, "memlock_scrape_collector_success", map[string]string{"collector": "lockcalls"}); !ok || v != 1 {
		t.Errorf("lockcalls collector success %v, want 1 (no source is not a failure)", v)
	}
	if logs := e.logs.String(); strings.Count(logs, "lock-call tracing off") != 1 || !strings.Contains(logs, "reason=permission") {
		t.Errorf("want one start-up line saying lock-call tracing is off for permission:\n%s", logs)
	}

	if linux.IsTracefs(linux.TracefsDir) {
		t.Skip("this host mounts tracefs: the private mount and no_tracefs cases cannot be shown")
	}
	// Root without tracefs on the host: the exporter mounts one in a
	// private mount namespace of one thread to read the ids, and attaches.
	root := startExporter(t, bin, -1, "--collector.bpf=on")
	if v, ok := value(root.scrape(t), "memlock_lock_call_tracing_enabled", map[string]string{"reason": "attached"}); !ok || v != 1 {
		t.Errorf("as root without tracefs mounted: not attached through a private tracefs:\n%s", root.logs)
	}
	if !strings.Contains(root.logs.String(), "private_tracefs=true") {
		t.Errorf("the start-up line does not say the tracefs was mounted privately:\n%s", root.logs)
	}
	if linux.IsTracefs(linux.TracefsDir) {
		t.Error("the exporter's private tracefs is visible outside it")
	}
	// With CAP_BPF and CAP_PERFMON but no CAP_SYS_ADMIN it may not mount
	// one: no_tracefs, saying why.
	nobody := startExporterCmd(t, func(addr string) *exec.Cmd {
		return exec.Command("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=+bpf,+perfmon", "--ambient-caps=+bpf,+perfmon", bin, "--web.listen-address="+addr)
	}, nil)
	mfs = nobody.scrape(t)
	if v, ok := value(mfs, "memlock_scan_source_info", map[string]string{"source": "bpf"}); !ok || v != 1 {
		t.Skipf("the exporter as uid 65534 with CAP_BPF and CAP_PERFMON did not load BPF here:\n%s", nobody.logs)
	}
	if v, ok := value(mfs, "memlock_lock_call_tracing_enabled", map[string]string{"reason": "no_tracefs"}); !ok || v != 0 {
		t.Errorf("no memlock_lock_call_tracing_enabled{reason=\"no_tracefs\"} 0 without tracefs and CAP_SYS_ADMIN: %v\n%s", mfs["memlock_lock_call_tracing_enabled"], nobody.logs)
	}
	if !strings.Contains(nobody.logs.String(), "mounting one privately failed") {
		t.Errorf("the start-up line does not say the private mount failed:\n%s", nobody.logs)
	}
}

// TestLockCallsTracefsCopy: the exporter as uid 65534 with only CAP_BPF
// and CAP_PERFMON (as the bpf overlay and systemd drop-in run it) cannot
// read the tracepoint ids of tracefs, which is root's alone: it says
// tracefs_permission. Given a copy of the ids (what deploy/ makes at
// start) with --collector.lockcalls.tracefs, it attaches and counts a
// child's failed mlock.
func TestLockCallsTracefsCopy(t *testing.T) {
	requireLinuxProc(t)
	requireBPF(t)
	bin, _ := sharedBuild(t)
	asNobody := func(args ...string) []string {
		return append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
			"--inh-caps=+bpf,+perfmon", "--ambient-caps=+bpf,+perfmon", bin}, args...)
	}
	e := startExporterCmd(t, func(addr string) *exec.Cmd {
		return tracefsCmd(t, "/usr/bin/setpriv", asNobody("--web.listen-address="+addr)...)
	}, nil)
	mfs := e.scrape(t)
	if v, ok := value(mfs, "memlock_scan_source_info", map[string]string{"source": "bpf"}); !ok || v != 1 {
		t.Skipf("the exporter as uid 65534 with CAP_BPF and CAP_PERFMON did not load BPF here:\n%s", e.logs)
	}
	if v, ok := value(mfs, "memlock_lock_call_tracing_enabled", map[string]string{"reason": "tracefs_permission"}); !ok || v != 0 {
		t.Errorf("no memlock_lock_call_tracing_enabled{reason=\"tracefs_permission\"} 0: %v\n%s", mfs["memlock_lock_call_tracing_enabled"], e.logs)
	}

	ids := copyTracepointIDs(t)
	e = startExporterCmd(t, func(addr string) *exec.Cmd {
		cmd := exec.Command("/usr/bin/setpriv", asNobody("--web.listen-address="+addr, "--collector.lockcalls.tracefs="+ids)...)
		return cmd
	}, nil)
	if v, ok := value(e.scrape(t), "memlock_lock_call_tracing_enabled", map[string]string{"reason": "attached"}); !ok || v != 1 {
		t.Fatalf("not attached from the copy of the ids:\n%s", e.logs)
	}
	c := bpftest.Start(t, bpftest.Opts{UID: bpftest.FreshUID(t), Memlock: &[2]uint64{64 << 10, 64 << 10}}, "fail-mlock2", 1<<20)
	if _, err := c.Stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	c.Expect("error 12")
	if got := lockCallSeries(e.scrape(t), "memlock_lock_call_failures_total", c.Pid); len(got) != 1 {
		t.Errorf("child's failed mlock2: %v, want one series", got)
	}
}

// copyTracepointIDs copies events/syscalls/sys_exit_*/id of tracefs into a
// directory anyone can read, as deploy/'s init container does.
func copyTracepointIDs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := bpftest.WithTracefs(func() error {
		events, err := filepath.Glob("/sys/kernel/tracing/events/syscalls/sys_exit_*/id")
		if err != nil || len(events) == 0 {
			return fmt.Errorf("no syscall exit tracepoints: %v", err)
		}
		for _, src := range events {
			b, err := os.ReadFile(src)
			if err != nil {
				return err
			}
			dst := filepath.Join(dir, strings.TrimPrefix(src, "/sys/kernel/tracing/"))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(dst, b, 0o444); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parents are 0700 to other users: make the path walkable.
	for d := filepath.Dir(dir); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
