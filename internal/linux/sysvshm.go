package linux

// ShmLocked is the SHM_LOCKED bit of a segment's mode, as shown in the perms
// column of /proc/sysvipc/shm.
const ShmLocked = 0o2000

// ShmSegment is one row of /proc/sysvipc/shm.
type ShmSegment struct {
	ID    int64
	Perms uint32 // octal column, with SHM_LOCKED and SHM_DEST bits
	Size  uint64 // bytes
	UID   uint32 // owner
}

// Locked reports whether the segment was locked with shmctl(SHM_LOCK).
func (s ShmSegment) Locked() bool { return s.Perms&ShmLocked != 0 }

// ParseSysvShm parses /proc/sysvipc/shm. Columns are found by the header's
// names, since they have grown over kernel versions (rss and swap since 2.6.x).
func ParseSysvShm(b []byte) ([]ShmSegment, error) {
	header, b := nextLine(b)
	var cols [16][]byte
	nc := fields(header, cols[:])
	idCol, permsCol, sizeCol, uidCol := -1, -1, -1, -1
	for i, c := range cols[:nc] {
		switch string(c) {
		case "shmid":
			idCol = i
		case "perms":
			permsCol = i
		case "size":
			sizeCol = i
		case "uid":
			uidCol = i
		}
	}
	if idCol < 0 || permsCol < 0 || sizeCol < 0 || uidCol < 0 {
		return nil, malformed("sysvipc/shm", "header %q lacks shmid, perms, size or uid", header)
	}
	var segs []ShmSegment
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if len(trimSpace(line)) == 0 {
			continue
		}
		var f [32][]byte
		n := fields(line, f[:])
		if n <= idCol || n <= permsCol || n <= sizeCol || n <= uidCol {
			return nil, malformed("sysvipc/shm", "short row %q", line)
		}
		id, rest, ok1 := parseUint(f[idCol])
		perms, ok2 := parseOctal(f[permsCol])
		size, rest2, ok3 := parseUint(f[sizeCol])
		uid, rest3, ok4 := parseUint(f[uidCol])
		if !ok1 || !ok2 || !ok3 || !ok4 || len(rest)+len(rest2)+len(rest3) != 0 || uid > 1<<32-1 || id > 1<<62 {
			return nil, malformed("sysvipc/shm", "bad row %q", line)
		}
		segs = append(segs, ShmSegment{ID: int64(id), Perms: perms, Size: size, UID: uint32(uid)})
	}
	return segs, nil
}

// fields splits b on blanks into dst and returns how many it found; words
// past len(dst) are dropped.
func fields(b []byte, dst [][]byte) int {
	n := 0
	for len(b) > 0 {
		for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
			b = b[1:]
		}
		if len(b) == 0 {
			break
		}
		i := 0
		for i < len(b) && b[i] != ' ' && b[i] != '\t' {
			i++
		}
		if n < len(dst) {
			dst[n] = b[:i]
		}
		n++
		b = b[i:]
	}
	if n > len(dst) {
		n = len(dst)
	}
	return n
}

func parseOctal(b []byte) (uint32, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var v uint32
	for _, c := range b {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v<<3 | uint32(c-'0')
	}
	return v, true
}
