package linux

import "golang.org/x/sys/unix"

// Limit is a soft and hard resource limit in bytes; Unlimited stands for
// RLIM_INFINITY.
type Limit struct {
	Soft, Hard uint64
}

// ParseMemlockLimit finds the "Max locked memory" row of /proc/<pid>/limits
// and returns both of its columns. procfs' ProcLimits keeps only the soft one.
func ParseMemlockLimit(b []byte) (Limit, error) {
	const row = "Max locked memory"
	for len(b) > 0 {
		var line []byte
		line, b = nextLine(b)
		if !hasPrefix(line, row) {
			continue
		}
		rest := line[len(row):]
		soft, rest, ok := parseLimitValue(rest)
		if !ok {
			return Limit{}, malformed("limits", "bad soft limit in %q", line)
		}
		hard, rest, ok := parseLimitValue(rest)
		if !ok {
			return Limit{}, malformed("limits", "bad hard limit in %q", line)
		}
		if u := trimSpace(rest); len(u) > 0 && string(u) != "bytes" {
			return Limit{}, malformed("limits", "unexpected unit in %q", line)
		}
		return Limit{Soft: soft, Hard: hard}, nil
	}
	return Limit{}, malformed("limits", "no %q row", row)
}

// parseLimitValue parses one column of a limits row: blanks, then a number
// or "unlimited", then a blank or the end of the line
// (fs/proc/base.c proc_pid_limits: "%-25s %-20s %-20s %-10s").
func parseLimitValue(b []byte) (uint64, []byte, bool) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	if i == 0 {
		return 0, nil, false
	}
	var v uint64
	var rest []byte
	ok := hasPrefix(b[i:], "unlimited")
	if ok {
		v, rest = Unlimited, b[i+len("unlimited"):]
	} else {
		v, rest, ok = parseUint(b[i:])
	}
	if !ok || len(rest) > 0 && rest[0] != ' ' && rest[0] != '\t' {
		return 0, nil, false
	}
	return v, rest, true
}

// MemlockRlimit returns the RLIMIT_MEMLOCK of the process (or thread) pid by
// prlimit(2), which needs the caller's pid namespace to be the target's (pid
// means another process elsewhere) and its credentials or CAP_SYS_RESOURCE
// (kernel/sys.c check_prlimit_permission; EPERM otherwise).
func MemlockRlimit(pid int) (Limit, error) {
	var rl unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_MEMLOCK, nil, &rl); err != nil {
		return Limit{}, err
	}
	return Limit{Soft: rl.Cur, Hard: rl.Max}, nil
}
