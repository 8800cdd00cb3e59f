package checks

import (
	"fmt"
	"maps"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// rendered is what `kubectl kustomize <dir>` prints, decoded strictly into
// the API types.
type rendered struct {
	namespaces      []corev1.Namespace
	serviceAccounts []corev1.ServiceAccount
	secrets         []corev1.Secret
	daemonSets      []appsv1.DaemonSet
	services        []corev1.Service
	serviceMonitors []monitoringv1.ServiceMonitor
	prometheusRules []monitoringv1.PrometheusRule
	clusterRoles    []rbacv1.ClusterRole
	clusterBindings []rbacv1.ClusterRoleBinding
	networkPolicies []networkingv1.NetworkPolicy
	// labels of every object, by id
	labels map[string]map[string]string
}

// render builds dir with kustomize's own engine (the one kubectl kustomize
// embeds) and decodes every object into its Go type (add).
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), repoPath(dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := &rendered{labels: map[string]map[string]string{}}
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		out.add(t, dir, r.GetApiVersion(), r.GetKind(), r.GetName(), r.GetLabels(), b)
	}
	return out
}

// add decodes one object (JSON) strictly into its Go type, failing on
// unknown or duplicate fields and on kinds this test does not know. The
// kustomize and the helm renders (helm_test.go) share it.
func (out *rendered) add(t *testing.T, source, apiVersion, kind, name string, labels map[string]string, b []byte) {
	t.Helper()
	id := fmt.Sprintf("%s %s/%s/%s", source, apiVersion, kind, name)
	out.labels[id] = labels
	switch gvk := apiVersion + " " + kind; gvk {
	case "v1 Namespace":
		out.namespaces = append(out.namespaces, decodeStrict[corev1.Namespace](t, id, b))
	case "v1 ServiceAccount":
		out.serviceAccounts = append(out.serviceAccounts, decodeStrict[corev1.ServiceAccount](t, id, b))
	case "v1 Secret":
		out.secrets = append(out.secrets, decodeStrict[corev1.Secret](t, id, b))
	case "apps/v1 DaemonSet":
		out.daemonSets = append(out.daemonSets, decodeStrict[appsv1.DaemonSet](t, id, b))
	case "v1 Service":
		out.services = append(out.services, decodeStrict[corev1.Service](t, id, b))
	case "monitoring.coreos.com/v1 ServiceMonitor":
		out.serviceMonitors = append(out.serviceMonitors, decodeStrict[monitoringv1.ServiceMonitor](t, id, b))
	case "monitoring.coreos.com/v1 PrometheusRule":
		out.prometheusRules = append(out.prometheusRules, decodeStrict[monitoringv1.PrometheusRule](t, id, b))
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		out.clusterRoles = append(out.clusterRoles, decodeStrict[rbacv1.ClusterRole](t, id, b))
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		out.clusterBindings = append(out.clusterBindings, decodeStrict[rbacv1.ClusterRoleBinding](t, id, b))
	case "networking.k8s.io/v1 NetworkPolicy":
		out.networkPolicies = append(out.networkPolicies, decodeStrict[networkingv1.NetworkPolicy](t, id, b))
	default:
		t.Errorf("%s: kind %q is not checked by this test; add it", id, gvk)
	}
}

func decodeStrict[T any](t *testing.T, id string, b []byte) T {
	t.Helper()
	var v T
	strict, err := json.UnmarshalStrict(b, &v, json.DisallowDuplicateFields, json.DisallowUnknownFields)
	if err != nil {
		t.Errorf("%s: %v", id, err)
	}
	for _, e := range strict {
		t.Errorf("%s: %v", id, e)
	}
	return v
}

