package bpf

import (
	"testing"
	"unsafe"
)

// record encodes a task_record as the kernel writes it (little-endian host
// layout; both targets are little-endian).
func record(r taskTaskRecord) []byte {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))
	return append([]byte(nil), b...)
}

func decodeModule() *Module {
	return &Module{pageSize: 4096, byTGID: map[int32]int{}, byUser: map[uint64]int{}, byUC: map[uint64]int{}}
}

// TestMergeThreadBeforeLeader: after pid wrap-around a live thread's tid can
// be lower than its exited leader's, so its record comes first; the merged
// task still has the leader's identity and the thread's mm, as when the
// leader comes first (TestLeaderExited shows that order on the real kernel).
func TestMergeThreadBeforeLeader(t *testing.T) {
	leader := taskTaskRecord{Tgid: 500, Tid: 500, Flags: uint32(FlagLeader | FlagExited), Uid: 1000, User: 0xa, Ucounts: 0xb}
	thread := taskTaskRecord{Tgid: 500, Tid: 300, Flags: uint32(FlagThread | FlagMM | FlagPinnedVM), Uid: 1001, LockedVm: 3, PinnedVm: 2, User: 0xa, Ucounts: 0xb}
	other := taskTaskRecord{Tgid: 501, Tid: 501, Flags: uint32(FlagLeader | FlagMM), LockedVm: 1}
	for _, order := range [][]taskTaskRecord{{leader, thread, other}, {thread, leader, other}, {thread, leader, thread, other}} {
		m := decodeModule()
		for _, r := range order {
			m.buf = append(m.buf, record(r)...)
		}
		if err := m.decode(); err != nil {
			t.Fatal(err)
		}
		s := &m.snap
		if len(s.Tasks) != 2 || len(s.Users) != 1 || len(s.Charges) != 1 {
			t.Fatalf("tasks %d users %d charges %d", len(s.Tasks), len(s.Users), len(s.Charges))
		}
		got := s.find(500)
		if got.TID != 300 || got.UID != 1000 || got.LockedBytes != 3*4096 || got.PinnedBytes != 2*4096 ||
			got.Flags&(FlagLeader|FlagThread|FlagMM) != FlagLeader|FlagThread|FlagMM {
			t.Errorf("order %v: %+v", order, got)
		}
	}
}

// FuzzDecode: any bytes decode without panicking into at most one task per
// record, and a length that is not a whole number of records is an error.
func FuzzDecode(f *testing.F) {
	f.Add(record(taskTaskRecord{Tgid: 1, Tid: 1, Flags: uint32(FlagLeader | FlagMM), LockedVm: 1}))
	f.Add(append(record(taskTaskRecord{Tgid: 7, Tid: 9, Flags: uint32(FlagThread | FlagMM)}), record(taskTaskRecord{Tgid: 7, Tid: 7, Flags: uint32(FlagLeader)})...))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := decodeModule()
		m.buf = b
		err := m.decode()
		if len(b)%recordSize != 0 {
			if err == nil {
				t.Fatalf("%d bytes decoded without error", len(b))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		s := &m.snap
		if len(s.Tasks) > len(b)/recordSize || s.Records != len(b)/recordSize {
			t.Fatalf("%d tasks, %d records from %d bytes", len(s.Tasks), s.Records, len(b))
		}
		for _, task := range s.Tasks {
			if task.User >= len(s.Users) || task.Charge >= len(s.Charges) {
				t.Fatalf("index out of range: %+v", task)
			}
		}
	})
}
