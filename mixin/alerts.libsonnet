// Alerts (deploy/prometheus/alerts.yml). They need the recording rules.
// Every alert has a section in docs/runbook.md, and firing and quiet unit
// tests in deploy/prometheus/tests/ (promtool test rules).
//
// Every alert but MemlockExporterDown (up never misses a sample) takes
// max_over_time(...[3m]) of what it tests, so that one missed scrape (a scan that ran out of time, a
// timeout, a restart) does not reset their `for:`. [3m] covers one missed
// scrape at scrape and rule intervals of up to 1m plus the one evaluation by
// which an alert may trail the recording rule it reads: rule groups are
// evaluated independently (promtool orders them arbitrarily), and with [2m]
// the tests failed about one run in three.
local lib = import 'lib.libsonnet';
{
  prometheusAlerts+:: {
    local c = $._config,
    local runbook(name) = c.runbookURL + '#' + std.asciiLower(name),
    groups+: [{
      name: 'memlock.alerts',
      rules: [
        {
          alert: 'MemlockProcessNearLimit',
          expr: 'max_over_time(pid:memlock_process_locked_bytes:limit_ratio[3m]) > ' + lib.num(c.processNearLimitRatio),
          'for': c.processNearLimitFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Process {{ $labels.comm }} ({{ $labels.pid }}) on {{ $labels.instance }} uses {{ $value | humanizePercentage }} of its memlock limit.',
            description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, uid {{ $labels.uid }}) has locked more than ' + lib.percent(c.processNearLimitRatio) + ' of its soft RLIMIT_MEMLOCK for ' + lib.human(c.processNearLimitFor) + ' and may not lock past it (no CAP_IPC_LOCK in the initial user namespace): its next mlock, mmap(MAP_LOCKED) or growth of a locked heap fails with ENOMEM.',
            runbook_url: runbook('MemlockProcessNearLimit'),
          },
        },
        // With BPF (memlock_scan_source_info{source="bpf"}) the kernel's
        // exact charge; without it, on that instance only, the VmPin
        // approximation.
        {
          alert: 'MemlockUserPinnedNearLimit',
          expr: |||
            max_over_time(uid:memlock_user_kernel_locked_vm_bytes:limit_ratio[3m]) > %(r)s
              or
            (
              max_over_time(uid:memlock_user_charged_pinned_bytes:limit_ratio[3m]) > %(r)s
                unless on (%(by)s) memlock_scan_source_info{source="bpf"}
            )
          ||| % { r: lib.num(c.userPinnedNearLimitRatio), by: lib.by(c, ['instance', 'job']) },
          'for': c.userPinnedNearLimitFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'User {{ $labels.uid }} on {{ $labels.instance }} has about {{ $value | humanizePercentage }} of its memlock limit charged for pinned memory.',
            description: 'What the kernel charges to uid {{ $labels.uid }} for pinned memory (io_uring registered buffers and rings, perf ring buffers, MSG_ZEROCOPY, AF_XDP, iommufd) has been above ' + lib.percent(c.userPinnedNearLimitRatio) + ' of the smallest memlock limit among its processes that pin memory without CAP_IPC_LOCK in the initial user namespace for ' + lib.human(c.userPinnedNearLimitFor) + ". The kernel checks the user's whole charge against the registering process's limit: the next io_uring_register (or perf mmap, AF_XDP umem, ...) of such a process fails with ENOMEM. With BPF the charge is the kernel's own (memlock_user_kernel_locked_vm_bytes); without it, an approximation from VmPin (memlock_user_charged_pinned_bytes).",
            runbook_url: runbook('MemlockUserPinnedNearLimit'),
          },
        },
        // BPF only: no /proc file shows the SHM_LOCK charge.
        {
          alert: 'MemlockUserShmLockNearLimit',
          expr: 'max_over_time(uid:memlock_user_kernel_shm_locked_bytes:limit_ratio[3m]) > ' + lib.num(c.userShmLockNearLimitRatio),
          'for': c.userShmLockNearLimitFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'User {{ $labels.uid }} on {{ $labels.instance }} has {{ $value | humanizePercentage }} of its memlock limit charged for SHM_LOCK.',
            description: 'The SysV SHM_LOCK charge of uid {{ $labels.uid }} (user namespace {{ $labels.user_namespace }}), which the kernel keeps per user and charges to whoever called shmctl(SHM_LOCK), has been above ' + lib.percent(c.userShmLockNearLimitRatio) + ' of the smallest memlock limit among its reported processes without CAP_IPC_LOCK in the initial user namespace for ' + lib.human(c.userShmLockNearLimitFor) + ': the next SHM_LOCK by such a process of a segment that does not fit fails with ENOMEM (or EPERM under a zero limit).',
            runbook_url: runbook('MemlockUserShmLockNearLimit'),
          },
        },
        // A guess from /proc, opt-in per service (_config.serviceLockFailedComms;
        // empty: not generated): a watched process that locks and pins
        // nothing under a small limit without CAP_IPC_LOCK most likely
        // failed to lock. Not guessed where BPF lock-call tracing runs on the
        // instance: there the failed calls themselves are counted
        // (MemlockLockCallFailing, mixin/lockcalls.libsonnet).
      ] + (if std.length(c.serviceLockFailedComms) == 0 then [] else [
        {
          alert: 'MemlockServiceLockFailed',
          expr: |||
            (
              (max_over_time(memlock_process_locked_bytes{comm=~%(comms)s}[3m]) == 0)
                and (max_over_time(memlock_process_pinned_bytes{comm=~%(comms)s}[3m]) == 0)
                and (max_over_time(memlock_process_limit_soft_bytes{comm=~%(comms)s}[3m]) < %(limit)d)
              unless
                (max_over_time(memlock_process_cap_ipc_lock[3m]) == 1)
            )
            unless on (%(by)s)
              (max_over_time(memlock_lock_call_tracing_enabled[3m]) == 1)
          ||| % {
            limit: c.serviceLockFailedLimitBytes,
            comms: std.escapeStringJson(std.join('|', c.serviceLockFailedComms)),
            by: lib.by(c, ['instance', 'job']),
          },
          'for': c.serviceLockFailedFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: '{{ $labels.comm }} ({{ $labels.pid }}) on {{ $labels.instance }} has locked no memory under a small memlock limit: its lock probably failed (a guess).',
            description: 'A guess from /proc, not an observed failure: {{ $labels.comm }} (pid {{ $labels.pid }}) is one of the services this alert is enabled for (serviceLockFailedComms), has locked and pinned nothing for ' + lib.human(c.serviceLockFailedFor) + ', and its soft RLIMIT_MEMLOCK is below ' + std.toString(c.serviceLockFailedLimitBytes / 1048576) + ' MiB without CAP_IPC_LOCK in the initial user namespace. If it is configured to lock (Elasticsearch bootstrap.memory_lock, Vault, a database), its lock most likely failed and it runs unlocked; if it is not, remove it from serviceLockFailedComms. With BPF lock-call tracing on this instance the failed calls are seen instead and this guess is not made.',
            runbook_url: runbook('MemlockServiceLockFailed'),
          },
        },
      ]) + [
        {
          alert: 'MemlockNodeLockedMemoryHigh',
          expr: 'max_over_time(instance:memlock_system_mlocked_bytes:memory_ratio[3m]) > ' + lib.num(c.nodeLockedRatio),
          'for': c.nodeLockedFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: '{{ $value | humanizePercentage }} of the memory of {{ $labels.instance }} is mlocked.',
            description: (if c.nodeLockedRatio == 0.5 then 'More than half' else 'More than ' + lib.percent(c.nodeLockedRatio)) + ' of the RAM of {{ $labels.instance }} has been mlocked for ' + lib.human(c.nodeLockedFor) + '. The kernel cannot reclaim it: page cache and other workloads share what is left, and the OOM killer comes sooner.',
            runbook_url: runbook('MemlockNodeLockedMemoryHigh'),
          },
        },
        // One alert per limit that binds. Limits nest (a pod's and its
        // container's, a slice's and its service's): one locker under two
        // limits near the threshold is one problem. A cgroup is left out
        // (1) when its parent's limit is lower: the parent holds at least as
        // much and reaches its limit first; (2) when a child whose limit is
        // no higher is over the threshold itself and holds so much of the
        // unevictable memory that without it this cgroup would be under
        // the threshold: the child's alert says it. The parent is the
        // cgroup path without its last component (its limit:
        // cgroup:memlock_cgroup_parent_memory_limit_bytes). Every input is taken
        // over [3m], so that one missed scrape neither resets for: nor lets
        // a left-out cgroup through.
        {
          alert: 'MemlockCgroupUnevictableNearLimit',
          expr: |||
            max_over_time(cgroup:memlock_cgroup_subtree_unevictable_bytes:limit_ratio[3m]) > %(r)s
            unless on (%(keys)s)
              (
                last_over_time(cgroup:memlock_cgroup_parent_memory_limit_bytes[3m])
                  < on (%(keys)s)
                last_over_time(memlock_cgroup_memory_limit_bytes[3m])
              )
            unless on (%(keys)s)
              (
                label_replace(label_replace(label_replace(
                      last_over_time(memlock_cgroup_subtree_unevictable_bytes{cgroup!="/"}[3m])
                        and on (%(keys)s)
                      (max_over_time(cgroup:memlock_cgroup_subtree_unevictable_bytes:limit_ratio[3m]) > %(r)s)
                        and on (%(keys)s)
                      (
                        last_over_time(memlock_cgroup_memory_limit_bytes[3m])
                          <= on (%(keys)s)
                        last_over_time(cgroup:memlock_cgroup_parent_memory_limit_bytes[3m])
                      ),
                    "child", "$1", "cgroup", "(.+)"),
                  "cgroup", "/", "cgroup", "/[^/]+"),
                "cgroup", "$1", "cgroup", "(/.+)/[^/]+")
                  >= on (%(keys)s) group_left ()
                (
                  last_over_time(memlock_cgroup_subtree_unevictable_bytes[3m])
                    - %(r)s * last_over_time(memlock_cgroup_memory_limit_bytes[3m])
                )
              )
          ||| % {
            r: lib.num(c.cgroupUnevictableRatio),
            keys: lib.by(c, ['instance', 'job', 'cgroup']),
          },
          'for': c.cgroupUnevictableFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Unevictable memory of cgroup {{ $labels.cgroup }} on {{ $labels.instance }} is {{ $value | humanizePercentage }} of its memory limit.',
            description: 'Locked (unevictable) pages charged to cgroup {{ $labels.cgroup }}{{ if $labels.pod_uid }} (pod {{ $labels.pod_uid }}{{ if $labels.container_id }}, container {{ $labels.container_id }}{{ end }}){{ end }} and its descendants have filled more than ' + lib.percent(c.cgroupUnevictableRatio) + ' of its memory limit for ' + lib.human(c.cgroupUnevictableFor) + '. They count against the limit and cannot be reclaimed: its processes are near an OOM kill. This is the limit that binds: a nested cgroup near the same limit because of the same pages is not alerted on.',
            runbook_url: runbook('MemlockCgroupUnevictableNearLimit'),
          },
        },
        {
          alert: 'MemlockProbeFailing',
          expr: 'max_over_time(memlock_probe_success[3m]) == 0',
          'for': c.probeFailingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'The {{ $labels.mode }} memory lock probe fails on {{ $labels.instance }}.',
            description: "The exporter's {{ $labels.mode }} probe has failed for " + lib.human(c.probeFailingFor) + ": a new lock of the probe's size would not succeed now on this node (or in this container). memlock_probe_failures_total says why (EPERM, ENOMEM, headroom, verification, timeout).",
            runbook_url: runbook('MemlockProbeFailing'),
          },
        },
        // No MemlockProbeLatencyRegression: a probe's wall time follows CPU
        // contention as much as the cost of locking (a control at 15 ms
        // went pending under load). docs/runbook.md says why it was
        // dropped and what to look at instead.
        {
          alert: 'MemlockCollectorFailing',
          expr: 'max_over_time(memlock_scrape_collector_success[3m]) == 0',
          'for': c.collectorFailingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Collector {{ $labels.collector }} of memlock_exporter on {{ $labels.instance }} fails.',
            description: 'The {{ $labels.collector }} collector has failed every scrape for ' + lib.human(c.collectorFailingFor) + ' (a malformed file, a timeout or a panic); its metrics are missing or stale. The other collectors still report.',
            runbook_url: runbook('MemlockCollectorFailing'),
          },
        },
        // The job selector is _config.jobSelector.
        {
          alert: 'MemlockExporterDown',
          expr: 'up{%s} == 0' % c.jobSelector,
          'for': c.exporterDownFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'memlock_exporter on {{ $labels.instance }} is down.',
            description: 'Prometheus has not scraped memlock_exporter on {{ $labels.instance }} for ' + lib.human(c.exporterDownFor) + ': locked memory on that node is not watched and none of the other memlock alerts can fire for it.',
            runbook_url: runbook('MemlockExporterDown'),
          },
        },
      ],
    }],
  },
}
+ (import 'lockcalls.libsonnet')  // memlock.lockcalls: failed lock calls counted by BPF
