package linux

// NodeMeminfo holds the memlock lines of
// /sys/devices/system/node/node<N>/meminfo, in bytes.
type NodeMeminfo struct {
	MemTotal    uint64
	Mlocked     uint64
	Unevictable uint64
}

// ParseNodeMeminfo parses a NUMA node's meminfo, whose lines read
// "Node 0 Mlocked:   9152 kB". All three fields are required.
func ParseNodeMeminfo(b []byte) (NodeMeminfo, error) {
	var m NodeMeminfo
	var have int
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		if !hasPrefix(line, "Node ") {
			return NodeMeminfo{}, malformed("node meminfo", "line %q does not start with Node", line)
		}
		_, rest, ok := parseUint(line[len("Node "):])
		if !ok {
			return NodeMeminfo{}, malformed("node meminfo", "bad node number in %q", line)
		}
		rest = trimSpace(rest)
		var dst *uint64
		var key string
		switch {
		case hasPrefix(rest, "MemTotal:"):
			dst, key = &m.MemTotal, "MemTotal:"
		case hasPrefix(rest, "Mlocked:"):
			dst, key = &m.Mlocked, "Mlocked:"
		case hasPrefix(rest, "Unevictable:"):
			dst, key = &m.Unevictable, "Unevictable:"
		default:
			continue
		}
		v, ok := parseKB(rest[len(key):])
		if !ok {
			return NodeMeminfo{}, malformed("node meminfo", "bad line %q", line)
		}
		*dst = v
		have++
	}
	if have != 3 {
		return NodeMeminfo{}, malformed("node meminfo", "MemTotal, Mlocked or Unevictable missing")
	}
	return m, nil
}
