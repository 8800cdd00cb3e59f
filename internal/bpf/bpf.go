// Package bpf loads memlock_exporter's BPF programs and reads what they
// collect: an iter/task iterator that copies each process's memlock
// accounting out of the kernel in one read (c/task.bpf.c, Open and Tasks),
// and syscall exit tracepoints that count failed
// lock calls (c/failures.bpf.c, AttachFailures and Failures) on the same
// Module.
//
// Loading needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) and a kernel with
// BTF and iter/task (5.8+); Open says which is missing with a typed error.
// The package never raises RLIMIT_MEMLOCK (it does not import cilium/ebpf's
// rlimit package): since 5.11 BPF memory is charged to the memory cgroup,
// not to the limit.
package bpf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Reasons Open can fail, for errors.Is. The error Open returns also wraps
// the underlying cilium/ebpf or syscall error.
var (
	// ErrNoBTF: the kernel exposes no BTF (/sys/kernel/btf/vmlinux,
	// CONFIG_DEBUG_INFO_BTF), so CO-RE relocations cannot be resolved.
	ErrNoBTF = errors.New("kernel has no BTF")
	// ErrNoTaskIter: the kernel has no iter/task target (before 5.8, or
	// built without CONFIG_BPF_SYSCALL), or a field the program cannot do
	// without is missing.
	ErrNoTaskIter = errors.New("kernel cannot load the iter/task program")
	// ErrPermission: the caller lacks CAP_BPF and CAP_PERFMON (or
	// CAP_SYS_ADMIN) in the initial user namespace.
	ErrPermission = errors.New("not permitted to load BPF tracing programs (needs CAP_BPF and CAP_PERFMON)")
)

// OpenError is what Open returns: Reason is one of the Err* variables above
// (or nil when the cause is unknown), Err the error that revealed it.
type OpenError struct {
	Reason error
	Err    error
}

func (e *OpenError) Error() string {
	if e.Reason == nil {
		return "bpf: " + e.Err.Error()
	}
	return "bpf: " + e.Reason.Error() + ": " + e.Err.Error()
}

// Unwrap lets errors.Is match both the reason and the underlying error.
func (e *OpenError) Unwrap() []error {
	if e.Reason == nil {
		return []error{e.Err}
	}
	return []error{e.Reason, e.Err}
}

// Module holds the loaded programs and their links. Its methods are safe for
// concurrent use; reads are serialised because they share one buffer.
type Module struct {
	mu   sync.Mutex
	objs taskObjects
	iter *link.Iter
	fail *failureProbes // nil until AttachFailures

	pageSize uint64
	// readSize caps one read(2) of the iterator (0: the whole buffer);
	// tests set it to cut records across reads.
	readSize int
	buf      []byte
	snap     Snapshot
	byTGID   map[int32]int
	byUser   map[uint64]int
	byUC     map[uint64]int
}

// Open loads the task iterator and attaches it. It is meant to be called
// once, at start; Close releases the kernel objects.
func Open() (*Module, error) {
	return open(btf.LoadKernelSpec())
}

// open loads against the given kernel BTF (or reports kerr, the reason
// there is none); tests pass specs of kernels this machine is not.
func open(kspec *btf.Spec, kerr error) (*Module, error) {
	if kerr != nil {
		return nil, &OpenError{Reason: ErrNoBTF, Err: kerr}
	}
	spec, err := loadTask()
	if err != nil {
		return nil, &OpenError{Err: err}
	}
	m := &Module{
		pageSize: uint64(os.Getpagesize()),
		byTGID:   make(map[int32]int),
		byUser:   make(map[uint64]int),
		byUC:     make(map[uint64]int),
	}
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kspec}}
	if err := spec.LoadAndAssign(&m.objs, opts); err != nil {
		return nil, classify(err)
	}
	m.iter, err = link.AttachIter(link.IterOptions{Program: m.objs.MemlockTasks})
	if err != nil {
		m.objs.Close()
		return nil, classify(err)
	}
	return m, nil
}

// classify maps a load or attach error to the reason Open reports.
func classify(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return &OpenError{Reason: ErrPermission, Err: err}
	case errors.Is(err, btf.ErrNotFound), errors.Is(err, ebpf.ErrNotSupported),
		errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		// cilium/ebpf reports a missing attach target (bpf_iter_task in
		// the kernel's BTF) as ErrNotSupported and a type it cannot find
		// as not found; an older kernel rejects the program or attach
		// type with EINVAL. (No BTF at all was caught before loading.)
		return &OpenError{Reason: ErrNoTaskIter, Err: err}
	}
	return &OpenError{Err: err}
}

// Close detaches and unloads the programs.
func (m *Module) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if m.fail != nil {
		errs = append(errs, m.fail.close())
		m.fail = nil
	}
	if m.iter != nil {
		errs = append(errs, m.iter.Close())
		m.iter = nil
	}
	errs = append(errs, m.objs.Close())
	return errors.Join(errs...)
}

// Tasks runs the iterator once and returns every process the kernel has:
// one Task per thread-group leader (kernel threads and zombies included),
// plus the users and SHM_LOCK charges those processes point to. The
// returned Snapshot and its slices are reused by the next call: copy what
// must outlive it. ctx is checked between reads of the iterator (each
// returns at most the kernel's seq_file buffer, 8 pages); one read cannot
// be interrupted.
func (m *Module) Tasks(ctx context.Context) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.iter == nil {
		return nil, errors.New("bpf: module closed")
	}
	if err := m.read(ctx); err != nil {
		return nil, err
	}
	return &m.snap, nil
}

// readBufSize is the buffer one pass is read through: the kernel's seq_file
// hands out at most 8 pages a read, and records are decoded as they come, so
// the pass's raw bytes (about 160 a process) are never held whole.
const readBufSize = 64 << 10

// read runs one pass of the iterator into m.snap, decoding the whole records
// of each read and carrying a record cut across reads to the next.
func (m *Module) read(ctx context.Context) error {
	r, err := m.iter.Open()
	if err != nil {
		return fmt.Errorf("bpf: open task iterator: %w", err)
	}
	defer r.Close()
	if len(m.buf) < readBufSize {
		m.buf = make([]byte, readBufSize)
	}
	m.reset()
	have := 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bpf: task iterator: %w", err)
		}
		dst := m.buf[have:]
		if m.readSize > 0 && len(dst) > m.readSize {
			dst = dst[:m.readSize]
		}
		n, err := r.Read(dst)
		have += n
		whole := have - have%recordSize
		m.decodeRecords(m.buf[:whole])
		have = copy(m.buf, m.buf[whole:have])
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			if have != 0 {
				return fmt.Errorf("bpf: task iterator ended inside a record (%d bytes left of a %d-byte record)", have, recordSize)
			}
			return nil
		}
		if err != nil {
			// EAGAIN: the kernel's seq_file restarted (a task went
			// away under it); the pass would be partial.
			return fmt.Errorf("bpf: read task iterator: %w", err)
		}
	}
}
