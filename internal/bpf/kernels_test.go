package bpf

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// TestOpenWithoutBTF: a kernel without /sys/kernel/btf/vmlinux gives
// cilium/ebpf's ErrNotSupported from LoadKernelSpec; Open reports ErrNoBTF
// and loads nothing.
func TestOpenWithoutBTF(t *testing.T) {
	_, err := open(nil, fmt.Errorf("load kernel spec: %w", btf.ErrNotSupported))
	var oe *OpenError
	if !errors.Is(err, ErrNoBTF) || !errors.Is(err, btf.ErrNotSupported) || !errors.As(err, &oe) {
		t.Fatalf("got %v (%T)", err, err)
	}
}

// TestClassify: the errors cilium/ebpf and the kernel give for what this
// machine cannot show (the attach target is looked up in the running
// kernel's BTF, so a kernel without bpf_iter_task cannot be faked here).
// The shapes are cilium/ebpf v0.22.0's: prog.go findProgramTargetInKernel
// returns an UnsupportedFeatureError (errors.Is ErrNotSupported) when
// bpf_iter_task is not in the kernel's BTF.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("load program: %w", unix.EPERM), ErrPermission},
		{fmt.Errorf("attach: %w", unix.EACCES), ErrPermission},
		{fmt.Errorf("field MemlockTasks: program memlock_tasks: %w", ebpf.ErrNotSupported), ErrNoTaskIter},
		{fmt.Errorf("find target: %w", btf.ErrNotFound), ErrNoTaskIter},
		{fmt.Errorf("load program: %w", unix.EINVAL), ErrNoTaskIter},
		{fmt.Errorf("create link: %w", unix.ENOENT), ErrNoTaskIter},
		{fmt.Errorf("load program: %w", unix.ENOMEM), nil},
	} {
		err := classify(tc.err)
		var oe *OpenError
		if !errors.As(err, &oe) || oe.Reason != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("classify(%v) = %v, want reason %v", tc.err, err, tc.want)
		}
	}
}

// kernelWith returns this kernel's BTF with edit applied to a copy of the
// named struct, standing for a kernel whose layout differs.
func kernelWith(t *testing.T, edits map[string]func(*btf.Struct)) *btf.Spec {
	t.Helper()
	kspec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skip(err)
	}
	kspec = kspec.Copy()
	for name, edit := range edits {
		var s *btf.Struct
		if err := kspec.TypeByName(name, &s); err != nil {
			t.Fatal(err)
		}
		edit(s)
	}
	return kspec
}

func dropMember(names ...string) func(*btf.Struct) {
	return func(s *btf.Struct) {
		var keep []btf.Member
		for _, m := range s.Members {
			drop := false
			for _, n := range names {
				drop = drop || m.Name == n
			}
			if !drop {
				keep = append(keep, m)
			}
		}
		s.Members = keep
	}
}

// TestOlderKernelFieldsAbsent: BTF of a kernel without user_struct's
// locked_vm, mm_struct's pinned_vm and the ucounts rlimit counters (nor the
// pre-6.2 ucount[] slot for MEMLOCK) still loads; the records say those
// fields are absent instead of reporting zeros as values.
func TestOlderKernelFieldsAbsent(t *testing.T) {
	requireRoot(t)
	// On this kernel every one of them is present: the control.
	self := snapshot(t, openModule(t)).find(os.Getpid())
	const all = FlagPinnedVM | FlagUserLockedVM | FlagUcountsMemlock
	if self == nil || self.Flags&all != all {
		t.Fatalf("this kernel's own BTF: self %+v lacks flags %#x", self, all)
	}
	kspec := kernelWith(t, map[string]func(*btf.Struct){
		"user_struct": dropMember("locked_vm"),
		"ucounts":     dropMember("rlimit", "ucount"),
	})
	var mm *btf.Struct
	if err := kspec.TypeByName("mm_struct", &mm); err != nil {
		t.Fatal(err)
	}
	// pinned_vm sits in mm_struct's anonymous first member.
	for _, m := range mm.Members {
		if inner, ok := m.Type.(*btf.Struct); ok && m.Name == "" {
			dropMember("pinned_vm")(inner)
		}
	}
	m, err := open(kspec, nil)
	if err != nil {
		t.Fatalf("older layout did not load: %v", err)
	}
	defer m.Close()
	s := snapshot(t, m)
	if len(s.Tasks) < 2 {
		t.Fatalf("%d tasks", len(s.Tasks))
	}
	for _, task := range s.Tasks {
		if task.Flags&(FlagPinnedVM|FlagUserLockedVM|FlagUcountsMemlock|FlagLockedShm) != 0 {
			t.Fatalf("pid %d: flags %#x claim a field this kernel lacks", task.PID, task.Flags)
		}
	}
	for _, u := range s.Users {
		if u.Valid {
			t.Fatalf("user %d valid without user_struct->locked_vm", u.UID)
		}
	}
	for _, c := range s.Charges {
		if c.Valid {
			t.Fatalf("ucounts of %d valid without a MEMLOCK counter", c.UID)
		}
	}
}

