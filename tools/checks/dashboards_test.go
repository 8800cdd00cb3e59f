package checks

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

// dashboard is the part of Grafana's JSON model the test reads.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Datasource *datasource     `json:"datasource"`
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
	Datasource  *datasource               `json:"datasource"`
	GridPos     *struct{ H, W, X, Y int } `json:"gridPos"`
	Panels      []panel                   `json:"panels"` // collapsed rows
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
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
	uids := map[string]string{}
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
			if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
				t.Errorf("schemaVersion %d: want a Grafana 10/11 model (36 to 41)", d.SchemaVersion)
			}

			vars := map[string]bool{}
			for _, v := range d.Templating.List {
				vars[v.Name] = true
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
			for _, want := range []string{"datasource", "job", "instance"} {
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
					if p.FieldConfig.Defaults.Unit == "" {
						t.Errorf("%s: no unit", where)
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
		})
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
		if got["job"] != "__job__" || got["instance"] != "__instance__" {
			t.Errorf("%s: selector %s must filter job=~\"$job\" and instance=~\"$instance\"", where, vs)
		}
		return nil
	})
}
