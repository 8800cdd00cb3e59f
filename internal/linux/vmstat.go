package linux

import "bytes"

// VMStat holds the memlock lines of /proc/vmstat, in pages.
type VMStat struct {
	NrMlock       uint64
	NrUnevictable uint64
	// Events are the unevictable_pgs_* counters, named without that prefix,
	// in file order. The set differs between kernels, so it is not fixed.
	Events []Counter
}

// Counter is one named event counter.
type Counter struct {
	Name  string
	Value uint64
}

// ParseVMStat parses the lines of /proc/vmstat that concern locked memory.
// nr_mlock and nr_unevictable are required.
func ParseVMStat(b []byte) (VMStat, error) {
	const eventPrefix = "unevictable_pgs_"
	var v VMStat
	var haveMlock, haveUnevictable bool
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 || (line[0] != 'n' && line[0] != 'u') {
			continue
		}
		sp := bytes.IndexByte(line, ' ')
		if sp <= 0 {
			continue
		}
		key := line[:sp]
		switch {
		case string(key) == "nr_mlock", string(key) == "nr_unevictable", hasPrefix(key, eventPrefix):
		default:
			continue
		}
		n, rest, ok := parseUint(line[sp+1:])
		if !ok || len(trimSpace(rest)) != 0 {
			return VMStat{}, malformed("vmstat", "bad line %q", line)
		}
		switch {
		case string(key) == "nr_mlock":
			v.NrMlock, haveMlock = n, true
		case string(key) == "nr_unevictable":
			v.NrUnevictable, haveUnevictable = n, true
		default:
			name := string(key[len(eventPrefix):])
			if name == "" {
				return VMStat{}, malformed("vmstat", "bad line %q", line)
			}
			v.Events = append(v.Events, Counter{Name: name, Value: n})
		}
	}
	if !haveMlock || !haveUnevictable {
		return VMStat{}, malformed("vmstat", "nr_mlock or nr_unevictable missing")
	}
	return v, nil
}
