// Package checks holds the tests of what ships beside the exporter: the
// kustomize manifests, the Prometheus rules, the Grafana dashboards, the
// Dockerfile and the systemd unit, and (make test-apiserver only) a
// server-side dry-run of the manifests against a real kube-apiserver. They
// live in the tools module because their dependencies (k8s.io/api,
// prometheus-operator, the PromQL parser, kustomize, buildkit) are far
// heavier than the exporter's own.
package checks

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// update regenerates deploy/kubernetes/prometheusrule.yaml from
// deploy/prometheus/*.yml: go test ./checks -run PrometheusRule -update
var update = flag.Bool("update", false, "regenerate generated files instead of comparing them")

// root is the repository's top directory.
var root = func() string {
	p, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return p
}()

// tempDirs are removed when the tests end.
var tempDirs []string

func TestMain(m *testing.M) {
	if spec := os.Getenv(lockerEnv); spec != "" {
		runLocker(spec) // a child of TestPrometheusEndToEnd; never returns
	}
	if soft := os.Getenv(execLimitEnv); soft != "" {
		execWithLimit(soft) // likewise
	}
	flag.Parse()
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

func repoPath(parts ...string) string {
	return filepath.Join(append([]string{root}, parts...)...)
}

func readFile(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(parts...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
