package checks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The chart, and the values files that turn its optional parts on
// (ci/*-values.yaml, where prometheus-community's charts keep theirs).
const (
	chartDir             = "charts/memlock-exporter"
	probesAndSmapsValues = "charts/memlock-exporter/ci/probes-and-smaps-values.yaml"
	bpfValues            = "charts/memlock-exporter/ci/bpf-values.yaml"
	allOnValues          = "charts/memlock-exporter/ci/all-on-values.yaml"
)

// helmLabels are the labels helm's convention adds to every object and to
// the pod template, which the kustomize base does not have: the only
// difference TestHelmMatchesKustomize allows, after checking each holds
// the value it should.
var helmLabels = map[string]string{
	"helm.sh/chart":                "memlock-exporter-0.1.0",
	"app.kubernetes.io/managed-by": "Helm",
	"app.kubernetes.io/instance":   "memlock-exporter",
}

// helmBin is tools/bin/helm, which make test-deploy and make
// test-apiserver build from tools/helm (a module of its own) and pass as
// HELM.
func helmBin(t *testing.T) string {
	t.Helper()
	b := os.Getenv("HELM")
	if b == "" {
		t.Skip("HELM is not set: run make test-deploy, which builds tools/bin/helm from tools/helm")
	}
	if _, err := os.Stat(b); err != nil {
		t.Fatalf("make test-deploy builds it: %v", err)
	}
	return b
}

func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// helmTemplate is helm template memlock-exporter <chart> --namespace
// memlock-exporter with args, one generic object per document, numbers as
// JSON decodes them (as renderObjects' after normalise).
func helmTemplate(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "memlock-exporter", chartDir, "--namespace", "memlock-exporter"}, args...)...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, out)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	var objs []map[string]any
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var o map[string]any
		if err := yaml.UnmarshalStrict(doc, &o); err != nil {
			t.Fatalf("helm template %v: %v\n%s", args, err, doc)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs
}

// decodeObjects decodes generic objects strictly into their Go types.
func decodeObjects(t *testing.T, source string, objs []map[string]any) *rendered {
	t.Helper()
	out := &rendered{labels: map[string]map[string]string{}}
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		if m, ok := o["metadata"].(map[string]any)["labels"].(map[string]any); ok {
			for k, v := range m {
				labels[k], _ = v.(string)
			}
		}
		out.add(t, source, nestedString(o, "apiVersion"), kindOf(o), nestedString(o, "metadata", "name"), labels, b)
	}
	return out
}

// normalise is o through JSON (so that kustomize's and helm's numbers
// compare alike) without helmLabels on the object and its pod template,
// after checking each holds its value there.
func normalise(t *testing.T, o map[string]any, helm bool) map[string]any {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var n map[string]any
	if err := json.Unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	if !helm {
		return n
	}
	strip := func(where string, m map[string]any) {
		labels, _ := m["labels"].(map[string]any)
		for k, want := range helmLabels {
			if got := labels[k]; got != want {
				t.Errorf("%s %s: label %s=%v, want %q", objectKey(o), where, k, got, want)
			}
			delete(labels, k)
		}
	}
	strip("metadata", n["metadata"].(map[string]any))
	if spec, ok := n["spec"].(map[string]any); ok {
		if tmpl, ok := spec["template"].(map[string]any); ok {
			strip("pod template", tmpl["metadata"].(map[string]any))
		}
	}
	return n
}

func objectKey(o map[string]any) string {
	return fmt.Sprintf("%s %s %s/%s", nestedString(o, "apiVersion"), kindOf(o),
		nestedString(o, "metadata", "namespace"), nestedString(o, "metadata", "name"))
}

// diff lists the paths where a and b differ.
func diff(path string, a, b any) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		var ks []string
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		var out []string
		for _, k := range ks {
			out = append(out, diff(path+"."+k, am[k], bm[k])...)
		}
		return out
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		var out []string
		for i := range al {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), al[i], bl[i])...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return []string{fmt.Sprintf("%s: chart %s, kustomize %s", path, ja, jb)}
}

