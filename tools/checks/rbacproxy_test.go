package checks

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestRBACProxyGuardsExporter runs what the overlay's pod runs, outside a
// cluster: the exporter with the overlay's arguments (probes on) and
// kube-rbac-proxy with the DaemonSet's arguments, built from the module
// proxy at the image's version, against a real kube-apiserver holding the
// manifests' ServiceAccount, ClusterRole and binding. Tokens come from the
// API server's TokenRequest. It checks who reaches what through the proxy:
// the health checks without a token, /metrics with a token allowed get on
// it (as Prometheus' ClusterRole grants), and /probe and POST /-/reload for
// no such token, while the exporter itself answers /probe on loopback (so
// the refusal is the proxy's). Only make test-apiserver runs it.
func TestRBACProxyGuardsExporter(t *testing.T) {
	apiserverBin, etcdBin, proxyBin := os.Getenv("KUBE_APISERVER"), os.Getenv("ETCD"), os.Getenv("KUBE_RBAC_PROXY")
	if apiserverBin == "" || etcdBin == "" || proxyBin == "" {
		t.Skip("KUBE_APISERVER, ETCD and KUBE_RBAC_PROXY are not set: run make test-apiserver")
	}
	objs := renderObjects(t, "deploy/kubernetes/overlays/probes-and-smaps")
	var ds map[string]any
	for _, o := range objs {
		if kindOf(o) == "DaemonSet" {
			ds = o
		}
	}
	var exporterC, proxyC map[string]any
	for _, c := range ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any) {
		switch c := c.(map[string]any); c["name"] {
		case "memlock-exporter":
			exporterC = c
		case "kube-rbac-proxy":
			proxyC = c
		}
	}
	if exporterC == nil || proxyC == nil {
		t.Fatal("the overlay's pod lacks the exporter or kube-rbac-proxy")
	}
	// The binary is the image's version (the Makefile builds that one).
	image := proxyC["image"].(string)
	m := regexp.MustCompile(`(?m)^KUBE_RBAC_PROXY_VERSION\s*:=\s*(\S+)`).FindSubmatch(readFile(t, "Makefile"))
	if m == nil || !strings.HasSuffix(image, ":"+string(m[1])) {
		t.Fatalf("the Makefile builds kube-rbac-proxy %q, the DaemonSet runs %s", m, image)
	}

	api := startAPIServer(t, apiserverBin, etcdBin)
	ns := nestedString(ds, "metadata", "namespace")
	sa := nestedString(ds, "spec", "template", "spec", "serviceAccountName")
	for _, o := range objs {
		switch kindOf(o) {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret":
			api.mustApply(t, o, false)
		}
	}
	// A Prometheus as kube-prometheus grants it, and a pod with a token but
	// no grant.
	for _, o := range []map[string]any{
		{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "monitoring"}},
		{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": "prometheus", "namespace": "monitoring"}},
		{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": "intruder", "namespace": "monitoring"}},
		{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": map[string]any{"name": "prometheus"},
			"rules": []any{map[string]any{"nonResourceURLs": []any{"/metrics"}, "verbs": []any{"get"}}}},
		{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": map[string]any{"name": "prometheus"},
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "prometheus"},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}}},
	} {
		api.mustApply(t, o, false)
	}
	proxyToken := api.tokenFor(t, ns, sa)
	// The ServiceMonitor's token: the one Kubernetes writes into the
	// manifests' service-account-token Secret, of the ServiceAccount it
	// names (TokenRequest stands in for the token controller, which this
	// API server runs without).
	scraperSA := ""
	for _, o := range objs {
		if kindOf(o) == "Secret" && nestedString(o, "type") == "kubernetes.io/service-account-token" {
			scraperSA = nestedString(o, "metadata", "annotations", "kubernetes.io/service-account.name")
		}
	}
	if scraperSA == "" {
		t.Fatal("the manifests hold no service-account-token Secret for the ServiceMonitor")
	}
	scraperToken := api.tokenFor(t, ns, scraperSA)
	promToken := api.tokenFor(t, "monitoring", "prometheus")
	intruderToken := api.tokenFor(t, "monitoring", "intruder")

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// The exporter, with the overlay's arguments on this host's /proc.
	exporterPort, proxyPort := freePort(t), freePort(t)
	exporterAddr := fmt.Sprintf("127.0.0.1:%d", exporterPort)
	var exporterArgs []string
	for _, a := range exporterC["args"].([]any) {
		a := a.(string)
		switch {
		case strings.HasPrefix(a, "--path.procfs="):
			a = "--path.procfs=/proc"
		case strings.HasPrefix(a, "--path.sysfs="):
			a = "--path.sysfs=/sys"
		case strings.HasPrefix(a, "--web.listen-address="):
			if !strings.HasPrefix(a, "--web.listen-address=127.0.0.1:") {
				t.Fatalf("the exporter does not listen on loopback: %s", a)
			}
			a = "--web.listen-address=" + exporterAddr
		}
		exporterArgs = append(exporterArgs, a)
	}
	bin, err := buildExporter()
	if err != nil {
		t.Fatal(err)
	}
	start(t, ctx, dir, "memlock_exporter", bin, exporterArgs...)

	// kube-rbac-proxy with the DaemonSet's arguments: $(IP) is loopback
	// here, the ports are free ones, and a kubeconfig holding the pod's
	// service account token stands in for the projected token.
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority-data: %q, tls-server-name: kubernetes.default.svc}}]
users: [{name: u, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`, api.url, b64(api.caPEM), proxyToken)
	writeFile(t, filepath.Join(dir, "kubeconfig"), []byte(kubeconfig))
	proxyArgs := []string{"--kubeconfig=" + filepath.Join(dir, "kubeconfig")}
	for _, a := range proxyC["args"].([]any) {
		a := strings.ReplaceAll(a.(string), "$(IP)", "127.0.0.1")
		switch {
		case strings.HasPrefix(a, "--secure-listen-address="):
			a = fmt.Sprintf("--secure-listen-address=127.0.0.1:%d", proxyPort)
		case strings.HasPrefix(a, "--upstream="):
			a = "--upstream=http://" + exporterAddr + "/"
		}
		proxyArgs = append(proxyArgs, a)
	}
	start(t, ctx, dir, "kube-rbac-proxy", proxyBin, proxyArgs...)

	// The proxy's certificate is self-signed: not verified, as the
	// ServiceMonitor's insecureSkipVerify.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(method, path, token string) (int, string) {
		req, err := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", proxyPort, path), nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(b)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
		if code, _ := get(http.MethodGet, "/-/ready", ""); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no 200 from /-/ready through the proxy in 2 minutes (logs above)")
		}
	}
	// The exporter serves /probe on loopback: a refusal below is the proxy's.
	resp, err := http.Get("http://" + exporterAddr + "/probe?module=mlock")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the exporter itself answers /probe?module=mlock with %s; the test needs it served", resp.Status)
	}

	for _, c := range []struct {
		method, path, who, token string
		want                     int
	}{
		{"GET", "/-/healthy", "no token", "", 200},
		{"GET", "/-/ready", "no token", "", 200},
		{"GET", "/metrics", "no token", "", 401},
		{"GET", "/metrics", "a token without the grant", intruderToken, 403},
		{"GET", "/metrics", "Prometheus", promToken, 200},
		{"GET", "/metrics", "the ServiceMonitor's scraper", scraperToken, 200},
		{"GET", "/probe?module=mlock", "the ServiceMonitor's scraper", scraperToken, 403},
		{"POST", "/-/reload", "the ServiceMonitor's scraper", scraperToken, 403},
		{"GET", "/probe?module=mlock", "no token", "", 401},
		{"GET", "/probe?module=mlock", "Prometheus", promToken, 403},
		{"GET", "/probe?module=mlock", "a token without the grant", intruderToken, 403},
		{"POST", "/-/reload", "Prometheus", promToken, 403},
		{"POST", "/-/reload", "the proxy's own token", proxyToken, 403},
		{"GET", "/", "Prometheus", promToken, 403},
		// What the proxy leaves to RBAC: a cluster-admin may.
		{"GET", "/probe?module=mlock", "system:masters", api.token, 200},
	} {
		code, body := get(c.method, c.path, c.token)
		if code != c.want {
			t.Errorf("%s %s as %s: %d, want %d: %.300s", c.method, c.path, c.who, code, c.want, body)
		}
		if c.path == "/metrics" && code == 200 && !strings.Contains(body, "memlock_process_locked_bytes") {
			t.Errorf("/metrics through the proxy holds no memlock_process_locked_bytes: %.300s", body)
		}
	}
}

// tokenFor asks the API server for a token of a service account.
func (a *apiServer) tokenFor(t *testing.T, ns, name string) string {
	t.Helper()
	req := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}`)
	code, body := a.do(t, http.MethodPost, fmt.Sprintf("/api/v1/namespaces/%s/serviceaccounts/%s/token", ns, name), "application/json", req)
	var tr struct{ Status struct{ Token string } }
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &tr) != nil || tr.Status.Token == "" {
		t.Fatalf("TokenRequest for %s/%s: %d %s", ns, name, code, body)
	}
	return tr.Status.Token
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
