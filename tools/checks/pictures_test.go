package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/model"
)

// The pictures of README's dashboards section: docs/images/<dashboard>.svg,
// one per dashboard, each a rendering of its panels' real query results
// (not a Grafana screenshot: no Grafana with its frontend can be built
// here). Regenerate them (root, a few minutes) with
//
//	make pictures
//
// which runs TestDashboardPictures with -update.
const picturesDir = "docs/images"

// picturesProbeInterval is the probe interval of the pictures' exporter;
// the dashboards are generated from the mixin with it as probeInterval, so
// the probe panels' min interval suits a picture of a few minutes (at the
// shipped 1m a 2m min interval leaves one point in it).
const picturesProbeInterval = "1s"

// picPanel is the part of a Grafana panel the renderer reads.
type picPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Interval    string `json:"interval"`
	GridPos     struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Panels      []picPanel `json:"panels"`
	FieldConfig struct {
		Defaults struct {
			Unit string   `json:"unit"`
			Min  *float64 `json:"min"`
			Max  *float64 `json:"max"`
		} `json:"defaults"`
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options string `json:"options"`
			} `json:"matcher"`
			Properties []struct {
				ID    string `json:"id"`
				Value any    `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		Format       string `json:"format"`
		Instant      bool   `json:"instant"`
	} `json:"targets"`
	Transformations []struct {
		ID      string `json:"id"`
		Options struct {
			ExcludeByName map[string]bool   `json:"excludeByName"`
			RenameByName  map[string]string `json:"renameByName"`
		} `json:"options"`
	} `json:"transformations"`
}

// picSeries is one series of a query's result: its labels, legend and
// points (unix seconds, value; NaN for a gap).
type picSeries struct {
	RefID  string
	Labels map[string]string
	Legend string
	T, V   []float64
}

func (s picSeries) last() (float64, bool) {
	for i := len(s.V) - 1; i >= 0; i-- {
		if !math.IsNaN(s.V[i]) {
			return s.V[i], true
		}
	}
	return 0, false
}

// TestDashboardPictures runs the exporter with lockers (the children of
// TestPrometheusEndToEnd: a service near its limit, one that locked
// nothing, an io_uring pinner, lockers in memory cgroups, more of them
// started and one killed during the run so the graphs move), probes on,
// and a real Prometheus scraping it every second; then it runs every
// panel query of every dashboard (generated from the mixin with the
// probe interval of this run), variables substituted as Grafana does
// (dashboardVars, as TestPrometheusEndToEnd), and draws each dashboard as
// one SVG: the panels on Grafana's grid, time series as polylines, a
// heatmap as cells, stats as big numbers, bar gauges as bars, tables as
// text, an empty panel with the sentence of its description that says
// why. With -update it writes docs/images/; without, it renders into a
// temporary directory and checks every picture is well-formed XML with
// a drawing in each panel that has data.
func TestDashboardPictures(t *testing.T) {
	promBin := os.Getenv("PROMETHEUS")
	if promBin == "" {
		t.Skip("PROMETHEUS is not set: run make pictures")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lockers run as uid 65534")
	}
	bin, err := buildExporter()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	shared, err := os.MkdirTemp("", "memlock-pictures")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	locker := filepath.Join(shared, "locker")
	if b, err := os.ReadFile(self); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(locker, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}

	// The first wave.
	const mib = 1 << 20
	postgres := startLocker(t, locker, "postgres", 8*mib, 4*mib)
	startLocker(t, locker, "vault", mib, mib-64<<10) // 94% of its limit
	startLocker(t, locker, "elasticsearch", 64<<10, 0)
	startPinner(t, locker, 65533, "io_uring-app", 8*mib, 0, 4*mib)
	startCgroupLocker(t, locker, "db", 64*mib, 24*mib)

	exporterPort := freePort(t)
	start(t, ctx, dir, "exporter", bin,
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", exporterPort),
		"--collector.process.include=^(postgres|vault|elasticsearch|redis-server)$",
		"--probe.enable", "--probe.interval="+picturesProbeInterval, "--probe.size=256KiB",
		"--probe.modes=mlock,onfault,populate,mlockall", "--log.level=warn")
	rules := filepath.Join(dir, "rules.yml")
	writeFile(t, rules, readFile(t, "deploy", "prometheus", "rules.yml"))
	writeFile(t, filepath.Join(dir, "prometheus.yml"), []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: memlock-exporter
    static_configs:
      - targets: ["127.0.0.1:%d"]
`, rules, exporterPort)))
	promPort := freePort(t)
	start(t, ctx, dir, "prometheus", promBin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", promPort))
	prom := promAPI(fmt.Sprintf("http://127.0.0.1:%d", promPort))
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		if resp, err := http.Get(string(prom) + "/-/ready"); err == nil {
			resp.Body.Close()
			var up []struct{}
			prom.get(t, "/api/v1/series", url.Values{"match[]": {"memlock_exporter_build_info"}}, &up)
			if len(up) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Prometheus has no memlock_exporter_build_info after 60s")
		}
	}

	// Three steps of 30 s: the first wave; then a second (a pod and its
	// container, both limited, and redis); then postgres gone.
	begin := time.Now()
	time.Sleep(30 * time.Second)
	startNestedCgroupLocker(t, locker, "pod", []int{96 * mib, 96 * mib}, 40*mib)
	startLocker(t, locker, "redis-server", 8*mib, 2*mib)
	time.Sleep(30 * time.Second)
	if err := syscall.Kill(postgres, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	end := time.Now()

	// The series of this run: its lockers' processes and cgroups (and
	// the exporter's own, which probes), not those of whatever else runs
	// on the machine (other tests' lockers, the machine's own cgroups).
	comms := map[string]bool{"postgres": true, "vault": true, "elasticsearch": true, "io_uring-app": true, "redis-server": true}
	cgroupPrefix := fmt.Sprintf("/memlock-e2e-%d-", os.Getpid())
	ours := func(l map[string]string) bool {
		if c, ok := l["comm"]; ok && !comms[c] && !strings.HasPrefix(c, "e2e-cg-") && !strings.HasPrefix(c, "memlock_export") {
			return false
		}
		if cg, ok := l["cgroup"]; ok && cg != "/" && !strings.HasPrefix(cg, cgroupPrefix) {
			return false
		}
		return true
	}

	out := repoPath(picturesDir)
	if !*update {
		out = t.TempDir()
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	files := evalMixin(t, fmt.Sprintf(`{ _config+:: { probeInterval: '%s' } }`, picturesProbeInterval))
	rangeS := int(end.Sub(begin).Seconds())
	// Grafana at 1,000 points over 90 s: $__interval is the 1 s scrape
	// interval, $__rate_interval max($__interval + 1s, 4 * 1s).
	fixed := map[string]string{"__interval": "1s", "__rate_interval": "4s",
		"__range": fmt.Sprintf("%ds", rangeS), "__range_s": strconv.Itoa(rangeS)}
	var names []string
	for k := range files {
		if strings.HasPrefix(k, "dashboards/") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		var d dashboard
		var pd struct {
			Title  string     `json:"title"`
			Panels []picPanel `json:"panels"`
		}
		if err := json.Unmarshal(files[name], &d); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(files[name], &pd); err != nil {
			t.Fatal(err)
		}
		vars, subst := dashboardVars(t, prom, d, fixed, begin, end)
		results := map[int][]picSeries{}
		var all []picPanel
		var flatten func([]picPanel)
		flatten = func(ps []picPanel) {
			for _, p := range ps {
				all = append(all, p)
				flatten(p.Panels)
			}
		}
		flatten(pd.Panels)
		for _, p := range all {
			if len(p.Targets) == 0 {
				continue
			}
			step := time.Second
			saved := map[string]string{"__interval": vars["__interval"], "__rate_interval": vars["__rate_interval"]}
			if iv, err := model.ParseDuration(p.Interval); err == nil && time.Duration(iv) > step {
				step = time.Duration(iv)
				vars["__interval"] = model.Duration(step).String()
				vars["__rate_interval"] = model.Duration(max(step+time.Second, 4*time.Second)).String()
			}
			for _, tg := range p.Targets {
				for _, s := range queryPanel(t, prom, subst(tg.Expr), tg.RefID, tg.LegendFormat, tg.Instant, begin, end, step) {
					if ours(s.Labels) {
						results[p.ID] = append(results[p.ID], s)
					}
				}
			}
			for k, v := range saved {
				vars[k] = v
			}
		}
		svg := renderDashboard(pd.Title, all, results, begin, end)
		if err := xml.Unmarshal(svg, new(struct{})); err != nil {
			t.Errorf("%s: the SVG is not well-formed: %v", name, err)
		}
		for _, p := range all {
			if p.Type != "row" && len(results[p.ID]) > 0 && !bytes.Contains(svg, []byte(fmt.Sprintf(`data-panel="%d" data-drawn="1"`, p.ID))) {
				t.Errorf("%s / %q: has data but nothing drawn", name, p.Title)
			}
		}
		path := filepath.Join(out, strings.TrimSuffix(filepath.Base(name), ".json")+".svg")
		if err := os.WriteFile(path, svg, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d panels, %d bytes", path, len(all), len(svg))
	}
}

// queryPanel runs one target as Grafana runs it (an instant query at the
// range's end, or a range query at step) and returns its series, NaN
// values (gaps in Grafana) kept as NaN.
func queryPanel(t *testing.T, prom promAPI, expr, refID, legendFormat string, instant bool, begin, end time.Time, step time.Duration) []picSeries {
	t.Helper()
	var out []picSeries
	parse := func(s any) float64 {
		f, err := strconv.ParseFloat(fmt.Sprint(s), 64)
		if err != nil {
			return math.NaN()
		}
		return f
	}
	if instant {
		var res struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		}
		prom.get(t, "/api/v1/query", url.Values{"query": {expr}, "time": {strconv.FormatInt(end.Unix(), 10)}}, &res)
		for _, r := range res.Result {
			out = append(out, picSeries{RefID: refID, Labels: r.Metric, Legend: legend(legendFormat, r.Metric),
				T: []float64{parse(r.Value[0])}, V: []float64{parse(r.Value[1])}})
		}
		return out
	}
	var res struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	prom.get(t, "/api/v1/query_range", url.Values{"query": {expr},
		"start": {strconv.FormatInt(begin.Unix(), 10)}, "end": {strconv.FormatInt(end.Unix(), 10)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}, &res)
	for _, r := range res.Result {
		s := picSeries{RefID: refID, Labels: r.Metric, Legend: legend(legendFormat, r.Metric)}
		for _, v := range r.Values {
			s.T = append(s.T, parse(v[0]))
			s.V = append(s.V, parse(v[1]))
		}
		out = append(out, s)
	}
	return out
}

var legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legend is Grafana's legend: the legendFormat with {{label}} replaced,
// or the series' labels as {a="b", ...} without one.
func legend(format string, labels map[string]string) string {
	if format != "" {
		return strings.TrimSpace(legendLabel.ReplaceAllStringFunc(format, func(m string) string {
			return labels[legendLabel.FindStringSubmatch(m)[1]]
		}))
	}
	var ks []string
	for k := range labels {
		if k != "__name__" {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return labels["__name__"] + "{" + strings.Join(parts, ", ") + "}"
}

// columnUnit is the unit of a table column: a byName override's, or the
// panel's.
func (p picPanel) columnUnit(name string) string {
	for _, o := range p.FieldConfig.Overrides {
		if o.Matcher.ID != "byName" || o.Matcher.Options != name {
			continue
		}
		for _, pr := range o.Properties {
			if u, ok := pr.Value.(string); ok && pr.ID == "unit" {
				return u
			}
		}
	}
	return p.FieldConfig.Defaults.Unit
}

// formatValue formats v in a Grafana unit (those the dashboards use).
func formatValue(unit string, v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	sig := func(x float64) string {
		s := strconv.FormatFloat(x, 'f', 2, 64)
		if math.Abs(x) >= 100 {
			s = strconv.FormatFloat(x, 'f', 0, 64)
		} else if math.Abs(x) >= 10 {
			s = strconv.FormatFloat(x, 'f', 1, 64)
		}
		if strings.Contains(s, ".") {
			s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
		}
		return s
	}
	switch {
	case unit == "bytes":
		units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
		i := 0
		for math.Abs(v) >= 1024 && i < len(units)-1 {
			v /= 1024
			i++
		}
		return sig(v) + " " + units[i]
	case unit == "percentunit":
		return sig(v*100) + "%"
	case unit == "s":
		switch a := math.Abs(v); {
		case a == 0:
			return "0 s"
		case a < 1e-3:
			return sig(v*1e6) + " µs"
		case a < 1:
			return sig(v*1e3) + " ms"
		}
		return sig(v) + " s"
	case unit == "bool":
		if v != 0 {
			return "True"
		}
		return "False"
	case unit == "bool_yes_no":
		if v != 0 {
			return "Yes"
		}
		return "No"
	case strings.HasPrefix(unit, "suffix:"):
		return sig(v) + " " + strings.TrimPrefix(unit, "suffix:")
	}
	switch a := math.Abs(v); {
	case a >= 1e9:
		return sig(v/1e9) + " Bil"
	case a >= 1e6:
		return sig(v/1e6) + " Mil"
	case a >= 1e3:
		return sig(v/1e3) + " K"
	}
	return sig(v)
}

// The SVG: Grafana's dark theme, its 24-column grid at 50 px a column
// and 30 px a row.
const (
	svgWidth   = 1200
	svgColW    = svgWidth / 24
	svgRowH    = 30
	svgHeaderH = 66
)

var svgPalette = []string{"#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0", "#37872d", "#fade2a"}

type svgWriter struct{ bytes.Buffer }

func (w *svgWriter) f(format string, args ...any) { fmt.Fprintf(w, format, args...) }

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// clip cuts s to about the characters that fit px pixels at a font size.
func clip(s string, px, size float64) string {
	n := int(px / (size * 0.58))
	r := []rune(s)
	if n < 1 {
		return ""
	}
	if len(r) > n {
		return string(r[:max(n-1, 1)]) + "…"
	}
	return s
}

// wrap breaks s into lines of at most n characters.
func wrap(s string, n int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && len([]rune(line))+1+len([]rune(w)) > n {
			lines = append(lines, line)
			line = w
			continue
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// whyEmpty is the sentence of a panel's description that says when it is
// empty, or the description's first sentence.
func whyEmpty(desc string) string {
	sentences := regexp.MustCompile(`[^.]+(\.|$)`).FindAllString(desc, -1)
	for _, s := range sentences {
		if regexp.MustCompile(`(?i)\bempty\b`).MatchString(s) {
			return strings.TrimSpace(s)
		}
	}
	if len(sentences) > 0 {
		return strings.TrimSpace(sentences[0])
	}
	return ""
}

func renderDashboard(title string, panels []picPanel, results map[int][]picSeries, begin, end time.Time) []byte {
	height := 0
	for _, p := range panels {
		height = max(height, (p.GridPos.Y+p.GridPos.H)*svgRowH)
	}
	height += svgHeaderH + 8
	var w svgWriter
	w.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="Inter, Helvetica, Arial, sans-serif">`+"\n", svgWidth, height, svgWidth, height)
	w.f(`<rect width="100%%" height="100%%" fill="#111217"/>` + "\n")
	w.f(`<text x="12" y="24" font-size="18" fill="#ccccdc" font-weight="600">%s</text>`+"\n", esc(title))
	w.f(`<text x="12" y="42" font-size="11" fill="#8e8e8e">Not a Grafana screenshot: the panels' real query results against a real Prometheus scraping memlock_exporter, %s to %s UTC, 1 s scrapes, drawn by make pictures.</text>`+"\n",
		begin.UTC().Format("2006-01-02 15:04:05"), end.UTC().Format("15:04:05"))
	w.f(`<text x="12" y="56" font-size="11" fill="#8e8e8e">The workload is the test's lockers, pinner, cgroups and probes; series of other processes and cgroups of the shared build machine are left out (node totals include them).</text>` + "\n")
	for _, p := range panels {
		x := float64(p.GridPos.X * svgColW)
		y := float64(svgHeaderH + p.GridPos.Y*svgRowH)
		pw := float64(p.GridPos.W * svgColW)
		ph := float64(p.GridPos.H * svgRowH)
		if p.Type == "row" {
			w.f(`<text x="%.0f" y="%.0f" font-size="14" fill="#ccccdc" font-weight="600">%s</text>`+"\n", x+8, y+20, esc(p.Title))
			continue
		}
		w.f(`<g data-panel="%d"`, p.ID)
		series := results[p.ID]
		if len(series) > 0 {
			w.f(` data-drawn="1"`)
		}
		w.f(">\n")
		w.f(`<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" rx="3" fill="#181b1f" stroke="#2c3235"/>`+"\n", x+4, y+4, pw-8, ph-8)
		w.f(`<text x="%.0f" y="%.0f" font-size="12" fill="#ccccdc" font-weight="500">%s</text>`+"\n", x+12, y+21, esc(clip(p.Title, pw-24, 12)))
		cx, cy, cw, ch := x+12, y+30, pw-24, ph-42
		switch {
		case len(series) == 0:
			w.f(`<text x="%.0f" y="%.0f" font-size="13" fill="#8e8e8e" text-anchor="middle">No data</text>`+"\n", cx+cw/2, cy+ch/2-8)
			for i, line := range wrap(whyEmpty(p.Description), int(cw/(10*0.58))) {
				if float64(i*13) > ch/2-10 {
					break
				}
				w.f(`<text x="%.0f" y="%.0f" font-size="10" fill="#6e6e6e" text-anchor="middle">%s</text>`+"\n", cx+cw/2, cy+ch/2+10+float64(i*13), esc(line))
			}
		case p.Type == "timeseries":
			renderTimeseries(&w, p, series, cx, cy, cw, ch, begin, end)
		case p.Type == "heatmap":
			renderHeatmap(&w, series, cx, cy, cw, ch)
		case p.Type == "stat":
			renderStat(&w, p, series, cx, cy, cw, ch)
		case p.Type == "bargauge":
			renderBars(&w, p, series, cx, cy, cw, ch)
		default:
			renderTable(&w, p, series, cx, cy, cw, ch)
		}
		w.f("</g>\n")
	}
	w.f("</svg>\n")
	return w.Bytes()
}

func renderTimeseries(w *svgWriter, p picPanel, series []picSeries, cx, cy, cw, ch float64, begin, end time.Time) {
	unit := p.FieldConfig.Defaults.Unit
	const maxLegend = 6
	peak := func(s picSeries) float64 {
		m := math.Inf(-1)
		for _, v := range s.V {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				m = math.Max(m, v)
			}
		}
		return m
	}
	series = slices.Clone(series)
	sort.SliceStable(series, func(i, j int) bool { return peak(series[i]) > peak(series[j]) })
	shown := series
	if len(shown) > 8 {
		shown = shown[:8]
	}
	legendRows := min(len(shown), maxLegend)
	plotH := ch - float64(legendRows)*13 - 16
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range shown {
		for _, v := range s.V {
			if !math.IsNaN(v) && !math.IsInf(v, 0) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 0, 1
	}
	lo = math.Min(lo, 0)
	if p.FieldConfig.Defaults.Min != nil {
		lo = *p.FieldConfig.Defaults.Min
	}
	if p.FieldConfig.Defaults.Max != nil {
		hi = *p.FieldConfig.Defaults.Max
	}
	if hi <= lo {
		hi = lo + 1
	}
	axisW := 64.0
	px, pw := cx+axisW, cw-axisW
	t0, t1 := float64(begin.Unix()), float64(end.Unix())
	for i := 0; i <= 3; i++ {
		v := lo + (hi-lo)*float64(i)/3
		yy := cy + plotH - plotH*float64(i)/3
		w.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#2c3235"/>`+"\n", px, yy, px+pw, yy)
		w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e" text-anchor="end">%s</text>`+"\n", px-4, yy+3, esc(formatValue(unit, v)))
	}
	w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e">%s</text>`+"\n", px, cy+plotH+12, begin.UTC().Format("15:04:05"))
	w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e" text-anchor="end">%s</text>`+"\n", px+pw, cy+plotH+12, end.UTC().Format("15:04:05"))
	for i, s := range shown {
		color := svgPalette[i%len(svgPalette)]
		var seg []string
		flush := func() {
			if len(seg) == 1 {
				xy := strings.Split(seg[0], ",")
				w.f(`<circle cx="%s" cy="%s" r="1.5" fill="%s"/>`+"\n", xy[0], xy[1], color)
			} else if len(seg) > 1 {
				w.f(`<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, strings.Join(seg, " "))
			}
			seg = nil
		}
		for j, v := range s.V {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				flush()
				continue
			}
			xx := px + pw*(s.T[j]-t0)/math.Max(t1-t0, 1)
			yy := cy + plotH - plotH*(math.Min(math.Max(v, lo), hi)-lo)/(hi-lo)
			seg = append(seg, fmt.Sprintf("%.1f,%.1f", xx, yy))
		}
		flush()
		if i < maxLegend {
			ly := cy + plotH + 26 + float64(i)*13
			last, _ := s.last()
			w.f(`<rect x="%.1f" y="%.1f" width="10" height="3" fill="%s"/>`+"\n", cx, ly-4, color)
			w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#ccccdc">%s</text>`+"\n", cx+14, ly, esc(clip(s.Legend+"  "+formatValue(unit, last), cw-14, 10)))
		}
	}
	if len(series) > maxLegend {
		w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e" text-anchor="end">%d series</text>`+"\n", cx+cw, cy+plotH+26, len(series))
	}
}

func renderHeatmap(w *svgWriter, series []picSeries, cx, cy, cw, ch float64) {
	le := func(s picSeries) float64 {
		f, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err != nil {
			return math.Inf(1)
		}
		return f
	}
	sort.Slice(series, func(i, j int) bool { return le(series[i]) < le(series[j]) })
	n := len(series[0].V)
	// Grafana's heatmap format: each bucket's own count (the cumulative
	// buckets de-accumulated).
	cells := make([][]float64, len(series))
	top := 0.0
	for i, s := range series {
		cells[i] = make([]float64, n)
		for j := 0; j < n && j < len(s.V); j++ {
			v := s.V[j]
			if i > 0 && j < len(series[i-1].V) {
				v -= series[i-1].V[j]
			}
			if math.IsNaN(v) || v < 0 {
				v = 0
			}
			cells[i][j] = v
			top = math.Max(top, v)
		}
	}
	// Only the rows between the first and last bucket with counts.
	first, last := len(series), -1
	for i := range cells {
		for _, v := range cells[i] {
			if v > 0 {
				first, last = min(first, i), max(last, i)
			}
		}
	}
	if last < 0 {
		first, last = 0, len(series)-1
	}
	axisW := 64.0
	rows := last - first + 1
	rh := (ch - 14) / float64(rows)
	cwid := (cw - axisW) / float64(max(n, 1))
	for i := first; i <= last; i++ {
		yy := cy + (ch - 14) - float64(i-first+1)*rh
		if (i-first)%max(rows/6, 1) == 0 {
			w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e" text-anchor="end">≤ %s</text>`+"\n", cx+axisW-4, yy+rh/2+3, esc(formatValue("s", le(series[i]))))
		}
		for j, v := range cells[i] {
			if v <= 0 || top == 0 {
				continue
			}
			a := math.Sqrt(v / top)
			w.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#ff780a" fill-opacity="%.2f"/>`+"\n", cx+axisW+float64(j)*cwid, yy, math.Max(cwid-0.5, 0.5), math.Max(rh-1, 0.5), 0.15+0.85*a)
		}
	}
	w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e">probes per second in each duration bucket (darker: fewer)</text>`+"\n", cx+axisW, cy+ch-2)
}

func renderStat(w *svgWriter, p picPanel, series []picSeries, cx, cy, cw, ch float64) {
	unit := p.FieldConfig.Defaults.Unit
	n := len(series)
	cols := min(n, 4)
	rowsN := (n + cols - 1) / cols
	bw, bh := cw/float64(cols), ch/float64(rowsN)
	for i, s := range series {
		bx := cx + float64(i%cols)*bw
		by := cy + float64(i/cols)*bh
		v, ok := s.last()
		text := "No value"
		if ok {
			text = formatValue(unit, v)
		}
		size := math.Min(bh*0.45, bw/(float64(len([]rune(text)))*0.62))
		size = math.Max(math.Min(size, 40), 9)
		color := svgPalette[0]
		if ok && v == 0 && (unit == "bool_yes_no" || strings.Contains(strings.ToLower(p.Title), "success")) {
			color = "#f2495c"
		}
		w.f(`<text x="%.1f" y="%.1f" font-size="%.0f" fill="%s" font-weight="600" text-anchor="middle">%s</text>`+"\n", bx+bw/2, by+bh/2+size/3, size, color, esc(text))
		w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e" text-anchor="middle">%s</text>`+"\n", bx+bw/2, by+bh/2+size/3+13, esc(clip(s.Legend, bw-4, 10)))
	}
}

func renderBars(w *svgWriter, p picPanel, series []picSeries, cx, cy, cw, ch float64) {
	unit := p.FieldConfig.Defaults.Unit
	type bar struct {
		label string
		v     float64
	}
	var bars []bar
	top := 0.0
	for _, s := range series {
		if v, ok := s.last(); ok {
			bars = append(bars, bar{s.Legend, v})
			if !math.IsInf(v, 0) {
				top = math.Max(top, v)
			}
		}
	}
	sort.SliceStable(bars, func(i, j int) bool { return bars[i].v > bars[j].v })
	if p.FieldConfig.Defaults.Max != nil {
		top = *p.FieldConfig.Defaults.Max
	}
	rowH := math.Min(22, ch/float64(max(len(bars), 1)))
	if rowH < 12 {
		rowH = 12
	}
	labelW := cw * 0.42
	for i, b := range bars {
		by := cy + float64(i)*rowH
		if by+rowH > cy+ch+1 {
			w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e">… %d more</text>`+"\n", cx, cy+ch, len(bars)-i)
			break
		}
		frac := 0.0
		if top > 0 && !math.IsInf(b.v, 0) {
			frac = math.Min(math.Max(b.v/top, 0), 1)
		}
		color := svgPalette[0]
		if unit == "percentunit" && b.v >= 0.9 {
			color = "#f2495c"
		} else if unit == "percentunit" && b.v >= 0.7 {
			color = "#ff780a"
		}
		w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#ccccdc">%s</text>`+"\n", cx, by+rowH*0.65, esc(clip(b.label, labelW-4, 10)))
		bx, bwid := cx+labelW, cw-labelW-70
		w.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#22252b"/>`+"\n", bx, by+2, bwid, rowH-5)
		w.f(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", bx, by+2, math.Max(bwid*frac, 1), rowH-5, color)
		w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="%s">%s</text>`+"\n", bx+bwid+4, by+rowH*0.65, color, esc(formatValue(unit, b.v)))
	}
}

// renderTable draws a table as Grafana builds it: one row per label set,
// the value of each query in a column ("Value", or "Value #<refId>" merged
// when there are several, then the organize transformation's exclusions
// and names).
func renderTable(w *svgWriter, p picPanel, series []picSeries, cx, cy, cw, ch float64) {
	exclude := map[string]bool{"__name__": true}
	rename := map[string]string{}
	for _, tr := range p.Transformations {
		for k, v := range tr.Options.ExcludeByName {
			exclude[k] = v
		}
		for k, v := range tr.Options.RenameByName {
			rename[k] = v
		}
	}
	refs := map[string]bool{}
	for _, s := range series {
		refs[s.RefID] = true
	}
	type row struct {
		labels map[string]string
		values map[string]float64
	}
	var rows []*row
	byKey := map[string]*row{}
	labelSet := map[string]bool{}
	var valueCols []string
	for _, s := range series {
		col := "Value"
		if len(refs) > 1 {
			col = "Value #" + s.RefID
		}
		if !slices.Contains(valueCols, col) {
			valueCols = append(valueCols, col)
		}
		ls := map[string]string{}
		var ks []string
		for k, v := range s.Labels {
			if !exclude[k] {
				ls[k] = v
				labelSet[k] = true
				ks = append(ks, k+"="+v)
			}
		}
		sort.Strings(ks)
		key := strings.Join(ks, ",")
		r := byKey[key]
		if r == nil {
			r = &row{labels: ls, values: map[string]float64{}}
			byKey[key] = r
			rows = append(rows, r)
		}
		v, _ := s.last()
		r.values[col] = v
	}
	var cols []string
	for k := range labelSet {
		cols = append(cols, k)
	}
	sort.Strings(cols)
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].values[valueCols[0]] > rows[j].values[valueCols[0]] })
	all := append(cols, valueCols...)
	colW := cw / float64(len(all))
	const rh = 15.0
	name := func(c string) string {
		if r, ok := rename[c]; ok {
			return r
		}
		return c
	}
	for i, c := range all {
		w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8ab8ff" font-weight="600">%s</text>`+"\n", cx+float64(i)*colW, cy+10, esc(clip(name(c), colW-4, 10)))
	}
	w.f(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#2c3235"/>`+"\n", cx, cy+14, cx+cw, cy+14)
	for j, r := range rows {
		yy := cy + 14 + float64(j+1)*rh
		if yy > cy+ch {
			w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#8e8e8e">… %d more rows</text>`+"\n", cx, cy+ch+4, len(rows)-j)
			break
		}
		for i, c := range all {
			text := r.labels[c]
			if i >= len(cols) {
				if v, ok := r.values[c]; ok {
					text = formatValue(p.columnUnit(name(c)), v)
				}
			}
			w.f(`<text x="%.1f" y="%.1f" font-size="10" fill="#ccccdc">%s</text>`+"\n", cx+float64(i)*colW, yy-3, esc(clip(text, colW-4, 10)))
		}
	}
}
