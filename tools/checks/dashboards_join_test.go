package checks

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
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

// TestDashboardsProbeCadence: the probe histogram panels at the probe's
// cadence. A fixture of one probe a minute (the default --probe.interval
// and the probes-and-smaps overlay's) scraped every 30s (the
// ServiceMonitor's), each panel query run as Grafana runs it over an hour
// with Grafana's default data source scrape interval (15s):
// $__interval = max(the panel's min interval, 15s), $__rate_interval =
// max($__interval + 15s, 4 * 15s), the step $__interval. Every point must
// be a number (a histogram_quantile of a window without an increase is
// NaN, a gap). The same query at the window a panel without min interval
// gets (1m) must leave gaps, or the fixture would not show the problem.
func TestDashboardsProbeCadence(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readFile(t, "dashboards", "memlock-node-overview.json"), &d); err != nil {
		t.Fatal(err)
	}
	// 150 samples 30s apart, the count going up by one every other sample.
	var counts []string
	for i := 0; i < 150; i++ {
		counts = append(counts, strconv.Itoa(i/2))
	}
	series := strings.Join(counts, " ")
	var load strings.Builder
	load.WriteString("load 30s\n")
	for _, le := range []string{"0.001", "0.01", "+Inf"} {
		for _, name := range []string{`memlock_probe_duration_seconds_bucket{le="%s", mode="mlock", instance="n1:9100", job="memlock-exporter"}`,
			`memlock_probe_phase_duration_seconds_bucket{le="%s", mode="mlock", phase="lock", instance="n1:9100", job="memlock-exporter"}`} {
			load.WriteString("  " + strings.Replace(name, "%s", le, 1) + " " + series + "\n")
		}
	}
	st := promqltest.LoadedStorage(t, load.String())
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	const dsScrape = 15 * time.Second
	run := func(expr string, interval time.Duration) (numbers, points int) {
		iv := max(interval, dsScrape)
		rate := max(iv+dsScrape, 4*dsScrape)
		vars := map[string]string{"cluster": ".*", "job": "(memlock-exporter)", "instance": `(n1:9100)`, "mode": "(mlock)",
			"__rate_interval": model.Duration(rate).String(), "__interval": model.Duration(iv).String()}
		expr = grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
			if val, ok := vars[grafanaVar.FindStringSubmatch(v)[1]]; ok {
				return val
			}
			return v
		})
		// From the first full window to the last sample.
		start, end := time.Unix(0, 0).Add(rate+time.Minute), time.Unix(0, 0).Add(149*30*time.Second)
		q, err := engine.NewRangeQuery(context.Background(), st, nil, expr, start, end, iv)
		if err != nil {
			t.Fatal(err)
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Fatalf("%v\n\t%s", res.Err, expr)
		}
		m, err := res.Matrix()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range m {
			for _, p := range s.Floats {
				points++
				if !math.IsNaN(p.F) {
					numbers++
				}
			}
		}
		return numbers, points
	}
	checked := 0
	for _, p := range d.Panels {
		for _, p := range append([]panel{p}, p.Panels...) {
			if p.Type == "heatmap" || len(p.Targets) == 0 || !strings.Contains(p.Targets[0].Expr, "histogram_quantile") {
				continue
			}
			iv, err := model.ParseDuration(p.Interval)
			if err != nil {
				t.Errorf("%q: min interval %q: %v", p.Title, p.Interval, err)
				continue
			}
			for _, tg := range p.Targets {
				checked++
				n, all := run(tg.Expr, time.Duration(iv))
				t.Logf("%q %s: min interval %s: %d of %d points are numbers", p.Title, tg.RefID, p.Interval, n, all)
				if all == 0 || n != all {
					t.Errorf("%q %s at min interval %s: %d of %d points are numbers", p.Title, tg.RefID, p.Interval, n, all)
				}
				n, all = run(tg.Expr, 0)
				t.Logf("%q %s: without min interval: %d of %d points are numbers", p.Title, tg.RefID, n, all)
				if n == all {
					t.Errorf("%q %s: the fixture shows no gap without a min interval either", p.Title, tg.RefID)
				}
			}
		}
	}
	if checked == 0 {
		t.Error("no probe quantile panel")
	}
}

// TestDashboardsLockCallFailures runs the failed lock calls table's query
// (variables substituted as Grafana does, $__range the fixture's 10
// minutes) on a fixture of the lock-call tracing counters (issue 13's
// memlock_lock_call_failures_total, which this exporter does not emit
// yet) and kube_pod_info: one row per node, pod, syscall and errno with the
// failures of the range, two processes of a pod summed, the pod named, a
// process outside pods kept with an empty pod UID, and a series that did
// not increase left out.
func TestDashboardsLockCallFailures(t *testing.T) {
	var d dashboard
	if err := json.Unmarshal(readFile(t, "dashboards", "memlock-top-holders.json"), &d); err != nil {
		t.Fatal(err)
	}
	st := promqltest.LoadedStorage(t, `
load 1m
  memlock_lock_call_failures_total{instance="n1:9100", job="memlock-exporter", syscall="mlock", errno="ENOMEM", pid="1", comm="java", uid="1000", pod_uid="aaa", container_id="c1"} 0+2x10
  memlock_lock_call_failures_total{instance="n1:9100", job="memlock-exporter", syscall="mlock", errno="ENOMEM", pid="2", comm="java", uid="1000", pod_uid="aaa", container_id="c1"} 0+1x10
  memlock_lock_call_failures_total{instance="n1:9100", job="memlock-exporter", syscall="mlockall", errno="EPERM", pid="1", comm="java", uid="1000", pod_uid="aaa", container_id="c1"} 5x10
  memlock_lock_call_failures_total{instance="n1:9100", job="memlock-exporter", syscall="mmap", errno="EAGAIN", pid="7", comm="postgres", uid="999", pod_uid="", container_id=""} 0+1x10
  kube_pod_info{instance="ksm-0:8080", job="kube-state-metrics", namespace="db", pod="es-0", uid="aaa", node="n1"} 1x10
`)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	vars := map[string]string{"cluster": ".*", "job": "(memlock-exporter)", "instance": `(n1:9100)`, "__range": "10m"}
	want := []string{
		"errno=EAGAIN instance=n1:9100 syscall=mmap 10",
		"errno=ENOMEM instance=n1:9100 namespace=db pod=es-0 pod_uid=aaa syscall=mlock 30",
	}
	var p *panel
	for i := range d.Panels {
		if d.Panels[i].Title == "Failed lock calls by pod, syscall and errno" {
			p = &d.Panels[i]
		}
	}
	if p == nil {
		t.Fatal("no panel \"Failed lock calls by pod, syscall and errno\"")
	}
	expr := grafanaVar.ReplaceAllStringFunc(p.Targets[0].Expr, func(v string) string {
		if val, ok := vars[grafanaVar.FindStringSubmatch(v)[1]]; ok {
			return val
		}
		return v
	})
	q, err := engine.NewInstantQuery(context.Background(), st, nil, expr, time.Unix(600, 0))
	if err != nil {
		t.Fatal(err)
	}
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%v\n\t%s", res.Err, expr)
	}
	vec, err := res.Vector()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range vec {
		var ls []string
		s.Metric.Range(func(l labels.Label) { ls = append(ls, l.Name+"="+l.Value) })
		got = append(got, strings.Join(ls, " ")+" "+strconv.FormatFloat(math.Round(s.F*1000)/1000, 'g', -1, 64))
	}
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n\t%s\nwant\n\t%s\n(query %s)", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"), expr)
	}
}
