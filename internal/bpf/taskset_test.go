package bpf

import (
	"context"
	"encoding/binary"
	"os"
	"strconv"
	"testing"
	"unsafe"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"golang.org/x/sys/unix"
)

// procPIDs lists the numeric entries of /proc: every thread-group leader the
// reader's pid namespace has, kernel threads and zombies included.
func procPIDs(t testing.TB) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids[pid] = true
		}
	}
	return pids
}

// tidIterSees runs the same program through an iterator link restricted to
// one tid (bpf_iter_link_info.task.tid, 6.1+): a second, independent way to
// ask the kernel whether BPF may see that task. cilium/ebpf's AttachIter has
// no task option, so the link is made with the raw syscall.
func tidIterSees(t testing.TB, m *Module, tid int) bool {
	t.Helper()
	info := [3]uint32{uint32(tid), 0, 0} // tid, pid, pid_fd
	var attr [48]byte
	le := binary.LittleEndian
	le.PutUint32(attr[0:], uint32(m.objs.MemlockTasks.FD()))
	le.PutUint32(attr[8:], uint32(unix.BPF_TRACE_ITER))
	le.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&info))))
	le.PutUint32(attr[24:], uint32(unsafe.Sizeof(info)))
	lfd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_LINK_CREATE, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		t.Skipf("tid-filtered task iterator (6.1+): %v", errno)
	}
	defer unix.Close(int(lfd))
	var cattr [8]byte
	le.PutUint32(cattr[0:], uint32(lfd))
	ifd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_ITER_CREATE, uintptr(unsafe.Pointer(&cattr)), unsafe.Sizeof(cattr))
	if errno != 0 {
		t.Fatalf("BPF_ITER_CREATE: %v", errno)
	}
	f := os.NewFile(ifd, "bpf_iter")
	defer f.Close()
	b := make([]byte, 4*recordSize)
	n, _ := f.Read(b)
	return n >= recordSize
}

// TestTaskSetMatchesProc: for every process of the host whose /proc status
// and limits read the same before and after the pass, the iterator's uid,
// CapEff, limits, VmLck and VmPin equal them. Every pid /proc lists before and after a pass
// (alive throughout) is in it, once; every pid in it is in /proc, or gone by
// the end (born and dead during the pass). A pid the kernel withholds from
// every BPF task iterator (also the tid-filtered one) is reported, not
// silently accepted: TestPID1 is about the one this host has.
func TestTaskSetMatchesProc(t *testing.T) {
	m := openModule(t)
	before := procPIDs(t)
	viewBefore := procView(before)
	s := snapshot(t, m)
	viewAfter := procView(before)
	after := procPIDs(t)
	compared := 0
	for i := range s.Tasks {
		task := &s.Tasks[i]
		v0, ok0 := viewBefore[int(task.PID)]
		v1, ok1 := viewAfter[int(task.PID)]
		if !ok0 || !ok1 || v0 != v1 {
			continue // gone, unreadable or changed during the pass
		}
		compared++
		got := procFields{uid: task.UID, capEff: task.CapEffective, soft: task.MemlockSoft, hard: task.MemlockHard, hasMM: task.Flags&FlagMM != 0, locked: task.LockedBytes, pinned: task.PinnedBytes}
		if task.Flags&FlagThread != 0 {
			// /proc/<pid>/status of an exited leader has no Vm lines.
			got.hasMM, got.locked, got.pinned = false, 0, 0
		}
		if got != v0 {
			t.Errorf("pid %d (%s): iterator %+v, /proc %+v", task.PID, task.Comm(), got, v0)
		}
	}
	if compared < len(s.Tasks)/2 {
		t.Errorf("compared %d of %d tasks", compared, len(s.Tasks))
	}
	t.Logf("fields of %d of %d tasks compared with /proc", compared, len(s.Tasks))
	seen := map[int]int{}
	for i := range s.Tasks {
		seen[int(s.Tasks[i].PID)]++
	}
	for pid, n := range seen {
		if n != 1 {
			t.Errorf("pid %d appears %d times", pid, n)
		}
		if !before[pid] && !after[pid] {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
				t.Errorf("pid %d from the iterator is not in /proc", pid)
			}
		}
	}
	for pid := range before {
		if !after[pid] || seen[pid] > 0 {
			continue
		}
		if tidIterSees(t, m, pid) {
			t.Errorf("pid %d: in /proc throughout and visible to a tid=%d iterator, missing from the full pass", pid, pid)
		} else {
			t.Logf("pid %d: in /proc, but the kernel gives it to no BPF task iterator (all tasks, tid=%d)", pid, pid)
		}
	}
	if len(s.Tasks) < len(before)/2 {
		t.Errorf("%d tasks for %d pids in /proc", len(s.Tasks), len(before))
	}
}

