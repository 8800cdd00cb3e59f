// The mixin's parameters. Override any of them:
//   (import 'mixin.libsonnet') + { _config+:: { jobSelector: 'job="memlock"' } }
{
  _config+:: {
    // Selects the exporter's targets in the alerts that ask Prometheus
    // about its scrapes (up). The ServiceMonitor of deploy/kubernetes and
    // the chart give the job memlock-exporter.
    jobSelector: 'job=~".*memlock.*"',
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
    // A service named by --collector.process.include that locks nothing
    // under a limit below this many bytes (64 MiB: the runtimes' 64 KiB
    // and 8 MiB defaults are below it).
    serviceLockFailedLimitBytes: 67108864,
    serviceLockFailedFor: '10m',
    nodeLockedRatio: 0.5,
    nodeLockedFor: '15m',
    cgroupUnevictableRatio: 0.8,
    cgroupUnevictableFor: '15m',
    probeFailingFor: '15m',
    probeLatencyFor: '30m',
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