func TestKustomizeBase(t *testing.T) {
	r := render(t, "deploy/kubernetes")
	// Two ServiceAccounts, ClusterRoles and bindings: the pod's (for the
	// proxy) and the scraper's (the ServiceMonitor's token).
	if len(r.namespaces) != 1 || len(r.serviceAccounts) != 2 || len(r.daemonSets) != 1 ||
		len(r.services) != 1 || len(r.serviceMonitors) != 1 || len(r.prometheusRules) != 1 ||
		len(r.clusterRoles) != 2 || len(r.clusterBindings) != 2 || len(r.networkPolicies) != 1 || len(r.secrets) != 1 {
		t.Fatalf("want one of each object (two of the RBAC ones), got %d namespaces, %d service accounts, %d daemonsets, %d services, %d service monitors, %d prometheus rules, %d cluster roles, %d bindings, %d network policies",
			len(r.namespaces), len(r.serviceAccounts), len(r.daemonSets), len(r.services), len(r.serviceMonitors), len(r.prometheusRules),
			len(r.clusterRoles), len(r.clusterBindings), len(r.networkPolicies))
	}
	ds := r.daemonSets[0]
	c := checkDaemonSet(t, r, ds)
	checkResources(t, "base", c, 0)

	// The base grants nothing: every capability dropped, none added, and
	// no way to gain one through setuid or file capabilities.
	sc := c.SecurityContext
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("base: allowPrivilegeEscalation must be false")
	}
	if len(sc.Capabilities.Add) != 0 {
		t.Errorf("base: capabilities added: %v", sc.Capabilities.Add)
	}
	if len(c.Command) != 0 {
		t.Errorf("base: command %v: the image's ENTRYPOINT, /bin/memlock_exporter without file capabilities, must run", c.Command)
	}
	if !slices.Contains(c.Args, "--no-collector.process.smaps") {
		t.Error("base: without CAP_SYS_PTRACE smaps reading must be off (--no-collector.process.smaps)")
	}
	if hasArgPrefix(c.Args, "--probe.") {
		t.Error("base: probes must be off")
	}
}

func TestKustomizeOverlayProbesAndSmaps(t *testing.T) {
	r := render(t, "deploy/kubernetes/overlays/probes-and-smaps")
	if len(r.daemonSets) != 1 {
		t.Fatalf("want one DaemonSet, got %d", len(r.daemonSets))
	}
	c := checkDaemonSet(t, r, r.daemonSets[0])

	sc := c.SecurityContext
	var added []string
	for _, a := range sc.Capabilities.Add {
		added = append(added, string(a))
	}
	slices.Sort(added)
	if !slices.Equal(added, []string{"IPC_LOCK", "SYS_PTRACE"}) {
		t.Errorf("overlay: capabilities added %v, want exactly IPC_LOCK and SYS_PTRACE", added)
	}
	// The copy with file capabilities: a non-root process has no
	// capabilities of its own, whatever the pod adds.
	if !slices.Equal(c.Command, []string{"/bin/memlock_exporter-caps"}) {
		t.Errorf("overlay: command %v, want [/bin/memlock_exporter-caps]", c.Command)
	}
	// A non-root process gains the binary's file capabilities at exec only
	// without no_new_privs, which allowPrivilegeEscalation: false sets.
	if sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation {
		t.Error("overlay: allowPrivilegeEscalation must be true, or the file capabilities of a non-root binary are ignored")
	}
	for _, want := range []string{"--probe.enable", "--collector.process.smaps"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("overlay: args lack %s: %v", want, c.Args)
		}
	}
	if slices.Contains(c.Args, "--no-collector.process.smaps") {
		t.Error("overlay: smaps reading still disabled")
	}
	// Locked probe memory is charged to the container's memory cgroup: on
	// top of the base's request and limit comes the probes' whole budget.
	maxBytes := argValue(c.Args, "--probe.max-bytes")
	if maxBytes == "" {
		t.Fatal("overlay: set --probe.max-bytes explicitly, so the memory limit can be checked against it")
	}
	budget := resource.MustParse(strings.TrimSuffix(maxBytes, "B")) // 16MiB -> 16Mi
	checkResources(t, "overlay", c, budget.Value())
	base := exporterContainer(t, render(t, "deploy/kubernetes").daemonSets[0])
	for _, kind := range []string{"request", "limit"} {
		list := map[string]corev1.ResourceList{"request": c.Resources.Requests, "limit": c.Resources.Limits}
		baseList := map[string]corev1.ResourceList{"request": base.Resources.Requests, "limit": base.Resources.Limits}
		got, b := list[kind][corev1.ResourceMemory], baseList[kind][corev1.ResourceMemory]
		if got.Value() < b.Value()+budget.Value() {
			t.Errorf("overlay: memory %s %s is less than the base's %s plus --probe.max-bytes %s", kind, got.String(), b.String(), maxBytes)
		}
	}
}

