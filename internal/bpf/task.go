package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Flags say what a Task holds and which fields the running kernel has; the
// values are c/task.bpf.c's REC_* bits.
type Flags uint32

const (
	FlagLeader         Flags = 1 << 0  // read from the thread-group leader
	FlagThread         Flags = 1 << 1  // mm fields from a live thread: the leader has exited
	FlagMM             Flags = 1 << 2  // has an address space: LockedBytes and PinnedBytes are valid
	FlagKernelThread   Flags = 1 << 3  // PF_KTHREAD
	FlagExited         Flags = 1 << 4  // the task read is a zombie (exit_state set)
	FlagInitUserNS     Flags = 1 << 5  // credentials are in the initial user namespace
	FlagPinnedVM       Flags = 1 << 6  // the kernel has mm->pinned_vm
	FlagUserLockedVM   Flags = 1 << 7  // the kernel has user_struct->locked_vm
	FlagUcountsMemlock Flags = 1 << 8  // ShmCharge is the ucounts MEMLOCK count (5.14+)
	FlagLockedShm      Flags = 1 << 9  // ShmCharge is user_struct->locked_shm (before 5.14)
	FlagCgroup         Flags = 1 << 10 // CgroupID is valid
	FlagReadError      Flags = 1 << 11 // a kernel read failed: some fields are zero
	FlagMemcg          Flags = 1 << 12 // MemcgID is valid
	capIPCLock               = 14
	recordSize               = int(unsafe.Sizeof(taskTaskRecord{}))
	initUserNSInode          = 0xEFFFFFFD // PROC_USER_INIT_INO
	noIndex                  = -1
)

// Task is one process as the kernel accounts it. Byte counts are the
// kernel's page counts times the page size.
type Task struct {
	// PID is the thread-group id, the pid /proc lists.
	PID int32
	// TID is the task the memory fields were read from: PID, or for a
	// process whose leader has exited, one of its live threads.
	TID   int32
	Flags Flags
	comm  [16]byte
	// UID is the real uid (cred->uid) as the initial user namespace sees it.
	UID uint32
	// CapEffective is the effective capability mask in the task's own
	// user namespace (what CapEff in /proc/<pid>/status shows).
	CapEffective uint64
	// LockedBytes is mm->locked_vm (VmLck), PinnedBytes mm->pinned_vm (VmPin).
	LockedBytes uint64
	PinnedBytes uint64
	// MemlockSoft and MemlockHard are RLIMIT_MEMLOCK in bytes;
	// RLIM_INFINITY is math.MaxUint64.
	MemlockSoft uint64
	MemlockHard uint64
	// CgroupID is the id of the task's cgroup in the default (v2)
	// hierarchy, the inode number of its cgroupfs directory there. On a
	// host that mounts only cgroup v1 every task is in the v2 root (1).
	CgroupID uint64
	// MemcgID is the id of the memory controller's cgroup of the task
	// (cgroups->subsys[memory_cgrp_id]): on cgroup v1 its cgroup in the
	// memory hierarchy, on v2 the nearest ancestor of CgroupID with the
	// controller enabled. With CgroupID it decides the cgroup path whose
	// pod and container identity the collectors parse.
	MemcgID uint64
	// UserNSInode is the inode number of the task's user namespace.
	UserNSInode uint32
	// Threads is signal->nr_threads, the Threads line of status.
	Threads int32
	// User indexes Snapshot.Users (the task's user_struct), Charge
	// Snapshot.Charges (its ucounts); -1 when the kernel gave none.
	User   int
	Charge int
}

// Comm is the task's command name (at most 15 bytes).
func (t *Task) Comm() string {
	c := t.comm[:]
	if i := bytes.IndexByte(c, 0); i >= 0 {
		c = c[:i]
	}
	return string(c)
}

// SetComm sets the command name (cut to 15 bytes), for a Snapshot built
// outside the iterator: a test's fixture of a kernel this machine is not.
func (t *Task) SetComm(name string) {
	t.comm = [16]byte{}
	copy(t.comm[:15], name)
}

