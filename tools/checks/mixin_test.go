package checks

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-jsonnet"
	"sigs.k8s.io/yaml"
)

// mixinHeader heads every file generated from mixin/.
const mixinHeader = `# Generated from mixin/ (jsonnet, github.com/google/go-jsonnet): do not edit.
# Edit mixin/*.libsonnet (where each rule's comment is), then
#   cd tools && go test ./checks -run 'TestMixin|TestPrometheusRule' -update
# (TestMixin fails while this file and the mixin differ).
`

// mixinFiles are the files the mixin generates, by the field of the
// evaluation that holds each.
var mixinFiles = map[string]string{
	"rules":  "deploy/prometheus/rules.yml",
	"alerts": "deploy/prometheus/alerts.yml",
}

// evalMixin evaluates mixin/mixin.libsonnet with overrides (jsonnet
// merged into it, e.g. `{ _config+:: { clusterLabel: 'k8s_cluster' } }`)
// and returns each generated file's bytes, by mixinFiles' key.
func evalMixin(t *testing.T, overrides string) map[string][]byte {
	t.Helper()
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{JPaths: []string{repoPath("mixin")}})
	snippet := "local m = (import 'mixin.libsonnet') + " + overrides + ";\n" +
		"{ rules: m.prometheusRules, alerts: m.prometheusAlerts }"
	out, err := vm.EvaluateAnonymousSnippet("generate.jsonnet", snippet)
	if err != nil {
		t.Fatalf("jsonnet: %v", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &fields); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for key := range mixinFiles {
		y, err := yaml.JSONToYAML(fields[key])
		if err != nil {
			t.Fatal(err)
		}
		files[key] = append([]byte(mixinHeader), y...)
	}
	return files
}

// TestMixin: the rule files are what the mixin generates, byte for byte.
// With -update it writes them (then run TestPrometheusRule -update for the
// PrometheusRule of deploy/kubernetes and the chart).
func TestMixin(t *testing.T) {
	files := evalMixin(t, "{}")
	for key, path := range mixinFiles {
		if *update {
			if err := os.WriteFile(repoPath(path), files[key], 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := readFile(t, path); !bytes.Equal(got, files[key]) {
			t.Errorf("%s differs from what mixin/ generates: regenerate it with\n\tcd tools && go test ./checks -run 'TestMixin|TestPrometheusRule' -update", path)
		}
	}
}

// TestMixinConfig: each _config parameter reaches the expressions (the
// defaults could otherwise be constants that ignore it).
func TestMixinConfig(t *testing.T) {
	files := evalMixin(t, `{ _config+:: { jobSelector: 'job="node-memlock"', clusterLabel: 'k8s_cluster',
		processNearLimitRatio: 0.75, processNearLimitFor: '1h', exporterDownFor: '1m' } }`)
	rules, alerts := string(files["rules"]), string(files["alerts"])
	for _, want := range []string{
		`up{job="node-memlock"} == 0`,
		`limit_ratio[3m]) > 0.75`,
		`for: 1h`,
		`more than 75% of its soft RLIMIT_MEMLOCK for 1 hour`,
		`for 1 minute:`,
	} {
		if !strings.Contains(alerts, want) {
			t.Errorf("alerts with overridden _config lack %q", want)
		}
	}
	for _, want := range []string{
		`on (k8s_cluster, instance, job, uid)`,
		`sum by (k8s_cluster, instance, job, mode, le)`,
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules with clusterLabel k8s_cluster lack %q", want)
		}
	}
}