// TestPID1: a prototype once missed pid 1. The kernel starts the all-tasks
// walk at find_ge_pid(0), which is pid 1 in the initial pid namespace, and
// a task record goes out whole or, when the seq_file buffer is full, is
// shown again in the next read (bpf_seq_read), so pid 1 is the first
// record. If it is missing, the test asks a tid=1 iterator: a kernel that
// withholds pid 1 from BPF altogether is a property of the host, reported
// with the reason; one that shows it there but not in the walk is a bug.
func TestPID1(t *testing.T) {
	m := openModule(t)
	if !procPIDs(t)[1] {
		t.Skip("no pid 1 in this /proc (pid namespace without init)")
	}
	s := snapshot(t, m)
	if task := s.find(1); task != nil {
		if s.Tasks[0].PID != 1 {
			t.Errorf("pid 1 is not the first record (first is %d)", s.Tasks[0].PID)
		}
		return
	}
	if tidIterSees(t, m, 1) {
		t.Fatal("pid 1 visible to a tid=1 iterator but missing from the full pass")
	}
	t.Skipf("this kernel gives pid 1 (%s) to no BPF task iterator, all-tasks or tid=1, though /proc lists it; first record is pid %d", comm(1), s.Tasks[0].PID)
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return string(b[:max(len(b)-1, 0)])
}

// TestManyTasksAcrossReads: 600 children make the pass several kernel
// buffers long (8 pages hold 255 records: seq_write needs count+len < size),
// read once with a full buffer and once 100 bytes at a time (records cut
// across reads); every child is in both, once.
func TestManyTasksAcrossReads(t *testing.T) {
	m := openModule(t)
	const n = 600
	kids := make([]*child, n)
	for i := range kids {
		kids[i] = startChild(t, childOpts{uid: -1}, "lock", 0)
		kids[i].expect("ready")
	}
	for _, readSize := range []int{0, 100} {
		m.readSize = readSize
		s := snapshot(t, m)
		if s.Records <= 2*255 {
			t.Fatalf("%d records: the pass should span at least three kernel buffers", s.Records)
		}
		count := map[int]int{}
		for i := range s.Tasks {
			count[int(s.Tasks[i].PID)]++
		}
		for _, c := range kids {
			if count[c.pid] != 1 {
				t.Errorf("read size %d: child %d appears %d times", readSize, c.pid, count[c.pid])
			}
		}
	}
	m.readSize = 0
}

// TestTasksAllocationsFlat: a pass allocates the same with 300 more
// processes as without them: records decode into reused slices, nothing per
// task.
func TestTasksAllocationsFlat(t *testing.T) {
	m := openModule(t)
	ctx := context.Background()
	pass := func() {
		if _, err := m.Tasks(ctx); err != nil {
			t.Fatal(err)
		}
	}
	kids := make([]*child, 300)
	for i := range kids {
		kids[i] = startChild(t, childOpts{uid: -1}, "lock", 0)
		kids[i].expect("ready")
	}
	pass() // grow the buffer, slices and maps to the larger set
	many := testing.AllocsPerRun(20, pass)
	for _, c := range kids {
		c.kill()
	}
	few := testing.AllocsPerRun(20, pass)
	if many > few {
		t.Errorf("%.0f allocations a pass with 300 more processes, %.0f without", many, few)
	}
	t.Logf("%.0f allocations a pass", few)
}

// procFields is what /proc says of a process, for comparison.
type procFields struct {
	uid            uint32
	capEff         uint64
	soft, hard     uint64
	hasMM          bool
	locked, pinned uint64
}

// procView reads status and limits of every pid; an unreadable one is left
// out (it exited).
func procView(pids map[int]bool) map[int]procFields {
	view := map[int]procFields{}
	for pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			continue
		}
		var st linux.Status
		if linux.ParseStatus(b, &st) != nil {
			continue
		}
		lb, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
		if err != nil {
			continue
		}
		lim, err := linux.ParseMemlockLimit(lb)
		if err != nil {
			continue
		}
		view[pid] = procFields{uid: st.UID, capEff: st.CapEff, soft: lim.Soft, hard: lim.Hard, hasMM: st.HasMM, locked: st.Locked, pinned: st.Pinned}
	}
	return view
}
