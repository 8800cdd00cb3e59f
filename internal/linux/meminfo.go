package linux

// Meminfo holds the memlock lines of /proc/meminfo or of a NUMA node's
// /sys/devices/system/node/node<N>/meminfo, in bytes.
type Meminfo struct {
	MemTotal    uint64
	Mlocked     uint64
	Unevictable uint64
	// MemAvailable is the kernel's estimate of memory available for new
	// allocations without swapping (si_mem_available, mm/show_mem.c), which
	// the probe's headroom uses. Only /proc/meminfo has it (since 3.14): a
	// node's meminfo does not, and HasMemAvailable says whether it was read.
	MemAvailable    uint64
	HasMemAvailable bool
}

// ParseMeminfo parses /proc/meminfo ("Mlocked:   9152 kB") or a node's
// meminfo, whose lines carry a "Node 0 " prefix. All three fields are
// required; MemAvailable is optional. procfs' Meminfo parses only a file it opens itself, by path;
// the system collector reads the file once, bounded and checked, and parses
// those bytes here.
func ParseMeminfo(b []byte) (Meminfo, error) {
	var m Meminfo
	var have int
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		rest := line
		if hasPrefix(rest, "Node ") {
			_, r, ok := parseUint(rest[len("Node "):])
			if !ok {
				return Meminfo{}, malformed("meminfo", "bad node number in %q", line)
			}
			rest = trimSpace(r)
		}
		var dst *uint64
		var key string
		switch {
		case hasPrefix(rest, "MemTotal:"):
			dst, key = &m.MemTotal, "MemTotal:"
		case hasPrefix(rest, "Mlocked:"):
			dst, key = &m.Mlocked, "Mlocked:"
		case hasPrefix(rest, "Unevictable:"):
			dst, key = &m.Unevictable, "Unevictable:"
		case hasPrefix(rest, "MemAvailable:"):
			dst, key = &m.MemAvailable, "MemAvailable:"
		default:
			continue
		}
		v, ok := parseKB(rest[len(key):])
		if !ok {
			return Meminfo{}, malformed("meminfo", "bad line %q", line)
		}
		*dst = v
		if dst == &m.MemAvailable {
			m.HasMemAvailable = true
			continue
		}
		have++
	}
	if have != 3 {
		return Meminfo{}, malformed("meminfo", "MemTotal, Mlocked or Unevictable missing")
	}
	return m, nil
}
