package bpf

import (
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
)

// TestRecordLayout checks the Go decoder against the compiled C: the size
// and member offsets of struct task_record in the object's BTF, for both
// committed objects, equal the offsets decode uses.
func TestRecordLayout(t *testing.T) {
	spec, err := loadTask()
	if err != nil {
		t.Fatal(err)
	}
	var rec *btf.Struct
	if err := spec.Types.TypeByName("task_record", &rec); err != nil {
		t.Fatal(err)
	}
	if int(rec.Size) != recordSize {
		t.Fatalf("C record is %d bytes, Go decodes %d", rec.Size, recordSize)
	}
	want := map[string]uintptr{
		"tgid": offTGID, "tid": offTID, "flags": offFlags, "uid": offUID,
		"user_ns_inum": offUserNS, "ucounts_ns_inum": offUCNS, "ucounts_uid": offUCUID,
		"cap_effective": offCap, "locked_vm": offLocked, "pinned_vm": offPinned,
		"rlim_cur": offRlimCur, "rlim_max": offRlimMax, "cgroup_id": offCgroup,
		"user": offUser, "user_locked_vm": offUserLkd, "ucounts": offUcounts,
		"ucounts_memlock": offUCMemlock, "comm": offComm, "nr_threads": offThreads,
		"memcg_id": offMemcg,
	}
	seen := 0
	for _, m := range rec.Members {
		off, ok := want[m.Name]
		if !ok {
			t.Errorf("C member %s is not decoded", m.Name)
			continue
		}
		seen++
		if uintptr(m.Offset.Bytes()) != off {
			t.Errorf("%s at byte %d in C, %d in Go", m.Name, m.Offset.Bytes(), off)
		}
	}
	if seen != len(want) {
		t.Errorf("decoded %d members, C has %d of them", len(want), seen)
	}
	if unsafe.Sizeof(taskTaskRecord{}) != uintptr(rec.Size) {
		t.Errorf("bpf2go mirror is %d bytes", unsafe.Sizeof(taskTaskRecord{}))
	}
}
