package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/memlock-exporter/memlock_exporter/collector"
	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// loadTime is how long bpf.Open took (BTF parse, CO-RE, verifier, link),
// for the start-up log line.
var loadTime time.Duration

// bpfModes are --collector.bpf's values.
var bpfModes = []string{"auto", "on", "off"}

func addBPFFlag(app *kingpin.Application, mode *string) {
	app.Flag("collector.bpf", "Where the process and user collectors read per-process numbers: auto loads the BPF task iterator when the exporter may (CAP_BPF and CAP_PERFMON, a kernel with BTF and iter/task), else reads /proc; on requires it (exit 2 without); off reads /proc only. Only BPF adds the kernel's per-user charges (memlock_user_kernel_*).").
		Default("auto").EnumVar(mode, bpfModes...)
}

// openTasks sets cfg.Tasks from --collector.bpf, when the process or user
// collector is enabled. It returns the module to close at exit (nil when
// none is loaded) and why loading failed; with mode on a failure is fatal
// (fatal names what is missing).
func openTasks(mode string, enabled []string, cfg *collector.Config) (m *bpf.Module, loadErr, fatal error) {
	if mode == "off" {
		cfg.TasksUnavailable = "disabled"
		cfg.LockCalls.Unavailable = collector.LockCallsDisabled
		return nil, nil, nil
	}
	need := false
	for _, n := range enabled {
		need = need || n == "process" || n == "user" || n == "lockcalls"
	}
	if !need {
		return nil, nil, nil
	}
	start := time.Now()
	m, err := bpf.Open()
	loadTime = time.Since(start)
	// Loading parsed the kernel's BTF (several MiB, and the mmap of
	// /sys/kernel/btf/vmlinux, released by a cleanup after a GC): give
	// it back now rather than at the runtime's leisure.
	debug.FreeOSMemory()
	debug.FreeOSMemory()
	if err == nil {
		cfg.Tasks = m
		return m, nil, nil
	}
	if mode == "on" {
		return nil, err, fmt.Errorf("--collector.bpf=on: %s: %s", bpfMissing(err), bareBPFError(err))
	}
	cfg.TasksUnavailable = bpfReason(err)
	cfg.LockCalls.Unavailable = bpfReason(err)
	return nil, err, nil
}

// attachLockCalls attaches the lock-call failure tracepoints on m when the
// lockcalls collector is enabled, and sets cfg.LockCalls. It returns why
// attaching failed (nil when attached or not wanted); the collector then
// reports memlock_lock_call_tracing_enabled 0 with the reason.
func attachLockCalls(m *bpf.Module, enabled []string, tracefs string, cfg *collector.Config) error {
	want := false
	for _, n := range enabled {
		want = want || n == "lockcalls"
	}
	if !want || m == nil {
		return nil
	}
	err := m.AttachFailures(tracefs)
	if tracefs == "" && errors.Is(err, bpf.ErrNoTracefs) {
		// No tracefs mounted on the host (tracefs is needed only for the
		// tracepoints' ids, while attaching): mount one in a private mount
		// namespace of a thread of its own, where the exporter may
		// (CAP_SYS_ADMIN); nothing else sees it, and it is gone when the
		// ids have been read.
		perr := linux.WithPrivateTracefs(func() error { return m.AttachFailures(linux.TracefsDir) })
		if perr == nil {
			privateTracefs = true
			err = nil
		} else if !errors.As(perr, new(*linux.MountError)) {
			err = perr
		} else {
			err = fmt.Errorf("%w, and mounting one privately failed: %v", err, perr)
		}
	}
	if err != nil {
		cfg.LockCalls.Unavailable = lockCallsReason(err)
		return err
	}
	cfg.LockCalls.Source = m
	return nil
}

// privateTracefs is whether attachLockCalls read the tracepoints' ids
// from a tracefs it mounted privately, for the start-up line.
var privateTracefs bool

// lockCallsReason is memlock_lock_call_tracing_enabled's reason for a
// failed AttachFailures.
func lockCallsReason(err error) string {
	switch {
	case errors.Is(err, bpf.ErrPermission):
		return "permission"
	case errors.Is(err, fs.ErrPermission):
		// tracefs is root's alone (its root 0700, the id files 0440):
		// an exporter without root needs a copy of the ids.
		return "tracefs_permission"
	case errors.Is(err, bpf.ErrNoTracefs):
		return "no_tracefs"
	case errors.Is(err, bpf.ErrNoSyscallTracepoints):
		return "no_syscall_tracepoints"
	}
	return bpfReason(err)
}

// logLockCalls says once at start whether failed lock calls are counted.
func logLockCalls(exp *collector.Exporter, loadErr, attachErr error, logger *slog.Logger) {
	on, reason, ok := exp.LockCallTracing()
	if !ok {
		return
	}
	if on {
		logger.Info("lock-call tracing attached: failed mlock, mlockall, MAP_LOCKED, SHM_LOCK, io_uring and RLIMIT_MEMLOCK calls counted at the syscalls' exit tracepoints (every syscall on the host takes the kernel's tracing path; see docs/bpf.md)", "private_tracefs", privateTracefs)
		return
	}
	args := []any{"reason", reason}
	switch err := cmp.Or(attachErr, loadErr); {
	case reason == "other_pid_namespace":
		args = append(args, "err", "the exporter or --path.procfs is not in the host's pid namespace (hostPID)")
	case err != nil:
		args = append(args, "err", bareBPFError(err))
	}
	logger.Info("lock-call tracing off: memlock_lock_call_* not counted", args...)
}

// bareBPFError drops the hint cilium/ebpf appends to every EPERM: since
// 5.11 BPF memory is charged to the memory cgroup, not RLIMIT_MEMLOCK, and
// the exporter never raises the limit; the missing capability is the cause.
func bareBPFError(err error) string {
	return strings.TrimSuffix(err.Error(), " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)")
}

// bpfReason is memlock_scan_source_info's reason for a failed bpf.Open.
func bpfReason(err error) string {
	switch {
	case errors.Is(err, bpf.ErrPermission):
		return "permission"
	case errors.Is(err, bpf.ErrNoBTF):
		return "no_btf"
	case errors.Is(err, bpf.ErrNoTaskIter):
		return "no_task_iter"
	}
	return "error"
}

// bpfMissing names what the exporter lacks to load the task iterator.
func bpfMissing(err error) string {
	switch {
	case errors.Is(err, bpf.ErrPermission):
		return "cannot load the BPF task iterator without CAP_BPF and CAP_PERFMON (effective, in the initial user namespace)"
	case errors.Is(err, bpf.ErrNoBTF):
		return "cannot load the BPF task iterator: the kernel has no BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)"
	case errors.Is(err, bpf.ErrNoTaskIter):
		return "cannot load the BPF task iterator: the kernel has no iter/task (5.8 or later with CONFIG_BPF_SYSCALL)"
	}
	return "cannot load the BPF task iterator"
}

// logScanSource says once at start where per-process numbers come from.
func logScanSource(exp *collector.Exporter, loadErr error, logger *slog.Logger) {
	source, reason := exp.ScanSource()
	if source == "" {
		return
	}
	if source == collector.SourceBPF {
		logger.Info("per-process numbers from the BPF task iterator", "scan_source", source, "load_seconds", loadTime.Seconds())
		return
	}
	args := []any{"scan_source", source, "reason", reason}
	if loadErr != nil {
		args = append(args, "err", bareBPFError(loadErr))
	}
	logger.Info("per-process numbers from /proc", args...)
}