// TestUcountsOldLayout: on 5.14 to 6.1 the MEMLOCK count is ucount[] slot
// UCOUNT_RLIMIT_MEMLOCK of enum ucount_type (no rlimit[] array). BTF with
// that layout, laid over this kernel so the slot lands on the same word as
// rlimit[UCOUNT_RLIMIT_MEMLOCK] here, must read the same SHM_LOCK charge
// through the old path as this kernel's BTF does through the new one.
func TestUcountsOldLayout(t *testing.T) {
	requireRoot(t)
	cur := openModule(t)
	kspec := kernelWith(t, nil)
	var uc *btf.Struct
	if err := kspec.TypeByName("ucounts", &uc); err != nil {
		t.Fatal(err)
	}
	var ucountOff, rlimitOff btf.Bits
	var ucountArr *btf.Array
	for _, m := range uc.Members {
		switch m.Name {
		case "ucount":
			ucountOff, ucountArr = m.Offset, m.Type.(*btf.Array)
		case "rlimit":
			rlimitOff = m.Offset
		}
	}
	var rt, ut *btf.Enum
	if ucountArr == nil || kspec.TypeByName("rlimit_type", &rt) != nil || kspec.TypeByName("ucount_type", &ut) != nil {
		t.Skip("this kernel does not have the 6.2+ ucounts layout")
	}
	var memlock uint64
	for _, v := range rt.Values {
		if v.Name == "UCOUNT_RLIMIT_MEMLOCK" {
			memlock = v.Value
		}
	}
	slot := uint64(rlimitOff-ucountOff)/64 + memlock
	longer := *ucountArr
	longer.Nelems = uint32(slot + 1)
	dropMember("rlimit")(uc)
	for i := range uc.Members {
		if uc.Members[i].Name == "ucount" {
			uc.Members[i].Type = &longer
		}
	}
	rt.Name = "rlimit_type_gone"
	ut.Values = append(ut.Values, btf.EnumValue{Name: "UCOUNT_RLIMIT_MEMLOCK", Value: slot})
	old, err := open(kspec, nil)
	if err != nil {
		t.Fatalf("5.14-6.1 layout did not load: %v", err)
	}
	defer old.Close()

	// A stopped child with a fresh uid and a known SHM_LOCK charge.
	const size = 300 * page
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, size, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Skipf("shmget: %v", err)
	}
	t.Cleanup(func() { _, _ = unix.SysvShmCtl(id, unix.IPC_RMID, nil) })
	c := startChild(t, childOpts{uid: freshUID(t), caps: []uintptr{unix.CAP_IPC_LOCK}}, "shmlock", uint64(id))
	c.next()
	c.stop()
	_, _, now := charges(t, cur, c.pid)
	_, _, then := charges(t, old, c.pid)
	if now.LockedBytes != size || then.LockedBytes != size {
		t.Errorf("SHM_LOCK charge: new layout %d, old layout %d, child locked %d", now.LockedBytes, then.LockedBytes, size)
	}
}
