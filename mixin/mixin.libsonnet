// The memlock_exporter monitoring mixin: alerts, recording rules and
// dashboards, with _config for the job selector, the cluster label,
// thresholds and for: durations (config.libsonnet). tools/checks TestMixin
// generates deploy/prometheus/rules.yml, alerts.yml and dashboards/*.json
// from it (and from the rule files the PrometheusRule of deploy/kubernetes
// and the chart); it fails when the files differ from a fresh generation:
//   cd tools && go test ./checks -run 'TestMixin|TestPrometheusRule' -update
(import 'config.libsonnet') +
(import 'rules.libsonnet') +
(import 'alerts.libsonnet') +
(import 'dashboards.libsonnet')
