# memlock_exporter: targets a newcomer can guess.
GO        ?= go
BIN       ?= memlock_exporter
PKG       := github.com/prometheus/common/version
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Revision=$(REVISION) -X $(PKG).Branch=$(BRANCH) \
             -X $(PKG).BuildUser=$(shell id -un 2>/dev/null)@$(shell hostname 2>/dev/null) \
             -X $(PKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
STATICCHECK_VERSION := v0.8.2
# Extra flags for `make run`, e.g. make run ARGS="--log.level=debug".
ARGS      ?=

.PHONY: all build run test test-short unit vet lint fmt clean fuzz fuzz-short soak bench-probe bench generate check-generate

all: lint test build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/memlock_exporter

run: build
	./$(BIN) $(ARGS)

# test runs every test: vet, the unit, golden, fuzz-seed and real-kernel tests
# with the race detector, the short bench harness (build tag bench), the
# fuzz pass and the deploy tests. CI runs exactly this (.ci/run).
test: vet unit fuzz-short test-deploy

# test-short is the contributor's loop: vet, then go test -short without the
# race detector. Slow tests (soak, scale, real-binary serving storms, the
# bench harness, fuzz passes) skip under -short; make test runs them all.
test-short: vet
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...
	$(GO) vet -tags bench ./bench/...

unit:
	$(GO) test -race -count=1 -tags bench ./...

# fuzz runs every Fuzz* target of every package for FUZZTIME each, one at a
# time (scripts/fuzz.sh). Crashers land in the package's testdata/fuzz/<FuzzName>/
# and become regression seeds.
FUZZTIME       ?= 30s
# fuzz-short, the pass make test (and so CI) runs, counts executions instead
# of seconds: a duration can end in Go 1.26's fuzz deadline race
# (golang/go#75804), a count cannot.
FUZZTIME_SHORT ?= 3000x

fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

fuzz-short:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME_SHORT)

# soak runs the exporter with probes on under steady scrapes and process
# churn for SOAK_DURATION, and checks RSS, goroutines, fds, mappings and
# VmLck stay flat (make test runs a 40 s form of the same test).
SOAK_DURATION ?= 10m
soak:
	MEMLOCK_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -v -timeout 0 -run '^TestSoak$$' ./cmd/memlock_exporter

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -f $(BIN)

# generate rebuilds the committed BPF objects and their Go bindings
# (internal/bpf/task_{x86,arm64}_bpfel.{o,go}) from internal/bpf/c with
# bpf2go and Debian bookworm's clang-14 (apt-get install clang-14 llvm-14).
# The libbpf headers the C includes are vendored, so nothing else is needed;
# go build, make run and make test use the committed output and need no clang.
generate:
	$(GO) generate ./internal/bpf/

# check-generate fails when the committed BPF output is not what the
# sources generate (CI runs it before make test).
check-generate: generate
	@git diff --exit-code -- internal/bpf || { echo "check-generate: run make generate and commit internal/bpf"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- internal/bpf)" || { git status --short -- internal/bpf; echo "check-generate: untracked generated files"; exit 1; }

# bench runs the harness (bench/): 1,000 and 10,000 real processes, the
# floor reader against the exporter's scrapes over HTTP, then churn; prints
# the table and rewrites docs/benchmarks.md. Needs gcc and root. The short
# form (1,000 processes) runs in make test as bench.TestShortHarness, which
# is behind the build tag bench so a plain go test ./... does not start it.
bench: build
	$(GO) run ./bench/cmd/memlock-bench -exporter ./$(BIN) -out docs/benchmarks.md

# bench-probe compares the mlock probe's reported lock latency with a bare
# mlock/munlock loop on the same 4 MiB, for 4 KiB and transparent huge
# pages (docs/probes.md records the numbers).
bench-probe:
	$(GO) test -run '^$$' -bench BenchmarkLockOverhead -benchtime 200x -count 5 ./probe/

# tools/ is a module of its own, so the root go.mod stays lean: promtool,
# kustomize and the deploy/dashboard/Dockerfile tests with their heavy
# dependencies. Binaries are cached in tools/bin (rebuilt when tools/go.mod
# or go.sum change). promtool is built without service discovery
# (remove_all_sd): rule checks and tests need none, and it builds far faster.
PROMTOOL  := tools/bin/promtool
KUSTOMIZE := tools/bin/kustomize
# helm v3.22.0 for the chart (charts/memlock-exporter), from tools/helm, a
# module of its own so that helm's dependencies do not move tools/go.mod's.
HELM      := tools/bin/helm

.PHONY: tools test-deploy
tools: $(PROMTOOL) $(KUSTOMIZE) $(HELM)

$(PROMTOOL): tools/go.mod tools/go.sum
	cd tools && $(GO) build -tags remove_all_sd -o bin/promtool github.com/prometheus/prometheus/cmd/promtool

$(KUSTOMIZE): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o bin/kustomize sigs.k8s.io/kustomize/kustomize/v5

$(HELM): tools/helm/go.mod tools/helm/go.sum
	cd tools/helm && $(GO) build -o ../bin/helm helm.sh/helm/v3/cmd/helm

