package linux

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStatusFixtures(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Status
	}{
		// A process locking 45420 kB, as root with every capability.
		{"status_locked.txt", Status{Name: []byte("process_api"), UID: 0, Locked: 45420 << 10, CapEff: 0x1ffffffffff, HasMM: true}},
		// A kernel thread: no Vm* lines.
		{"status_kthread.txt", Status{Name: []byte("kthreadd"), UID: 0, CapEff: 0x1ffffffffff}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var got Status
			if err := ParseStatus(fixture(t, tc.file), &got); err != nil {
				t.Fatal(err)
			}
			if string(got.Name) != string(tc.want.Name) || got.UID != tc.want.UID || got.Locked != tc.want.Locked ||
				got.Pinned != tc.want.Pinned || got.CapEff != tc.want.CapEff || got.HasMM != tc.want.HasMM {
				t.Errorf("got %+v (name %q), want %+v", got, got.Name, tc.want)
			}
			if !got.IPCLock() {
				t.Error("CAP_IPC_LOCK not seen in a full capability set")
			}
		})
	}
}

func TestParseStatusFields(t *testing.T) {
	in := "Name:\tjava\nUmask:\t0022\nUid:\t1000\t1001\t1002\t1003\nVmLck:\t     128 kB\nVmPin:\t    4096 kB\nCapEff:\t0000000000000000\nCapBnd:\tffff\n"
	var s Status
	if err := ParseStatus([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if string(s.Name) != "java" || s.UID != 1000 || s.Locked != 128<<10 || s.Pinned != 4096<<10 || s.IPCLock() || !s.HasMM {
		t.Errorf("got %+v", s)
	}
	// CAP_IPC_LOCK alone.
	in = "Name:\tx\nUid:\t0\t0\t0\t0\nVmLck:\t0 kB\nCapEff:\t0000000000004000\n"
	if err := ParseStatus([]byte(in), &s); err != nil || !s.IPCLock() {
		t.Errorf("CAP_IPC_LOCK bit: %v %+v", err, s)
	}
}

func TestParseStatusMalformed(t *testing.T) {
	for name, in := range map[string]string{
		"empty":          "",
		"no name":        "Uid:\t0\t0\t0\t0\nCapEff:\t0\n",
		"no uid":         "Name:\tx\nCapEff:\t0\n",
		"no capeff":      "Name:\tx\nUid:\t0\t0\t0\t0\n",
		"bad vmlck":      "Name:\tx\nUid:\t0\nVmLck:\tlots kB\nCapEff:\t0\n",
		"vmlck no unit":  "Name:\tx\nUid:\t0\nVmLck:\t12\nCapEff:\t0\n",
		"vmlck overflow": "Name:\tx\nUid:\t0\nVmLck:\t18446744073709551615 kB\nCapEff:\t0\n",
		"uid too big":    "Name:\tx\nUid:\t4294967296\nCapEff:\t0\n",
		"bad capeff":     "Name:\tx\nUid:\t0\nCapEff:\tzz\n",
		"long capeff":    "Name:\tx\nUid:\t0\nCapEff:\t00000000000000000\n",
		"truncated":      "Name:\tx\nUid:\t0\nVmLck:\t",
		"binary":         "\x00\x01\x02\xff\n\n\x7f",
	} {
		var s Status
		err := ParseStatus([]byte(in), &s)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func TestParseMemlockLimit(t *testing.T) {
	got, err := ParseMemlockLimit(fixture(t, "limits.txt"))
	if err != nil || got != (Limit{Soft: 8 << 20, Hard: 8 << 20}) {
		t.Errorf("fixture: got %+v, %v", got, err)
	}
	for in, want := range map[string]Limit{
		"Max locked memory         unlimited            unlimited            bytes     \n": {Unlimited, Unlimited},
		"Max locked memory         65536                unlimited            bytes\n":      {65536, Unlimited},
		"Max locked memory         0                    0                    bytes\n":      {0, 0},
	} {
		got, err := ParseMemlockLimit([]byte("Limit                     Soft Limit           Hard Limit           Units     \n" + in))
		if err != nil || got != want {
			t.Errorf("%q: got %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{
		"",
		"Max open files            1024                 1024                 files\n",
		"Max locked memory\n",
		"Max locked memory         65536\n",
		"Max locked memory         64k                  64k                  bytes\n",
		"Max locked memory         1                    2                    pages\n",
		"Max locked memory         99999999999999999999 1                    bytes\n",
	} {
		if _, err := ParseMemlockLimit([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
}

func TestParseSmapsRollupLocked(t *testing.T) {
	if got, err := ParseSmapsRollupLocked(fixture(t, "smaps_rollup.txt")); err != nil || got != 0 {
		t.Errorf("fixture: got %d, %v", got, err)
	}
	in := "00400000-7fff [rollup]\nRss:  1000 kB\nLocked:   8192 kB\n"
	if got, err := ParseSmapsRollupLocked([]byte(in)); err != nil || got != 8192<<10 {
		t.Errorf("got %d, %v", got, err)
	}
	for _, in := range []string{"", "Rss: 1 kB\n", "Locked: x kB\n", "Locked: 5\n"} {
		if _, err := ParseSmapsRollupLocked([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
}

func TestParseVMStat(t *testing.T) {
	v, err := ParseVMStat(fixture(t, "vmstat.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if v.NrMlock == 0 || v.NrUnevictable < v.NrMlock {
		t.Errorf("fixture: nr_mlock %d, nr_unevictable %d", v.NrMlock, v.NrUnevictable)
	}
	names := map[string]bool{}
	for _, e := range v.Events {
		names[e.Name] = true
	}
	for _, n := range []string{"culled", "scanned", "rescued", "mlocked", "munlocked", "cleared", "stranded"} {
		if !names[n] {
			t.Errorf("event %s missing from %v", n, v.Events)
		}
	}
	// nr_zone_unevictable must not be mistaken for nr_unevictable.
	v, err = ParseVMStat([]byte("nr_zone_unevictable 9\nnr_mlock 3\nnr_unevictable 5\nunevictable_pgs_mlocked 7\n"))
	if err != nil || v.NrMlock != 3 || v.NrUnevictable != 5 || len(v.Events) != 1 || v.Events[0] != (Counter{"mlocked", 7}) {
		t.Errorf("got %+v, %v", v, err)
	}
	for _, in := range []string{"", "nr_mlock 1\n", "nr_mlock x\nnr_unevictable 1\n", "nr_mlock 1 2\nnr_unevictable 1\n",
		"nr_mlock 1\nnr_unevictable 1\nunevictable_pgs_ 4\n"} {
		if _, err := ParseVMStat([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	for _, file := range []string{"meminfo.txt", "node_meminfo.txt"} {
		m, err := ParseMeminfo(fixture(t, file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if m.MemTotal == 0 || m.Unevictable < m.Mlocked {
			t.Errorf("%s: %+v", file, m)
		}
	}
	m, err := ParseMeminfo([]byte("Node 1 MemTotal:  100 kB\nNode 1 MemFree: 5 kB\nNode 1 Unevictable: 3 kB\nNode 1 Mlocked: 2 kB\n"))
	if err != nil || m != (Meminfo{MemTotal: 100 << 10, Mlocked: 2 << 10, Unevictable: 3 << 10}) {
		t.Errorf("node: got %+v, %v", m, err)
	}
	m, err = ParseMeminfo([]byte("MemTotal:  100 kB\nMemFree: 5 kB\nUnevictable: 3 kB\nMlocked: 2 kB\nHugePages_Total:       0\n"))
	if err != nil || m != (Meminfo{MemTotal: 100 << 10, Mlocked: 2 << 10, Unevictable: 3 << 10}) {
		t.Errorf("system: got %+v, %v", m, err)
	}
	for _, in := range []string{"", "MemTotal: 1 kB\n", "Node x MemTotal: 1 kB\n", "Node 0 MemTotal: 1 kB\n",
		"Node 0 MemTotal: 1 kB\nNode 0 Mlocked: a kB\nNode 0 Unevictable: 1 kB\n",
		"MemTotal: 1 kB\nMlocked: 0x10 kB\nUnevictable: 1 kB\n", "MemTotal: 1 MB\nMlocked: 1 kB\nUnevictable: 1 kB\n"} {
		if _, err := ParseMeminfo([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
}

func TestParseSysvShm(t *testing.T) {
	segs, err := ParseSysvShm(fixture(t, "sysvipc_shm.txt"))
	if err != nil {
		t.Fatal(err)
	}
	// The fixture holds a 1 MiB segment locked with SHM_LOCK and an unlocked 64 KiB one.
	if len(segs) != 2 {
		t.Fatalf("got %d segments", len(segs))
	}
	if !segs[0].Locked() || segs[0].Size != 1<<20 || segs[0].Perms != 0o2600 || segs[0].UID != 0 {
		t.Errorf("segment 0: %+v", segs[0])
	}
	if segs[1].Locked() || segs[1].Size != 65536 {
		t.Errorf("segment 1: %+v", segs[1])
	}
	// Header only (no segments) is valid.
	if segs, err := ParseSysvShm([]byte("       key      shmid perms                  size  cpid  lpid nattch   uid\n")); err != nil || len(segs) != 0 {
		t.Errorf("empty table: %v %v", segs, err)
	}
	for _, in := range []string{"", "key shmid\n", "key shmid perms size uid\n1 2 3\n", "key shmid perms size uid\n1 2 9 4 5\n",
		"key shmid perms size uid\n1 2 600 4 99999999999\n"} {
		if _, err := ParseSysvShm([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: got %v, want ErrMalformed", in, err)
		}
	}
}

// TestStatusName: the kernel escapes only '\n' and '\' in the Name line
// (proc_task_name: string_escape_str with ESCAPE_SPACE|ESCAPE_SPECIAL,
// only "\n\\"); the rest is the name as it is, spaces included.
func TestStatusName(t *testing.T) {
	for in, want := range map[string]string{
		"Name:\t \n":                           " ",
		"Name:\t  two  \n":                     "  two  ",
		"Name:\tnew\\nline\n":                  "new\nline",
		"Name:\tback\\\\slash\n":               `back\slash`,
		"Name:\tback\\\\n\n":                   `back\n`,
		"Name:\t\"q\" 'x'\n":                   `"q" 'x'`,
		"Name:\tünï\n":                         "ünï",
		"Name:\ttab\there\n":                   "tab\there",
		"Name:\t0123456789abcdefghij\n":        "0123456789abcde",
		"Name:\t" + strings.Repeat("A", 99999): strings.Repeat("A", MaxComm),
	} {
		var s Status
		if err := ParseStatus([]byte(in+"\nUid:\t0\t0\t0\t0\nCapEff:\t0\n"), &s); err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if string(s.Name) != want {
			t.Errorf("%q: name %q, want %q", in, s.Name, want)
		}
	}
}

func TestParseUIDMapAndLoadavg(t *testing.T) {
	for in, want := range map[string]bool{
		"         0          0 4294967295\n": true,
		"         0       1000          1\n": false,
		"         0     100000      65536\n": false,
		"0 0 4294967295\n1 1 1\n":            false,
	} {
		if got, err := ParseUIDMapInitial([]byte(in)); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	if n, err := ParseLoadavgTasks([]byte("0.52 0.58 0.59 2/345 12345\n")); err != nil || n != 345 {
		t.Errorf("loadavg: %d, %v", n, err)
	}
	if _, err := ParseLoadavgTasks([]byte("0.52 0.58\n")); err == nil {
		t.Error("short loadavg accepted")
	}
}

// TestFixturesAgree: meminfo.txt and vmstat.txt are one host's, so Mlocked
// and Unevictable (fs/proc/meminfo.c: NR_MLOCK and the unevictable LRU) are
// vmstat's nr_mlock and nr_unevictable in 4 KiB pages.
func TestFixturesAgree(t *testing.T) {
	mb, err := os.ReadFile("testdata/meminfo.txt")
	if err != nil {
		t.Fatal(err)
	}
	vb, err := os.ReadFile("testdata/vmstat.txt")
	if err != nil {
		t.Fatal(err)
	}
	mi, err := ParseMeminfo(mb)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := ParseVMStat(vb)
	if err != nil {
		t.Fatal(err)
	}
	if mi.Mlocked != vs.NrMlock*4096 || mi.Unevictable != vs.NrUnevictable*4096 {
		t.Errorf("meminfo Mlocked %d Unevictable %d bytes; vmstat nr_mlock %d nr_unevictable %d pages",
			mi.Mlocked, mi.Unevictable, vs.NrMlock, vs.NrUnevictable)
	}
}

// TestParseMemlockLimitNeedsColumns: the kernel writes the row's columns
// apart ("%-25s %-20s %-20s %-10s", fs/proc/base.c proc_pid_limits); a row
// whose values run into the name or each other is not its.
func TestParseMemlockLimitNeedsColumns(t *testing.T) {
	for _, in := range []string{
		"Max locked memoryunlimitedunlimited\n",
		"Max locked memory         unlimitedunlimited bytes\n",
		"Max locked memory         8388608x 8388608 bytes\n",
	} {
		if _, err := ParseMemlockLimit([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v, want ErrMalformed", in, err)
		}
	}
	l, err := ParseMemlockLimit([]byte("Max locked memory         unlimited            8388608              bytes     \n"))
	if err != nil || l.Soft != Unlimited || l.Hard != 8388608 {
		t.Errorf("kernel row: %+v, %v", l, err)
	}
}
