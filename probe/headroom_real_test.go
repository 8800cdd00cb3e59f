package probe

import (
	"os"
	"strings"
	"testing"
)

// TestCgroupHeadroomReal: on a host whose /proc/self/cgroup names a memory
// cgroup, the headroom finds that cgroup's directory through mountinfo
// (linux.FindCgroupMount) and reads its limit: CgroupKnown must be true.
func TestCgroupHeadroomReal(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil || !strings.Contains(string(b), "memory") && !strings.Contains(string(b), "0::") {
		t.Skip("no memory cgroup named in /proc/self/cgroup")
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		t.Skip("no /sys/fs/cgroup")
	}
	h := NewEnv("/proc", "").Headroom()
	if !h.CgroupKnown {
		t.Errorf("cgroup headroom unknown on a host with a memory cgroup:\n%s", b)
	}
}
