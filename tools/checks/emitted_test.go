package checks

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/memlock-exporter/memlock_exporter/collector"
	"github.com/memlock-exporter/memlock_exporter/probe"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// emitted is every metric name the exporter emits, with its type where a
// scrape showed it (histograms also answer to _bucket, _sum and _count).
type emitted struct {
	types map[string]dto.MetricType // from a real scrape of the binary
	names map[string]bool           // from the scrape, and from Describe
}

var (
	emittedOnce sync.Once
	emittedSet  *emitted
	emittedErr  error
)

// exporterMetrics builds the exporter from this repository, runs it with
// every collector and every probe mode, scrapes it, and adds every
// descriptor that the collectors and the probe runner Describe (series that
// appear only under conditions: read failures, omitted processes, cgroups
// with unevictable memory). Nothing is listed by hand.
func exporterMetrics(t *testing.T) *emitted {
	t.Helper()
	emittedOnce.Do(func() { emittedSet, emittedErr = gatherEmitted() })
	if emittedErr != nil {
		t.Fatal(emittedErr)
	}
	return emittedSet
}

func gatherEmitted() (*emitted, error) {
	e := &emitted{types: map[string]dto.MetricType{}, names: map[string]bool{}}

	// 1. The real binary, scraped.
	bin, err := buildExporter()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--web.listen-address="+addr,
		"--collector.process.include=.*",
		"--collector.cgroup.include=.*",
		"--probe.enable", "--probe.interval=1s", "--probe.size=32KiB",
		"--probe.modes=mlock,onfault,populate,mlockall",
		"--log.level=warn")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	// Until every probe mode has reported once (success or failure).
	var families map[string]*dto.MetricFamily
	for deadline := time.Now().Add(30 * time.Second); ; {
		families, err = scrape("http://" + addr + "/metrics")
		if err == nil && len(families["memlock_probe_success"].GetMetric()) == 4 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the exporter never showed all four probe modes (last error %v); its log:\n%s", err, stderr.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	for name, mf := range families {
		e.types[name] = mf.GetType()
		e.names[name] = true
	}

	// 2. Everything the collectors and the probe runner may emit.
	cfg := collector.DefaultConfig()
	var all []string
	for _, c := range collector.Available() {
		all = append(all, c.Name)
	}
	exp, err := collector.New(cfg, all, nil)
	if err != nil {
		return nil, err
	}
	var scheduled []probe.NamedModule
	for _, m := range []string{"mlock", "onfault", "populate", "mlockall"} {
		scheduled = append(scheduled, probe.NamedModule{Name: m, Module: probe.Module{Mode: probe.Mode(m), Size: 32 << 10}})
	}
	runner, err := probe.NewRunner(probe.Options{MaxBytes: 16 << 20, Scheduled: scheduled})
	if err != nil {
		return nil, err
	}
	for _, c := range []prometheus.Collector{exp, runner} {
		ch := make(chan *prometheus.Desc)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				return nil, fmt.Errorf("no fqName in %s", d)
			}
			e.names[m[1]] = true
		}
	}
	return e, nil
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// buildExporter builds cmd/memlock_exporter once per test run with the
// root module's go.mod, as `make build` does.
func buildExporter() (string, error) {
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "memlock-checks")
		if err != nil {
			binErr = err
			return
		}
		tempDirs = append(tempDirs, dir)
		binPath = filepath.Join(dir, "memlock_exporter")
		build := exec.Command("go", "build", "-o", binPath, "./cmd/memlock_exporter")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	return binPath, binErr
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func scrape(url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(resp.Body)
}

// has says whether the exporter emits a series of this name.
func (e *emitted) has(name string) bool {
	if e.names[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch e.types[base] {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return true
		case dto.MetricType_SUMMARY:
			return suffix != "_bucket"
		}
	}
	return false
}

// prometheusSeries are made by Prometheus itself for every target.
var prometheusSeries = map[string]bool{
	"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true,
	"scrape_samples_post_metric_relabeling": true, "scrape_series_added": true,
}

var promql = parser.NewParser(parser.Options{})

// selectedNames parses expr and returns the metric name of every selector
// in it. A selector without a fixed name is an error: the test could not
// tell what it reads.
func selectedNames(expr string) ([]string, error) {
	ast, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type.String() == "=" {
					name = m.Value
				}
			}
		}
		if name == "" {
			bad = fmt.Errorf("selector %s names no metric", vs)
			return nil
		}
		names = append(names, name)
		return nil
	})
	return names, bad
}

// checkExpr fails t for every metric expr selects that is neither emitted
// by the exporter, recorded by our rules, nor made by Prometheus.
func checkExpr(t *testing.T, where, expr string, recorded map[string]bool) {
	t.Helper()
	names, err := selectedNames(expr)
	if err != nil {
		t.Errorf("%s: %v\n\t%s", where, err, expr)
		return
	}
	e := exporterMetrics(t)
	for _, n := range names {
		if !e.has(n) && !recorded[n] && !prometheusSeries[n] {
			t.Errorf("%s: %s is not a metric the exporter emits (nor a recording rule's)\n\t%s", where, n, expr)
		}
	}
}