// TestKustomizeOverlayBPF: the BPF overlay adds CAP_BPF and CAP_PERFMON and
// nothing else (never SYS_ADMIN), runs the image's binary that carries them
// as file capabilities, and requires the iterator (--collector.bpf=on); the
// rest of the base is kept.
func TestKustomizeOverlayBPF(t *testing.T) {
	r := render(t, "deploy/kubernetes/overlays/bpf")
	if len(r.daemonSets) != 1 {
		t.Fatalf("want one DaemonSet, got %d", len(r.daemonSets))
	}
	c := checkDaemonSet(t, r, r.daemonSets[0])
	checkResources(t, "bpf overlay", c, 0)
	sc := c.SecurityContext
	var added []string
	for _, a := range sc.Capabilities.Add {
		added = append(added, string(a))
	}
	slices.Sort(added)
	if !slices.Equal(added, []string{"BPF", "PERFMON"}) {
		t.Errorf("bpf overlay: capabilities added %v, want exactly BPF and PERFMON", added)
	}
	if len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("bpf overlay: drop %v, want ALL", sc.Capabilities.Drop)
	}
	if !slices.Equal(c.Command, []string{"/bin/memlock_exporter-bpf"}) {
		t.Errorf("bpf overlay: command %v, want [/bin/memlock_exporter-bpf]", c.Command)
	}
	if sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation {
		t.Error("bpf overlay: allowPrivilegeEscalation must be true, or the file capabilities of a non-root binary are ignored")
	}
	if !slices.Contains(c.Args, "--collector.bpf=on") {
		t.Errorf("bpf overlay: args lack --collector.bpf=on: %v", c.Args)
	}
	checkTracefs(t, "bpf overlay", r.daemonSets[0], c)
	checkArgs(t, c.Args)
	base := exporterContainer(t, render(t, "deploy/kubernetes").daemonSets[0])
	for _, a := range base.Args {
		if !slices.Contains(c.Args, a) {
			t.Errorf("bpf overlay: drops the base's %s", a)
		}
	}
	if slices.Contains(base.Args, "--collector.bpf=on") || base.Command != nil {
		t.Error("base: must not require BPF")
	}
}

// checkScraper: the ServiceMonitor's authorization is a Bearer token from
// a Secret in its namespace that Kubernetes fills with the token of a
// ServiceAccount (type kubernetes.io/service-account-token, naming it),
// and that ServiceAccount is bound to a ClusterRole allowing get on
// /metrics and nothing else.
func checkScraper(t *testing.T, r *rendered, sm monitoringv1.ServiceMonitor, auth *monitoringv1.SafeAuthorization) {
	t.Helper()
	if auth.Type != "Bearer" || auth.Credentials == nil || auth.Credentials.Key != "token" {
		t.Fatalf("ServiceMonitor authorization: want type Bearer with the key token of a Secret, got %+v", auth)
	}
	var sa string
	for _, s := range r.secrets {
		if s.Name == auth.Credentials.Name && s.Namespace == sm.Namespace {
			if s.Type != corev1.SecretTypeServiceAccountToken {
				t.Errorf("Secret %s: type %q, want %s", s.Name, s.Type, corev1.SecretTypeServiceAccountToken)
			}
			sa = s.Annotations[corev1.ServiceAccountNameKey]
		}
	}
	if sa == "" {
		t.Fatalf("no Secret %s naming a ServiceAccount in the ServiceMonitor's namespace %q", auth.Credentials.Name, sm.Namespace)
	}
	found := false
	for _, a := range r.serviceAccounts {
		found = found || a.Name == sa && a.Namespace == sm.Namespace
	}
	if !found {
		t.Errorf("the scraper Secret names ServiceAccount %s, which is not rendered in %s", sa, sm.Namespace)
	}
	var roles []string
	for _, b := range r.clusterBindings {
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == sm.Namespace {
				roles = append(roles, b.RoleRef.Name)
			}
		}
	}
	if len(roles) != 1 {
		t.Fatalf("ServiceAccount %s: bound to %v, want one ClusterRole", sa, roles)
	}
	for _, cr := range r.clusterRoles {
		if cr.Name != roles[0] {
			continue
		}
		if len(cr.Rules) != 1 || !slices.Equal(cr.Rules[0].NonResourceURLs, []string{"/metrics"}) || !slices.Equal(cr.Rules[0].Verbs, []string{"get"}) ||
			len(cr.Rules[0].Resources) != 0 || len(cr.Rules[0].APIGroups) != 0 {
			t.Errorf("ClusterRole %s: %+v, want get on /metrics only", cr.Name, cr.Rules)
		}
		return
	}
	t.Errorf("ClusterRole %s is not rendered", roles[0])
}

