package linux

import (
	"bytes"
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// UserNS tells whether processes are in the initial user namespace, the
// one the kernel tests CAP_IPC_LOCK in for mlock, mlockall and SHM_LOCK
// (capable(), not ns_capable()): a process in any other user namespace is
// held to RLIMIT_MEMLOCK whatever its CapEff says (kernel/capability.c,
// security/commoncap.c cap_capable: a task never has a capability in an
// ancestor of its own namespace).
type UserNS struct {
	// initLink is the target of <procfs>/1/ns/user ("user:[4026531837]"),
	// empty when it cannot be read (no CAP_SYS_PTRACE over pid 1).
	initLink string
}

// NewUserNS reads pid 1's user namespace link below the procfs root d: pid
// 1 of the host's pid namespace is in the initial user namespace.
func NewUserNS(r *Reader, d *Dir) UserNS {
	b, err := r.Readlink(d, "1/ns/user")
	if err != nil {
		return UserNS{}
	}
	return UserNS{initLink: string(b)}
}

// Initial reports whether pid is in the initial user namespace. It
// compares the pid's ns/user link with pid 1's where both can be read (they
// need ptrace read access); otherwise it reads the world-readable uid_map,
// which is "0 0 4294967295" in the initial namespace. A child namespace
// whose creator mapped the whole range the same way cannot be told apart
// from the initial one by uid_map alone.
func (u UserNS) Initial(r *Reader, d *Dir, pid int) (bool, error) {
	if u.initLink != "" {
		name := strconv.Itoa(pid) + "/ns/user"
		if b, err := r.Readlink(d, name); err == nil {
			return string(b) == u.initLink, nil
		}
	}
	b, err := r.ReadPid(d, pid, "uid_map")
	if errors.Is(err, unix.ENOENT) && d.Exists(strconv.Itoa(pid)) {
		// A kernel without CONFIG_USER_NS has no uid_map and no user
		// namespace but the initial one.
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return ParseUIDMapInitial(b)
}

// ParseUIDMapInitial reports whether /proc/<pid>/uid_map is the identity
// map of the whole range, as in the initial user namespace.
func ParseUIDMapInitial(b []byte) (bool, error) {
	lines := 0
	identity := false
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return false, malformed("uid_map", "bad line %q", clip(line))
		}
		var v [3]uint64
		for i := range f {
			n, rest, ok := parseUint(f[i])
			if !ok || len(rest) != 0 || n > 1<<32 {
				return false, malformed("uid_map", "bad line %q", clip(line))
			}
			v[i] = n
		}
		lines++
		identity = v[0] == 0 && v[1] == 0 && v[2] == 1<<32-1
	}
	return lines == 1 && identity, nil
}

// ParseLoadavgTasks returns the number after the slash of /proc/loadavg's
// fourth field: nr_threads, every task of the kernel in every pid
// namespace, kernel threads included.
func ParseLoadavgTasks(b []byte) (uint64, error) {
	f := bytes.Fields(b)
	if len(f) < 4 {
		return 0, malformed("loadavg", "%d fields", len(f))
	}
	i := bytes.IndexByte(f[3], '/')
	if i < 0 {
		return 0, malformed("loadavg", "bad field %q", clip(f[3]))
	}
	v, rest, ok := parseUint(f[3][i+1:])
	if !ok || len(rest) != 0 {
		return 0, malformed("loadavg", "bad field %q", clip(f[3]))
	}
	return v, nil
}

// MaxSmapsSize bounds the smaps file SmapsLocked reads: about 1.2 KiB a
// mapping and vm.max_map_count 65530 by default make 80 MiB.
const MaxSmapsSize = 256 << 20

// SmapsLocked sums the Locked: lines of /proc/<pid>/smaps, what
// smaps_rollup's single Locked: line says on kernels that have it (4.14
// and later). It reads the file in pieces of the Reader's buffer, so a
// large file costs no memory.
func (r *Reader) SmapsLocked(d *Dir, pid int) (uint64, error) {
	r.path = strconv.AppendInt(r.path[:0], int64(pid), 10)
	r.path = append(r.path, "/smaps"...)
	r.path = append(r.path, 0)
	fd, err := openat(d.fd, r.path)
	if err != nil {
		return 0, &pathError{op: "open", path: string(r.path[:len(r.path)-1]), err: err}
	}
	defer closeFD(fd)
	var sum uint64
	n, total := 0, 0 // bytes kept in buf (a partial line), bytes read
	for {
		if n == len(r.buf) {
			// A line longer than the buffer: grow it, within bounds.
			if len(r.buf) >= MaxFileSize {
				return 0, &pathError{op: "read", path: "smaps", err: ErrTooLarge}
			}
			nb := make([]byte, min(2*len(r.buf), MaxFileSize))
			copy(nb, r.buf[:n])
			r.buf = nb
		}
		m, err := sysRead(fd, r.buf[n:])
		if err == errEINTR {
			continue
		}
		if err != nil {
			return 0, &pathError{op: "read", path: "smaps", err: err}
		}
		total += m
		if total > MaxSmapsSize {
			return 0, &pathError{op: "read", path: "smaps", err: ErrTooLarge}
		}
		n += m
		b := r.buf[:n]
		for {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				break
			}
			line := b[:i]
			b = b[i+1:]
			if hasPrefix(line, "Locked:") {
				v, ok := parseKB(line[len("Locked:"):])
				if !ok {
					return 0, malformed("smaps", "bad Locked line %q", clip(line))
				}
				if sum+v < sum {
					return 0, malformed("smaps", "Locked sum overflows")
				}
				sum += v
			}
		}
		if m == 0 {
			if len(b) != 0 {
				return 0, malformed("smaps", "truncated (no final newline)")
			}
			return sum, nil
		}
		n = copy(r.buf, b)
	}
}
