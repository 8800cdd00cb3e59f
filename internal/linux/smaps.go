package linux

// ParseSmapsRollupLocked returns the Locked: value of
// /proc/<pid>/smaps_rollup in bytes: the resident pages of VM_LOCKED
// mappings, counted proportionally (as Pss) when shared.
func ParseSmapsRollupLocked(b []byte) (uint64, error) {
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if hasPrefix(line, "Locked:") {
			v, ok := parseKB(line[len("Locked:"):])
			if !ok {
				return 0, malformed("smaps_rollup", "bad Locked line %q", line)
			}
			return v, nil
		}
	}
	return 0, malformed("smaps_rollup", "no Locked line")
}
