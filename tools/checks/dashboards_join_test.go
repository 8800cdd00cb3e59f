package checks

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
)

// TestDashboardsPodNames runs the top pods tables' queries, variables
// substituted as Grafana does, on a fixture of the exporter's process
// series and kube-state-metrics' kube_pod_info (two replicas reporting the
// same pod, as an HA kube-state-metrics does, and a pod it does not know):
// a pod kube_pod_info knows gets its namespace and pod name, one it does
// not keeps its row with the pod UID only, and nothing is counted twice.
func TestDashboardsPodNames(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readFile(t, "dashboards", "memlock-top-holders.json"), &d); err != nil {
		t.Fatal(err)
	}
	st := promqltest.LoadedStorage(t, `
load 1m
  memlock_process_locked_bytes{instance="n1:9100", job="memlock-exporter", pid="1", pod_uid="aaa"} 100
  memlock_process_locked_bytes{instance="n1:9100", job="memlock-exporter", pid="2", pod_uid="aaa"} 50
  memlock_process_locked_bytes{instance="n1:9100", job="memlock-exporter", pid="3", pod_uid="bbb"} 7
  memlock_process_locked_bytes{instance="n1:9100", job="memlock-exporter", pid="4"} 1000
  memlock_process_pinned_bytes{instance="n1:9100", job="memlock-exporter", pid="1", pod_uid="aaa"} 4096
  memlock_process_pinned_bytes{instance="n1:9100", job="memlock-exporter", pid="3", pod_uid="bbb"} 8192
  kube_pod_info{instance="ksm-0:8080", job="kube-state-metrics", namespace="db", pod="pg-0", uid="aaa", node="n1"} 1
  kube_pod_info{instance="ksm-1:8080", job="kube-state-metrics", namespace="db", pod="pg-0", uid="aaa", node="n1"} 1
  kube_pod_info{instance="ksm-0:8080", job="kube-state-metrics", namespace="web", pod="other", uid="ccc", node="n2"} 1
`)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	vars := map[string]string{"cluster": ".*", "job": "(memlock-exporter)", "instance": `(n1:9100)`, "topn": "10"}
	want := map[string][]string{
		"Top pods by locked memory": {"instance=n1:9100 namespace=db pod=pg-0 pod_uid=aaa 150", "instance=n1:9100 pod_uid=bbb 7"},
		"Top pods by pinned memory": {"instance=n1:9100 namespace=db pod=pg-0 pod_uid=aaa 4096", "instance=n1:9100 pod_uid=bbb 8192"},
	}
	seen := 0
	for _, p := range d.Panels {
		for _, p := range append([]panel{p}, p.Panels...) {
			rows, ok := want[p.Title]
			if !ok {
				continue
			}
			seen++
			expr := grafanaVar.ReplaceAllStringFunc(p.Targets[0].Expr, func(v string) string {
				if val, ok := vars[grafanaVar.FindStringSubmatch(v)[1]]; ok {
					return val
				}
				return v // label_replace's $1, which Grafana leaves
			})
			q, err := engine.NewInstantQuery(context.Background(), st, nil, expr, time.Unix(0, 0))
			if err != nil {
				t.Fatalf("%s: %v", p.Title, err)
			}
			res := q.Exec(context.Background())
			if res.Err != nil {
				t.Fatalf("%s: %v\n\t%s", p.Title, res.Err, expr)
			}
			vec, err := res.Vector()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range vec {
				var ls []string
				s.Metric.Range(func(l labels.Label) { ls = append(ls, l.Name+"="+l.Value) })
				got = append(got, strings.Join(ls, " ")+" "+strconv.FormatFloat(s.F, 'g', -1, 64))
			}
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(rows, "\n") {
				t.Errorf("%s:\ngot\n\t%s\nwant\n\t%s\n(query %s)", p.Title, strings.Join(got, "\n\t"), strings.Join(rows, "\n\t"), expr)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of the %d top pods tables", seen, len(want))
	}
}