// checkTracefs: lock-call tracing's tracepoint ids reach the non-root
// exporter as a copy: an init container, uid 0 with every capability
// dropped (tracefs is root's alone: 0700, ids 0440), reads them through the
// read-only hostPath /sys into a memory emptyDir, which the exporter mounts
// read-only where --collector.lockcalls.tracefs points. No further host path.
func checkTracefs(t *testing.T, where string, ds appsv1.DaemonSet, c corev1.Container) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	dir := argValue(c.Args, "--collector.lockcalls.tracefs")
	var idsVol string
	for _, m := range c.VolumeMounts {
		if m.MountPath == dir {
			idsVol = m.Name
			if !m.ReadOnly {
				t.Errorf("%s: the tracepoint ids must be mounted read-only in the exporter", where)
			}
		}
	}
	if v, ok := vols[idsVol]; dir == "" || !ok || v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Fatalf("%s: --collector.lockcalls.tracefs=%q is not a memory emptyDir mounted in the exporter (%v)", where, dir, c.VolumeMounts)
	}
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%s: want one init container copying the tracepoint ids, got %d", where, len(spec.InitContainers))
	}
	ic := spec.InitContainers[0]
	sc := ic.SecurityContext
	if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: the init container must drop every capability, add none, and not escalate: %+v", where, sc)
	}
	writes, readsSys := false, false
	for _, m := range ic.VolumeMounts {
		v := vols[m.Name]
		switch {
		case m.Name == idsVol:
			writes = !m.ReadOnly
		case v.HostPath != nil && v.HostPath.Path == "/sys":
			readsSys = m.ReadOnly
		default:
			t.Errorf("%s: the init container mounts %s (%+v): want only the ids and the host's /sys", where, m.Name, v.VolumeSource)
		}
	}
	if !writes || !readsSys {
		t.Errorf("%s: the init container must write the ids' emptyDir and read the host's /sys read-only: %v", where, ic.VolumeMounts)
	}
	script := strings.Join(append(ic.Command, ic.Args...), " ")
	for _, e := range []string{"mlock", "mlock2", "mlockall", "mmap", "shmctl", "io_uring_register", "io_uring_setup", "setrlimit", "prlimit64"} {
		if !strings.Contains(script, " "+e+" ") && !strings.Contains(script, " "+e+";") {
			t.Errorf("%s: the init container does not copy sys_exit_%s's id", where, e)
		}
	}
}

// measuredPeakRSS is the largest peak RSS of docs/benchmarks.md, of either path
// (make bench: VmHWM of the exporter at 1,000 and 10,000 processes).
func measuredPeakRSS(t *testing.T) int64 {
	t.Helper()
	var peak float64
	for _, m := range regexp.MustCompile(`\| ([0-9.]+) MiB \|\n`).FindAllSubmatch(readFile(t, "docs/benchmarks.md"), -1) {
		v, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			t.Fatal(err)
		}
		peak = max(peak, v)
	}
	if peak == 0 {
		t.Fatal("docs/benchmarks.md: no exporter peak RSS column found")
	}
	return int64(peak * (1 << 20))
}