// AppendComm appends the command name to b, without allocating when b has
// room for 16 bytes.
func (t *Task) AppendComm(b []byte) []byte {
	c := t.comm[:]
	if i := bytes.IndexByte(c, 0); i >= 0 {
		c = c[:i]
	}
	return append(b, c...)
}

// InitUserNS reports whether the task's credentials are in the initial user
// namespace, where CAP_IPC_LOCK lifts the memlock limits.
func (t *Task) InitUserNS() bool { return t.Flags&FlagInitUserNS != 0 }

// CapIPCLock reports whether CAP_IPC_LOCK is effective in the task's own
// user namespace; it exempts the task from the limits only if InitUserNS.
func (t *Task) CapIPCLock() bool { return t.CapEffective&(1<<capIPCLock) != 0 }

// User is a user_struct: one per uid, host-wide. LockedBytes is what
// io_uring buffer registration (without CAP_IPC_LOCK), perf ring buffers
// past perf_event_mlock_kb, MSG_ZEROCOPY, AF_XDP and iommufd charge to the
// uid; no file in /proc or /sys shows it.
type User struct {
	UID         uint32
	LockedBytes uint64
	// Valid is false on a kernel without user_struct->locked_vm.
	Valid bool
}

// ShmCharge is a ucounts: one per uid and user namespace. LockedBytes is
// the UCOUNT_RLIMIT_MEMLOCK count, what SysV SHM_LOCK and SHM_HUGETLB
// charge to the caller (not to the segment's owner).
type ShmCharge struct {
	UID         uint32
	UserNSInode uint32
	LockedBytes uint64
	// Valid is false when the kernel has no such counter.
	Valid bool
}

// Snapshot is one pass of the iterator.
type Snapshot struct {
	Tasks   []Task
	Users   []User
	Charges []ShmCharge
	// Records is the number of records the kernel wrote, including the
	// live threads that stand in for exited leaders.
	Records int
}

// Record field offsets, from the bpf2go mirror of struct task_record.
var (
	offTGID      = unsafe.Offsetof(taskTaskRecord{}.Tgid)
	offTID       = unsafe.Offsetof(taskTaskRecord{}.Tid)
	offFlags     = unsafe.Offsetof(taskTaskRecord{}.Flags)
	offUID       = unsafe.Offsetof(taskTaskRecord{}.Uid)
	offUserNS    = unsafe.Offsetof(taskTaskRecord{}.UserNsInum)
	offUCNS      = unsafe.Offsetof(taskTaskRecord{}.UcountsNsInum)
	offUCUID     = unsafe.Offsetof(taskTaskRecord{}.UcountsUid)
	offCap       = unsafe.Offsetof(taskTaskRecord{}.CapEffective)
	offLocked    = unsafe.Offsetof(taskTaskRecord{}.LockedVm)
	offPinned    = unsafe.Offsetof(taskTaskRecord{}.PinnedVm)
	offRlimCur   = unsafe.Offsetof(taskTaskRecord{}.RlimCur)
	offRlimMax   = unsafe.Offsetof(taskTaskRecord{}.RlimMax)
	offCgroup    = unsafe.Offsetof(taskTaskRecord{}.CgroupId)
	offUser      = unsafe.Offsetof(taskTaskRecord{}.User)
	offUserLkd   = unsafe.Offsetof(taskTaskRecord{}.UserLockedVm)
	offUcounts   = unsafe.Offsetof(taskTaskRecord{}.Ucounts)
	offUCMemlock = unsafe.Offsetof(taskTaskRecord{}.UcountsMemlock)
	offComm      = unsafe.Offsetof(taskTaskRecord{}.Comm)
	offMemcg     = unsafe.Offsetof(taskTaskRecord{}.MemcgId)
	offThreads   = unsafe.Offsetof(taskTaskRecord{}.NrThreads)
)

// decode turns m.buf, a whole pass, into m.snap (tests; Tasks decodes as
// it reads).
func (m *Module) decode() error {
	if len(m.buf)%recordSize != 0 {
		return fmt.Errorf("bpf: task iterator returned %d bytes, not a multiple of the %d-byte record", len(m.buf), recordSize)
	}
	m.reset()
	m.decodeRecords(m.buf)
	return nil
}

