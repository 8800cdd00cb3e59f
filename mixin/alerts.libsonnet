// Alerts (deploy/prometheus/alerts.yml). They need the recording rules.
// Every alert has a section in docs/runbook.md, and firing and quiet unit
// tests in deploy/prometheus/tests/ (promtool test rules).
//
// The per-process and per-user alerts take max_over_time(...[3m]) of what
// they test, so that one missed scrape (a scan that ran out of time, a
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
        // Only processes named by --collector.process.include are reported
        // with nothing locked or pinned: they are the services that must lock.
        {
          alert: 'MemlockServiceLockFailed',
          expr: |||
            (max_over_time(memlock_process_locked_bytes[3m]) == 0)
              and (max_over_time(memlock_process_pinned_bytes[3m]) == 0)
              and (max_over_time(memlock_process_limit_soft_bytes[3m]) < %(limit)d)
            unless
              (max_over_time(memlock_process_cap_ipc_lock[3m]) == 1)
          ||| % { limit: c.serviceLockFailedLimitBytes },
          'for': c.serviceLockFailedFor,
          labels: { severity: 'critical' },
          annotations: {
            summary: '{{ $labels.comm }} ({{ $labels.pid }}) on {{ $labels.instance }} holds no locked memory and its memlock limit is small.',
            description: '{{ $labels.comm }} (pid {{ $labels.pid }}) is watched with --collector.process.include, has locked nothing for ' + lib.human(c.serviceLockFailedFor) + ', and its soft RLIMIT_MEMLOCK is below ' + std.toString(c.serviceLockFailedLimitBytes / 1048576) + ' MiB without CAP_IPC_LOCK in the initial user namespace: its memory lock most likely failed and it runs unlocked (Elasticsearch bootstrap.memory_lock, Vault, databases).',
            runbook_url: runbook('MemlockServiceLockFailed'),
          },
        },
        {
          alert: 'MemlockNodeLockedMemoryHigh',
          expr: 'instance:memlock_system_mlocked_bytes:memory_ratio > ' + lib.num(c.nodeLockedRatio),
          'for': c.nodeLockedFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: '{{ $value | humanizePercentage }} of the memory of {{ $labels.instance }} is mlocked.',
            description: (if c.nodeLockedRatio == 0.5 then 'More than half' else 'More than ' + lib.percent(c.nodeLockedRatio)) + ' of the RAM of {{ $labels.instance }} has been mlocked for ' + lib.human(c.nodeLockedFor) + '. The kernel cannot reclaim it: page cache and other workloads share what is left, and the OOM killer comes sooner.',
            runbook_url: runbook('MemlockNodeLockedMemoryHigh'),
          },
        },
        {
          alert: 'MemlockCgroupUnevictableNearLimit',
          expr: 'cgroup:memlock_cgroup_subtree_unevictable_bytes:limit_ratio > ' + lib.num(c.cgroupUnevictableRatio),
          'for': c.cgroupUnevictableFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'Unevictable memory of cgroup {{ $labels.cgroup }} on {{ $labels.instance }} is {{ $value | humanizePercentage }} of its memory limit.',
            description: 'Locked (unevictable) pages of cgroup {{ $labels.cgroup }} (pod {{ $labels.pod_uid }}, container {{ $labels.container_id }}) fill more than ' + lib.percent(c.cgroupUnevictableRatio) + ' of its memory limit for ' + lib.human(c.cgroupUnevictableFor) + '. They count against the limit and cannot be reclaimed: the container is near an OOM kill.',
            runbook_url: runbook('MemlockCgroupUnevictableNearLimit'),
          },
        },
        {
          alert: 'MemlockProbeFailing',
          expr: 'memlock_probe_success == 0',
          'for': c.probeFailingFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'The {{ $labels.mode }} memory lock probe fails on {{ $labels.instance }}.',
            description: "The exporter's {{ $labels.mode }} probe has failed for " + lib.human(c.probeFailingFor) + ": a new lock of the probe's size would not succeed now on this node (or in this container). memlock_probe_failures_total says why (EPERM, ENOMEM, headroom, verification, timeout).",
            runbook_url: runbook('MemlockProbeFailing'),
          },
        },
        // The p99 of the last hour against the same hour a day earlier; at
        // least 10 ms, so that microsecond jitter never pages anyone.
        {
          alert: 'MemlockProbeLatencyRegression',
          expr: |||
            mode:memlock_probe_duration_seconds:p99_1h > 0.01
              and
            mode:memlock_probe_duration_seconds:p99_1h
              > 2 * (mode:memlock_probe_duration_seconds:p99_1h offset 1d)
          |||,
          'for': c.probeLatencyFor,
          labels: { severity: 'info' },
          annotations: {
            summary: 'The {{ $labels.mode }} probe on {{ $labels.instance }} is more than twice as slow as a day ago (p99 {{ $value | humanizeDuration }}).',
            description: "The 99th percentile of the {{ $labels.mode }} probe's duration over the last hour is more than twice what it was 24 hours earlier: locking memory costs more on this node now (memory pressure, compaction, fragmentation, no more transparent huge pages).",
            runbook_url: runbook('MemlockProbeLatencyRegression'),
          },
        },
        {
          alert: 'MemlockCollectorFailing',
          expr: 'memlock_scrape_collector_success == 0',
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