// checkResources holds the exporter's memory to measured numbers: the
// request covers the benchmark's peak RSS plus the probes' budget, and the
// limit is neither below the request nor far above it (at most 2.5 times),
// so that the scheduler reserves about what the pod uses.
func checkResources(t *testing.T, name string, c corev1.Container, probeBudget int64) {
	t.Helper()
	req, lim := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
	peak := measuredPeakRSS(t) + probeBudget
	if req.Value() < peak {
		t.Errorf("%s: memory request %s is below the measured peak %d MiB (docs/benchmarks.md plus the probe budget)", name, req.String(), peak>>20)
	}
	if lim.Value() < req.Value() || float64(lim.Value()) > 2.5*float64(req.Value()) {
		t.Errorf("%s: memory limit %s must be between the request %s and 2.5 times it", name, lim.String(), req.String())
	}
}

// checkArgs runs the exporter with the container's arguments and --help:
// kingpin rejects an unknown flag or a bad value (a size, a duration)
// before it prints the help, so exit status 0 means the exporter accepts
// every argument the manifest passes.
func checkArgs(t *testing.T, args []string) {
	t.Helper()
	bin, err := buildExporter()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append(slices.Clone(args), "--help")...).CombinedOutput()
	if err != nil {
		t.Errorf("memlock_exporter %s --help: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkDaemonSet asserts what base and overlay share and returns the
// exporter's container.
func checkDaemonSet(t *testing.T, r *rendered, ds appsv1.DaemonSet) corev1.Container {
	t.Helper()
	ns := r.namespaces[0].Name
	if ds.Namespace != ns {
		t.Errorf("DaemonSet in namespace %q, not %q", ds.Namespace, ns)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID must be true: pids in labels are the host's")
	}
	if spec.HostNetwork {
		t.Error("hostNetwork is not needed: the proxy listens on the pod IP")
	}
	// /proc/sysvipc/shm shows the reader's IPC namespace (issue 9.2).
	if !spec.HostIPC {
		t.Error("hostIPC must be true: /proc/sysvipc/shm lists only the reader's IPC namespace's segments")
	}
	// system-node-critical is the kubelet's own class (static pods, CNI);
	// a monitoring agent is a cluster add-on.
	if spec.PriorityClassName != "system-cluster-critical" {
		t.Errorf("priorityClassName %q, want system-cluster-critical (as kube-prometheus' node-exporter)", spec.PriorityClassName)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the exporter needs no API token: automountServiceAccountToken must be false")
	}
	if !slices.ContainsFunc(r.serviceAccounts, func(a corev1.ServiceAccount) bool { return a.Name == spec.ServiceAccountName }) ||
		strings.HasSuffix(spec.ServiceAccountName, "-scraper") {
		t.Errorf("serviceAccountName %q: want the pod's own ServiceAccount, rendered beside it (not the scraper's)", spec.ServiceAccountName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Error("a toleration {operator: Exists} is needed to run on every node")
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Fatal("pod securityContext.runAsNonRoot must be true")
	}
	if psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("pod securityContext.runAsUser must be a fixed non-zero uid")
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile must be RuntimeDefault")
	}

	if len(spec.Containers) != 2 {
		t.Fatalf("want two containers, the exporter and kube-rbac-proxy, got %d", len(spec.Containers))
	}
	c := exporterContainer(t, ds)
	checkArgs(t, c.Args)
	proxy := checkProxy(t, r, ds, c)
	checkImages(t, r, ds)
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Fatal("readOnlyRootFilesystem must be true")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the container must not be privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatal("capabilities.drop must be [ALL]")
	}

	// Host /proc and /sys, read-only, where the flags point, and no other
	// host path (the bpf overlay's tracepoint ids are an emptyDir).
	vols := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			vols[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("volume mount %s must be read-only", m.MountPath)
		}
		if _, host := vols[m.Name]; !host {
			continue // an emptyDir (the bpf overlay's tracepoint ids): no host access
		}
		mounts[vols[m.Name]] = m.MountPath
	}
	want := map[string]string{"/proc": "/host/proc", "/sys": "/host/sys"}
	if len(vols) != len(want) || !maps.Equal(mounts, want) {
		t.Errorf("want exactly the host paths mounted %v, got volumes %v mounted %v", want, vols, mounts)
	}
	if argValue(c.Args, "--path.procfs") != "/host/proc" || argValue(c.Args, "--path.sysfs") != "/host/sys" {
		t.Errorf("--path.procfs and --path.sysfs must point at /host/proc and /host/sys: %v", c.Args)
	}

	// Health checks on the exporter's endpoints.
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/-/healthy" {
		t.Error("livenessProbe must GET /-/healthy")
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/-/ready" {
		t.Error("readinessProbe must GET /-/ready")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("no %s limit", res)
		}
	}

	// Service -> pods -> the proxy's port, and ServiceMonitor -> Service
	// -> port. The exporter's own container exposes nothing.
	if len(c.Ports) != 0 {
		t.Errorf("the exporter's container must expose no port (it listens on loopback): %v", c.Ports)
	}
	port := ""
	for _, p := range proxy.Ports {
		if p.ContainerPort == 9947 {
			port = p.Name
		}
	}
	if port == "" {
		t.Fatal("the kube-rbac-proxy container must expose 9947 by name")
	}
	for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if pr.HTTPGet.Scheme != corev1.URISchemeHTTPS || pr.HTTPGet.Port.IntValue() != 9947 {
			t.Errorf("health check %s must go through the proxy: HTTPS to port number 9947 (a name is looked up in the exporter's own ports), got %s %s", pr.HTTPGet.Path, pr.HTTPGet.Scheme, pr.HTTPGet.Port.String())
		}
	}
	svc := r.services[0]
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Error("the Service must be headless (clusterIP: None)")
	}
	if !selects(svc.Spec.Selector, ds.Spec.Template.Labels) || !selects(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Error("the Service's and the DaemonSet's selectors must select the pod template's labels")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != port {
		t.Errorf("the Service must target the port named %q", port)
	}
	sm := r.serviceMonitors[0]
	if !selects(sm.Spec.Selector.MatchLabels, svc.Labels) {
		t.Error("the ServiceMonitor's selector must select the Service")
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name {
		t.Fatal("the ServiceMonitor must scrape the Service's port by name")
	}
	ep := sm.Spec.Endpoints[0]
	//lint:ignore SA1019 bearerTokenFile is deprecated: it must be unset
	if ep.Scheme == nil || *ep.Scheme != "https" || ep.BearerTokenFile != "" || ep.Authorization == nil {
		t.Error("the ServiceMonitor must scrape over https with authorization, not the deprecated bearerTokenFile (kube-rbac-proxy authenticates the token)")
	} else {
		checkScraper(t, r, sm, ep.Authorization)
	}
	// The job label comes from the Service's name label: the job matched by
	// MemlockExporterDown (up{job=~".*memlock.*"}).
	if sm.Spec.JobLabel != "app.kubernetes.io/name" || !strings.Contains(svc.Labels[sm.Spec.JobLabel], "memlock") {
		t.Errorf("ServiceMonitor jobLabel %q (Service label value %q): want app.kubernetes.io/name, whose value contains memlock", sm.Spec.JobLabel, svc.Labels[sm.Spec.JobLabel])
	}
	checkNetworkPolicy(t, r, ds, port)
	checkNamespace(t, r, ds)
	checkLabels(t, r, ds)
	return c
}

func exporterContainer(t *testing.T, ds appsv1.DaemonSet) corev1.Container {
	t.Helper()
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "memlock-exporter" {
			return c
		}
	}
	t.Fatal("no container named memlock-exporter")
	return corev1.Container{}
}

