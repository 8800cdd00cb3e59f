package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNoMemoryController says a cgroup file system is there but the memory
// controller is not: a cgroup v2 root without "memory" in
// cgroup.controllers, or no v1 memory hierarchy.
var ErrNoMemoryController = errors.New("no memory cgroup controller")

// MemoryHierarchy is where the memory controller's cgroup hierarchy is
// mounted.
type MemoryHierarchy struct {
	Root string
	V2   bool
}

// FindMemoryHierarchy finds the memory controller below <sysPath>/fs/cgroup
// by the layouts systemd and the container runtimes mount: the unified
// hierarchy at the top (cgroup v2), the v1 memory hierarchy in memory/
// (pure v1, or hybrid with a controller-less v2 in unified/), or a hybrid
// whose unified/ hierarchy has the memory controller. Without a cgroup file
// system at all the error is the stat's. (The process's own cgroup, as its
// mount namespace sees it, is FindCgroupMount's question.)
func FindMemoryHierarchy(sysPath string) (MemoryHierarchy, error) {
	base := filepath.Join(sysPath, "fs", "cgroup")
	if b, err := os.ReadFile(filepath.Join(base, "cgroup.controllers")); err == nil {
		if hasField(string(b), "memory") {
			return MemoryHierarchy{Root: base, V2: true}, nil
		}
		return MemoryHierarchy{}, fmt.Errorf("%s: cgroup v2: %w", base, ErrNoMemoryController)
	}
	if _, err := os.Stat(filepath.Join(base, "memory", "memory.stat")); err == nil {
		return MemoryHierarchy{Root: filepath.Join(base, "memory")}, nil
	}
	if b, err := os.ReadFile(filepath.Join(base, "unified", "cgroup.controllers")); err == nil && hasField(string(b), "memory") {
		return MemoryHierarchy{Root: filepath.Join(base, "unified"), V2: true}, nil
	}
	if _, err := os.Stat(base); err != nil {
		return MemoryHierarchy{}, err
	}
	return MemoryHierarchy{}, fmt.Errorf("%s: %w", base, ErrNoMemoryController)
}

func hasField(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
