package collector

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCgroupProcessGolden: process metrics carry the identity of the
// process's cgroup, on each fixture tree of cgroup_test.go.
func TestCgroupProcessGolden(t *testing.T) {
	for _, tree := range cgroupTrees {
		t.Run(tree, func(t *testing.T) {
			cgroupGolden(t, cgroupTreeConfig(tree), "process", "memlock_process_", filepath.Join("testdata", tree, "process.prom"))
		})
	}
}

// TestCgroupIdentityOnProcesses says in plain
// words: a containerized process's metrics carry its pod and container, on
// a v1 and a v2 host.
func TestCgroupIdentityOnProcesses(t *testing.T) {
	for tree, want := range map[string][]string{
		"cgroupv1": {
			`memlock_process_locked_bytes{comm="java",container_id="4e2b8f0a9c1d3e5f7a9b0c2d4e6f8a0b1c3d5e7f9a1b2c3d4e5f6a7b8c9d0e1f",pid="1001",pod_uid="7d3f1c9e-2b4a-4c8e-9f61-0a5b3e2d8c47",uid="1000"} 8.388608e+06`,
			`memlock_process_locked_bytes{comm="redis-server",container_id="3b1f9a6c2d8e4f7a0b5c9d1e3f6a8b2c4d7e9f0a1b3c5d8e2f4a6b9c1d3e5f7a",pid="1003",pod_uid="",uid="1000"} 2.097152e+06`,
		},
		"cgroupv2": {
			`memlock_process_locked_bytes{comm="vault",container_id="9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b",pid="1002",pod_uid="c2e4a6b8-1d3f-4a5c-9e7b-2f4d6a8c0e1b",uid="1000"} 2.097152e+06`,
			`memlock_process_locked_bytes{comm="chronyd",container_id="",pid="1004",pod_uid="",uid="1000"} 4.194304e+06`,
		},
	} {
		cfg := cgroupTreeConfig(tree)
		out := scrapeText(t, cfg, "process")
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: missing\n%s\nin\n%s", tree, w, out)
			}
		}
	}
}
