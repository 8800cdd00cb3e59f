package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

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

// HasBytes says whether the program records the bytes a failed call of s
// asked for: the length argument of mlock, mlock2 and mmap; for mlockall
// the process's whole address space (mm->total_vm, what the kernel holds
// against RLIMIT_MEMLOCK when MCL_CURRENT is set; 0 for MCL_FUTURE alone);
// for shmctl(SHM_LOCK) the segment's size (shm_segsz, looked up in the
// caller's IPC namespace; 0 if the segment is gone by the call's exit);
// for io_uring buffer registration the sum of the iovecs' lengths
// (IORING_REGISTER_BUFFERS and BUFFERS2, read from the caller's memory).
// The limit changes and io_uring_setup ask for no bytes and record 0.
func (s Syscall) HasBytes() bool {
	switch s {
	case SyscallMlock, SyscallMlock2, SyscallMmap, SyscallMlockall, SyscallShmctl, SyscallIOURingRegister:
		return true
	}
	return false
}

// Failure is the count of one process's failures of one syscall with one
// errno since the programs were attached (or since the entry was
// forgotten).
type Failure struct {
	PID     int32
	Syscall Syscall
	Errno   unix.Errno
	Count   uint64
	// Bytes is the sum of the lengths the failing calls asked for
	// (mlock, mlock2, mmap; mlockall's total_vm; SHM_LOCK's segment size;
	// io_uring's buffer lengths; 0 where the call asks for none, see
	// Syscall.HasBytes).
	Bytes uint64
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
	// Dropped counts failures of a (process, syscall, errno) not yet in
	// the failure map when it was full.
	Dropped uint64
}

// MaxFailureEntries is the failure map's size, (process, syscall, errno)
// entries.
const MaxFailureEntries = 4096

// Reasons AttachFailures can fail besides those of Open.
var (
	// ErrNoTracefs: no tracefs is mounted where the exporter looks
	// (/sys/kernel/tracing, /sys/kernel/debug/tracing, or the path it was
	// given); a tracepoint's id is read from it.
	ErrNoTracefs = errors.New("tracefs is not mounted")
	// ErrNoSyscallTracepoints: tracefs has no syscalls:sys_exit_* events
	// (a kernel without CONFIG_FTRACE_SYSCALLS).
	ErrNoSyscallTracepoints = errors.New("tracefs has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)")
)

// TracefsPaths are where FindTracefs looks, in order.
var TracefsPaths = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// FindTracefs returns the tracefs mount to read tracepoint ids from: path
// when it is not empty (it must hold events/syscalls), else the first of
// TracefsPaths that is a tracefs. The error wraps ErrNoTracefs or
// ErrNoSyscallTracepoints.
func FindTracefs(path string) (string, error) {
	if path == "" {
		for _, p := range TracefsPaths {
			var st unix.Statfs_t
			if unix.Statfs(p, &st) == nil && st.Type == unix.TRACEFS_MAGIC {
				path = p
				break
			}
		}
		if path == "" {
			return "", fmt.Errorf("%w at %s", ErrNoTracefs, strings.Join(TracefsPaths, " or "))
		}
	} else if _, err := os.Stat(filepath.Join(path, "events")); err != nil {
		return "", fmt.Errorf("%w at %s: %w", ErrNoTracefs, path, err)
	}
	if _, err := os.Stat(filepath.Join(path, "events", "syscalls", "sys_exit_mlock", "id")); err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoSyscallTracepoints, err)
	}
	return path, nil
}

// failureProbes holds the loaded tracepoint programs and their perf
// events.
type failureProbes struct {
	coll                         *ebpf.Collection
	failures, successes, dropped *ebpf.Map
	links                        []link.Link
	events                       []int
}

