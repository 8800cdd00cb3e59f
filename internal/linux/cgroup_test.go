package linux

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func cgroupFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "cgroup", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pod uids and container ids of the fixtures. The ids are made up; their
// shapes are the real ones (a pod uid is a UUID, a container id 64 hex
// digits, a static pod's uid 32 hex digits).
const (
	uidBurstable  = "7d3f1c9e-2b4a-4c8e-9f61-0a5b3e2d8c47"
	uidBestEffort = "0f3c5e7a-9b1d-4f2e-8c6a-4d5e6f7a8b9c"
	uidGuaranteed = "c2e4a6b8-1d3f-4a5c-9e7b-2f4d6a8c0e1b"
	uidStatic     = "3f8e2c1a9b7d5e4f6a0c8b2d4e6f8a1c"
	ctrA          = "4e2b8f0a9c1d3e5f7a9b0c2d4e6f8a0b1c3d5e7f9a1b2c3d4e5f6a7b8c9d0e1f"
	ctrB          = "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b"
	ctrC          = "3b1f9a6c2d8e4f7a0b5c9d1e3f6a8b2c4d7e9f0a1b3c5d8e2f4a6b9c1d3e5f7a"
)

func systemdUID(uid string) string { return strings.ReplaceAll(uid, "-", "_") }

