package linux

// CapIPCLock is the bit of CAP_IPC_LOCK in a capability mask.
const CapIPCLock = 1 << 14

// Status holds the memlock fields of /proc/<pid>/status.
type Status struct {
	// Name is the process's comm, a slice of the parsed buffer: copy it
	// before the buffer is reused.
	Name []byte
	// UID is the real user id, the one the kernel charges per-user locked
	// and pinned memory to.
	UID uint32
	// Locked is VmLck in bytes (mm->locked_vm).
	Locked uint64
	// Pinned is VmPin in bytes (mm->pinned_vm).
	Pinned uint64
	// CapEff is the effective capability mask.
	CapEff uint64
	// HasMM is false for kernel threads, which have no Vm* lines.
	HasMM bool
}

// IPCLock reports whether CAP_IPC_LOCK is effective.
func (s *Status) IPCLock() bool { return s.CapEff&CapIPCLock != 0 }

// ParseStatus parses the fields of Status from the contents of
// /proc/<pid>/status in one pass, without allocating. Name, Uid and CapEff
// are required; VmLck and VmPin are absent for kernel threads.
func ParseStatus(b []byte, s *Status) error {
	*s = Status{}
	var haveName, haveUID, haveCap bool
	for len(b) > 0 && !haveCap {
		var line []byte
		line, b = nextLine(b)
		if len(line) < 5 {
			continue
		}
		switch line[0] {
		case 'N':
			if hasPrefix(line, "Name:") {
				s.Name = trimSpace(line[5:])
				haveName = true
			}
		case 'U':
			if hasPrefix(line, "Uid:") {
				v, _, ok := parseUint(line[4:])
				if !ok || v > 1<<32-1 {
					return malformed("status", "bad Uid line %q", line)
				}
				s.UID = uint32(v)
				haveUID = true
			}
		case 'V':
			if hasPrefix(line, "VmLck:") {
				v, ok := parseKB(line[6:])
				if !ok {
					return malformed("status", "bad VmLck line %q", line)
				}
				s.Locked, s.HasMM = v, true
			} else if hasPrefix(line, "VmPin:") {
				v, ok := parseKB(line[6:])
				if !ok {
					return malformed("status", "bad VmPin line %q", line)
				}
				s.Pinned = v
			}
		case 'C':
			// CapEff is the last field needed: the parse stops after it.
			if hasPrefix(line, "CapEff:") {
				v, ok := parseHex(line[7:])
				if !ok {
					return malformed("status", "bad CapEff line %q", line)
				}
				s.CapEff = v
				haveCap = true
			}
		}
	}
	switch {
	case !haveName:
		return malformed("status", "no Name line")
	case !haveUID:
		return malformed("status", "no Uid line")
	case !haveCap:
		return malformed("status", "no CapEff line")
	}
	return nil
}