// checkProxy: kube-rbac-proxy in front of an exporter that listens on the
// pod's loopback only, passing nothing but the health checks without a
// token, with the only service account token in the pod.
func checkProxy(t *testing.T, r *rendered, ds appsv1.DaemonSet, exporter corev1.Container) corev1.Container {
	t.Helper()
	var proxy corev1.Container
	for _, c := range ds.Spec.Template.Spec.Containers {
		if c.Name == "kube-rbac-proxy" {
			proxy = c
		}
	}
	if !strings.HasPrefix(proxy.Image, "quay.io/brancz/kube-rbac-proxy:") {
		t.Fatalf("no kube-rbac-proxy container (quay.io/brancz/kube-rbac-proxy) in the pod")
	}
	listen := argValue(exporter.Args, "--web.listen-address")
	if !strings.HasPrefix(listen, "127.0.0.1:") {
		t.Errorf("the exporter listens on %q: it must listen on loopback only, behind the proxy", listen)
	}
	if up := argValue(proxy.Args, "--upstream"); up != "http://"+listen+"/" {
		t.Errorf("kube-rbac-proxy --upstream=%s, want http://%s/", up, listen)
	}
	if hasArgPrefix(proxy.Args, "--insecure-listen-address") || !hasArgPrefix(proxy.Args, "--secure-listen-address=") {
		t.Error("kube-rbac-proxy must listen with TLS only (--secure-listen-address)")
	}
	// Paths passed without authentication: the health checks, nothing else.
	if ignored := argValue(proxy.Args, "--ignore-paths"); ignored != "" {
		for _, p := range strings.Split(ignored, ",") {
			if p != "/-/healthy" && p != "/-/ready" {
				t.Errorf("kube-rbac-proxy --ignore-paths passes %q without authentication; only /-/healthy and /-/ready may be", p)
			}
		}
	}
	if allowed := argValue(proxy.Args, "--allow-paths"); allowed != "" {
		for _, p := range strings.Split(allowed, ",") {
			if p != "/metrics" && p != "/-/healthy" && p != "/-/ready" {
				t.Errorf("kube-rbac-proxy --allow-paths allows %q", p)
			}
		}
	}
	psc := ds.Spec.Template.Spec.SecurityContext
	sc := proxy.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Error("kube-rbac-proxy: want allowPrivilegeEscalation false, a read-only root, every capability dropped and none added")
	}
	if sc == nil || sc.RunAsUser == nil || psc.RunAsUser == nil || *sc.RunAsUser == *psc.RunAsUser || *sc.RunAsUser == 0 {
		t.Error("kube-rbac-proxy must run as a non-root uid other than the exporter's, so the exporter cannot read its token through /proc/<pid>/root")
	}
	// The token: projected into the proxy alone.
	tokenVolumes := map[string]bool{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Projected != nil && slices.ContainsFunc(v.Projected.Sources, func(s corev1.VolumeProjection) bool { return s.ServiceAccountToken != nil }) {
			tokenVolumes[v.Name] = true
		}
	}
	mounted := func(c corev1.Container) bool {
		return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return tokenVolumes[m.Name] })
	}
	if !mounted(proxy) {
		t.Error("kube-rbac-proxy needs a service account token (TokenReview, SubjectAccessReview): project one into its container")
	}
	if mounted(exporter) {
		t.Error("the exporter's container must not mount the service account token")
	}
	// RBAC: exactly what the proxy needs, bound to the pod's account.
	var cr rbacv1.ClusterRole
	var crb rbacv1.ClusterRoleBinding
	for _, b := range r.clusterBindings {
		if len(b.Subjects) == 1 && b.Subjects[0].Name == ds.Spec.Template.Spec.ServiceAccountName {
			crb = b
		}
	}
	for _, c := range r.clusterRoles {
		if c.Name == crb.RoleRef.Name {
			cr = c
		}
	}
	var granted []string
	for _, rule := range cr.Rules {
		for _, res := range rule.Resources {
			for _, v := range rule.Verbs {
				granted = append(granted, strings.Join(rule.APIGroups, ",")+"/"+res+":"+v)
			}
		}
		if len(rule.NonResourceURLs) != 0 {
			t.Errorf("ClusterRole %s grants non-resource URLs %v", cr.Name, rule.NonResourceURLs)
		}
	}
	slices.Sort(granted)
	if want := []string{"authentication.k8s.io/tokenreviews:create", "authorization.k8s.io/subjectaccessreviews:create"}; !slices.Equal(granted, want) {
		t.Errorf("ClusterRole %s grants %v, want exactly %v", cr.Name, granted, want)
	}
	if crb.RoleRef.Name != cr.Name || len(crb.Subjects) != 1 || crb.Subjects[0].Kind != "ServiceAccount" ||
		crb.Subjects[0].Name != ds.Spec.Template.Spec.ServiceAccountName || crb.Subjects[0].Namespace != ds.Namespace {
		t.Errorf("ClusterRoleBinding %s must bind %s to the DaemonSet's service account only: %+v", crb.Name, cr.Name, crb)
	}
	return proxy
}

