package linux

import "strings"

// CgroupIdentity is the container and Kubernetes pod identity that a cgroup
// path carries. Every field is empty when the path does not say.
type CgroupIdentity struct {
	// PodUID is the pod's metadata.uid with dashes (kube-state-metrics'
	// kube_pod_info{uid}); for a static pod, the 32-hex-digit hash the
	// kubelet gives it.
	PodUID string
	// ContainerID is the 64-hex-digit id of the container, as the runtime
	// and the pod's status (after "containerd://", "cri-o://", "docker://")
	// name it.
	ContainerID string
	// QOSClass is the pod's QoS class as the Kubernetes API spells it:
	// Guaranteed, Burstable or BestEffort.
	QOSClass string
}

// The QoS classes, spelled as in the Kubernetes API (v1.PodQOSClass) and in
// kube-state-metrics' kube_pod_status_qos_class{qos_class}.
const (
	QOSGuaranteed = "Guaranteed"
	QOSBurstable  = "Burstable"
	QOSBestEffort = "BestEffort"
)

// ParseCgroupPath derives container and pod identity from a cgroup path (as
// in /proc/<pid>/cgroup or below a cgroup mount). It never allocates except
// to turn a systemd-escaped pod uid back into its dashed form.
//
// Kubernetes (kubelet, pkg/kubelet/cm): pods live under the "kubepods"
// cgroup, Burstable and BestEffort ones under a QoS cgroup "burstable" or
// "besteffort" (qos_container_manager_linux.go), Guaranteed ones directly;
// a pod's cgroup is "pod" + uid (pod_container_manager_linux.go). The
// cgroupfs driver uses these names as they are:
//
//	/kubepods/burstable/pod<uid>/<container id>
//	/kubepods/pod<uid>/<container id>
//
// the systemd driver (cgroup_manager_linux.go, CgroupName.ToSystemd) joins
// them with "-" into nested slices, with the uid's "-" escaped to "_":
//
//	/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/<runtime scope>
//	/kubepods.slice/kubepods-pod<uid_>.slice/<runtime scope>
//
// A kubelet --cgroup-root adds a prefix ("/kubelet/kubepods/...",
// "kubelet-kubepods-burstable-pod<uid_>.slice"), and a reader in another
// cgroup namespace sees "/../.." in front: both are accepted.
//
// A container's cgroup, below its pod or anywhere for plain docker, podman
// or containerd, is named by its runtime:
//
//	cri-containerd-<id>.scope      containerd's CRI plugin, systemd driver
//	crio-<id>.scope, crio-<id>     CRI-O, systemd and cgroupfs
//	docker-<id>.scope              docker (and cri-dockerd), systemd driver
//	libpod-<id>.scope, libpod-<id> podman, systemd and cgroupfs
//	<id>                           containerd, docker (/docker/<id>), cri-dockerd with cgroupfs
//
// where <id> is 64 hex digits (cAdvisor's containerd and docker handlers
// match the same). The runtimes' monitor processes (CRI-O's
// crio-conmon-<id>, podman's libpod-conmon-<id>) are not the container:
// they get the pod's identity only. Below a pod, the first container cgroup
// names the container (deeper cgroups, such as CRI-O's ".../container" or
// a container's own sub-cgroups, belong to it); outside a pod, the
// innermost one does (docker in docker, or a kind node's own containers).
func ParseCgroupPath(path string) CgroupIdentity {
	var id CgroupIdentity
	var prev, prev2 string // the two components before the current one
	inPod := false
	for path != "" {
		var c string
		if i := strings.IndexByte(path, '/'); i >= 0 {
			c, path = path[:i], path[i+1:]
		} else {
			c, path = path, ""
		}
		if c == "" {
			continue
		}
		if !inPod {
			if uid, qos, ok := podComponent(c, prev, prev2); ok {
				id = CgroupIdentity{PodUID: uid, QOSClass: qos}
				inPod = true
			} else if qos, ok := qosComponent(c, prev); ok {
				id.QOSClass = qos
			} else if cid, ok := containerComponent(c); ok {
				id.ContainerID = cid
			}
		} else if cid, ok := containerComponent(c); ok {
			id.ContainerID = cid
			return id
		}
		prev2, prev = prev, c
	}
	return id
}

