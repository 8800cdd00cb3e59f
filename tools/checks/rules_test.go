package checks

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record      string            `json:"record"`
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func loadRules(t *testing.T) []ruleFile {
	t.Helper()
	var files []ruleFile
	for _, f := range ruleFiles {
		var rf ruleFile
		if err := yaml.UnmarshalStrict(readFile(t, f), &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		files = append(files, rf)
	}
	return files
}

// recordedNames are the series our recording rules make.
func recordedNames(t *testing.T) map[string]bool {
	rec := map[string]bool{}
	for _, f := range loadRules(t) {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					rec[r.Record] = true
				}
			}
		}
	}
	return rec
}

// TestRuleMetricsAreEmitted parses every rule's expression and checks that
// each metric it reads is one the exporter really emits.
func TestRuleMetricsAreEmitted(t *testing.T) {
	rec := recordedNames(t)
	e := exporterMetrics(t)
	t.Logf("the exporter emits %d metric names (%d seen in a scrape)", len(e.names), len(e.types))
	for i, f := range loadRules(t) {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				checkExpr(t, fmt.Sprintf("%s: %s%s", ruleFiles[i], r.Record, r.Alert), r.Expr, rec)
			}
		}
	}
}

var validSeverity = map[string]bool{"critical": true, "warning": true, "info": true}

// TestAlertsAreComplete: every alert has a for, a severity, a summary, a
// description, a runbook section that exists, and unit tests in
// deploy/prometheus/tests that evaluate it (firing and quiet cases are
// checked by promtool test rules itself).
func TestAlertsAreComplete(t *testing.T) {
	runbook := string(readFile(t, "docs/runbook.md"))
	anchors := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^##+ (.+)$`).FindAllStringSubmatch(runbook, -1) {
		anchors[githubAnchor(m[1])] = true
	}
	testFiles, err := filepath.Glob(repoPath("deploy/prometheus/tests/*.yml"))
	if err != nil || len(testFiles) == 0 {
		t.Fatalf("no deploy/prometheus/tests/*.yml: %v", err)
	}
	var tests string
	for _, f := range testFiles {
		tests += string(readFile(t, "deploy/prometheus/tests", filepath.Base(f)))
	}
	for _, f := range loadRules(t) {
		for _, g := range f.Groups {
			for _, r := range g.Rules {
				if r.Alert == "" {
					continue
				}
				if r.For == "" {
					t.Errorf("%s: no for", r.Alert)
				}
				if !validSeverity[r.Labels["severity"]] {
					t.Errorf("%s: severity %q", r.Alert, r.Labels["severity"])
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if r.Annotations[a] == "" {
						t.Errorf("%s: no %s annotation", r.Alert, a)
					}
				}
				const prefix = "https://github.com/memlock-exporter/memlock_exporter/blob/main/docs/runbook.md#"
				anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], prefix)
				if !ok || !anchors[anchor] {
					t.Errorf("%s: runbook_url %q is not a section of docs/runbook.md", r.Alert, r.Annotations["runbook_url"])
				}
				if n := strings.Count(tests, "alertname: "+r.Alert+"\n"); n < 2 {
					t.Errorf("%s: %d alert_rule_test evaluations in deploy/prometheus/tests, want one that fires and one that stays quiet", r.Alert, n)
				}
			}
		}
	}
}

// githubAnchor is the fragment GitHub gives a Markdown heading.
func githubAnchor(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	var b strings.Builder
	for _, r := range h {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}
