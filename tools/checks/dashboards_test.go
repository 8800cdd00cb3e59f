package checks

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// dashboard is the part of Grafana's JSON model the test reads.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Editable      *bool   `json:"editable"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
			IncludeAll bool            `json:"includeAll"`
			AllValue   string          `json:"allValue"`
		} `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID          int                       `json:"id"`
	Type        string                    `json:"type"`
	Title       string                    `json:"title"`
	Description string                    `json:"description"`
	Interval    string                    `json:"interval"` // the min interval
	Datasource  *datasource               `json:"datasource"`
	GridPos     *struct{ H, W, X, Y int } `json:"gridPos"`
	Panels      []panel                   `json:"panels"` // collapsed rows
	FieldConfig struct {
		Defaults struct {
			Unit  string `json:"unit"`
			Links []struct {
				Title string `json:"title"`
				URL   string `json:"url"`
			} `json:"links"`
		} `json:"defaults"`
		Overrides []struct {
			Properties []struct {
				ID    string          `json:"id"`
				Value json.RawMessage `json:"value"`
			} `json:"properties"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Instant    bool        `json:"instant"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
}

// grafanaVar matches $name, ${name} and ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)

// substitute replaces Grafana's variables so the PromQL parser accepts the
// query: intervals by a duration, the others by a marker value.
func substitute(expr string) string {
	return grafanaVar.ReplaceAllStringFunc(expr, func(v string) string {
		name := grafanaVar.FindStringSubmatch(v)[1]
		if _, err := strconv.Atoi(name); err == nil {
			return v // label_replace's $1: Grafana has no such variable and leaves it
		}
		switch name {
		case "__rate_interval", "__interval", "__range":
			return "5m"
		case "topn":
			return "10"
		}
		return "__" + name + "__"
	})
}

var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

func TestDashboards(t *testing.T) {
	files, err := filepath.Glob(repoPath("dashboards", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	rec := recordedNames(t)
	// The top pods tables join kube-state-metrics' pod info for names.
	rec["kube_pod_info"] = true
	uids := map[string]string{}
	byUID := map[string]dashboard{}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			var d dashboard
			dec := json.NewDecoder(strings.NewReader(string(readFile(t, "dashboards", name))))
			if err := dec.Decode(&d); err != nil {
				t.Fatal(err)
			}
			if d.UID == "" || len(d.UID) > 40 || d.Title == "" {
				t.Errorf("uid %q (at most 40 characters) and title %q must be set", d.UID, d.Title)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("uid %q also used by %s", d.UID, other)
			}
			uids[d.UID] = name
			if d.Editable == nil || *d.Editable {
				t.Errorf("editable must be false: the dashboards are provisioned, an edit in Grafana is lost (edit mixin/ instead)")
			}
			if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
				t.Errorf("schemaVersion %d: want a Grafana 10/11 model (36 to 41)", d.SchemaVersion)
			}

			vars := map[string]bool{}
			for _, v := range d.Templating.List {
				vars[v.Name] = true
				if v.Name == "cluster" && (!v.IncludeAll || v.AllValue != ".*") {
					t.Errorf("variable cluster must include All as .* (matching series without the label, as on a Prometheus of one cluster)")
				}
				switch {
				case v.Name == "datasource":
					var q string
					_ = json.Unmarshal(v.Query, &q)
					if v.Type != "datasource" || q != "prometheus" {
						t.Errorf("variable datasource must be a Prometheus data source variable")
					}
				case v.Type == "query":
					if v.Datasource == nil || v.Datasource.UID != "${datasource}" {
						t.Errorf("variable %s must query ${datasource}", v.Name)
					}
					m := labelValues.FindStringSubmatch(v.Definition)
					if m == nil {
						t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
						continue
					}
					checkExpr(t, "variable "+v.Name, substitute(m[1]), rec)
				}
			}
			for _, want := range []string{"datasource", "cluster", "job", "instance"} {
				if !vars[want] {
					t.Errorf("no %s variable", want)
				}
			}

			ids := map[int]bool{}
			queries := 0
			var walk func(ps []panel)
			walk = func(ps []panel) {
				for _, p := range ps {
					where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
					if ids[p.ID] {
						t.Errorf("%s: duplicate id", where)
					}
					ids[p.ID] = true
					if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
						t.Errorf("%s: no gridPos", where)
					}
					if p.Type == "row" {
						walk(p.Panels)
						continue
					}
					if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
						t.Errorf("%s: datasource must be ${datasource}", where)
					}
					if strings.TrimSpace(p.Description) == "" {
						t.Errorf("%s: no description", where)
					}
					if p.FieldConfig.Defaults.Unit == "" {
						t.Errorf("%s: no unit", where)
					}
					units := []string{p.FieldConfig.Defaults.Unit}
					for _, o := range p.FieldConfig.Overrides {
						for _, pr := range o.Properties {
							var u string
							if pr.ID == "unit" && json.Unmarshal(pr.Value, &u) == nil {
								units = append(units, u)
							}
						}
					}
					for _, u := range units {
						if u != "" && !validUnit(u) {
							t.Errorf("%s: unit %q is not one of Grafana's unit ids (nor prefix:, suffix:, si:, count:)", where, u)
						}
					}
					if p.Type == "table" && len(p.Targets) > 1 {
						for _, tg := range p.Targets {
							ast, err := promql.ParseExpr(substitute(tg.Expr))
							if err == nil && keepsName(ast) {
								t.Errorf("%s %s: a table merging %d queries: this one keeps __name__, so its rows do not merge with the other queries' (drop the name, e.g. max without (__name__))", where, tg.RefID, len(p.Targets))
							}
						}
					}
					if len(p.Targets) == 0 {
						t.Errorf("%s: no queries", where)
					}
					for _, tg := range p.Targets {
						queries++
						w := where + " " + tg.RefID
						if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
							t.Errorf("%s: datasource must be ${datasource}", w)
						}
						expr := substitute(tg.Expr)
						checkExpr(t, w, expr, rec)
						checkFiltered(t, w, expr)
					}
				}
			}
			walk(d.Panels)
			t.Logf("%d panels, %d queries", len(ids), queries)
			byUID[d.UID] = d
		})
	}
	checkLinks(t, byUID)
}

// dataLink matches a data link to another dashboard: /d/<uid>/<slug>?query.
var dataLink = regexp.MustCompile(`^/d/([\w-]+)/[\w-]*\?(.*)$`)

// checkLinks: every data link opens a dashboard of this set, sets only
// variables it has and carries the data source, cluster, job and instance
// (a link that dropped them would show another cluster's or all nodes'
// data); a node's panels link to its top processes, a pod's rows to its
// limits (the pod_uid variable set from the row).
func checkLinks(t *testing.T, byUID map[string]dashboard) {
	t.Helper()
	found := map[string]bool{}
	for _, d := range byUID {
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				for _, l := range p.FieldConfig.Defaults.Links {
					where := fmt.Sprintf("%s / %q: link %q", d.UID, p.Title, l.Title)
					m := dataLink.FindStringSubmatch(l.URL)
					if m == nil {
						t.Errorf("%s: %q is not /d/<uid>/<slug>?<variables>", where, l.URL)
						continue
					}
					target, ok := byUID[m[1]]
					if !ok {
						t.Errorf("%s: no dashboard with uid %s", where, m[1])
						continue
					}
					has := map[string]bool{}
					for _, v := range target.Templating.List {
						has[v.Name] = true
					}
					set := map[string]bool{}
					for _, kv := range strings.Split(m[2], "&") {
						name := ""
						if q := regexp.MustCompile(`^\$\{(\w+):queryparam\}$`).FindStringSubmatch(kv); q != nil {
							name = q[1]
						} else if k, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "var-") {
							name = strings.TrimPrefix(k, "var-")
						} else if kv != "${__url_time_range}" {
							t.Errorf("%s: %q is neither var-<name>=, ${<name>:queryparam} nor ${__url_time_range}", where, kv)
						}
						if name == "" {
							continue
						}
						if !has[name] {
							t.Errorf("%s: sets %s, which %s has no variable for", where, name, target.UID)
						}
						set[name] = true
					}
					for _, want := range []string{"datasource", "cluster", "job", "instance"} {
						if !set[want] {
							t.Errorf("%s: does not carry %s", where, want)
						}
					}
					found[d.UID+" -> "+target.UID] = true
					for _, v := range []string{"pod_uid", "cgroup"} {
						if set[v] {
							found[d.UID+" -> "+target.UID+" "+v] = true
						}
					}
				}
			}
		}
		walk(d.Panels)
	}
	for _, want := range []string{
		"memlock-node-overview -> memlock-top-holders",
		"memlock-top-holders -> memlock-limit-utilization pod_uid",
		"memlock-top-holders -> memlock-limit-utilization cgroup",
	} {
		if !found[want] {
			t.Errorf("no data link %s", want)
		}
	}
}

// checkFiltered: every selector of a panel query honours the job and
// instance variables, so the dashboard shows what the variables select.
func checkFiltered(t *testing.T, where, expr string) {
	t.Helper()
	ast, err := promql.ParseExpr(expr)
	if err != nil {
		return // reported by checkExpr
	}
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		got := map[string]string{}
		for _, m := range vs.LabelMatchers {
			got[m.Name] = m.Value
		}
		if got["cluster"] != "__cluster__" {
			t.Errorf("%s: selector %s must filter cluster=~\"$cluster\"", where, vs)
		}
		if strings.HasPrefix(vs.Name, "kube_") {
			return nil // kube-state-metrics' series: another job, other instances
		}
		if got["job"] != "__job__" || got["instance"] != "__instance__" {
			t.Errorf("%s: selector %s must filter job=~\"$job\" and instance=~\"$instance\"", where, vs)
		}
		return nil
	})
}

// grafanaUnits are the unit ids of Grafana's value formats
// (packages/grafana-data/src/valueFormats/categories.ts, the categories a
// dashboard of this kind can use: Misc, Boolean, Data, Data rate, Time,
// Throughput). A unit outside the list shows as a bare number.
var grafanaUnits = map[string]bool{
	"none": true, "string": true, "short": true, "percent": true, "percentunit": true,
	"hex0x": true, "hex": true, "sci": true, "locale": true,
	"bool": true, "bool_yes_no": true, "bool_on_off": true,
	"bits": true, "bytes": true, "kbytes": true, "mbytes": true, "gbytes": true, "tbytes": true, "pbytes": true,
	"decbits": true, "decbytes": true, "deckbytes": true, "decmbytes": true, "decgbytes": true, "dectbytes": true, "decpbytes": true,
	"pps": true, "bps": true, "Bps": true, "KBs": true, "Kbits": true, "MBs": true, "Mbits": true, "GBs": true, "Gbits": true,
	"hertz": true, "ns": true, "µs": true, "ms": true, "s": true, "m": true, "h": true, "d": true,
	"dtdurationms": true, "dtdurations": true, "dthms": true, "dtdhms": true, "timeticks": true, "clockms": true, "clocks": true,
	"cps": true, "ops": true, "reqps": true, "rps": true, "wps": true, "iops": true, "cpm": true, "opm": true, "rpm": true, "wpm": true,
}

// validUnit: one of grafanaUnits, or a custom unit as Grafana's
// getValueFormat parses it (suffix:text, prefix:text, si:text, count:text;
// the text without a leading space, which Grafana adds itself).
func validUnit(u string) bool {
	if grafanaUnits[u] {
		return true
	}
	kind, text, ok := strings.Cut(u, ":")
	switch kind {
	case "suffix", "prefix", "si", "count":
		return ok && text != "" && strings.TrimSpace(text) == text
	}
	return false
}

// keepsName: whether the result of e keeps the __name__ of a selector
// (a selector; topk, bottomk, limitk; a filtering comparison or a set
// operator keeps its left side's, or keeps either's). Arithmetic, other
// aggregations and functions drop it.
func keepsName(e parser.Expr) bool {
	switch n := e.(type) {
	case *parser.VectorSelector, *parser.MatrixSelector:
		return true
	case *parser.ParenExpr:
		return keepsName(n.Expr)
	case *parser.StepInvariantExpr:
		return keepsName(n.Expr)
	case *parser.AggregateExpr:
		switch n.Op {
		case parser.TOPK, parser.BOTTOMK, parser.LIMITK, parser.LIMIT_RATIO:
			return keepsName(n.Expr)
		}
		return false
	case *parser.Call:
		switch n.Func.Name {
		case "last_over_time", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "label_replace", "label_join":
			return len(n.Args) > 0 && keepsName(n.Args[0])
		}
		return false
	case *parser.BinaryExpr:
		switch {
		case n.Op == parser.LOR:
			return keepsName(n.LHS) || keepsName(n.RHS)
		case n.Op == parser.LAND || n.Op == parser.LUNLESS:
			return keepsName(n.LHS)
		case n.Op.IsComparisonOperator() && !n.ReturnBool:
			return keepsName(n.LHS) || (n.LHS.Type() == parser.ValueTypeScalar && keepsName(n.RHS))
		}
		return false
	}
	return false
}
