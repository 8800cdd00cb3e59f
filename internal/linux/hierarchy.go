package linux

import (
	"bytes"
	"strconv"
	"strings"
)

// CgroupMount is where the memory cgroup hierarchy is mounted, as
// /proc/<pid>/mountinfo (fs/proc_namespace.c, show_mountinfo) says.
type CgroupMount struct {
	// Root is the hierarchy's path mounted there: "/" for the whole
	// hierarchy, the cgroup's own path inside a cgroup namespace.
	Root       string
	Mountpoint string
}

// FindCgroupMount finds the mount of the memory cgroup hierarchy in
// mountinfo: the cgroup2 mount for v2, the cgroup mount with the "memory"
// super option for v1. No such mount wraps ErrMalformed.
//
// This answers "where does this process see its own cgroup" (the probe's
// headroom), which only the process's mount namespace knows: inside a cgroup
// namespace the mount's root is the cgroup's own path. FindMemoryHierarchy
// answers the other question, the layout of the host's hierarchy under
// --path.sysfs, which the collector walks and which need not be mounted in
// this namespace's mountinfo at all (a host /sys bind-mounted at /host/sys).
func FindCgroupMount(mountinfo []byte, v2 bool) (CgroupMount, error) {
	b := mountinfo
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
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
		case !v2 && fstype == "cgroup" && hasMountOption(g[2], "memory"):
		default:
			continue
		}
		return CgroupMount{Root: unescapeMount(string(f[3])), Mountpoint: unescapeMount(string(f[4]))}, nil
	}
	return CgroupMount{}, malformed("mountinfo", "no memory cgroup mount")
}

// Dir is the directory of the cgroup at path (as /proc/<pid>/cgroup names
// it) below this mount, or false when the cgroup lies outside what is
// mounted here or the path climbs out with "..".
func (m CgroupMount) Dir(path string) (string, bool) {
	rel := path
	if m.Root != "/" {
		if rel != m.Root && !strings.HasPrefix(rel, m.Root+"/") {
			return "", false
		}
		rel = strings.TrimPrefix(rel, m.Root)
	}
	if strings.Contains(rel, "/../") || strings.HasSuffix(rel, "/..") {
		return "", false
	}
	return strings.TrimSuffix(m.Mountpoint+rel, "/"), true
}

func hasMountOption(opts []byte, name string) bool {
	for o := range bytes.SplitSeq(opts, []byte(",")) {
		if string(o) == name {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space;
// fs/seq_file.c, seq_escape).
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
