package checks

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	unitPath   = "deploy/systemd/memlock_exporter.service"
	dropInPath = "deploy/systemd/probes.conf"
	bpfDropIn  = "deploy/systemd/bpf.conf"
)

// parseUnit reads a systemd unit: section -> key -> values, in order.
func parseUnit(t *testing.T, b []byte) map[string]map[string][]string {
	return parseUnitFile(t, unitPath, b)
}

func parseUnitFile(t *testing.T, unitPath string, b []byte) map[string]map[string][]string {
	t.Helper()
	u := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", unitPath, n, l)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, readFile(t, unitPath))
	s := u["Service"]
	one := func(k string) string {
		if len(s[k]) != 1 {
			t.Errorf("[Service] %s set %d times, want once", k, len(s[k]))
			return ""
		}
		return s[k][0]
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"NoNewPrivileges": "yes", "MemoryDenyWriteExecute": "yes", "PrivateDevices": "yes",
		"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
		"RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
		"SystemCallArchitectures": "native",
	} {
		if got := one(k); got != want {
			t.Errorf("[Service] %s=%s, want %s", k, got, want)
		}
	}
	caps := func(k string) []string {
		f := strings.Fields(one(k))
		slices.Sort(f)
		return f
	}
	// CAP_IPC_LOCK only comes with the probes, in the drop-in
	// (TestSystemdProbesDropIn): probes are off by default.
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if got := caps(k); !slices.Equal(got, []string{"CAP_SYS_PTRACE"}) {
			t.Errorf("[Service] %s=%v, want exactly CAP_SYS_PTRACE", k, got)
		}
	}
	if len(s["LimitMEMLOCK"]) != 0 {
		t.Error("[Service] LimitMEMLOCK is the probes' budget: it belongs in the drop-in")
	}
	// Localhost by default: no authentication on the listener.
	execStart := one("ExecStart")
	if !strings.Contains(execStart, "--web.listen-address=${MEMLOCK_EXPORTER_LISTEN}") ||
		!slices.Contains(s["Environment"], "MEMLOCK_EXPORTER_LISTEN=127.0.0.1:9947") {
		t.Errorf("the unit must listen on 127.0.0.1:9947 unless told otherwise: ExecStart=%s Environment=%v", execStart, s["Environment"])
	}
	if !strings.Contains(execStart, "$MEMLOCK_EXPORTER_PROBE_ARGS") || hasArgPrefix(strings.Fields(execStart), "--probe.") {
		t.Errorf("probes must be off in the base unit and come from the drop-in's MEMLOCK_EXPORTER_PROBE_ARGS: ExecStart=%s", execStart)
	}
	fams := strings.Fields(one("RestrictAddressFamilies"))
	slices.Sort(fams)
	if !slices.Equal(fams, []string{"AF_INET", "AF_INET6", "AF_UNIX"}) {
		t.Errorf("RestrictAddressFamilies=%v, want AF_INET AF_INET6 AF_UNIX", fams)
	}
	filter := strings.Join(s["SystemCallFilter"], " ")
	for _, want := range []string{"@system-service", "mincore"} {
		if !slices.Contains(strings.Fields(filter), want) {
			t.Errorf("SystemCallFilter lacks %s (the probes' verification calls mincore, which @system-service leaves out)", want)
		}
	}
	// Settings that would blind the exporter.
	for k, bad := range map[string]string{"ProtectProc": "invisible", "ProcSubset": "pid", "PrivateUsers": "yes", "PrivateNetwork": "yes"} {
		if slices.Contains(s[k], bad) {
			t.Errorf("[Service] %s=%s hides what the exporter must read or serve", k, bad)
		}
	}
	if exe := strings.Fields(execStart); len(exe) == 0 || filepath.Base(exe[0]) != "memlock_exporter" {
		t.Errorf("ExecStart %v does not start memlock_exporter", exe)
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("[Install] WantedBy is missing: systemctl enable would do nothing")
	}
}

// TestSystemdProbesDropIn: the probes drop-in adds CAP_IPC_LOCK (and
// nothing else) and turns the probes on.
func TestSystemdProbesDropIn(t *testing.T) {
	d := parseUnitFile(t, dropInPath, readFile(t, dropInPath))
	s := d["Service"]
	if len(d) != 1 || s == nil {
		t.Fatalf("%s: want a [Service] section only", dropInPath)
	}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if !slices.Equal(s[k], []string{"CAP_IPC_LOCK"}) {
			t.Errorf("%s: %s=%v, want CAP_IPC_LOCK (added to the unit's list)", dropInPath, k, s[k])
		}
	}
	var probeArgs []string
	for _, e := range s["Environment"] {
		if v, ok := strings.CutPrefix(strings.Trim(e, `"`), "MEMLOCK_EXPORTER_PROBE_ARGS="); ok {
			probeArgs = strings.Fields(v)
		}
	}
	if !slices.Contains(probeArgs, "--probe.enable") {
		t.Errorf("%s: MEMLOCK_EXPORTER_PROBE_ARGS must hold --probe.enable: %v", dropInPath, probeArgs)
	}
	checkArgs(t, probeArgs)
	for _, k := range []string{"ExecStart", "NoNewPrivileges", "DynamicUser", "SystemCallFilter"} {
		if len(s[k]) != 0 {
			t.Errorf("%s: sets %s; the drop-in adds the capability and the flags only", dropInPath, k)
		}
	}
}

