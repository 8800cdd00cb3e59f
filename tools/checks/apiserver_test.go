package checks

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The Prometheus Operator release whose CRDs (example/prometheus-operator-crd)
// the dry-run installs. The module proxy serves the operator's root module up
// to v0.94.1; tools/go.mod's Go types (pkg/apis/monitoring) are v0.95.1, a
// separate module without the CRD files.
const promOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.94.1"

// TestAPIServerDryRun sends every object of the rendered base and overlay
// to a real kube-apiserver (with etcd, both on loopback, built by make
// test-apiserver from k8s.io/kubernetes v1.37.2 and etcd v3.7) as a
// server-side apply with dryRun=All and fieldValidation=Strict, and wants
// each accepted without a warning. The pod template also goes in as a Pod
// (dry-run), so that Pod Security admission, the priority class and the
// service account are checked as the kubelet's pods would be: accepted in
// the namespace as labelled, rejected in one that enforces "baseline".
// An object with an unknown field must be rejected. The Helm chart's
// default and every-part-on renders go through the same (with HELM set).
//
// It runs only under make test-apiserver, which builds the binaries and
// sets KUBE_APISERVER, ETCD and HELM; without the first two it skips.
func TestAPIServerDryRun(t *testing.T) {
	apiserverBin, etcdBin := os.Getenv("KUBE_APISERVER"), os.Getenv("ETCD")
	if apiserverBin == "" || etcdBin == "" {
		t.Skip("KUBE_APISERVER and ETCD are not set: run make test-apiserver")
	}
	for _, b := range []string{apiserverBin, etcdBin} {
		if _, err := os.Stat(b); err != nil {
			t.Fatalf("make test-apiserver builds it: %v", err)
		}
	}
	crdDir := operatorCRDs(t)
	api := startAPIServer(t, apiserverBin, etcdBin)

	for _, f := range []string{"monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml"} {
		b, err := os.ReadFile(filepath.Join(crdDir, f))
		if err != nil {
			t.Fatal(err)
		}
		api.mustApply(t, yamlToObject(t, b), false)
	}
	api.waitEstablished(t, "servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")

	// The kustomize base and overlay, then (with HELM set, as make
	// test-apiserver does) the chart's default render, in the namespace the
	// base created as helm install needs, and its render with every part
	// on, which creates its own namespace.
	type source struct {
		dir  string
		objs func() []map[string]any
	}
	var sources []source
	for _, dir := range []string{"deploy/kubernetes", "deploy/kubernetes/overlays/probes-and-smaps", "deploy/kubernetes/overlays/bpf"} {
		sources = append(sources, source{dir, func() []map[string]any { return renderObjects(t, dir) }})
	}
	if os.Getenv("HELM") != "" {
		sources = append(sources,
			source{"helm template (defaults)", func() []map[string]any { return helmTemplate(t) }},
			source{"helm template -f " + allOnValues, func() []map[string]any { return helmTemplate(t, "-f", allOnValues) }},
			source{"helm template -f " + bpfValues, func() []map[string]any { return helmTemplate(t, "-f", bpfValues) }})
	} else {
		t.Log("HELM is not set: the chart's renders are not dry-run")
	}
	for _, src := range sources {
		dir, objs := src.dir, src.objs()
		// Namespaces and the service account exist for real: dry-run
		// objects are not stored, and a Pod needs its service account.
		for _, o := range objs {
			if k := kindOf(o); k == "Namespace" || k == "ServiceAccount" {
				api.mustApply(t, o, false)
			}
		}
		var ds map[string]any
		for _, o := range objs {
			api.mustApply(t, o, true)
			if kindOf(o) == "DaemonSet" {
				ds = o
			}
		}
		if ds == nil {
			t.Fatalf("%s: no DaemonSet", dir)
		}
		// The pod the DaemonSet controller would create, where it would.
		ns := nestedString(ds, "metadata", "namespace")
		if code, body := api.apply(t, podOf(t, ds, ns), true); code != http.StatusOK && code != http.StatusCreated {
			t.Errorf("%s: the DaemonSet's pod in namespace %s: %d %s", dir, ns, code, body)
		}
		// Pod Security "baseline" rejects it: the namespace's label is needed.
		baseline := map[string]any{
			"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": "pss-baseline", "labels": map[string]any{"pod-security.kubernetes.io/enforce": "baseline"}},
		}
		api.mustApply(t, baseline, false)
		sa := map[string]any{"apiVersion": "v1", "kind": "ServiceAccount",
			"metadata": map[string]any{"name": nestedString(ds, "spec", "template", "spec", "serviceAccountName"), "namespace": "pss-baseline"}}
		api.mustApply(t, sa, false)
		code, body := api.apply(t, podOf(t, ds, "pss-baseline"), true)
		if code != http.StatusForbidden || !strings.Contains(body, "violates PodSecurity") {
			t.Errorf("%s: the DaemonSet's pod in a namespace enforcing baseline: want 403 violates PodSecurity, got %d %s", dir, code, body)
		} else {
			t.Logf("%s: baseline rejects the pod: %s", dir, jsonField(body, "message"))
		}
	}

	// An unknown field must fail, or this test could pass on anything.
	objs := renderObjects(t, "deploy/kubernetes")
	for _, o := range objs {
		if kindOf(o) != "DaemonSet" {
			continue
		}
		o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["hostIPCNamespace"] = true
		// Server-side apply refuses a field its schema lacks (as a 500,
		// "field not declared in schema")...
		code, body := api.apply(t, o, true)
		if code < 400 || !strings.Contains(body, "hostIPCNamespace") {
			t.Errorf("apply of a DaemonSet with an unknown field: want an error naming it, got %d %s", code, body)
		}
		// ...and a create with fieldValidation=Strict answers 400.
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		path := api.resourcePath(t, o)
		code, body = api.do(t, http.MethodPost, path[:strings.LastIndex(path, "/")]+"?dryRun=All&fieldValidation=Strict", "application/json", b)
		if code != http.StatusBadRequest || !strings.Contains(body, `unknown field \"spec.template.spec.hostIPCNamespace\"`) {
			t.Errorf("strict create of a DaemonSet with an unknown field: want 400 unknown field, got %d %s", code, body)
		} else {
			t.Logf("rejected: %s", jsonField(body, "message"))
		}
	}

	if os.Getenv("HELM") != "" {
		helmInstall(t, api)
	}
}

