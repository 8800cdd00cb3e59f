// The dashboards: mixin/dashboards/*.json are the panels in Grafana's JSON
// model; this file patches them with _config. tools/checks TestMixin
// generates dashboards/*.json from grafanaDashboards.
{
  grafanaDashboards+:: {
    'memlock-limit-utilization.json': import 'dashboards/memlock-limit-utilization.json',
    'memlock-node-overview.json': import 'dashboards/memlock-node-overview.json',
    'memlock-top-holders.json': import 'dashboards/memlock-top-holders.json',
  },
}