// AttachFailures loads the syscall exit tracepoint programs and attaches
// them, reading each tracepoint's id from the tracefs at tracefs (see
// FindTracefs; "" looks in the usual places). It needs CAP_BPF and
// CAP_PERFMON. Attaching any syscall tracepoint makes every syscall of
// every thread on the host take the kernel's tracing slow path (see
// docs/bpf.md for the cost).
func (m *Module) AttachFailures(tracefs string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil
	}
	dir, err := FindTracefs(tracefs)
	if err != nil {
		return err
	}
	spec, err := loadFailures()
	if err != nil {
		return &OpenError{Err: err}
	}
	// mlockall's bytes are mm->total_vm pages: the program shifts them by
	// this kernel's page size (4 KiB, 16 KiB or 64 KiB on arm64).
	if v := spec.Variables["page_shift"]; v == nil {
		return errors.New("bpf: failures object lacks page_shift")
	} else if err := v.Set(uint32(bits.TrailingZeros(uint(os.Getpagesize())))); err != nil {
		return fmt.Errorf("bpf: set page_shift: %w", err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return classify(err)
	}
	p := &failureProbes{coll: coll, failures: coll.Maps["failures"], successes: coll.Maps["successes"], dropped: coll.Maps["dropped"]}
	if p.failures == nil || p.successes == nil || p.dropped == nil {
		p.close()
		return errors.New("bpf: failures object lacks a map")
	}
	for name, ps := range spec.Programs {
		_, tp, ok := strings.Cut(ps.SectionName, "tracepoint/syscalls/")
		if !ok {
			continue
		}
		if err := p.attach(dir, tp, coll.Programs[name]); err != nil {
			p.close()
			return err
		}
	}
	m.fail = p
	return nil
}

// attach opens the perf event of syscalls:name on CPU 0 (a tracepoint's
// BPF program runs on every CPU whatever the event's CPU) and attaches
// prog to it with a BPF link.
func (p *failureProbes) attach(tracefs, name string, prog *ebpf.Program) error {
	b, err := os.ReadFile(filepath.Join(tracefs, "events", "syscalls", name, "id"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoSyscallTracepoints, err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return fmt.Errorf("bpf: tracepoint %s id %q: %w", name, b, err)
	}
	attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_TRACEPOINT, Config: id, Size: uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample: 1, Wakeup: 1}
	fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, unix.PERF_FLAG_FD_CLOEXEC)
	if err != nil {
		return classify(fmt.Errorf("perf_event_open %s: %w", name, err))
	}
	p.events = append(p.events, fd)
	l, err := link.AttachRawLink(link.RawLinkOptions{Target: fd, Program: prog, Attach: ebpf.AttachPerfEvent})
	if err != nil {
		return classify(fmt.Errorf("attach %s: %w", name, err))
	}
	p.links = append(p.links, l)
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

// FailuresAttached says whether AttachFailures succeeded and the programs
// are still attached.
func (m *Module) FailuresAttached() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fail != nil
}

func (p *failureProbes) close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	for _, fd := range p.events {
		errs = append(errs, unix.Close(fd))
	}
	p.links, p.events = nil, nil
	p.coll.Close()
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
	p := m.fail
	dst.Failures = dst.Failures[:0]
	var k failuresFailureKey
	var v failuresFailure
	it := p.failures.Iterate()
	for it.Next(&k, &v) {
		f := Failure{PID: int32(k.Tgid), Syscall: Syscall(k.Syscall), Errno: unix.Errno(k.Errno),
			Count: v.Count, Bytes: v.Bytes, LastBootNS: v.LastNs, UID: v.Uid, CgroupID: v.CgroupId}
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
		if dst.Successes[i], err = sum(p.successes, uint32(i)); err != nil {
			return fmt.Errorf("bpf: read successes: %w", err)
		}
	}
	if dst.Dropped, err = sum(p.dropped, 0); err != nil {
		return fmt.Errorf("bpf: read dropped: %w", err)
	}
	return nil
}

// ForgetFailures deletes the entries of fs from the failure map (those of
// processes that have exited, once a scrape has shown them). An entry
// already gone is not an error.
func (m *Module) ForgetFailures(fs []Failure) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail == nil {
		return nil
	}
	var errs []error
	for _, f := range fs {
		k := failuresFailureKey{Tgid: uint32(f.PID), Syscall: uint16(f.Syscall), Errno: uint16(f.Errno)}
		if err := m.fail.failures.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
