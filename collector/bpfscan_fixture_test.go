package collector

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
)

// fakeTasks serves one fixed Snapshot as the iterator would.
type fakeTasks struct{ s bpf.Snapshot }

func (f *fakeTasks) Tasks(context.Context) (*bpf.Snapshot, error) { return &f.s, nil }

// fixturePass is what the iterator would read of testdata/proc's processes:
// the same VmLck, VmPin, limits, uid, CapEff and Threads as their status
// and limits files, every one in the initial user namespace (the fixture
// has no ns/user or uid_map, which reads as a kernel without user
// namespaces). The per-user charges agree with the fixture too: fio (uid
// 1001, no CAP_IPC_LOCK) pins 4 MiB of io_uring buffers, charged to its
// user; the 1 MiB SHM_LOCKed segment of sysvipc/shm is charged to uid 0.
func fixturePass() *bpf.Snapshot {
	const mm = bpf.FlagLeader | bpf.FlagMM | bpf.FlagPinnedVM | bpf.FlagInitUserNS | bpf.FlagUserLockedVM | bpf.FlagUcountsMemlock
	inf := uint64(math.MaxUint64)
	s := &bpf.Snapshot{
		Users: []bpf.User{
			{UID: 1000, Valid: true}, {UID: 1001, LockedBytes: 4 << 20, Valid: true},
			{UID: 33, Valid: true}, {UID: 0, Valid: true}, {UID: 100, Valid: true},
		},
		Charges: []bpf.ShmCharge{
			{UID: 1000, UserNSInode: 0xEFFFFFFD, Valid: true}, {UID: 1001, UserNSInode: 0xEFFFFFFD, Valid: true},
			{UID: 33, UserNSInode: 0xEFFFFFFD, Valid: true}, {UID: 0, UserNSInode: 0xEFFFFFFD, LockedBytes: 1 << 20, Valid: true},
			{UID: 100, UserNSInode: 0xEFFFFFFD, Valid: true},
		},
	}
	add := func(pid int32, comm string, flags bpf.Flags, uid uint32, capEff, locked, pinned, soft, hard uint64, user int) {
		t := bpf.Task{PID: pid, TID: pid, Flags: flags, UID: uid, CapEffective: capEff, LockedBytes: locked, PinnedBytes: pinned,
			MemlockSoft: soft, MemlockHard: hard, UserNSInode: 0xEFFFFFFD, Threads: 1, User: user, Charge: user}
		t.SetComm(comm)
		s.Tasks = append(s.Tasks, t)
	}
	add(100, "java", mm, 1000, 0, 1<<30, 0, inf, inf, 0)
	add(200, "fio", mm, 1001, 0, 0, 4<<20, 8<<20, 8<<20, 1)
	add(300, "nginx", mm, 33, 0, 0, 0, 64<<10, 64<<10, 2)
	add(400, "kthreadd", bpf.FlagLeader|bpf.FlagKernelThread|bpf.FlagInitUserNS, 0, 0x1ffffffffff, 0, 0, inf, inf, 3)
	add(500, "vault", mm, 100, 0x4000, 60<<10, 0, 64<<10, 64<<10, 4)
	add(600, "java", mm, 1000, 0, 8<<10, 0, inf, inf, 0)
	return s
}

// withFixturePass is an exporter over testdata/proc whose scanner takes the
// fixture's pass (the fixture tree is not the exporter's pid namespace, so
// New alone would choose procfs).
func withFixturePass(t *testing.T, names ...string) *Exporter {
	t.Helper()
	e := newExporter(t, fixtureConfig(), names...)
	e.scanner.pass = &passState{src: &fakeTasks{*fixturePass()}, byPID: map[int32]int{}}
	e.scanner.source, e.scanner.reason = SourceBPF, ""
	return e
}

// TestBPFFixtureMatchesProcfs: on the fixture, the process and user
// collectors serve the same series from the pass as from the status files
// (all but the source and the BPF-only metrics), and the BPF-only metrics
// match testdata/golden/user_bpf.prom.
func TestBPFFixtureMatchesProcfs(t *testing.T) {
	same := func(name string) bool {
		return name != "memlock_scan_source_info" && !strings.HasPrefix(name, "memlock_user_kernel_") &&
			name != "memlock_scrape_collector_duration_seconds" && name != "memlock_sysvipc_host_ipc_namespace"
	}
	for _, c := range []string{"process", "user"} {
		t.Run(c, func(t *testing.T) {
			render := func(e *Exporter) []byte {
				reg := prometheus.NewPedanticRegistry()
				reg.MustRegister(e)
				b, err := renderText(reg, same)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			procfs, pass := render(newExporter(t, fixtureConfig(), c)), render(withFixturePass(t, c))
			if !bytes.Equal(procfs, pass) || !bytes.Contains(pass, []byte(`memlock_scrape_collector_success{collector="`+c+`"} 1`)) {
				t.Errorf("the pass's exposition differs from /proc's:\n--- pass\n%s\n--- procfs\n%s", pass, procfs)
			}
		})
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(withFixturePass(t, "user"))
	got, err := renderText(reg, func(name string) bool {
		return name == "memlock_scan_source_info" || strings.HasPrefix(name, "memlock_user_kernel_")
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden", "user_bpf.prom")
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