// checkImages: every image at a fixed version tag (never :latest, never
// untagged) pulled IfNotPresent, and the exporter's tag is the version in
// app.kubernetes.io/version.
func checkImages(t *testing.T, r *rendered, ds appsv1.DaemonSet) {
	t.Helper()
	version := regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)
	for _, c := range ds.Spec.Template.Spec.Containers {
		name, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
		if !ok || !version.MatchString(tag) {
			t.Errorf("container %s: image %q must carry a version tag vX.Y.Z, not :latest or none", c.Name, c.Image)
			continue
		}
		if c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("container %s: imagePullPolicy %q, want IfNotPresent for a fixed tag", c.Name, c.ImagePullPolicy)
		}
		if name == "memlock_exporter" {
			if v := ds.Spec.Template.Labels["app.kubernetes.io/version"]; "v"+v != tag {
				t.Errorf("pod label app.kubernetes.io/version %q does not match the image tag %q", v, tag)
			}
		}
	}
}

// checkNetworkPolicy: the pods admit connections to the proxy's port from
// Prometheus pods only.
func checkNetworkPolicy(t *testing.T, r *rendered, ds appsv1.DaemonSet, port string) {
	t.Helper()
	np := r.networkPolicies[0]
	if np.Namespace != ds.Namespace || !selects(np.Spec.PodSelector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("NetworkPolicy %s must select the DaemonSet's pods", np.Name)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("NetworkPolicy %s must restrict Ingress", np.Name)
	}
	if len(np.Spec.Ingress) == 0 {
		t.Fatalf("NetworkPolicy %s admits nothing, not even Prometheus", np.Name)
	}
	for _, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 {
			t.Errorf("NetworkPolicy %s: an ingress rule without from admits every pod", np.Name)
		}
		for _, from := range rule.From {
			if from.IPBlock != nil || from.PodSelector == nil || from.PodSelector.MatchLabels["app.kubernetes.io/name"] != "prometheus" {
				t.Errorf("NetworkPolicy %s admits %+v; want Prometheus pods (app.kubernetes.io/name: prometheus) only", np.Name, from)
			}
		}
		if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.String() != port {
			t.Errorf("NetworkPolicy %s must open the proxy's port %q only", np.Name, port)
		}
	}
}