// reset empties m.snap and the dedupe maps for a new pass, keeping their
// storage.
func (m *Module) reset() {
	s := &m.snap
	s.Tasks, s.Users, s.Charges = s.Tasks[:0], s.Users[:0], s.Charges[:0]
	s.Records = 0
	clear(m.byTGID)
	clear(m.byUser)
	clear(m.byUC)
}

// decodeRecords adds the whole records in b (a multiple of recordSize) to
// m.snap.
func (m *Module) decodeRecords(b []byte) {
	s := &m.snap
	le := binary.LittleEndian
	for off := 0; off+recordSize <= len(b); off += recordSize {
		s.Records++
		r := b[off : off+recordSize]
		u32 := func(o uintptr) uint32 { return le.Uint32(r[o:]) }
		u64 := func(o uintptr) uint64 { return le.Uint64(r[o:]) }
		flags := Flags(u32(offFlags))
		t := Task{
			PID:          int32(u32(offTGID)),
			TID:          int32(u32(offTID)),
			Flags:        flags,
			UID:          u32(offUID),
			CapEffective: u64(offCap),
			MemlockSoft:  u64(offRlimCur),
			MemlockHard:  u64(offRlimMax),
			UserNSInode:  u32(offUserNS),
			Threads:      int32(u32(offThreads)),
			User:         noIndex,
			Charge:       noIndex,
		}
		copy(t.comm[:], r[offComm:offComm+16])
		if flags&FlagMM != 0 {
			t.LockedBytes = u64(offLocked) * m.pageSize
			t.PinnedBytes = u64(offPinned) * m.pageSize
		}
		if flags&FlagCgroup != 0 {
			t.CgroupID = u64(offCgroup)
		}
		if flags&FlagMemcg != 0 {
			t.MemcgID = u64(offMemcg)
		}
		if p := u64(offUser); p != 0 {
			i, ok := m.byUser[p]
			if !ok {
				i = len(s.Users)
				m.byUser[p] = i
				s.Users = append(s.Users, User{
					UID:         t.UID,
					LockedBytes: u64(offUserLkd) * m.pageSize,
					Valid:       flags&FlagUserLockedVM != 0,
				})
			}
			t.User = i
		}
		if p := u64(offUcounts); p != 0 {
			i, ok := m.byUC[p]
			if !ok {
				i = len(s.Charges)
				m.byUC[p] = i
				s.Charges = append(s.Charges, ShmCharge{
					UID:         u32(offUCUID),
					UserNSInode: u32(offUCNS),
					LockedBytes: u64(offUCMemlock) * m.pageSize,
					Valid:       flags&(FlagUcountsMemlock|FlagLockedShm) != 0,
				})
			}
			t.Charge = i
		}
		if i, ok := m.byTGID[t.PID]; ok {
			merge(&s.Tasks[i], &t)
			continue
		}
		m.byTGID[t.PID] = len(s.Tasks)
		s.Tasks = append(s.Tasks, t)
	}
}

// merge folds a second record for the same process into the first: the
// leader's record keeps its identity and credentials (what /proc/<pid>/status
// shows), and a live thread's record supplies the address space the exited
// leader no longer has. Of several live threads the first one read wins.
func merge(dst, src *Task) {
	if dst.Flags&FlagMM != 0 || src.Flags&FlagMM == 0 {
		if src.Flags&FlagLeader != 0 && dst.Flags&FlagLeader == 0 {
			// The leader came after a stand-in thread: keep the
			// thread's mm under the leader's identity.
			mm := *dst
			*dst = *src
			dst.TID = mm.TID
			dst.Flags = src.Flags | mm.Flags&(FlagMM|FlagPinnedVM|FlagThread)
			dst.LockedBytes, dst.PinnedBytes = mm.LockedBytes, mm.PinnedBytes
		}
		return
	}
	dst.TID = src.TID
	dst.Flags |= src.Flags & (FlagMM | FlagPinnedVM | FlagThread)
	dst.LockedBytes, dst.PinnedBytes = src.LockedBytes, src.PinnedBytes
}
