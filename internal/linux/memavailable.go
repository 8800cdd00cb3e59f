package linux

// ParseMemAvailable returns MemAvailable from /proc/meminfo, in bytes: the
// kernel's estimate of memory available for new allocations without
// swapping (fs/proc/meminfo.c, si_mem_available in mm/show_mem.c). The
// probe's headroom uses it; a missing or malformed line wraps ErrMalformed.
// (ParseMeminfo leaves MemAvailable out: it also parses per-node meminfo,
// which has no such line.)
func ParseMemAvailable(b []byte) (uint64, error) {
	const key = "MemAvailable:"
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if !hasPrefix(line, key) {
			continue
		}
		v, ok := parseKB(line[len(key):])
		if !ok {
			return 0, malformed("meminfo", "bad line %q", line)
		}
		return v, nil
	}
	return 0, malformed("meminfo", "no MemAvailable line")
}