// sameObjects wants chart and kustomize to hold the same objects, equal
// after normalise.
func sameObjects(t *testing.T, what string, chart, kust []map[string]any) {
	t.Helper()
	byKey := func(objs []map[string]any, helm bool) map[string]map[string]any {
		m := map[string]map[string]any{}
		for _, o := range objs {
			k := objectKey(o)
			if _, dup := m[k]; dup {
				t.Errorf("%s: %s twice", what, k)
			}
			m[k] = normalise(t, o, helm)
		}
		return m
	}
	c, k := byKey(chart, true), byKey(kust, false)
	var keys []string
	for key := range c {
		keys = append(keys, key)
	}
	for key := range k {
		if _, ok := c[key]; !ok {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		co, ko := c[key], k[key]
		switch {
		case co == nil:
			t.Errorf("%s: %s is in the kustomize build only", what, key)
		case ko == nil:
			t.Errorf("%s: %s is in the chart only", what, key)
		default:
			for _, d := range diff("", co, ko) {
				t.Errorf("%s: %s%s", what, key, d)
			}
		}
	}
	if len(c) == 0 {
		t.Errorf("%s: nothing rendered", what)
	}
}

// TestHelmLint runs helm lint --strict on the chart with its default
// values and with each values file of ci/, and wants the chart to refuse
// smaps without the capabilities that make it useful.
func TestHelmLint(t *testing.T) {
	files, err := filepath.Glob(repoPath(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("ci/*-values.yaml: %v %v", files, err)
	}
	for _, args := range append([][]string{nil}, func() (a [][]string) {
		for _, f := range files {
			a = append(a, []string{"-f", f})
		}
		return
	}()...) {
		if out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, args...)...); err != nil || !strings.Contains(out, "0 chart(s) failed") {
			t.Errorf("helm lint --strict %v: %v\n%s", args, err, out)
		}
	}
	out, err := runHelm(t, "template", "memlock-exporter", chartDir, "--set", "smaps.enabled=true")
	if err == nil || !strings.Contains(out, "smaps.enabled needs capabilities.enabled") {
		t.Errorf("helm template --set smaps.enabled=true: want a refusal naming capabilities.enabled, got %v\n%s", err, out)
	}
	out, err = runHelm(t, "template", "memlock-exporter", chartDir, "--set", "bpf.enabled=true", "--set", "capabilities.enabled=true")
	if err == nil || !strings.Contains(out, "bpf.enabled and capabilities.enabled exclude each other") {
		t.Errorf("helm template with bpf.enabled and capabilities.enabled: want a refusal, got %v\n%s", err, out)
	}
}

// TestHelmMatchesKustomize: one source of truth. The chart with its
// default values renders the objects of kubectl kustomize
// deploy/kubernetes, with ci/probes-and-smaps-values.yaml those of that
// overlay and with ci/bpf-values.yaml those of overlays/bpf, object by
// object and field by field, except helmLabels. The
// Namespace is the chart's only with namespace.create=true (off by
// default: helm needs the release's namespace before it installs); the
// default render is that render without it.
func TestHelmMatchesKustomize(t *testing.T) {
	for _, c := range []struct {
		dir  string
		args []string
	}{
		{"deploy/kubernetes", nil},
		{"deploy/kubernetes/overlays/probes-and-smaps", []string{"-f", probesAndSmapsValues}},
		{"deploy/kubernetes/overlays/bpf", []string{"-f", bpfValues}},
	} {
		withNS := helmTemplate(t, append(c.args, "--set", "namespace.create=true")...)
		sameObjects(t, c.dir, withNS, renderObjects(t, c.dir))

		var want []map[string]any
		for _, o := range withNS {
			if kindOf(o) != "Namespace" {
				want = append(want, o)
			}
		}
		got := helmTemplate(t, c.args...)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: the default render is not the namespace.create=true render without its Namespace", c.dir)
		}
	}
}

