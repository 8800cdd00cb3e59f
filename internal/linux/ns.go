package linux

import (
	"bytes"
	"errors"
	"strconv"

	"golang.org/x/sys/unix"
)

// The inode numbers of the initial namespaces are fixed
// (include/linux/proc_ns.h: PROC_USER_INIT_INO 0xEFFFFFFD,
// PROC_IPC_INIT_INO 0xEFFFFFFF), so a namespace link tells the initial
// namespace from any other without reading pid 1's link, which needs
// ptrace read access to pid 1.
const (
	InitUserNSLink = "user:[4026531837]"
	InitIPCNSLink  = "ipc:[4026531839]"
)

// UserNS tells whether processes are in the initial user namespace, the
// one the kernel tests CAP_IPC_LOCK in for mlock, mlockall and SHM_LOCK
// (capable(), not ns_capable()): a process in any other user namespace is
// held to RLIMIT_MEMLOCK whatever its CapEff says (security/commoncap.c
// cap_capable: a task never has a capability in an ancestor of its own
// namespace).
type UserNS struct{}

// NewUserNS returns a UserNS.
func NewUserNS(*Reader, *Dir) UserNS { return UserNS{} }

// Initial reports whether process pid (through its thread tid when tid
// is not 0) is in the initial user namespace. It reads the ns/user link
// where it may (ptrace read access); otherwise the world-readable
// uid_map, which is "0 0 4294967295" in the initial namespace. A child
// namespace whose creator mapped the whole range the same way cannot be
// told apart from the initial one by uid_map alone.
func (u UserNS) Initial(r *Reader, d *Dir, pid, tid int) (bool, error) {
	name := strconv.Itoa(pid)
	if tid != 0 {
		name += "/task/" + strconv.Itoa(tid)
	}
	if b, err := r.Readlink(d, name+"/ns/user"); err == nil {
		return string(b) == InitUserNSLink, nil
	}
	b, err := r.ReadTask(d, pid, tid, "uid_map")
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
func (r *Reader) SmapsLocked(d *Dir, pid, tid int) (uint64, error) {
	r.taskPath(pid, tid, "smaps")
	fd, err := openat(d.fd, r.path, true)
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
