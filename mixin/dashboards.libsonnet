// The dashboards: mixin/dashboards/*.json are the panels in Grafana's JSON
// model, written for a Prometheus without a cluster label; this file
// patches them with _config (config.libsonnet):
//   - a cluster variable (label_values of _config.clusterLabel; All, which
//     is .*, also matches series without the label), kept in every
//     selector, by () and on () of every query;
//   - the job variable offers the jobs _config.jobSelector selects;
//   - the panels that rate the probes' histograms take twice
//     _config.probeInterval as their min interval;
//   - editable: false (they are provisioned: an edit in Grafana would be
//     lost at the next provisioning, edit the mixin instead).
// tools/checks TestMixin generates dashboards/*.json from grafanaDashboards.
local patchExpr(c, e) = std.foldl(
  function(e, r) std.strReplace(e, r[0], r[1]),
  [
    ['job=~"$job"', '%s=~"$cluster", job=~"$job"' % c.clusterLabel],
    ['kube_pod_info', 'kube_pod_info{%s=~"$cluster"}' % c.clusterLabel],
    ['by (instance', 'by (%s, instance' % c.clusterLabel],
    ['on (instance', 'on (%s, instance' % c.clusterLabel],
    ['by (pod_uid', 'by (%s, pod_uid' % c.clusterLabel],
    ['on (pod_uid', 'on (%s, pod_uid' % c.clusterLabel],
  ],
  e
);

local lib = import 'lib.libsonnet';

// A panel whose queries rate the probes' histograms.
local ratesProbes(p) =
  std.objectHas(p, 'targets') &&
  std.length([t for t in p.targets if std.length(std.findSubstr('memlock_probe_', t.expr)) > 0 &&
                                      std.length(std.findSubstr('_bucket', t.expr)) > 0]) > 0;

local patchPanel(c, p) = p + (
  if ratesProbes(p) then { interval: lib.times(c.probeInterval, 2) } else {}
) + (
  if std.objectHas(p, 'targets') then
    { targets: [t + { expr: patchExpr(c, t.expr) } for t in p.targets] }
  else {}
) + (
  if std.objectHas(p, 'panels') then
    { panels: [patchPanel(c, q) for q in p.panels] }
  else {}
);

local buildInfo(c, extra) =
  'memlock_exporter_build_info{%s}' % std.join(', ', ['%s=~"$cluster"' % c.clusterLabel] + extra);

local patchVar(c, v) =
  if v.name == 'job' then
    local def = 'label_values(%s, job)' % buildInfo(c, [c.jobSelector]);
    v + { definition: def, query+: { query: def } }
  else if v.type == 'query' then
    local def = patchExpr(c, v.definition);
    v + { definition: def, query+: { query: def } }
  else v;

local clusterVar(c) = {
  local def = 'label_values(memlock_exporter_build_info, %s)' % c.clusterLabel,
  name: 'cluster',
  label: 'Cluster',
  description: 'The %s label of the targets. All (.*) also matches targets without it, as on a Prometheus of one cluster.' % c.clusterLabel,
  type: 'query',
  datasource: { type: 'prometheus', uid: '${datasource}' },
  definition: def,
  query: { qryType: 1, query: def, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
  current: {},
  hide: 0,
  includeAll: true,
  multi: true,
  allValue: '.*',
  options: [],
  refresh: 2,
  regex: '',
  sort: 1,
};

local patch(c, d) = d + {
  editable: false,
  panels: [patchPanel(c, p) for p in d.panels],
  templating+: {
    list: std.flattenArrays([
      if v.name == 'datasource' then [v, clusterVar(c)] else [patchVar(c, v)]
      for v in d.templating.list
    ]),
  },
};

{
  local c = self._config,
  grafanaDashboards+:: {
    'memlock-limit-utilization.json': patch(c, import 'dashboards/memlock-limit-utilization.json'),
    'memlock-node-overview.json': patch(c, import 'dashboards/memlock-node-overview.json'),
    'memlock-top-holders.json': patch(c, import 'dashboards/memlock-top-holders.json'),
  },
}