var cgroupPathCases = []struct {
	name string
	path string
	want CgroupIdentity
}{
	// kubelet, systemd driver: CgroupName{"kubepods","burstable","pod<uid>"}
	// .ToSystemd() in kubernetes pkg/kubelet/cm/cgroup_manager_linux.go, whose
	// doc comment gives exactly this example, "-" in the uid escaped to "_".
	{"systemd burstable pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uidBurstable) + ".slice",
		CgroupIdentity{PodUID: uidBurstable, QOSClass: QOSBurstable}},
	// containerd's CRI plugin with SystemdCgroup=true hands runc
	// "<pod slice>:cri-containerd:<id>", which runc's systemd driver turns
	// into the scope "cri-containerd-<id>.scope" (kubernetes'
	// SystemdPathPrefixOfRuntime maps containerd to "cri-containerd").
	{"systemd burstable containerd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uidBurstable) + ".slice/cri-containerd-" + ctrA + ".scope",
		CgroupIdentity{PodUID: uidBurstable, ContainerID: ctrA, QOSClass: QOSBurstable}},
	// Guaranteed pods sit directly under kubepods (qos_container_manager_linux.go).
	{"systemd guaranteed containerd", "/kubepods.slice/kubepods-pod" + systemdUID(uidGuaranteed) + ".slice/cri-containerd-" + ctrB + ".scope",
		CgroupIdentity{PodUID: uidGuaranteed, ContainerID: ctrB, QOSClass: QOSGuaranteed}},
	// CRI-O, systemd cgroup manager: "crio-<id>.scope"; its conmon goes to
	// "crio-conmon-<id>.scope" (cri-o internal/oci, createConmonUnitName),
	// which is not the container.
	{"systemd besteffort crio", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + systemdUID(uidBestEffort) + ".slice/crio-" + ctrA + ".scope",
		CgroupIdentity{PodUID: uidBestEffort, ContainerID: ctrA, QOSClass: QOSBestEffort}},
	{"systemd crio sub-cgroup", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + systemdUID(uidBestEffort) + ".slice/crio-" + ctrA + ".scope/container",
		CgroupIdentity{PodUID: uidBestEffort, ContainerID: ctrA, QOSClass: QOSBestEffort}},
	{"systemd crio conmon", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + systemdUID(uidBestEffort) + ".slice/crio-conmon-" + ctrA + ".scope",
		CgroupIdentity{PodUID: uidBestEffort, QOSClass: QOSBestEffort}},
	// cri-dockerd (formerly dockershim) with the systemd driver: docker's
	// own "docker-<id>.scope" below the pod slice.
	{"systemd docker", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uidBurstable) + ".slice/docker-" + ctrC + ".scope",
		CgroupIdentity{PodUID: uidBurstable, ContainerID: ctrC, QOSClass: QOSBurstable}},
	// Static (file) pods: the kubelet names them by an md5 of the manifest,
	// 32 hex digits (pkg/kubelet/config/common.go, generatePodUID).
	{"systemd static pod", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidStatic + ".slice/cri-containerd-" + ctrA + ".scope",
		CgroupIdentity{PodUID: uidStatic, ContainerID: ctrA, QOSClass: QOSBurstable}},
	// --cgroup-root=/kubelet: the root's name is prefixed to every slice.
	{"systemd cgroup root", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + systemdUID(uidBestEffort) + ".slice/cri-containerd-" + ctrA + ".scope",
		CgroupIdentity{PodUID: uidBestEffort, ContainerID: ctrA, QOSClass: QOSBestEffort}},
	// A kind node: the node is a docker container; its pods are inside.
	{"kind node pod", "/system.slice/docker-" + ctrC + ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod" + systemdUID(uidGuaranteed) + ".slice/cri-containerd-" + ctrA + ".scope",
		CgroupIdentity{PodUID: uidGuaranteed, ContainerID: ctrA, QOSClass: QOSGuaranteed}},
	// Read from inside another cgroup namespace, paths climb out with "..".
	{"cgroup namespace", "/../../kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uidBurstable) + ".slice/cri-containerd-" + ctrA + ".scope",
		CgroupIdentity{PodUID: uidBurstable, ContainerID: ctrA, QOSClass: QOSBurstable}},
	// QoS-level and node-level slices.
	{"systemd qos slice", "/kubepods.slice/kubepods-burstable.slice", CgroupIdentity{QOSClass: QOSBurstable}},
	{"systemd kubepods", "/kubepods.slice", CgroupIdentity{}},

	// kubelet, cgroupfs driver: CgroupName.ToCgroupfs() is "/" + the
	// components; docker (cri-dockerd) and containerd then name the
	// container's cgroup by its bare id.
	{"cgroupfs burstable", "/kubepods/burstable/pod" + uidBurstable + "/" + ctrA,
		CgroupIdentity{PodUID: uidBurstable, ContainerID: ctrA, QOSClass: QOSBurstable}},
	{"cgroupfs besteffort", "/kubepods/besteffort/pod" + uidBestEffort + "/" + ctrB,
		CgroupIdentity{PodUID: uidBestEffort, ContainerID: ctrB, QOSClass: QOSBestEffort}},
	{"cgroupfs guaranteed", "/kubepods/pod" + uidGuaranteed + "/" + ctrC,
		CgroupIdentity{PodUID: uidGuaranteed, ContainerID: ctrC, QOSClass: QOSGuaranteed}},
	{"cgroupfs pod only", "/kubepods/pod" + uidGuaranteed, CgroupIdentity{PodUID: uidGuaranteed, QOSClass: QOSGuaranteed}},
	{"cgroupfs qos", "/kubepods/besteffort", CgroupIdentity{QOSClass: QOSBestEffort}},
	// CRI-O with cgroup_manager = "cgroupfs": "<parent>/crio-<id>" and
	// "<parent>/crio-conmon-<id>" (cri-o internal/config/cgmgr/cgroupfs.go).
	{"cgroupfs crio", "/kubepods/burstable/pod" + uidBurstable + "/crio-" + ctrA,
		CgroupIdentity{PodUID: uidBurstable, ContainerID: ctrA, QOSClass: QOSBurstable}},
	{"cgroupfs crio conmon", "/kubepods/burstable/pod" + uidBurstable + "/crio-conmon-" + ctrA,
		CgroupIdentity{PodUID: uidBurstable, QOSClass: QOSBurstable}},
	{"cgroupfs cgroup root", "/kube/kubepods/burstable/pod" + uidBurstable + "/" + ctrA,
		CgroupIdentity{PodUID: uidBurstable, ContainerID: ctrA, QOSClass: QOSBurstable}},

	// Outside Kubernetes. docker, cgroupfs driver: /docker/<id>; systemd
	// driver: system.slice/docker-<id>.scope (moby daemon/cgroup driver
	// code; cAdvisor's docker handler matches both).
	{"docker cgroupfs", "/docker/" + ctrC, CgroupIdentity{ContainerID: ctrC}},
	{"docker systemd", "/system.slice/docker-" + ctrC + ".scope", CgroupIdentity{ContainerID: ctrC}},
	{"docker systemd init", "/system.slice/docker-" + ctrC + ".scope/init.scope", CgroupIdentity{ContainerID: ctrC}},
	{"docker in docker", "/docker/" + ctrC + "/docker/" + ctrA, CgroupIdentity{ContainerID: ctrA}},
	// containerd without the CRI (ctr, nerdctl), cgroupfs: /<namespace>/<id>.
	{"containerd namespace", "/default/" + ctrA, CgroupIdentity{ContainerID: ctrA}},
	// podman: machine.slice/libpod-<id>.scope (rootful, systemd),
	// libpod_parent/libpod-<id> (cgroupfs), rootless under the user's
	// systemd; conmon in libpod-conmon-<id>.scope.
	{"podman systemd", "/machine.slice/libpod-" + ctrB + ".scope", CgroupIdentity{ContainerID: ctrB}},
	{"podman cgroupfs", "/libpod_parent/libpod-" + ctrB, CgroupIdentity{ContainerID: ctrB}},
	{"podman rootless", "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + ctrB + ".scope/container", CgroupIdentity{ContainerID: ctrB}},
	{"podman conmon", "/machine.slice/libpod-conmon-" + ctrB + ".scope", CgroupIdentity{}},

	// Not containers.
	{"root", "/", CgroupIdentity{}},
	{"empty", "", CgroupIdentity{}},
	{"service", "/system.slice/sshd.service", CgroupIdentity{}},
	{"user session", "/user.slice/user-0.slice/session-3.scope", CgroupIdentity{}},
	{"this machine", "/process_api/a61cb78488ea7f1ad78d1f206ba22f52", CgroupIdentity{}},
	{"short id", "/docker/" + ctrC[:12], CgroupIdentity{}},
	{"upper-case id", "/docker/" + strings.ToUpper(ctrC), CgroupIdentity{}},
	{"pod outside kubepods", "/pod" + uidBurstable + "/" + ctrA, CgroupIdentity{ContainerID: ctrA}},
	{"bad uid", "/kubepods.slice/kubepods-podnot_a_uid.slice/cri-containerd-" + ctrA + ".scope", CgroupIdentity{ContainerID: ctrA}},
	{"slice not kubepods", "/kubepodsx.slice/kubepodsx-pod" + systemdUID(uidBurstable) + ".slice", CgroupIdentity{}},
	{"dashed uid in slice", "/kubepods.slice/kubepods-pod" + uidBurstable + ".slice", CgroupIdentity{}},
}

