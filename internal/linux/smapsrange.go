package linux

import "errors"

// ErrNoMapping is returned by ParseSmapsRange when no mapping starts at the
// address asked for.
var ErrNoMapping = errors.New("no mapping at that address")

// SmapsRange is one mapping's entry in /proc/<pid>/smaps: what the active
// probes check after locking a region of their own.
type SmapsRange struct {
	Start, End uint64 // [Start, End) from the header line
	// Size, Rss, Locked and AnonHugePages are in bytes. Locked counts
	// resident pages of a VM_LOCKED mapping (as Pss when shared).
	Size, Rss, Locked, AnonHugePages uint64
	// VmLocked is VmFlags "lo" (VM_LOCKED); VmLockOnFault is "lf"
	// (VM_LOCKONFAULT, mlock2(MLOCK_ONFAULT) or mlockall(MCL_ONFAULT)).
	VmLocked, VmLockOnFault bool
}

// ParseSmapsRange finds the entry of /proc/<pid>/smaps whose mapping starts
// at start and fills r from its Size, Rss, Locked, AnonHugePages and VmFlags
// lines. It does not allocate. A missing entry is ErrNoMapping; a broken
// header or value line of that entry wraps ErrMalformed.
func ParseSmapsRange(b []byte, start uint64, r *SmapsRange) error {
	*r = SmapsRange{}
	in := false
	var haveSize, haveRss, haveLocked, haveFlags bool
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		if isHexDigit(line[0]) {
			// A header line "start-end perms offset dev inode [path]".
			if in {
				break // the next mapping: ours is complete
			}
			lo, hi, ok := parseRange(line)
			if !ok {
				return malformed("smaps", "bad header %q", line)
			}
			if lo == start {
				in = true
				r.Start, r.End = lo, hi
			}
			continue
		}
		if !in {
			continue
		}
		var dst *uint64
		var key string
		switch {
		case hasPrefix(line, "Size:"):
			dst, key, haveSize = &r.Size, "Size:", true
		case hasPrefix(line, "Rss:"):
			dst, key, haveRss = &r.Rss, "Rss:", true
		case hasPrefix(line, "Locked:"):
			dst, key, haveLocked = &r.Locked, "Locked:", true
		case hasPrefix(line, "AnonHugePages:"):
			dst, key = &r.AnonHugePages, "AnonHugePages:"
		case hasPrefix(line, "VmFlags:"):
			haveFlags = true
			parseVmFlags(line[len("VmFlags:"):], r)
			continue
		default:
			continue
		}
		v, ok := parseKB(line[len(key):])
		if !ok {
			return malformed("smaps", "bad line %q", line)
		}
		*dst = v
	}
	if !in {
		return ErrNoMapping
	}
	if !haveSize || !haveRss || !haveLocked || !haveFlags {
		return malformed("smaps", "entry at %x lacks Size, Rss, Locked or VmFlags", start)
	}
	return nil
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
}

// parseRange parses the "start-end" at the head of an smaps header line.
func parseRange(line []byte) (lo, hi uint64, ok bool) {
	dash, space := -1, len(line)
	for i, c := range line {
		if c == '-' && dash < 0 {
			dash = i
		}
		if c == ' ' {
			space = i
			break
		}
	}
	if dash <= 0 || dash >= space-1 {
		return 0, 0, false
	}
	if lo, ok = parseHex(line[:dash]); !ok {
		return 0, 0, false
	}
	if hi, ok = parseHex(line[dash+1 : space]); !ok || hi < lo {
		return 0, 0, false
	}
	return lo, hi, true
}

// parseVmFlags reads the two-letter flags the probes care about.
func parseVmFlags(b []byte, r *SmapsRange) {
	for len(b) > 0 {
		for len(b) > 0 && b[0] == ' ' {
			b = b[1:]
		}
		i := 0
		for i < len(b) && b[i] != ' ' {
			i++
		}
		switch string(b[:i]) {
		case "lo":
			r.VmLocked = true
		case "lf":
			r.VmLockOnFault = true
		}
		b = b[i:]
	}
}