// TestSystemdBPFDropIn: the BPF drop-in adds CAP_BPF and CAP_PERFMON (and
// nothing else, never CAP_SYS_ADMIN), allows bpf(2), which the unit's
// ~@privileged denies, and perf_event_open(2), turns --collector.bpf=on
// through an variable the unit's ExecStart expands, and points
// --collector.lockcalls.tracefs at the tracepoint ids an ExecStartPre
// copies.
func TestSystemdBPFDropIn(t *testing.T) {
	d := parseUnitFile(t, bpfDropIn, readFile(t, bpfDropIn))
	s := d["Service"]
	if len(d) != 1 || s == nil {
		t.Fatalf("%s: want a [Service] section only", bpfDropIn)
	}
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if len(s[k]) != 1 {
			t.Errorf("%s: %s set %d times", bpfDropIn, k, len(s[k]))
			continue
		}
		f := strings.Fields(s[k][0])
		slices.Sort(f)
		if !slices.Equal(f, []string{"CAP_BPF", "CAP_PERFMON"}) {
			t.Errorf("%s: %s=%v, want exactly CAP_BPF CAP_PERFMON", bpfDropIn, k, f)
		}
	}
	if !slices.Equal(s["SystemCallFilter"], []string{"bpf perf_event_open"}) {
		t.Errorf("%s: SystemCallFilter=%v, want bpf perf_event_open (added to the unit's allow list)", bpfDropIn, s["SystemCallFilter"])
	}
	var args []string
	for _, e := range s["Environment"] {
		if v, ok := strings.CutPrefix(strings.Trim(e, `"`), "MEMLOCK_EXPORTER_BPF_ARGS="); ok {
			args = strings.Fields(v)
		}
	}
	const tracefsCopy = "/run/memlock_exporter/tracefs"
	if !slices.Equal(args, []string{"--collector.bpf=on", "--collector.lockcalls.tracefs=" + tracefsCopy}) {
		t.Errorf("%s: MEMLOCK_EXPORTER_BPF_ARGS=%v, want --collector.bpf=on --collector.lockcalls.tracefs=%s", bpfDropIn, args, tracefsCopy)
	}
	// The tracepoint ids are copied where the flag points, into the
	// runtime directory, by a root ExecStartPre whose failure is ignored.
	if !slices.Equal(s["RuntimeDirectory"], []string{"memlock_exporter"}) {
		t.Errorf("%s: RuntimeDirectory=%v, want memlock_exporter", bpfDropIn, s["RuntimeDirectory"])
	}
	if pre := s["ExecStartPre"]; len(pre) != 1 || !strings.HasPrefix(pre[0], "-+/bin/sh -c ") || !strings.Contains(pre[0], tracefsCopy+"/events/syscalls") {
		t.Errorf("%s: ExecStartPre=%v, want one -+/bin/sh -c copying the tracepoint ids into %s", bpfDropIn, pre, tracefsCopy)
	}
	checkArgs(t, args)
	u := parseUnit(t, readFile(t, unitPath))
	if es := u["Service"]["ExecStart"]; len(es) != 1 || !strings.Contains(es[0], "$MEMLOCK_EXPORTER_BPF_ARGS") {
		t.Errorf("the unit's ExecStart %v does not expand $MEMLOCK_EXPORTER_BPF_ARGS", es)
	}
	for _, k := range []string{"ExecStart", "NoNewPrivileges", "DynamicUser"} {
		if len(s[k]) != 0 {
			t.Errorf("%s: sets %s; the drop-in adds the capabilities, bpf(2) and the flag only", bpfDropIn, k)
		}
	}
}

// TestSystemdAnalyze runs systemd's own checks where systemd-analyze is
// installed (apt-get install systemd): verify must print nothing (it exits
// 0 even on unknown keys, so any output fails), and the offline security
// score must stay "OK" or better.
func TestSystemdAnalyze(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed; the unit was checked by TestSystemdUnit only")
	}
	bin, err := buildExporter()
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's binary exists: point it at the one
	// just built. The unit's name must stay memlock_exporter.service.
	dir := t.TempDir()
	unit := bytes.ReplaceAll(readFile(t, unitPath), []byte("/usr/local/bin/memlock_exporter"), []byte(bin))
	path := filepath.Join(dir, "memlock_exporter.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// And with each drop-in, found through the unit path.
	for _, dropIn := range []string{dropInPath, bpfDropIn} {
		d := filepath.Join(dir, filepath.Base(dropIn))
		if err := os.MkdirAll(filepath.Join(d, "memlock_exporter.service.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "memlock_exporter.service"), unit, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "memlock_exporter.service.d", filepath.Base(dropIn)), readFile(t, dropIn), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sa, "verify", filepath.Join(d, "memlock_exporter.service"))
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+d+":")
		if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify with %s: %v\n%s", dropIn, err, out)
		}
	}
	out, err = exec.Command(sa, "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for memlock_exporter.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", level)
	if level > 3.0 {
		t.Errorf("exposure level %.1f, want at most 3.0 (OK)", level)
	}
}