func TestParseCgroupPath(t *testing.T) {
	for _, tc := range cgroupPathCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseCgroupPath(tc.path); got != tc.want {
				t.Errorf("ParseCgroupPath(%q)\n got %+v\nwant %+v", tc.path, got, tc.want)
			}
		})
	}
}

func TestParseCgroupPathAllocs(t *testing.T) {
	cgroupfs := "/kubepods/burstable/pod" + uidBurstable + "/" + ctrA
	if n := testing.AllocsPerRun(100, func() { ParseCgroupPath(cgroupfs) }); n != 0 {
		t.Errorf("cgroupfs path: %v allocations, want 0", n)
	}
	systemd := cgroupPathCases[1].path
	if n := testing.AllocsPerRun(100, func() { ParseCgroupPath(systemd) }); n > 1 {
		t.Errorf("systemd path: %v allocations, want at most 1 (the unescaped uid)", n)
	}
}

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		file string
		want string
	}{
		// This machine (cgroup v1 with a v2 "unified" mount, hybrid): the
		// memory line wins over "0::/" and name=systemd.
		{"proc_v1_hybrid.txt", "/process_api/a61cb78488ea7f1ad78d1f206ba22f52"},
		{"proc_v1_kubepods_cgroupfs.txt", "/kubepods/besteffort/pod" + uidBestEffort + "/" + ctrB},
		{"proc_v1_docker_systemd.txt", "/system.slice/docker-" + ctrC + ".scope"},
		{"proc_v2_kubepods_systemd.txt", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + systemdUID(uidBurstable) + ".slice/cri-containerd-" + ctrA + ".scope"},
		{"proc_v2_deleted.txt", "/system.slice/libpod-5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a7c.scope/container"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseProcCgroup(cgroupFixture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, in, want string }{
		{"systemd only", "1:name=systemd:/user.slice\n", "/user.slice"},
		{"unified over systemd", "1:name=systemd:/a\n0::/b\n", "/b"},
		{"memory among several", "3:cpu,memory,blkio:/m\n0::/u\n", "/m"},
		{"colon in path", "0::/a:b\n", "/a:b"},
		{"no trailing newline", "0::/x", "/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProcCgroup([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, in := range []string{"", "\n", "0:/x\n", "nonsense\n", "x::/a\n", "0::\n", "2:cpu:/a\n", "4:memoryx:/a\n"} {
		if _, err := ParseProcCgroup([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseProcCgroup(%q): %v, want ErrMalformed", in, err)
		}
	}
	b := cgroupFixture(t, "proc_v1_kubepods_cgroupfs.txt")
	if n := testing.AllocsPerRun(100, func() { ParseProcCgroup(b) }); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

func TestParseMemoryStat(t *testing.T) {
	for _, tc := range []struct {
		file string
		want MemoryStat
		hier uint64
	}{
		// This machine's v1 root, and a v1 parent cgroup with no processes of
		// its own (local unevictable 0) whose children lock 8 MiB: total_
		// lines are hierarchical, the others local.
		{"memory_stat_v1_root.txt", MemoryStat{Unevictable: 15085568, TotalUnevictable: 15085568, HasTotal: true}, 15085568},
		{"memory_stat_v1.txt", MemoryStat{TotalUnevictable: 8 << 20, HasTotal: true}, 8 << 20},
		{"memory_stat_v2.txt", MemoryStat{Unevictable: 8 << 20}, 8 << 20},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var got MemoryStat
			if err := ParseMemoryStat(cgroupFixture(t, tc.file), &got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want || got.Hierarchical() != tc.hier {
				t.Errorf("got %+v (hierarchical %d), want %+v (%d)", got, got.Hierarchical(), tc.want, tc.hier)
			}
		})
	}
	var s MemoryStat
	for _, in := range []string{"", "anon 1\n", "unevictable\n", "unevictable x\n", "unevictable 1 2\n",
		"unevictable 99999999999999999999999\n", "unevictable 1\ntotal_unevictable -1\n"} {
		if err := ParseMemoryStat([]byte(in), &s); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseMemoryStat(%q): %v, want ErrMalformed", in, err)
		}
	}
	b := cgroupFixture(t, "memory_stat_v2.txt")
	if n := testing.AllocsPerRun(100, func() { ParseMemoryStat(b, &s) }); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

func TestParseCgroupMemoryValue(t *testing.T) {
	for in, want := range map[string]uint64{
		"max\n":                 Unlimited,
		"1073741824\n":          1 << 30,
		"0\n":                   0,
		"9223372036854771712\n": 9223372036854771712,
		"  42  \n":              42,
	} {
		got, err := ParseCgroupMemoryValue([]byte(in))
		if err != nil || got != want {
			t.Errorf("ParseCgroupMemoryValue(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "\n", "maxx", "-1", "12 kB", "1.5"} {
		if _, err := ParseCgroupMemoryValue([]byte(in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCgroupMemoryValue(%q): %v, want ErrMalformed", in, err)
		}
	}
}

func TestCgroupV1Unlimited(t *testing.T) {
	// PAGE_COUNTER_MAX in bytes for 4, 16 and 64 KiB pages; then limits.
	for v, want := range map[uint64]bool{
		9223372036854771712: true,
		9223372036854759424: true,
		9223372036854710272: true,
		1 << 62:             false,
		8 << 30:             false,
	} {
		if got := CgroupV1Unlimited(v); got != want {
			t.Errorf("CgroupV1Unlimited(%d) = %v, want %v", v, got, want)
		}
	}
}

// The fuzz targets check that the parsers never panic, reject only with
// ErrMalformed, and that what ParseCgroupPath returns is well formed.

func FuzzParseCgroupPath(f *testing.F) {
	for _, tc := range cgroupPathCases {
		f.Add(tc.path)
	}
	for _, name := range []string{"proc_v1_hybrid.txt", "proc_v1_kubepods_cgroupfs.txt", "proc_v1_docker_systemd.txt",
		"proc_v2_kubepods_systemd.txt", "proc_v2_deleted.txt"} {
		if p, err := ParseProcCgroup(cgroupFixture(f, name)); err == nil {
			f.Add(string(p))
		}
	}
	f.Fuzz(func(t *testing.T, path string) {
		id := ParseCgroupPath(path)
		if id.ContainerID != "" && (len(id.ContainerID) != 64 || !isLowerHex(id.ContainerID)) {
			t.Fatalf("container id %q", id.ContainerID)
		}
		if id.PodUID != "" && !validPodUID(id.PodUID, '-') {
			t.Fatalf("pod uid %q", id.PodUID)
		}
		switch id.QOSClass {
		case "", QOSGuaranteed, QOSBurstable, QOSBestEffort:
		default:
			t.Fatalf("qos class %q", id.QOSClass)
		}
		if id.PodUID != "" && id.QOSClass == "" {
			t.Fatalf("pod %q without a QoS class", id.PodUID)
		}
	})
}

func FuzzParseProcCgroup(f *testing.F) {
	for _, name := range []string{"proc_v1_hybrid.txt", "proc_v1_kubepods_cgroupfs.txt", "proc_v1_docker_systemd.txt",
		"proc_v2_kubepods_systemd.txt", "proc_v2_deleted.txt"} {
		f.Add(cgroupFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProcCgroup(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(p) == 0 {
			t.Fatal("empty path without an error")
		}
	})
}

func FuzzParseMemoryStat(f *testing.F) {
	for _, name := range []string{"memory_stat_v1_root.txt", "memory_stat_v1.txt", "memory_stat_v2.txt"} {
		f.Add(cgroupFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s MemoryStat
		if err := ParseMemoryStat(b, &s); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error does not wrap ErrMalformed: %v", err)
		}
		if _, err := ParseCgroupMemoryValue(b); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error does not wrap ErrMalformed: %v", err)
		}
	})
}
