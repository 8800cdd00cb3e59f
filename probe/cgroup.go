package probe

import (
	"fmt"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// errMalformed is wrapped by every parse error in this package: the same
// sentinel as internal/linux's parsers, which this package reuses.
var errMalformed = linux.ErrMalformed

// unlimited stands for "no limit" in Headroom, as in internal/linux.
const unlimited = linux.Unlimited

// cgroupRef is the process's memory cgroup as /proc/self/cgroup names it.
type cgroupRef struct {
	path string // e.g. /system.slice/x.service
	v2   bool   // from the unified "0::" line, not a v1 memory controller
}

// parseProcCgroup finds the memory cgroup in /proc/<pid>/cgroup: the v1
// line whose controllers include "memory", else the v2 line "0::PATH".
func parseProcCgroup(b []byte) (cgroupRef, error) {
	c, err := linux.ParseProcCgroupLines(b)
	if err != nil {
		return cgroupRef{}, err
	}
	path, v2, ok := c.MemoryCgroup()
	if !ok {
		return cgroupRef{}, fmt.Errorf("cgroup: %w: no memory controller and no unified line", errMalformed)
	}
	return cgroupRef{path: string(path), v2: v2}, nil
}

// parseCgroupValue parses a one-number cgroup file (memory.max,
// memory.current, memory.limit_in_bytes, memory.usage_in_bytes). "max" and
// v1's huge "no limit" value are unlimited.
func parseCgroupValue(b []byte) (uint64, error) {
	v, err := linux.ParseCgroupMemoryValue(b)
	if err != nil {
		return 0, err
	}
	if linux.CgroupV1Unlimited(v) {
		return unlimited, nil
	}
	return v, nil
}
