package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/bpf/bpftest"
)

const page = 4096

// requireBPF skips unless this process may load the task iterator.
func requireBPF(t *testing.T) {
	t.Helper()
	bpftest.RequireRoot(t)
	m, err := bpf.Open()
	if err != nil {
		t.Skipf("cannot load the task iterator here: %v", err)
	}
	m.Close()
	if os.Getpagesize() != page {
		t.Skipf("expected sizes assume 4 KiB pages, have %d", os.Getpagesize())
	}
}

// seriesOf returns the series of the families whose name starts with prefix
// and that carry label=value, keyed by family name and sorted labels.
func seriesOf(mfs map[string]*dto.MetricFamily, prefix, label, value string) map[string]float64 {
	out := map[string]float64{}
	for name, mf := range mfs {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			match := false
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
				match = match || (l.GetName() == label && l.GetValue() == value)
			}
			if !match {
				continue
			}
			sort.Strings(ls)
			out[name+"{"+strings.Join(ls, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestBPFMatchesProcfs: the exporter with --collector.bpf=on and with off
// serve the same process and user series, with the same values, for stopped
// children that lock and pin known amounts as different users, and both
// equal what the children made. Only the BPF one has the kernel's per-user
// charges, exact to the byte: an io_uring registration by a fresh uid
// without CAP_IPC_LOCK is charged to the user, one with it is not, and an
// SHM_LOCK of another user's segment is charged to the caller.
func TestBPFMatchesProcfs(t *testing.T) {
	requireLinuxProc(t)
	requireBPF(t)
	bin, _ := sharedBuild(t)
	type want struct {
		locked, pinned uint64
		soft, hard     uint64
		uid            int
		ipcLock        bool
	}
	type kid struct {
		c *bpftest.Child
		w want
	}
	var kids []kid
	add := func(o bpftest.Opts, mode string, arg uint64, w want) *bpftest.Child {
		c := bpftest.Start(t, o, mode, arg)
		kids = append(kids, kid{c, w})
		return c
	}
	u1, u2, u3, u4 := bpftest.FreshUID(t), bpftest.FreshUID(t), bpftest.FreshUID(t), bpftest.FreshUID(t)
	const buf = 256<<10 + 3*page
	add(bpftest.Opts{UID: -1, Memlock: &[2]uint64{4 << 20, 8 << 20}}, "lock", 1<<20+3*page,
		want{locked: 1<<20 + 3*page, soft: 4 << 20, hard: 8 << 20, uid: 0, ipcLock: true})
	add(bpftest.Opts{UID: u1, Memlock: &[2]uint64{2 << 20, 4 << 20}}, "lock", 512<<10,
		want{locked: 512 << 10, soft: 2 << 20, hard: 4 << 20, uid: u1})
	add(bpftest.Opts{UID: u2, Caps: []uintptr{unix.CAP_IPC_LOCK}, Memlock: &[2]uint64{0, 0}}, "lock", 64<<10,
		want{locked: 64 << 10, uid: u2, ipcLock: true})
	uring := add(bpftest.Opts{UID: u3, Memlock: &[2]uint64{1 << 20, 1 << 20}}, "uring", buf,
		want{pinned: buf, soft: 1 << 20, hard: 1 << 20, uid: u3})
	uringCap := add(bpftest.Opts{UID: u4, Caps: []uintptr{unix.CAP_IPC_LOCK}, Memlock: &[2]uint64{1 << 20, 1 << 20}}, "uring", buf,
		want{pinned: buf, soft: 1 << 20, hard: 1 << 20, uid: u4, ipcLock: true})

	// SHM_LOCK of a segment owned by one fresh uid, by another.
	const shmSize = 1<<20 + 100
	const shmPages = (shmSize + page - 1) / page
	owner, caller := bpftest.FreshUID(t), bpftest.FreshUID(t)
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, shmSize, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Skipf("shmget: %v", err)
	}
	t.Cleanup(func() { _, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
	var ds unix.SysvShmDesc
	if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err != nil {
		t.Fatal(err)
	}
	ds.Perm.Uid, ds.Perm.Gid = uint32(owner), uint32(owner)
	if _, err := unix.SysvShmCtl(id, unix.IPC_SET, &ds); err != nil {
		t.Fatal(err)
	}
	ownerKid := bpftest.Start(t, bpftest.Opts{UID: owner}, "lock", 0)
	ownerKid.Expect("ready")
	shm := bpftest.Start(t, bpftest.Opts{UID: caller, Caps: []uintptr{unix.CAP_IPC_LOCK}, Memlock: &[2]uint64{64 << 10, 64 << 10}}, "shmlock", uint64(id))

	args := []string{"--no-collector.system", "--no-collector.sysvipc", "--no-collector.cgroup"}
	on := startExporter(t, bin, -1, append(args, "--collector.bpf=on")...)
	off := startExporter(t, bin, -1, append(args, "--collector.bpf=off")...)
	id3, id4 := map[string]string{"uid": strconv.Itoa(u3)}, map[string]string{"uid": strconv.Itoa(u4)}
	before := on.scrape(t)
	rings3, _ := value(before, "memlock_user_kernel_locked_vm_bytes", id3) // io_uring_setup's rings
	rings4, _ := value(before, "memlock_user_kernel_locked_vm_bytes", id4)
	for _, c := range []*bpftest.Child{uring, uringCap, shm} {
		c.Next()
	}
	for _, k := range kids {
		if k.c.Cmd.Args[1] == "lock" {
			k.c.Expect("ready")
		}
	}
	for _, k := range kids {
		k.c.Stop()
	}
	shm.Stop()
	ownerKid.Stop()
	mon, moff := on.scrape(t), off.scrape(t)

	if v, ok := value(mon, "memlock_scan_source_info", map[string]string{"source": "bpf", "reason": ""}); !ok || v != 1 {
		t.Errorf("--collector.bpf=on: no memlock_scan_source_info{source=\"bpf\"}")
	}
	if _, ok := value(moff, "memlock_scan_source_info", map[string]string{"source": "procfs", "reason": "disabled"}); !ok {
		t.Errorf("--collector.bpf=off: no memlock_scan_source_info{source=\"procfs\",reason=\"disabled\"}")
	}
	for _, k := range kids {
		pid, uid := strconv.Itoa(k.c.Pid), strconv.Itoa(k.w.uid)
		t.Run(fmt.Sprintf("%s_uid%d", k.c.Cmd.Args[1], k.w.uid), func(t *testing.T) {
			pb, pp := seriesOf(mon, "memlock_process_", "pid", pid), seriesOf(moff, "memlock_process_", "pid", pid)
			if len(pb) == 0 || fmt.Sprint(pb) != fmt.Sprint(pp) {
				t.Errorf("process series differ:\nbpf    %v\nprocfs %v", pb, pp)
			}
			lv := map[string]string{"pid": pid, "uid": uid, "comm": "child"}
			check := func(name string, want float64) {
				t.Helper()
				for _, m := range []map[string]*dto.MetricFamily{mon, moff} {
					if got, ok := value(m, name, lv); !ok || got != want {
						t.Errorf("%s: %v (present %v), child made %v", name, got, ok, want)
					}
				}
			}
			check("memlock_process_locked_bytes", float64(k.w.locked))
			check("memlock_process_pinned_bytes", float64(k.w.pinned))
			check("memlock_process_limit_soft_bytes", float64(k.w.soft))
			check("memlock_process_limit_hard_bytes", float64(k.w.hard))
			check("memlock_process_cap_ipc_lock", map[bool]float64{true: 1}[k.w.ipcLock])
			check("memlock_process_user_namespace_initial", 1)
			if k.w.uid == 0 {
				return // root's sums move with the host's other processes
			}
			ub, up := seriesOf(mon, "memlock_user_processes", "uid", uid), seriesOf(moff, "memlock_user_processes", "uid", uid)
			for name, v := range seriesOf(mon, "memlock_user_charged", "uid", uid) {
				ub[name] = v
			}
			for name, v := range seriesOf(moff, "memlock_user_charged", "uid", uid) {
				up[name] = v
			}
			if len(ub) != 4 || fmt.Sprint(ub) != fmt.Sprint(up) {
				t.Errorf("user series differ:\nbpf    %v\nprocfs %v", ub, up)
			}
		})
	}
	for name := range moff {
		if strings.HasPrefix(name, "memlock_user_kernel_") {
			t.Errorf("%s served by --collector.bpf=off", name)
		}
	}
	kernel := func(name string, lv map[string]string) float64 {
		t.Helper()
		v, ok := value(mon, name, lv)
		if !ok {
			t.Errorf("no %s%v", name, lv)
		}
		return v
	}
	if got := kernel("memlock_user_kernel_locked_vm_bytes", id3) - rings3; got != buf || rings3 <= 0 {
		t.Errorf("uid %d without CAP_IPC_LOCK: user locked_vm rose by %v for a %d-byte registration (rings %v)", u3, got, buf, rings3)
	}
	if got := kernel("memlock_user_kernel_locked_vm_bytes", id4); got != 0 || rings4 != 0 {
		t.Errorf("uid %d with CAP_IPC_LOCK: user locked_vm %v (before %v), want 0", u4, got, rings4)
	}
	if got := kernel("memlock_user_kernel_shm_locked_bytes", map[string]string{"uid": strconv.Itoa(caller), "user_namespace": "4026531837"}); got != shmPages*page {
		t.Errorf("SHM_LOCK caller uid %d charged %v, want %d (%d bytes in whole pages)", caller, got, shmPages*page, shmSize)
	}
	if got, ok := value(mon, "memlock_user_kernel_shm_locked_bytes", map[string]string{"uid": strconv.Itoa(owner)}); ok && got != 0 {
		t.Errorf("segment owner uid %d charged %v, want 0", owner, got)
	}
}

// TestBPFFallback: the built exporter as uid 65534 without capabilities:
// --collector.bpf=on exits 2 naming CAP_BPF and CAP_PERFMON; auto serves
// from /proc, says so in one log line and in memlock_scan_source_info.
func TestBPFFallback(t *testing.T) {
	requireLinuxProc(t)
	bpftest.RequireRoot(t)
	const nobody = 65534
	bin, _ := sharedBuild(t)
	cmd := exec.Command(bin, "--web.listen-address=127.0.0.1:0", "--collector.bpf=on")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("--collector.bpf=on without capabilities: %v, want exit 2\n%s", err, out)
	}
	if !strings.Contains(string(out), "--collector.bpf=on") || !strings.Contains(string(out), "CAP_BPF and CAP_PERFMON") {
		t.Errorf("message does not name the flag and the capabilities:\n%s", out)
	}
	if strings.Contains(string(out), "RemoveMemlock") {
		t.Errorf("message blames RLIMIT_MEMLOCK, which BPF memory is not charged to since 5.11:\n%s", out)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n != 0 {
		t.Errorf("want one line, got %d:\n%s", n+1, out)
	}

	e := startExporter(t, bin, nobody, "--collector.bpf=auto")
	mfs := e.scrape(t)
	if v, ok := value(mfs, "memlock_scan_source_info", map[string]string{"source": "procfs", "reason": "permission"}); !ok || v != 1 {
		t.Errorf("no memlock_scan_source_info{source=\"procfs\",reason=\"permission\"} 1")
	}
	if _, ok := mfs["memlock_user_kernel_locked_vm_bytes"]; ok {
		t.Error("memlock_user_kernel_locked_vm_bytes served without BPF")
	}
	if v, ok := value(mfs, "memlock_processes_scanned", nil); !ok || v < 1 {
		t.Errorf("memlock_processes_scanned %v: the /proc path did not run", v)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "per-process numbers from /proc"); n != 1 || !strings.Contains(logs, "reason=permission") {
		t.Errorf("want one INFO line with reason=permission, got %d:\n%s", n, logs)
	}
}

// TestBPFOtherPidNamespace: a --path.procfs whose self link is not the
// exporter's pid (here a fixture tree; in a container, the host's /proc
// without hostPID) shows pids the iterator does not walk: on exits 2
// saying so, auto serves from that procfs with reason other_pid_namespace.
func TestBPFOtherPidNamespace(t *testing.T) {
	requireLinuxProc(t)
	requireBPF(t)
	bin, _ := sharedBuild(t)
	const fixture = "../../collector/testdata/proc"
	if _, err := os.Stat(fixture); err != nil {
		t.Skip(err)
	}
	out, err := exec.Command(bin, "--web.listen-address=127.0.0.1:0", "--collector.bpf=on", "--path.procfs="+fixture).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "another pid namespace") {
		t.Errorf("--collector.bpf=on with a procfs of another pid namespace: %v, want exit 2 naming it\n%s", err, out)
	}
	e := startExporter(t, bin, -1, "--collector.bpf=auto", "--path.procfs="+fixture)
	mfs := e.scrape(t)
	if _, ok := value(mfs, "memlock_scan_source_info", map[string]string{"source": "procfs", "reason": "other_pid_namespace"}); !ok {
		t.Errorf("no memlock_scan_source_info{source=\"procfs\",reason=\"other_pid_namespace\"}")
	}
}