// TestHelmTemplateStrict decodes the default, the probes-and-smaps and
// the every-part-on renders strictly into the API types, runs the
// kustomize tests' checks on them, and checks what each optional value
// adds lands where it should.
func TestHelmTemplateStrict(t *testing.T) {
	decodeObjects(t, "helm default", helmTemplate(t))

	probes := decodeObjects(t, "helm probes-and-smaps", helmTemplate(t, "-f", probesAndSmapsValues, "--set", "namespace.create=true"))
	checkDaemonSet(t, probes, probes.daemonSets[0])

	bpf := decodeObjects(t, "helm bpf", helmTemplate(t, "-f", bpfValues, "--set", "namespace.create=true"))
	bc := checkDaemonSet(t, bpf, bpf.daemonSets[0])
	checkTracefs(t, "helm bpf", bpf.daemonSets[0], bc)
	if add := bc.SecurityContext.Capabilities.Add; len(add) != 2 || add[0] != "BPF" || add[1] != "PERFMON" || !slices.Equal(bc.Command, []string{"/bin/memlock_exporter-bpf"}) {
		t.Errorf("helm bpf: capabilities %v, command %v: want BPF and PERFMON, /bin/memlock_exporter-bpf", add, bc.Command)
	}
	if proxy := bpf.daemonSets[0].Spec.Template.Spec.Containers[1]; len(proxy.SecurityContext.Capabilities.Add) != 0 {
		t.Errorf("helm bpf: the proxy must stay capability-free: %v", proxy.SecurityContext.Capabilities.Add)
	}

	all := decodeObjects(t, "helm all-on", helmTemplate(t, "-f", allOnValues))
	// Two ServiceAccounts and bindings: the pod's and the scraper's.
	if len(all.namespaces) != 1 || len(all.daemonSets) != 1 || len(all.serviceMonitors) != 1 || len(all.prometheusRules) != 1 ||
		len(all.networkPolicies) != 1 || len(all.services) != 1 || len(all.serviceAccounts) != 2 || len(all.clusterBindings) != 2 || len(all.secrets) != 1 {
		t.Fatalf("all-on: want one of each object, got %d namespaces, %d daemonsets", len(all.namespaces), len(all.daemonSets))
	}
	ds := all.daemonSets[0]
	c := checkDaemonSet(t, all, ds)
	const ns = "memlock-exporter-all" // namespaceOverride
	if all.namespaces[0].Name != ns || all.serviceAccounts[0].Namespace != ns || all.services[0].Namespace != ns ||
		all.serviceMonitors[0].Namespace != ns || all.prometheusRules[0].Namespace != ns || all.clusterBindings[0].Subjects[0].Namespace != ns ||
		all.serviceAccounts[1].Namespace != ns || all.secrets[0].Namespace != ns || all.clusterBindings[1].Subjects[0].Namespace != ns {
		t.Errorf("all-on: every namespaced object and the bindings' subjects must be in %s", ns)
	}
	var podSA corev1.ServiceAccount
	for _, a := range all.serviceAccounts {
		if a.Name == ds.Spec.Template.Spec.ServiceAccountName {
			podSA = a
		}
	}
	if !slices.Contains(c.Args, "--collector.process.include=^(java|postgres)$") || c.Args[len(c.Args)-1] != "--collector.process.include=^(java|postgres)$" {
		t.Errorf("all-on: extraArgs must come last: %v", c.Args)
	}
	if argValue(c.Args, "--probe.modes") != "mlock,onfault" {
		t.Errorf("all-on: probes.modes not joined into --probe.modes: %v", c.Args)
	}
	if len(ds.Spec.Template.Spec.ImagePullSecrets) != 1 || len(podSA.ImagePullSecrets) != 1 {
		t.Error("all-on: imagePullSecrets must reach the pod and the ServiceAccount")
	}
	if ds.Spec.Template.Spec.Affinity == nil || ds.Spec.Template.Annotations["example.com/owner"] != "platform" ||
		ds.Spec.Template.Labels["tier"] != "node" || ds.Labels["team"] != "platform" || podSA.Annotations["example.com/owner"] != "platform" {
		t.Error("all-on: affinity, podAnnotations, podLabels, commonLabels or serviceAccount.annotations missing")
	}
	if all.serviceMonitors[0].Labels["release"] != "kube-prometheus-stack" || all.prometheusRules[0].Labels["release"] != "kube-prometheus-stack" {
		t.Error("all-on: additionalLabels missing on the ServiceMonitor or PrometheusRule")
	}
	ep := all.serviceMonitors[0].Spec.Endpoints[0]
	if len(ep.RelabelConfigs) != 2 || len(ep.MetricRelabelConfigs) != 1 {
		t.Errorf("all-on: ServiceMonitor relabelings %d (want the instance one and one more), metricRelabelings %d", len(ep.RelabelConfigs), len(ep.MetricRelabelConfigs))
	}
	for _, off := range []string{"serviceMonitor.enabled=false", "prometheusRule.enabled=false", "networkPolicy.enabled=false"} {
		kind := map[string]string{"serviceMonitor": "ServiceMonitor", "prometheusRule": "PrometheusRule", "networkPolicy": "NetworkPolicy"}[strings.Split(off, ".")[0]]
		for _, o := range helmTemplate(t, "--set", off) {
			if kindOf(o) == kind {
				t.Errorf("--set %s still renders a %s", off, kind)
			}
		}
	}
}
