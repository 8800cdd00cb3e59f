package checks

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
	daemonSets      []appsv1.DaemonSet
	services        []corev1.Service
	serviceMonitors []monitoringv1.ServiceMonitor
	prometheusRules []monitoringv1.PrometheusRule
}

// render builds dir with kustomize's own engine (the one kubectl kustomize
// embeds) and decodes every object into its Go type, failing on unknown
// or duplicate fields and on kinds this test does not know.
func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), repoPath(dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := &rendered{}
	for _, r := range rm.Resources() {
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("%s %s/%s/%s", dir, r.GetApiVersion(), r.GetKind(), r.GetName())
		switch gvk := r.GetApiVersion() + " " + r.GetKind(); gvk {
		case "v1 Namespace":
			out.namespaces = append(out.namespaces, decodeStrict[corev1.Namespace](t, id, b))
		case "v1 ServiceAccount":
			out.serviceAccounts = append(out.serviceAccounts, decodeStrict[corev1.ServiceAccount](t, id, b))
		case "apps/v1 DaemonSet":
			out.daemonSets = append(out.daemonSets, decodeStrict[appsv1.DaemonSet](t, id, b))
		case "v1 Service":
			out.services = append(out.services, decodeStrict[corev1.Service](t, id, b))
		case "monitoring.coreos.com/v1 ServiceMonitor":
			out.serviceMonitors = append(out.serviceMonitors, decodeStrict[monitoringv1.ServiceMonitor](t, id, b))
		case "monitoring.coreos.com/v1 PrometheusRule":
			out.prometheusRules = append(out.prometheusRules, decodeStrict[monitoringv1.PrometheusRule](t, id, b))
		default:
			t.Errorf("%s: kind %q is not checked by this test; add it", id, gvk)
		}
	}
	return out
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
	if len(r.namespaces) != 1 || len(r.serviceAccounts) != 1 || len(r.daemonSets) != 1 ||
		len(r.services) != 1 || len(r.serviceMonitors) != 1 || len(r.prometheusRules) != 1 {
		t.Fatalf("want one of each object, got %d namespaces, %d service accounts, %d daemonsets, %d services, %d service monitors, %d prometheus rules",
			len(r.namespaces), len(r.serviceAccounts), len(r.daemonSets), len(r.services), len(r.serviceMonitors), len(r.prometheusRules))
	}
	ds := r.daemonSets[0]
	c := checkDaemonSet(t, r, ds)

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
	// Locked probe memory is charged to the container's memory limit.
	maxBytes := argValue(c.Args, "--probe.max-bytes")
	if maxBytes == "" {
		t.Fatal("overlay: set --probe.max-bytes explicitly, so the memory limit can be checked against it")
	}
	budget := resource.MustParse(strings.TrimSuffix(maxBytes, "B")) // 16MiB -> 16Mi
	lim := c.Resources.Limits[corev1.ResourceMemory]
	if lim.Value() < budget.Value()+64<<20 {
		t.Errorf("overlay: memory limit %s leaves less than 64 MiB beside --probe.max-bytes %s", lim.String(), maxBytes)
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
	if spec.HostNetwork || spec.HostIPC {
		t.Error("hostNetwork and hostIPC are not needed")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the exporter needs no API token: automountServiceAccountToken must be false")
	}
	if spec.ServiceAccountName != r.serviceAccounts[0].Name {
		t.Errorf("serviceAccountName %q, want %q", spec.ServiceAccountName, r.serviceAccounts[0].Name)
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

	if len(spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(spec.Containers))
	}
	c := spec.Containers[0]
	checkArgs(t, c.Args)
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

	// Host /proc and /sys, read-only, where the flags point.
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
		mounts[vols[m.Name]] = m.MountPath
	}
	if len(vols) != 2 || mounts["/proc"] != "/host/proc" || mounts["/sys"] != "/host/sys" {
		t.Errorf("want exactly the host's /proc at /host/proc and /sys at /host/sys, got volumes %v mounted %v", vols, mounts)
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

	// Service -> pods -> port, and ServiceMonitor -> Service -> port.
	port := ""
	for _, p := range c.Ports {
		if p.ContainerPort == 9947 {
			port = p.Name
		}
	}
	if port == "" {
		t.Fatal("the container must expose 9947 by name")
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
		t.Error("the ServiceMonitor must scrape the Service's port by name")
	}
	return c
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