// checkNamespace: the Pod Security level the pod needs. hostPID, hostIPC,
// hostPath volumes, added capabilities outside baseline's list and
// privilege escalation all need "privileged"; the namespace must say so
// for enforce, warn and audit (or every apply warns).
func checkNamespace(t *testing.T, r *rendered, ds appsv1.DaemonSet) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	need := "baseline"
	if spec.HostPID || spec.HostIPC || spec.HostNetwork || slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.HostPath != nil }) {
		need = "privileged"
	}
	ns := r.namespaces[0]
	for _, mode := range []string{"enforce", "warn", "audit"} {
		if got := ns.Labels["pod-security.kubernetes.io/"+mode]; got != need {
			t.Errorf("namespace %s: pod-security.kubernetes.io/%s=%q, the pod needs %q", ns.Name, mode, got, need)
		}
	}
}

// checkLabels: the recommended labels on every object and the pod.
func checkLabels(t *testing.T, r *rendered, ds appsv1.DaemonSet) {
	t.Helper()
	want := []string{"app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component", "app.kubernetes.io/version"}
	check := func(id string, labels map[string]string) {
		for _, k := range want {
			if labels[k] == "" {
				t.Errorf("%s: no label %s", id, k)
			}
		}
	}
	for id, l := range r.labels {
		check(id, l)
	}
	check("pod template", ds.Spec.Template.Labels)
	for k := range ds.Spec.Selector.MatchLabels {
		if k == "app.kubernetes.io/version" {
			t.Error("the DaemonSet's selector is immutable: app.kubernetes.io/version must stay out of it")
		}
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func argValue(args []string, flag string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

func hasArgPrefix(args []string, prefix string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
}
