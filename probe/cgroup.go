package probe

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// errMalformed is wrapped by every parse error in this package: the same
// sentinel as internal/linux's parsers, which this package reuses.
var errMalformed = linux.ErrMalformed

// unlimited stands for "no limit" in Headroom.
const unlimited = math.MaxUint64

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

// cgroupMount is where a cgroup hierarchy is mounted.
type cgroupMount struct {
	root       string // the hierarchy's path mounted there (cgroup namespaces make it "/")
	mountpoint string
}

// parseMountinfoCgroup finds the mount of the hierarchy holding ref in
// /proc/<pid>/mountinfo: the cgroup2 mount for v2, the cgroup mount with
// the "memory" super option for v1.
func parseMountinfoCgroup(b []byte, v2 bool) (cgroupMount, error) {
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		pre, post, ok := bytes.Cut(line, []byte(" - "))
		if !ok {
			continue
		}
		f := bytes.Fields(pre)
		g := bytes.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		fstype := string(g[0])
		switch {
		case v2 && fstype == "cgroup2":
		case !v2 && fstype == "cgroup" && hasOption(g[2], "memory"):
		default:
			continue
		}
		return cgroupMount{root: unescapeMount(string(f[3])), mountpoint: unescapeMount(string(f[4]))}, nil
	}
	return cgroupMount{}, fmt.Errorf("mountinfo: %w: no memory cgroup mount", errMalformed)
}

func hasOption(opts []byte, name string) bool {
	for _, o := range bytes.Split(opts, []byte(",")) {
		if string(o) == name {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				out.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		out.WriteByte(s[i])
	}
	return out.String()
}

// cgroupDir is the directory of ref below mount m, or false when the
// process's cgroup lies outside what is mounted there.
func cgroupDir(ref cgroupRef, m cgroupMount) (string, bool) {
	rel := ref.path
	if m.root != "/" {
		if rel != m.root && !strings.HasPrefix(rel, m.root+"/") {
			return "", false
		}
		rel = strings.TrimPrefix(rel, m.root)
	}
	if strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/..") {
		return "", false
	}
	return strings.TrimSuffix(m.mountpoint+rel, "/"), true
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
