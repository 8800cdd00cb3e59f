package linux

import (
	"bytes"
	"math"
)

// The cgroup files read by memlock_exporter: /proc/<pid>/cgroup (which
// cgroup a process is in) and, per cgroup, memory.stat, memory.max or
// memory.limit_in_bytes, memory.current or memory.usage_in_bytes.

// ProcCgroup is what /proc/<pid>/cgroup says, for the hierarchies that
// matter here. Paths are slices of the parsed buffer.
type ProcCgroup struct {
	// Memory is the v1 memory controller's path (cgroup v1 and hybrid hosts).
	Memory []byte
	// Unified is the "0::" line's path (cgroup v2, or the unified part of a
	// hybrid host).
	Unified []byte
	// Systemd is the name=systemd hierarchy's path.
	Systemd                           []byte
	HasMemory, HasUnified, HasSystemd bool
}

// MemoryCgroup returns the cgroup that holds the process's memory
// accounting: the v1 memory controller's, else the unified one (v2).
func (c ProcCgroup) MemoryCgroup() (path []byte, v2, ok bool) {
	switch {
	case c.HasMemory:
		return c.Memory, false, true
	case c.HasUnified:
		return c.Unified, true, true
	}
	return nil, false, false
}

// ParseProcCgroupLines parses every line of /proc/<pid>/cgroup, whose lines
// are "hierarchy-ID:controller-list:path", dropping the " (deleted)" suffix
// of a removed cgroup.
func ParseProcCgroupLines(b []byte) (ProcCgroup, error) {
	var c ProcCgroup
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		c1 := bytes.IndexByte(line, ':')
		if c1 < 0 {
			return ProcCgroup{}, malformed("cgroup", "no ':' in %q", line)
		}
		c2 := bytes.IndexByte(line[c1+1:], ':')
		if c2 < 0 {
			return ProcCgroup{}, malformed("cgroup", "one ':' in %q", line)
		}
		c2 += c1 + 1
		id, controllers, path := line[:c1], line[c1+1:c2], line[c2+1:]
		if _, rest, ok := parseUint(id); !ok || len(rest) > 0 {
			return ProcCgroup{}, malformed("cgroup", "bad hierarchy id in %q", line)
		}
		if len(path) == 0 || path[0] != '/' {
			return ProcCgroup{}, malformed("cgroup", "path not absolute in %q", line)
		}
		path = trimDeleted(path)
		switch {
		case hasController(controllers, "memory"):
			if !c.HasMemory {
				c.Memory, c.HasMemory = path, true
			}
		case len(controllers) == 0 && string(id) == "0":
			c.Unified, c.HasUnified = path, true
		case hasController(controllers, "name=systemd"):
			c.Systemd, c.HasSystemd = path, true
		}
	}
	return c, nil
}

// ParseProcCgroup returns the cgroup path of a process from the contents of
// /proc/<pid>/cgroup. It prefers the memory controller's line (cgroup v1 and
// hybrid hosts: the hierarchy whose memory.stat holds the process's
// unevictable pages), then the unified hierarchy's "0::" line (cgroup v2),
// then name=systemd's. The path is a slice of b.
func ParseProcCgroup(b []byte) ([]byte, error) {
	c, err := ParseProcCgroupLines(b)
	if err != nil {
		return nil, err
	}
	if p, _, ok := c.MemoryCgroup(); ok {
		return p, nil
	}
	if c.HasSystemd {
		return c.Systemd, nil
	}
	return nil, malformed("cgroup", "no memory, unified or name=systemd line")
}

func trimDeleted(p []byte) []byte {
	const suffix = " (deleted)"
	if len(p) > len(suffix) && string(p[len(p)-len(suffix):]) == suffix {
		return p[:len(p)-len(suffix)]
	}
	return p
}

// hasController reports whether the comma-separated list holds name.
func hasController(list []byte, name string) bool {
	for len(list) > 0 {
		i := bytes.IndexByte(list, ',')
		if i < 0 {
			return string(list) == name
		}
		if string(list[:i]) == name {
			return true
		}
		list = list[i+1:]
	}
	return false
}

// MemoryStat holds the fields of a cgroup's memory.stat the exporter reads.
type MemoryStat struct {
	// Unevictable is the "unevictable" line in bytes. In cgroup v2 it covers
	// the cgroup and all its descendants; in v1 only the cgroup's own pages.
	Unevictable uint64
	// TotalUnevictable is cgroup v1's "total_unevictable": the cgroup and
	// all its descendants. HasTotal says whether the line was there.
	TotalUnevictable uint64
	HasTotal         bool
}

// Hierarchical returns the unevictable bytes of the cgroup's whole subtree:
// total_unevictable where the file has it (v1), unevictable otherwise (v2,
// where every memory.stat counter is hierarchical).
func (s *MemoryStat) Hierarchical() uint64 {
	if s.HasTotal {
		return s.TotalUnevictable
	}
	return s.Unevictable
}

// ParseMemoryStat parses the unevictable lines of a cgroup's memory.stat
// (v1 or v2) without allocating. The "unevictable" line is required.
func ParseMemoryStat(b []byte, s *MemoryStat) error {
	*s = MemoryStat{}
	haveUnevictable := false
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		var dst *uint64
		switch {
		case hasPrefix(line, "unevictable "):
			dst, haveUnevictable = &s.Unevictable, true
			line = line[len("unevictable "):]
		case hasPrefix(line, "total_unevictable "):
			dst, s.HasTotal = &s.TotalUnevictable, true
			line = line[len("total_unevictable "):]
		default:
			continue
		}
		v, rest, ok := parseUint(line)
		if !ok || len(trimSpace(rest)) > 0 {
			return malformed("memory.stat", "bad unevictable value %q", line)
		}
		*dst = v
	}
	if !haveUnevictable {
		return malformed("memory.stat", "no unevictable line")
	}
	return nil
}

// ParseCgroupMemoryValue parses a one-value cgroup memory file in bytes:
// memory.max, memory.current (v2), memory.limit_in_bytes,
// memory.usage_in_bytes (v1). "max" (v2: no limit) is Unlimited; for v1's
// way of saying it see CgroupV1Unlimited.
func ParseCgroupMemoryValue(b []byte) (uint64, error) {
	b = trimSpace(b)
	if string(b) == "max" {
		return Unlimited, nil
	}
	v, rest, ok := parseUint(b)
	if !ok || len(rest) > 0 {
		return 0, malformed("cgroup memory file", "bad value %q", b)
	}
	return v, nil
}

// cgroupV1UnlimitedFloor is the smallest value of PAGE_COUNTER_MAX in bytes
// over the page sizes Linux has (up to 256 KiB): v1's memory.limit_in_bytes
// shows PAGE_COUNTER_MAX (LONG_MAX / PAGE_SIZE pages) times the page size,
// 9223372036854771712 with 4 KiB pages, when no limit is set.
const cgroupV1UnlimitedFloor = math.MaxInt64 &^ (256<<10 - 1)

// CgroupV1Unlimited reports whether a v1 memory.limit_in_bytes value means
// no limit.
func CgroupV1Unlimited(v uint64) bool { return v >= cgroupV1UnlimitedFloor }
