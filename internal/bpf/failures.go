package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Syscall is a lock-related system call the failure counter watches
// (c/failures.bpf.c enum lock_syscall).
type Syscall uint16

const (
	SyscallMlock Syscall = iota
	SyscallMlock2
	SyscallMlockall
	SyscallMmap            // with MAP_LOCKED only
	SyscallShmctl          // SHM_LOCK only
	SyscallIOURingRegister // IORING_REGISTER_BUFFERS(2) only
	SyscallIOURingSetup
	SyscallSetrlimit // RLIMIT_MEMLOCK only
	SyscallPrlimit64 // setting RLIMIT_MEMLOCK only
	NumSyscalls
)

var syscallNames = [NumSyscalls]string{"mlock", "mlock2", "mlockall", "mmap", "shmctl", "io_uring_register", "io_uring_setup", "setrlimit", "prlimit64"}

func (s Syscall) String() string {
	if s < NumSyscalls {
		return syscallNames[s]
	}
	return fmt.Sprintf("syscall(%d)", uint16(s))
}

// Failure is the count of one process's failures of one syscall with one
// errno since the programs were attached.
type Failure struct {
	PID     int32
	Syscall Syscall
	Errno   unix.Errno
	Count   uint64
	// LastBytes is the length the last failing call asked for (mlock,
	// mlock2, mmap; 0 where the arguments do not say).
	LastBytes uint64
	// LastBootNS is the CLOCK_BOOTTIME of the last failure, nanoseconds.
	LastBootNS uint64
	UID        uint32
	CgroupID   uint64
	comm       [16]byte
}

// Comm is the command name of the thread that failed first.
func (f *Failure) Comm() string {
	c := f.comm[:]
	if i := bytes.IndexByte(c, 0); i >= 0 {
		c = c[:i]
	}
	return string(c)
}

// FailureCounts is one read of the failure maps.
type FailureCounts struct {
	Failures  []Failure
	Successes [NumSyscalls]uint64
	// DroppedCalls counts calls not followed because the in-flight map
	// was full, DroppedFailures failures of a (process, syscall, errno)
	// not yet in the full failure map.
	DroppedCalls, DroppedFailures uint64
}

// failureProbes holds the loaded tracepoint programs.
type failureProbes struct {
	objs  failuresObjects
	links []link.Link
}

// AttachFailures loads the syscall tracepoint programs and attaches them.
// Attaching a tracepoint reads its id from tracefs: the exporter needs
// /sys/kernel/tracing (or debugfs' tracing/) mounted, besides CAP_BPF and
// CAP_PERFMON.
func (m *Module) AttachFailures() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil
	}
	spec, err := loadFailures()
	if err != nil {
		return &OpenError{Err: err}
	}
	p := &failureProbes{}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return classify(err)
	}
	for name, prog := range spec.Programs {
		_, tp, ok := strings.Cut(prog.SectionName, "tracepoint/syscalls/")
		if !ok {
			continue
		}
		l, err := link.Tracepoint("syscalls", tp, programByName(&p.objs, name), nil)
		if err != nil {
			p.close()
			return classify(fmt.Errorf("attach %s: %w", tp, err))
		}
		p.links = append(p.links, l)
	}
	m.fail = p
	return nil
}

// DetachFailures detaches and unloads the tracepoint programs; their counts
// are gone.
func (m *Module) DetachFailures() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail == nil {
		return nil
	}
	err := m.fail.close()
	m.fail = nil
	return err
}

func programByName(o *failuresObjects, name string) *ebpf.Program {
	p := o.failuresPrograms
	for _, x := range []struct {
		n string
		p *ebpf.Program
	}{
		{"enter_mlock", p.EnterMlock}, {"exit_mlock", p.ExitMlock},
		{"enter_mlock2", p.EnterMlock2}, {"exit_mlock2", p.ExitMlock2},
		{"enter_mlockall", p.EnterMlockall}, {"exit_mlockall", p.ExitMlockall},
		{"enter_mmap", p.EnterMmap}, {"exit_mmap", p.ExitMmap},
		{"enter_shmctl", p.EnterShmctl}, {"exit_shmctl", p.ExitShmctl},
		{"enter_io_uring_register", p.EnterIoUringRegister}, {"exit_io_uring_register", p.ExitIoUringRegister},
		{"enter_io_uring_setup", p.EnterIoUringSetup}, {"exit_io_uring_setup", p.ExitIoUringSetup},
		{"enter_setrlimit", p.EnterSetrlimit}, {"exit_setrlimit", p.ExitSetrlimit},
		{"enter_prlimit64", p.EnterPrlimit64}, {"exit_prlimit64", p.ExitPrlimit64},
	} {
		if x.n == name {
			return x.p
		}
	}
	return nil
}

func (p *failureProbes) close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// Failures reads the failure and success counts into dst, reusing its
// slice.
func (m *Module) Failures(dst *FailureCounts) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail == nil {
		return errors.New("bpf: failure probes not attached")
	}
	o := &m.fail.objs
	dst.Failures = dst.Failures[:0]
	var k failuresFailureKey
	var v failuresFailure
	it := o.Failures.Iterate()
	for it.Next(&k, &v) {
		f := Failure{PID: int32(k.Tgid), Syscall: Syscall(k.Syscall), Errno: unix.Errno(k.Errno),
			Count: v.Count, LastBytes: v.LastBytes, LastBootNS: v.LastNs, UID: v.Uid, CgroupID: v.CgroupId}
		for i, c := range v.Comm {
			f.comm[i] = byte(c)
		}
		dst.Failures = append(dst.Failures, f)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("bpf: read failures: %w", err)
	}
	sum := func(mp *ebpf.Map, i uint32) (uint64, error) {
		var per []uint64
		if err := mp.Lookup(i, &per); err != nil {
			return 0, err
		}
		var n uint64
		for _, x := range per {
			n += x
		}
		return n, nil
	}
	var err error
	for i := range NumSyscalls {
		if dst.Successes[i], err = sum(o.Successes, uint32(i)); err != nil {
			return fmt.Errorf("bpf: read successes: %w", err)
		}
	}
	if dst.DroppedCalls, err = sum(o.Dropped, 0); err != nil {
		return fmt.Errorf("bpf: read dropped: %w", err)
	}
	if dst.DroppedFailures, err = sum(o.Dropped, 1); err != nil {
		return fmt.Errorf("bpf: read dropped: %w", err)
	}
	return nil
}
