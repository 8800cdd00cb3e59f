package bench

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes where the harness ran.
type Machine struct {
	CPUs     int
	CPUModel string
	Kernel   string
	MemTotal uint64
	PidMax   int
	Go       string
	Revision string
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	m.MemTotal = statusLikeKB("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		m.PidMax, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Revision = strings.TrimSpace(string(out))
	}
	return m
}

func statusLikeKB(path, key string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			if f := strings.Fields(line[len(key)+1:]); len(f) > 0 {
				v, _ := strconv.ParseUint(f[0], 10, 64)
				return v << 10
			}
		}
	}
	return 0
}

// checkPidRoom makes sure n more processes fit under kernel.pid_max and
// threads-max, raising them where allowed.
func checkPidRoom(n int, logf func(string, ...any)) error {
	need := n + n/2 + 4096
	for _, f := range []string{"/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		cur, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if cur >= need {
			continue
		}
		if err := os.WriteFile(f, []byte(strconv.Itoa(need)), 0); err != nil {
			return fmt.Errorf("%s is %d, %d processes need about %d, and it cannot be raised: %v", f, cur, n, need, err)
		}
		logf("raised %s from %d to %d", f, cur, need)
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NPROC, &rl) == nil && os.Geteuid() != 0 && rl.Cur != unix.RLIM_INFINITY && rl.Cur < uint64(need) {
		return fmt.Errorf("ulimit -u is %d; %d processes need more", rl.Cur, n)
	}
	return nil
}
