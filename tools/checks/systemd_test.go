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

const unitPath = "deploy/systemd/memlock_exporter.service"

// parseUnit reads a systemd unit: section -> key -> values, in order.
func parseUnit(t *testing.T, b []byte) map[string]map[string][]string {
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
	for _, k := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if got := caps(k); !slices.Equal(got, []string{"CAP_IPC_LOCK", "CAP_SYS_PTRACE"}) {
			t.Errorf("[Service] %s=%v, want exactly CAP_IPC_LOCK CAP_SYS_PTRACE", k, got)
		}
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
	if exe := strings.Fields(one("ExecStart")); len(exe) == 0 || filepath.Base(exe[0]) != "memlock_exporter" {
		t.Errorf("ExecStart %v does not start memlock_exporter", exe)
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("[Install] WantedBy is missing: systemctl enable would do nothing")
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
