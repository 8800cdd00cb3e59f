package probe

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// Headroom is how many bytes this process could lock now, per constraint;
// unlimited (math.MaxUint64) where a constraint does not bind.
type Headroom struct {
	// Soft and Hard are this process's RLIMIT_MEMLOCK; Locked its VmLck.
	Soft, Hard, Locked uint64
	CapIPCLock         bool
	StatusKnown        bool

	// Rlimit is Soft minus Locked, or unlimited with CAP_IPC_LOCK or an
	// unlimited limit.
	Rlimit      uint64
	RlimitKnown bool
	// Cgroup is the least of limit minus usage over the process's memory
	// cgroup and its ancestors (memory.max - memory.current in v2,
	// memory.limit_in_bytes - memory.usage_in_bytes in v1).
	Cgroup      uint64
	CgroupKnown bool
	// MemAvailable is /proc/meminfo's estimate of memory available without
	// swapping.
	MemAvailable      uint64
	MemAvailableKnown bool
	// Effective is the least of the known constraints.
	Effective uint64
}

// Headroom reads every constraint. Whatever cannot be read is left unknown
// and does not count in Effective.
func (e *Env) Headroom() Headroom {
	h := Headroom{Effective: unlimited}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err == nil {
		h.Soft, h.Hard = rl.Cur, rl.Max
		if h.Soft == unix.RLIM_INFINITY {
			h.Soft = unlimited
		}
		if h.Hard == unix.RLIM_INFINITY {
			h.Hard = unlimited
		}
	}
	if st, err := e.status(); err == nil {
		h.StatusKnown = true
		h.Locked, h.CapIPCLock = st.Locked, st.IPCLock()
		h.RlimitKnown = true
		switch {
		case h.CapIPCLock || h.Soft == unlimited:
			h.Rlimit = unlimited
		case h.Soft > h.Locked:
			h.Rlimit = h.Soft - h.Locked
		}
		h.Effective = min(h.Effective, h.Rlimit)
	}
	if v, ok := e.cgroupHeadroom(); ok {
		h.Cgroup, h.CgroupKnown = v, true
		h.Effective = min(h.Effective, v)
	}
	if b, err := linux.ReadSystemFile(e.ProcPath+"/meminfo", linux.MaxFileSize); err == nil {
		if mi, err := linux.ParseMeminfo(b); err == nil && mi.HasMemAvailable {
			h.MemAvailable, h.MemAvailableKnown = mi.MemAvailable, true
			h.Effective = min(h.Effective, mi.MemAvailable)
		}
	}
	return h
}

func (e *Env) cgroupHeadroom() (uint64, bool) {
	b, err := os.ReadFile(e.ProcPath + "/self/cgroup")
	if err != nil {
		return 0, false
	}
	ref, err := parseProcCgroup(b)
	if err != nil {
		return 0, false
	}
	b, err = os.ReadFile(e.ProcPath + "/self/mountinfo")
	if err != nil {
		return 0, false
	}
	m, err := linux.FindCgroupMount(b, ref.v2)
	if err != nil {
		return 0, false
	}
	dir, ok := m.Dir(ref.path)
	if !ok {
		return 0, false
	}
	return cgroupHeadroomAt(dir, m.Mountpoint, ref.v2)
}

// cgroupHeadroomAt walks from dir up to the mountpoint and returns the
// least limit minus usage; unlimited when no level has a limit. It fails
// when dir itself has no readable limit and usage.
func cgroupHeadroomAt(dir, mountpoint string, v2 bool) (uint64, bool) {
	limitFile, usageFile := "memory.limit_in_bytes", "memory.usage_in_bytes"
	if v2 {
		limitFile, usageFile = "memory.max", "memory.current"
	}
	mountpoint = filepath.Clean(mountpoint)
	head := uint64(unlimited)
	for level := 0; ; level++ {
		limit, lerr := readCgroupValue(filepath.Join(dir, limitFile))
		usage, uerr := readCgroupValue(filepath.Join(dir, usageFile))
		if level == 0 && (lerr != nil || uerr != nil) {
			return 0, false
		}
		if lerr == nil && uerr == nil && limit != unlimited {
			if limit > usage {
				head = min(head, limit-usage)
			} else {
				head = 0
			}
		}
		if dir == mountpoint || len(dir) <= len(mountpoint) || !strings.HasPrefix(dir, mountpoint) {
			return head, true
		}
		dir = filepath.Dir(dir)
	}
}

func readCgroupValue(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseCgroupValue(b)
}
