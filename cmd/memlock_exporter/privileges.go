package main

import (
	"log/slog"
	"strconv"

	"github.com/memlock-exporter/memlock_exporter/collector"
	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// missingPrivileges says, once at start, what this exporter cannot read with
// the capabilities it has, so that absent series are not a mystery.
func missingPrivileges(cfg collector.Config, logger *slog.Logger) []string {
	s, err := linux.SelfStatus("/proc")
	if err != nil {
		return nil
	}
	var missing []string
	if cfg.Process.Smaps && s.CapEff&linux.CapSysPtrace == 0 {
		// ptrace_may_access (PTRACE_MODE_READ) also refuses a process of
		// the same uid that is not dumpable (setuid or setgid programs,
		// prctl(PR_SET_DUMPABLE, 0): ssh-agent, gpg-agent, many daemons
		// that lock secrets) unless the reader has CAP_SYS_PTRACE.
		missing = append(missing, "CAP_SYS_PTRACE: memlock_process_locked_resident_bytes only for the dumpable processes of uid "+
			strconv.FormatUint(uint64(s.UID), 10)+" (not for a non-dumpable one, e.g. set with prctl(PR_SET_DUMPABLE, 0) or started setuid, even of that uid); the others count in memlock_process_read_failures{file=\"smaps_rollup\",reason=\"permission\"}")
	}
	for _, m := range missing {
		logger.Info("running without a privilege", "missing", m)
	}
	return missing
}
