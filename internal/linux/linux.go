// Package linux parses the kernel files memlock_exporter reads where
// github.com/prometheus/procfs has no parser or keeps too little: the
// memlock fields of /proc/<pid>/status in one allocation-free pass, the hard
// column of the memlock limit, smaps_rollup's Locked line, /proc/vmstat,
// /proc/meminfo and the per-node meminfo in sysfs from bytes already read
// (procfs parses meminfo only from a file it opens itself), /proc/sysvipc/shm
// and the cgroup files.
//
// Every parser takes the file's bytes and never panics on malformed input
// (each has a fuzz target); errors wrap ErrMalformed.
package linux

import (
	"errors"
	"fmt"
	"math"
)

// ErrMalformed is wrapped by every parse error.
var ErrMalformed = errors.New("malformed")

// Unlimited is the value of a resource limit of "unlimited" (RLIM_INFINITY).
const Unlimited = math.MaxUint64

func malformed(file, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", file, ErrMalformed, fmt.Sprintf(format, args...))
}

// parseUint parses the leading decimal digits of b, ignoring leading spaces
// and tabs. It returns the value and the rest of b after the digits.
func parseUint(b []byte) (uint64, []byte, bool) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	start := i
	var v uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		d := uint64(b[i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, nil, false
		}
		v = v*10 + d
		i++
	}
	if i == start {
		return 0, nil, false
	}
	return v, b[i:], true
}

// parseKB parses "   1234 kB" into bytes.
func parseKB(b []byte) (uint64, bool) {
	v, rest, ok := parseUint(b)
	if !ok {
		return 0, false
	}
	rest = trimSpace(rest)
	if string(rest) != "kB" {
		return 0, false
	}
	if v > math.MaxUint64/1024 {
		return 0, false
	}
	return v * 1024, true
}

// parseHex parses a hexadecimal number surrounded by optional white space.
func parseHex(b []byte) (uint64, bool) {
	b = trimSpace(b)
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

// nextLine returns the first line of b (without its newline) and the rest.
func nextLine(b []byte) (line, rest []byte) {
	for i, c := range b {
		if c == '\n' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}

// hasPrefix is bytes.HasPrefix for a string prefix, without a conversion.
func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}