# test-deploy checks and unit-tests the alerting and recording rules, then
# runs the tools module's tests: strict decoding of the rendered kustomize
# objects, dashboard and rule queries against the metrics the exporter
# emits, the Dockerfile and the systemd unit; the Helm chart's lint,
# strict decoding of its renders and their drift from the kustomize build
# (tools/checks/helm_test.go, with HELM set).
test-deploy: tools
	$(PROMTOOL) check rules deploy/prometheus/rules.yml deploy/prometheus/alerts.yml deploy/prometheus/tests/opt-in/alerts.yml
	$(PROMTOOL) test rules deploy/prometheus/tests/*.yml
	cd tools && $(GO) vet ./... && HELM=$(CURDIR)/$(HELM) $(GO) test -count=1 ./...

# test-apiserver dry-runs the rendered base and overlay against a real
# kube-apiserver and etcd on loopback (tools/checks TestAPIServerDryRun):
# server-side apply with dryRun=All and fieldValidation=Strict for every
# object, the DaemonSet's pod through Pod Security admission, the
# Prometheus Operator's CRDs installed from its module; the Helm chart's
# default and every-value-on renders the same way, and helm install and
# upgrade for real into a labelled namespace; then the overlay's
# exporter behind kube-rbac-proxy, with tokens from that API server, to see
# who reaches /metrics, /probe and /-/reload (TestRBACProxyGuardsExporter).
# Both servers are built from the module proxy in a module of their own
# (tools/apiserver), so that k8s.io/kubernetes' versions do not move
# tools/go.mod's, and are cached in tools/bin like promtool. CI runs it
# after make test.
KUBE_APISERVER := tools/bin/kube-apiserver
ETCD           := tools/bin/etcd
# The kube-rbac-proxy of deploy/kubernetes/base/daemonset.yaml's image (a
# test compares the three), from tools/rbacproxy, a module whose only
# requirement it is: its dependencies stay at its own go.mod's versions.
KUBE_RBAC_PROXY_VERSION := v0.22.1
KUBE_RBAC_PROXY         := tools/bin/kube-rbac-proxy

# test-e2e: a real Prometheus, built from the module tools/go.mod pins for
# promtool (cmd/prometheus, remove_all_sd, no UI assets), scrapes the
# exporter every second with probes on and lockers running, with
# deploy/prometheus's rules loaded (for: shortened to 3s): alerts fire in
# their failing case and stay quiet in the healthy one, and every
# dashboard panel query returns data or says why it is empty
# (tools/checks TestPrometheusEndToEnd). Needs root. CI runs it after make test.
PROMETHEUS := tools/bin/prometheus

.PHONY: test-e2e
$(PROMETHEUS): tools/go.mod tools/go.sum
	cd tools && $(GO) build -tags remove_all_sd -o bin/prometheus github.com/prometheus/prometheus/cmd/prometheus

test-e2e: $(PROMETHEUS)
	cd tools && PROMETHEUS=$(CURDIR)/$(PROMETHEUS) $(GO) test -count=1 -v -run '^(TestPrometheusEndToEnd|TestLockCallAlertEndToEnd)$$' ./checks/

.PHONY: pictures
# pictures: docs/images/<dashboard>.svg, each dashboard drawn from its
# panels' real query results (root; about two minutes): the exporter with
# lockers and probes, a real Prometheus, every panel query run as Grafana
# runs it (tools/checks TestDashboardPictures -update). Not screenshots.
pictures: $(PROMETHEUS)
	cd tools && PROMETHEUS=$(CURDIR)/$(PROMETHEUS) $(GO) test -count=1 -v -timeout 10m -run '^TestDashboardPictures$$' ./checks/ -update

.PHONY: test-apiserver
$(KUBE_APISERVER): tools/apiserver/go.mod tools/apiserver/go.sum
	cd tools/apiserver && $(GO) build -o ../bin/kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver

$(ETCD): tools/apiserver/go.mod tools/apiserver/go.sum
	cd tools/apiserver && $(GO) build -o ../bin/etcd go.etcd.io/etcd/server/v3

$(KUBE_RBAC_PROXY): tools/rbacproxy/go.mod tools/rbacproxy/go.sum
	cd tools/rbacproxy && $(GO) list -m -f '{{.Version}}' github.com/brancz/kube-rbac-proxy | grep -qx '$(KUBE_RBAC_PROXY_VERSION)' \
		|| { echo "tools/rbacproxy/go.mod does not require kube-rbac-proxy $(KUBE_RBAC_PROXY_VERSION)"; exit 1; }
	cd tools/rbacproxy && $(GO) build -o ../bin/kube-rbac-proxy github.com/brancz/kube-rbac-proxy/cmd/kube-rbac-proxy

test-apiserver: $(KUBE_APISERVER) $(ETCD) $(KUBE_RBAC_PROXY) $(HELM)
	cd tools && KUBE_APISERVER=$(CURDIR)/$(KUBE_APISERVER) ETCD=$(CURDIR)/$(ETCD) KUBE_RBAC_PROXY=$(CURDIR)/$(KUBE_RBAC_PROXY) HELM=$(CURDIR)/$(HELM) \
		$(GO) test -count=1 -v -run '^(TestAPIServerDryRun|TestRBACProxyGuardsExporter)$$' ./checks/
