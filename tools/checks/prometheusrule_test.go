package checks

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"sigs.k8s.io/yaml"
)

// ruleFiles are the plain Prometheus rule files; the PrometheusRule in the
// kustomize base carries their groups, in this order.
var ruleFiles = []string{"deploy/prometheus/rules.yml", "deploy/prometheus/alerts.yml"}

const prometheusRulePath = "deploy/kubernetes/base/prometheusrule.yaml"

const prometheusRuleHeader = `# Generated from deploy/prometheus/rules.yml and alerts.yml, which mixin/
# generates: do not edit. Edit mixin/*.libsonnet, then:
#   cd tools && go test ./checks -run 'TestMixin|TestPrometheusRule' -update
# (the tests fail while this file, they and the mixin diverge).
`

// ruleFileGroups returns the groups of every rule file, as generic YAML.
func ruleFileGroups(t *testing.T) []any {
	t.Helper()
	var groups []any
	for _, f := range ruleFiles {
		var doc struct {
			Groups []any `json:"groups"`
		}
		if err := yaml.UnmarshalStrict(readFile(t, f), &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		groups = append(groups, doc.Groups...)
	}
	return groups
}

// chartRuleSpecPath is the Helm chart's copy of the PrometheusRule's spec.
const chartRuleSpecPath = "charts/memlock-exporter/files/prometheusrule-spec.yaml"

func TestPrometheusRuleMatchesRuleFiles(t *testing.T) {
	want := ruleFileGroups(t)
	if *update {
		obj := map[string]any{
			"apiVersion": "monitoring.coreos.com/v1",
			"kind":       "PrometheusRule",
			"metadata": map[string]any{
				"name": "memlock-exporter",
			},
			"spec": map[string]any{"groups": want},
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(repoPath(prometheusRulePath), append([]byte(prometheusRuleHeader), b...), 0o644); err != nil {
			t.Fatal(err)
		}
		// The chart's copy of the spec (its templates/prometheusrule.yaml
		// includes it; helm cannot read files outside the chart).
		if b, err = yaml.Marshal(obj["spec"]); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(repoPath(chartRuleSpecPath), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var spec struct {
		Groups []any `json:"groups"`
	}
	if err := yaml.Unmarshal(readFile(t, chartRuleSpecPath), &spec); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(spec.Groups, want) {
		t.Errorf("%s and %v diverge: regenerate it with\n\tcd tools && go test ./checks -run PrometheusRule -update", chartRuleSpecPath, ruleFiles)
	}
	b := readFile(t, prometheusRulePath)
	if !bytes.HasPrefix(b, []byte(prometheusRuleHeader)) {
		t.Errorf("%s lost its generated-file header", prometheusRulePath)
	}
	var pr struct {
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &pr); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pr.Spec.Groups, want) {
		t.Errorf("%s and %v diverge: regenerate it with\n\tcd tools && go test ./checks -run PrometheusRule -update", prometheusRulePath, ruleFiles)
	}
}