// helmInstall runs the README's helm lines for real against the API
// server (which has no controllers: nothing runs, every object is
// stored): a namespace labelled for the privileged Pod Security level,
// helm install into it, then helm upgrade with the probes-and-smaps
// values. Each must succeed and leave the DaemonSet the render says.
func helmInstall(t *testing.T, api *apiServer) {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	writeFile(t, ca, api.caPEM)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: admin, user: {token: %q}}]
contexts: [{name: test, context: {cluster: test, user: admin}}]
current-context: test
`, api.url, ca, api.token)))
	const ns = "helm-install"
	api.mustApply(t, map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns,
		"labels": map[string]any{"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "privileged", "pod-security.kubernetes.io/audit": "privileged"}}}, false)
	for _, args := range [][]string{
		{"install", "memlock-exporter", chartDir, "--namespace", ns},
		{"upgrade", "memlock-exporter", chartDir, "--namespace", ns, "-f", probesAndSmapsValues},
	} {
		out, err := runHelm(t, append(args, "--kubeconfig", kubeconfig, "--wait=false")...)
		if err != nil {
			t.Fatalf("helm %v: %v\n%s", args, err, out)
		}
		t.Logf("helm %s: %s", args[0], strings.TrimSpace(out))
		code, body := api.do(t, http.MethodGet, "/apis/apps/v1/namespaces/"+ns+"/daemonsets/memlock-exporter", "", nil)
		if code != http.StatusOK {
			t.Fatalf("after helm %s: GET the DaemonSet: %d %s", args[0], code, body)
		}
		probes := strings.Contains(body, "--probe.enable")
		if want := args[0] == "upgrade"; probes != want {
			t.Errorf("after helm %s: the stored DaemonSet has --probe.enable %v, want %v", args[0], probes, want)
		}
	}
}

// operatorCRDs returns the Prometheus Operator module's CRD directory,
// downloading the module through the module proxy if it is not cached.
func operatorCRDs(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", promOperatorModule)
	cmd.Dir = t.TempDir() // outside any module: the version above, not a go.mod's
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GO111MODULE=on")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v\n%s", promOperatorModule, err, out)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Error != "" || m.Dir == "" {
		t.Fatalf("go mod download %s: %v %s", promOperatorModule, err, m.Error)
	}
	return filepath.Join(m.Dir, "example", "prometheus-operator-crd")
}

// renderObjects is kustomize build dir, one generic object per resource.
func renderObjects(t *testing.T, dir string) []map[string]any {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), repoPath(dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []map[string]any
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, m)
	}
	return objs
}

func yamlToObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func kindOf(o map[string]any) string { return nestedString(o, "kind") }

func nestedString(o map[string]any, path ...string) string {
	var v any = o
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

// podOf is the Pod a DaemonSet's controller would create from its template.
func podOf(t *testing.T, ds map[string]any, ns string) map[string]any {
	t.Helper()
	tmpl := ds["spec"].(map[string]any)["template"].(map[string]any)
	meta := map[string]any{"name": nestedString(ds, "metadata", "name") + "-dryrun", "namespace": ns}
	if m, ok := tmpl["metadata"].(map[string]any); ok {
		meta["labels"], meta["annotations"] = m["labels"], m["annotations"]
	}
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]}
}

func jsonField(body, field string) string {
	var m map[string]any
	if json.Unmarshal([]byte(body), &m) != nil {
		return body
	}
	s, _ := m[field].(string)
	return s
}

type apiServer struct {
	url    string
	token  string
	caPEM  []byte // the serving certificate's chain, as the apiserver wrote it
	client *http.Client
}

// startAPIServer runs etcd and kube-apiserver on free loopback ports in a
// temporary directory: static token authentication (a system:masters
// user), RBAC, service account keys made here, and the serving
// certificate the apiserver makes itself in --cert-dir.
func startAPIServer(t *testing.T, apiserverBin, etcdBin string) *apiServer {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	etcdClient, etcdPeer, securePort := freePort(t), freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	etcdExited := start(t, ctx, dir, "etcd", etcdBin,
		"--name=dryrun", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=dryrun="+peerURL, "--unsafe-no-fsync", "--log-level=warn")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	writeFile(t, filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}))
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(tok)
	writeFile(t, filepath.Join(dir, "tokens.csv"), []byte(token+",dryrun-admin,dryrun-admin,system:masters\n"))

	certDir := filepath.Join(dir, "certs")
	apiExited := start(t, ctx, dir, "kube-apiserver", apiserverBin,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", securePort),
		"--cert-dir="+certDir,
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		// No kubernetes Service endpoints for a loopback address.
		"--endpoint-reconciler-type=none")

	api := &apiServer{url: fmt.Sprintf("https://127.0.0.1:%d", securePort), token: token}
	// Wait for the self-signed certificate, then trust exactly it; a
	// server that exits meanwhile fails the test at once.
	deadline := time.Now().Add(3 * time.Minute)
	alive := func() {
		select {
		case <-etcdExited:
			t.Fatal("etcd exited (its log is below)")
		case <-apiExited:
			t.Fatal("kube-apiserver exited (its log is below)")
		default:
		}
	}
	var pool *x509.CertPool
	for pool == nil {
		alive()
		if b, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err == nil {
			if p := x509.NewCertPool(); p.AppendCertsFromPEM(b) {
				pool, api.caPEM = p, b
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("kube-apiserver wrote no serving certificate in 3 minutes (its log is above)")
		}
		time.Sleep(200 * time.Millisecond)
	}
	api.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc"}}}
	for {
		alive()
		code, body := api.do(t, http.MethodGet, "/readyz", "", nil)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready in 3 minutes: %d %s", code, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	return api
}

// start runs a server until the test ends, its output in dir/name.log,
// printed if the test fails. The channel it returns is closed when the
// server exits.
func start(t *testing.T, ctx context.Context, dir, name, bin string, args ...string) <-chan struct{} {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s log (last 8000 bytes):\n%s", name, b)
		}
	})
	return exited
}

// freePort returns a loopback port nothing listens on, below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range) where it can: a port
// from that range (what listening on port 0 gives) may be taken by any
// outgoing connection before the server meant for it binds, as
// kube-apiserver's own connections to etcd once took its secure port.
func freePort(t *testing.T) int {
	t.Helper()
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				lo = n
			}
		}
	}
	const floor = 10000
	for i := 0; lo-floor > 1000 && i < 100; i++ {
		p := floor + mrand.IntN(lo-floor)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			return p
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (a *apiServer) do(t *testing.T, method, path, contentType string, body []byte) (int, string) {
	code, b, _ := a.doWarn(t, method, path, contentType, body)
	return code, b
}

func (a *apiServer) doWarn(t *testing.T, method, path, contentType string, body []byte) (int, string, []string) {
	t.Helper()
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), resp.Header.Values("Warning")
}

// resourcePath finds the object's REST path through discovery.
func (a *apiServer) resourcePath(t *testing.T, o map[string]any) string {
	t.Helper()
	gv, kind := nestedString(o, "apiVersion"), kindOf(o)
	prefix := "/apis/" + gv
	if !strings.Contains(gv, "/") {
		prefix = "/api/" + gv
	}
	var list struct {
		Resources []struct {
			Name       string
			Kind       string
			Namespaced bool
		}
	}
	// A new CRD's group reaches discovery shortly after it is established.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, body := a.do(t, http.MethodGet, prefix, "", nil)
		if code == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &list); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery %s: %d %s", prefix, code, body)
		}
	}
	for _, r := range list.Resources {
		if r.Kind == kind && !strings.Contains(r.Name, "/") {
			if r.Namespaced {
				ns := nestedString(o, "metadata", "namespace")
				if ns == "" {
					t.Fatalf("%s %s has no namespace", kind, nestedString(o, "metadata", "name"))
				}
				return fmt.Sprintf("%s/namespaces/%s/%s/%s", prefix, ns, r.Name, nestedString(o, "metadata", "name"))
			}
			return fmt.Sprintf("%s/%s/%s", prefix, r.Name, nestedString(o, "metadata", "name"))
		}
	}
	t.Fatalf("the API server serves no kind %s in %s", kind, gv)
	return ""
}

// apply is a server-side apply of o, strict about fields, dry-run or real.
// It fails the test on any warning the server returns.
func (a *apiServer) apply(t *testing.T, o map[string]any, dryRun bool) (int, string) {
	t.Helper()
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	q := "?fieldManager=memlock-dryrun&force=true&fieldValidation=Strict"
	if dryRun {
		q += "&dryRun=All"
	}
	code, body, warnings := a.doWarn(t, http.MethodPatch, a.resourcePath(t, o)+q, "application/apply-patch+yaml", b)
	for _, w := range warnings {
		t.Errorf("%s %s: warning from the API server: %s", kindOf(o), nestedString(o, "metadata", "name"), w)
	}
	return code, body
}

func (a *apiServer) mustApply(t *testing.T, o map[string]any, dryRun bool) {
	t.Helper()
	code, body := a.apply(t, o, dryRun)
	if code != http.StatusOK && code != http.StatusCreated {
		t.Errorf("apply %s %s/%s (dry-run %v): %d %s", kindOf(o), nestedString(o, "metadata", "namespace"), nestedString(o, "metadata", "name"), dryRun, code, body)
	} else if dryRun {
		t.Logf("accepted: %s %s/%s", kindOf(o), nestedString(o, "metadata", "namespace"), nestedString(o, "metadata", "name"))
	}
}

// waitEstablished waits until each CRD's Established condition is True.
func (a *apiServer) waitEstablished(t *testing.T, names ...string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, n := range names {
		for {
			code, body := a.do(t, http.MethodGet, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"+n, "", nil)
			var crd struct {
				Status struct {
					Conditions []struct{ Type, Status string }
				}
			}
			established := false
			if code == http.StatusOK && json.Unmarshal([]byte(body), &crd) == nil {
				for _, c := range crd.Status.Conditions {
					established = established || c.Type == "Established" && c.Status == "True"
				}
			}
			if established {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established in a minute: %d %s", n, code, body)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
