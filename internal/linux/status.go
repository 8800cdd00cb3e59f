package linux

import "golang.org/x/sys/unix"

// The bits of capabilities in a capability mask (CapEff and the others of
// /proc/<pid>/status).
const (
	CapIPCLock   = 1 << unix.CAP_IPC_LOCK
	CapSysPtrace = 1 << unix.CAP_SYS_PTRACE
)

// MaxComm is the longest name a process with an address space has: the
// kernel keeps comm in TASK_COMM_LEN (16) bytes with a terminating NUL
// (fs/proc/array.c proc_task_name; only kernel threads and workqueue
// workers, which have no mm, show longer names). A longer Name line is not
// the kernel's and is cut, so that it cannot become a huge label.
const MaxComm = 15

// Status holds the memlock fields of /proc/<pid>/status.
type Status struct {
	// Name is the process's comm as the kernel holds it: the status file's
	// escapes (proc_task_name writes '\n' as `\n` and '\' as `\\`) undone,
	// nothing trimmed, at most MaxComm bytes. It is a slice of the parsed
	// buffer (unescaped in place): copy it before the buffer is reused.
	Name []byte
	// UID is the real user id.
	UID uint32
	// Locked is VmLck in bytes (mm->locked_vm).
	Locked uint64
	// Pinned is VmPin in bytes (mm->pinned_vm).
	Pinned uint64
	// CapEff is the effective capability mask, in the process's own user
	// namespace.
	CapEff uint64
	// Threads is the Threads line: the thread group's live threads.
	Threads int
	// HasMM is false when the file has no Vm* lines: a kernel thread, or a
	// live process whose thread-group leader has exited (Threads > 1 then;
	// a live thread's task/<tid>/status shows the mm).
	HasMM bool
}

// IPCLock reports whether CAP_IPC_LOCK is effective in the process's own
// user namespace. The kernel's mlock and SHM_LOCK checks test it in the
// initial user namespace: see UserNSInitial.
func (s *Status) IPCLock() bool { return s.CapEff&CapIPCLock != 0 }

// LeaderExited reports whether the file is that of a thread group whose
// leader has exited while other threads live on: no Vm* lines, but more
// than one thread. A kernel thread has one.
func (s *Status) LeaderExited() bool { return !s.HasMM && s.Threads > 1 }

// ParseStatus parses the fields of Status from the contents of
// /proc/<pid>/status in one pass, without allocating. Name, Uid and CapEff
// are required; VmLck and VmPin are absent for kernel threads. It may
// rewrite b (the Name is unescaped in place).
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
			if hasPrefix(line, "Name:") && !haveName {
				s.Name = unescapeComm(line[5:])
				haveName = true
			}
		case 'U':
			if hasPrefix(line, "Uid:") {
				v, _, ok := parseUint(line[4:])
				if !ok || v > 1<<32-1 {
					return malformed("status", "bad Uid line %q", clip(line))
				}
				s.UID = uint32(v)
				haveUID = true
			}
		case 'T':
			if hasPrefix(line, "Threads:") {
				v, _, ok := parseUint(line[8:])
				if !ok || v > 1<<31 {
					return malformed("status", "bad Threads line %q", clip(line))
				}
				s.Threads = int(v)
			}
		case 'V':
			if hasPrefix(line, "VmLck:") {
				v, ok := parseKB(line[6:])
				if !ok {
					return malformed("status", "bad VmLck line %q", clip(line))
				}
				s.Locked, s.HasMM = v, true
			} else if hasPrefix(line, "VmPin:") {
				v, ok := parseKB(line[6:])
				if !ok {
					return malformed("status", "bad VmPin line %q", clip(line))
				}
				s.Pinned = v
			}
		case 'C':
			// CapEff is the last field needed: the parse stops after it.
			if hasPrefix(line, "CapEff:") {
				v, ok := parseHex(line[7:])
				if !ok {
					return malformed("status", "bad CapEff line %q", clip(line))
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

// clip bounds a line quoted in an error.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// unescapeComm turns the value of a status Name line back into the
// process's comm, in place. The kernel writes "Name:\t" and then comm with
// seq_escape_str(ESCAPE_SPACE|ESCAPE_SPECIAL, only "\n\\"): a newline as
// `\n`, a backslash as `\\`, every other byte as it is (spaces, tabs,
// quotes, UTF-8). Older kernels escaped the same two bytes. The other
// escapes those flags know are undone too, which is unambiguous because
// every backslash of the name is itself escaped.
func unescapeComm(v []byte) []byte {
	if len(v) > 0 && v[0] == '\t' {
		v = v[1:]
	}
	out := v[:0]
	for i := 0; i < len(v) && len(out) < MaxComm; i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			if u, ok := unescapeByte(v[i+1]); ok {
				c = u
				i++
			}
		}
		out = append(out, c)
	}
	return out
}

func unescapeByte(c byte) (byte, bool) {
	switch c {
	case 'n':
		return '\n', true
	case '\\':
		return '\\', true
	case 't':
		return '\t', true
	case 'r':
		return '\r', true
	case 'f':
		return '\f', true
	case 'v':
		return '\v', true
	case '"':
		return '"', true
	case 'a':
		return '\a', true
	case 'e':
		return 0x1b, true
	}
	return 0, false
}

// SelfStatus reads and parses /proc/self/status under procPath, the
// process's own capabilities and locked memory.
func SelfStatus(procPath string) (Status, error) {
	var s Status
	b, err := ReadSystemFile(procPath+"/self/status", MaxFileSize)
	if err != nil {
		return s, err
	}
	err = ParseStatus(b, &s)
	return s, err
}
