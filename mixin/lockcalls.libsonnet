// Alerts on lock calls that failed, counted by the kernel as they happen
// (the lockcalls collector: BPF on the syscalls' exit tracepoints). They
// are the primary signal where memlock_lock_call_tracing_enabled is 1; the
// /proc heuristic (MemlockServiceLockFailed) is the fallback.
//
// Why not increase(memlock_lock_call_failures_total[5m]) > 0: a series is
// born at its first failure, so its first sample already counts it, and
// increase() of a counter that appears at 1 and stays there is 0 (or
// nothing, with one sample). That is the common case: Elasticsearch's
// mlockall fails once at start, and a process that exits is shown by one
// scrape only. The time of the last failure has neither problem:
// max_over_time over the window keeps a series shown once, and a failure
// newer than the window's start fires, however many samples there are.
//
// Severity by syscall: mlock, mlock2, mlockall, mmap(MAP_LOCKED) and
// shmctl(SHM_LOCK) failing leave the memory the process meant to keep in
// RAM (keys, a database's buffer pool, a search heap) swappable, and the
// process runs on: critical. A failed io_uring buffer registration or
// io_uring_setup makes the program fall back to slower I/O, and a failed
// setrlimit/prlimit64 of RLIMIT_MEMLOCK is an attempt to raise the limit
// that a lock call's own failure (critical) usually follows: warning.
local lib = import 'lib.libsonnet';
{
  _config+:: {
    // How long a failed lock call keeps MemlockLockCallFailing firing.
    lockCallFailingWindow: '5m',
  },

  prometheusAlerts+:: {
    local c = $._config,
    local runbook(name) = c.runbookURL + '#' + std.asciiLower(name),
    local window = c.lockCallFailingWindow,
    local seconds = std.parseInt(std.substr(window, 0, std.length(window) - 1)) *
                    { s: 1, m: 60, h: 3600, d: 86400 }[window[std.length(window) - 1]],
    local rule(syscalls, severity, consequence) = {
      alert: 'MemlockLockCallFailing',
      expr: |||
        max_over_time(memlock_lock_call_last_failure_timestamp_seconds{syscall=~"%(sc)s"}[%(w)s])
          > time() - %(s)d
      ||| % { sc: syscalls, w: window, s: seconds },
      'for': '0m',
      labels: { severity: severity },
      annotations: {
        summary: '{{ $labels.comm }} ({{ $labels.pid }}) on {{ $labels.instance }}: {{ $labels.syscall }} failed with {{ $labels.errno }}.',
        description: 'The kernel returned {{ $labels.errno }} to {{ $labels.syscall }} of {{ $labels.comm }} (pid {{ $labels.pid }}, uid {{ $labels.uid }}{{ if $labels.pod_uid }}, pod {{ $labels.pod_uid }}{{ end }}{{ if $labels.container_id }}, container {{ $labels.container_id }}{{ end }}) within the last ' + lib.human(window) + ', last at {{ $value | humanizeTimestamp }} (memlock_lock_call_failures_total counts them). ' + consequence,
        runbook_url: runbook('MemlockLockCallFailing'),
      },
    },
    groups+: [{
      name: 'memlock.lockcalls',
      rules: [
        rule('mlock|mlock2|mlockall|mmap|shmctl', 'critical',
             'The memory it meant to lock is not locked and the process most likely runs on unlocked (Elasticsearch bootstrap.memory_lock, Vault, databases log one line and go on): it can be swapped out.'),
        rule('io_uring_register|io_uring_setup|setrlimit|prlimit64', 'warning',
             'io_uring buffers that cannot be registered (or a ring that cannot be set up) make the program fall back to slower I/O; a refused RLIMIT_MEMLOCK change leaves the old limit in force.'),
      ],
    }],
  },
}
