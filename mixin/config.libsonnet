// The mixin's parameters. Override any of them:
//   (import 'mixin.libsonnet') + { _config+:: { jobSelector: 'job="memlock"' } }
{
  _config+:: {
    // Selects the exporter's targets in the alerts that ask Prometheus
    // about its scrapes (up) and in the dashboards' job variable. The
    // ServiceMonitor of deploy/kubernetes and the chart give the job
    // memlock-exporter (their jobLabel, app.kubernetes.io/name); a static
    // scrape config names its own.
    jobSelector: 'job="memlock-exporter"',
    // The label that tells clusters apart where one Prometheus (or
    // Thanos, Mimir) holds several: kept in every aggregation and join.
    // Absent everywhere, it changes nothing.
    clusterLabel: 'cluster',

    // Thresholds (ratios) and for: durations of the alerts.
    processNearLimitRatio: 0.9,
    processNearLimitFor: '15m',
    userPinnedNearLimitRatio: 0.9,
    userPinnedNearLimitFor: '15m',
    userShmLockNearLimitRatio: 0.9,
    userShmLockNearLimitFor: '15m',
    // MemlockServiceLockFailed guesses from /proc that a service's lock
    // failed: it locks nothing under a limit below
    // serviceLockFailedLimitBytes (64 MiB: the runtimes' 64 KiB and 8 MiB
    // defaults are below it). It is opt-in per service: only processes
    // whose comm matches one of these regexps (anchored, as PromQL's =~)
    // are guessed about, e.g. ['elasticsearch', 'vault', 'java'] for a
    // java that is Elasticsearch with bootstrap.memory_lock. Empty (the
    // default): the alert is not generated. Where BPF lock-call tracing
    // runs (memlock_lock_call_tracing_enabled 1), the failures themselves
    // are seen (MemlockLockCallFailing) and the guess is not made.
    serviceLockFailedComms: [],
    serviceLockFailedLimitBytes: 67108864,
    serviceLockFailedFor: '10m',
    nodeLockedRatio: 0.5,
    nodeLockedFor: '15m',
    cgroupUnevictableRatio: 0.8,
    cgroupUnevictableFor: '15m',
    probeFailingFor: '15m',
    collectorFailingFor: '15m',
    exporterDownFor: '5m',

    // The exporter's --probe.interval (its default, the chart's and the
    // probes-and-smaps overlay's: 1m). The dashboards' probe histogram
    // panels take twice it as their min interval, so each rate window
    // ($__rate_interval >= $__interval) holds at least two probes: at a
    // shorter window a 1m probe leaves most points without an increase.
    probeInterval: '1m',

    runbookURL: 'https://github.com/memlock-exporter/memlock_exporter/blob/main/docs/runbook.md',
  },
}