// podComponent recognises a pod's cgroup, given the one or two components
// above it (the cgroupfs driver's QoS and "kubepods" cgroups).
func podComponent(c, parent, grandparent string) (uid, qos string, ok bool) {
	if base, isSlice := strings.CutSuffix(c, ".slice"); isSlice {
		i := strings.LastIndex(base, "-pod")
		if i < 0 {
			return "", "", false
		}
		qos, ok = systemdQOS(base[:i])
		if !ok {
			return "", "", false
		}
		uid = base[i+len("-pod"):]
		if !validPodUID(uid, '_') {
			return "", "", false
		}
		return strings.ReplaceAll(uid, "_", "-"), qos, true
	}
	uid, isPod := strings.CutPrefix(c, "pod")
	if !isPod || !validPodUID(uid, '-') {
		return "", "", false
	}
	switch {
	case parent == "kubepods":
		return uid, QOSGuaranteed, true
	case grandparent == "kubepods" && parent == "burstable":
		return uid, QOSBurstable, true
	case grandparent == "kubepods" && parent == "besteffort":
		return uid, QOSBestEffort, true
	}
	return "", "", false
}

// systemdQOS maps the slice name before "-pod<uid>" to the QoS class:
// "kubepods" is Guaranteed, "kubepods-burstable" and "kubepods-besteffort"
// the others, each possibly after a --cgroup-root prefix ("kubelet-").
func systemdQOS(prefix string) (string, bool) {
	for _, q := range [...]struct{ suffix, class string }{
		{"kubepods-burstable", QOSBurstable},
		{"kubepods-besteffort", QOSBestEffort},
		{"kubepods", QOSGuaranteed},
	} {
		if before, ok := strings.CutSuffix(prefix, q.suffix); ok && (before == "" || before[len(before)-1] == '-') {
			return q.class, true
		}
	}
	return "", false
}

// qosComponent recognises the QoS cgroup of Burstable and BestEffort pods.
func qosComponent(c, parent string) (string, bool) {
	if base, isSlice := strings.CutSuffix(c, ".slice"); isSlice {
		if q, ok := systemdQOS(base); ok && q != QOSGuaranteed {
			return q, true
		}
		return "", false
	}
	if parent != "kubepods" {
		return "", false
	}
	switch c {
	case "burstable":
		return QOSBurstable, true
	case "besteffort":
		return QOSBestEffort, true
	}
	return "", false
}

// validPodUID accepts a UUID (36 characters with four dashes, here written
// as sep) or a static pod's 32 hex digits.
func validPodUID(s string, sep byte) bool {
	switch len(s) {
	case 32:
		return isLowerHex(s)
	case 36:
		for i := 0; i < len(s); i++ {
			switch i {
			case 8, 13, 18, 23:
				if s[i] != sep {
					return false
				}
			default:
				if !isLowerHexByte(s[i]) {
					return false
				}
			}
		}
		return true
	}
	return false
}

// containerComponent returns the container id a runtime's cgroup name holds.
func containerComponent(c string) (string, bool) {
	c = strings.TrimSuffix(c, ".scope")
	for _, p := range [...]string{"cri-containerd-", "crio-", "docker-", "libpod-"} {
		if rest, ok := strings.CutPrefix(c, p); ok {
			c = rest
			break
		}
	}
	// crio-conmon-<id>, libpod-conmon-<id> fail here: "conmon-" is no hex.
	if len(c) != 64 || !isLowerHex(c) {
		return "", false
	}
	return c, true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isLowerHexByte(s[i]) {
			return false
		}
	}
	return true
}

func isLowerHexByte(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
