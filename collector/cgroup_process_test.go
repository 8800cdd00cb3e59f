package collector

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCgroupProcessGolden: process metrics carry the identity of the
// process's cgroup, on each fixture tree of cgroup_test.go.
func TestCgroupProcessGolden(t *testing.T) {
	for _, tree := range cgroupTrees {
		t.Run(tree, func(t *testing.T) {
			assertGolden(t, cgroupTreeConfig(tree), "process", "memlock_process_", filepath.Join("testdata", tree, "process.prom"))
		})
	}
}

// TestCgroupIdentityOnProcesses: a containerized process's metrics carry
// the pod and container its cgroup path names, on a v1 and a v2 host. The
// expected identity is what each fixture's /proc/<pid>/cgroup spells
// (checked below: the ids are in the memory line, dashed or
// systemd-escaped), the expected value the fixture's VmLck.
func TestCgroupIdentityOnProcesses(t *testing.T) {
	const (
		javaPod        = "7d3f1c9e-2b4a-4c8e-9f61-0a5b3e2d8c47"
		javaContainer  = "4e2b8f0a9c1d3e5f7a9b0c2d4e6f8a0b1c3d5e7f9a1b2c3d4e5f6a7b8c9d0e1f"
		vaultPod       = "c2e4a6b8-1d3f-4a5c-9e7b-2f4d6a8c0e1b"
		vaultContainer = "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b"
		redisContainer = "3b1f9a6c2d8e4f7a0b5c9d1e3f6a8b2c4d7e9f0a1b3c5d8e2f4a6b9c1d3e5f7a"
	)
	type identity struct{ pod, container string }
	for tree, want := range map[string]map[string]identity{
		"cgroupv1": {"1001": {javaPod, javaContainer}, "1002": {vaultPod, vaultContainer}, "1003": {"", redisContainer}},
		"cgroupv2": {"1001": {javaPod, javaContainer}, "1002": {vaultPod, vaultContainer}, "1003": {"", redisContainer}, "1004": {"", ""}},
	} {
		cfg := cgroupTreeConfig(tree)
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(newExporter(t, cfg, "process"))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]map[string]string{}
		value := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "memlock_process_locked_bytes" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				got[l["pid"]], value[l["pid"]] = l, m.GetGauge().GetValue()
			}
		}
		for pid, id := range want {
			dir := filepath.Join(cfg.ProcPath, pid)
			cg, err := os.ReadFile(filepath.Join(dir, "cgroup"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(cg), id.container) ||
				!strings.Contains(string(cg), id.pod) && !strings.Contains(string(cg), strings.ReplaceAll(id.pod, "-", "_")) {
				t.Fatalf("%s pid %s: the fixture's cgroup file does not name %+v:\n%s", tree, pid, id, cg)
			}
			l, ok := got[pid]
			if !ok {
				t.Errorf("%s: pid %s not reported", tree, pid)
				continue
			}
			if l["pod_uid"] != id.pod || l["container_id"] != id.container {
				t.Errorf("%s pid %s: pod_uid %q container_id %q, want %q %q", tree, pid, l["pod_uid"], l["container_id"], id.pod, id.container)
			}
			if want := vmLckBytes(t, filepath.Join(dir, "status")); value[pid] != want {
				t.Errorf("%s pid %s: locked_bytes %v, the fixture's VmLck is %v", tree, pid, value[pid], want)
			}
		}
	}
}

// vmLckBytes reads the VmLck line of a status file in bytes.
func vmLckBytes(t *testing.T, path string) float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmLck:" && f[2] == "kB" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("%s: no VmLck line", path)
	return 0
}
