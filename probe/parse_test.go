package probe

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseProcCgroup(t *testing.T) {
	ref, err := parseProcCgroup(readTestdata(t, "cgroup_v1_hybrid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if ref.v2 || ref.path != "/process_api/c31df64abe72c8890ec77b178c827f6e" {
		t.Errorf("hybrid host: got %+v", ref)
	}
	ref, err = parseProcCgroup([]byte("0::/system.slice/memlock_exporter.service\n"))
	if err != nil || !ref.v2 || ref.path != "/system.slice/memlock_exporter.service" {
		t.Errorf("v2: got %+v, %v", ref, err)
	}
	for _, bad := range []string{"", "garbage\n", "4:memory\n", "4:memory:relative\n", "1:cpu:/\n"} {
		if _, err := parseProcCgroup([]byte(bad)); !errors.Is(err, errMalformed) {
			t.Errorf("%q: err %v, want errMalformed", bad, err)
		}
	}
}

func TestParseCgroupValueAndMeminfo(t *testing.T) {
	if v, err := parseCgroupValue(readTestdata(t, "memory.limit_in_bytes")); err != nil || v != unlimited {
		t.Errorf("v1 no limit: %d, %v", v, err)
	}
	if v, err := parseCgroupValue([]byte("max\n")); err != nil || v != unlimited {
		t.Errorf("max: %d, %v", v, err)
	}
	if v, err := parseCgroupValue([]byte("268435456\n")); err != nil || v != 256<<20 {
		t.Errorf("256 MiB: %d, %v", v, err)
	}
	if _, err := parseCgroupValue([]byte("-1")); !errors.Is(err, errMalformed) {
		t.Errorf("-1: %v", err)
	}
}

// cgroupHeadroomAt takes the least limit minus usage over the ancestors.
func TestCgroupHeadroomAt(t *testing.T) {
	root := t.TempDir()
	leaf := filepath.Join(root, "kubepods", "pod")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(dir, name, v string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// v2: the leaf has no limit, its parent 100 MiB with 40 MiB used.
	write(leaf, "memory.max", "max")
	write(leaf, "memory.current", "1048576")
	write(filepath.Dir(leaf), "memory.max", "104857600")
	write(filepath.Dir(leaf), "memory.current", "41943040")
	if v, ok := cgroupHeadroomAt(leaf, root, true); !ok || v != 60<<20 {
		t.Errorf("v2: %d, %t; want %d", v, ok, 60<<20)
	}
	// v1: the leaf's own limit binds, and usage over the limit is 0.
	write(leaf, "memory.limit_in_bytes", "8388608")
	write(leaf, "memory.usage_in_bytes", "9000000")
	if v, ok := cgroupHeadroomAt(leaf, root, false); !ok || v != 0 {
		t.Errorf("v1 over limit: %d, %t; want 0", v, ok)
	}
	if _, ok := cgroupHeadroomAt(filepath.Join(root, "absent"), root, false); ok {
		t.Error("a cgroup without files must be unknown")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Bytes{"4096": 4096, "32KiB": 32 << 10, "1MiB": 1 << 20, "2 MiB": 2 << 20, "3MB": 3 << 20, "1GiB": 1 << 30, "auto": 0, "8KB": 8 << 10, "1TiB": 1 << 40} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "MiB", "12 parsecs", "-1", "99999999999999999999", "17179869184GiB", "0", "0KiB", "00 MiB", "8k", "8K", "8kB", "2 M", "1.5MiB", "1GiB512MiB", "+1", "1MiB1", "16EiB", "1 KiB B"} {
		if _, err := ParseSize(bad); !errors.Is(err, errMalformed) {
			t.Errorf("ParseSize(%q): err %v, want errMalformed", bad, err)
		}
	}
}

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig(readTestdata(t, "config.yml"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if m := c.Modules["onfault_1m"]; m.Mode != ModeOnfault || m.Size != 1<<20 || m.TouchSize != 256<<10 {
		t.Errorf("onfault_1m: %+v", m)
	}
	if m := c.Modules["mlockall_populate"]; m.mlockallOnFault() || mlockallFlags(m) != 3 {
		t.Errorf("mlockall_populate: onfault %t flags %d", m.mlockallOnFault(), mlockallFlags(m))
	}
	if _, err := ParseConfig(readTestdata(t, "config.yml"), 1<<20); err == nil {
		t.Error("a module over the byte budget must be refused")
	}
	for _, bad := range []string{
		"modules:\n  x:\n    mode: mlockx\n",
		"modules:\n  x:\n    mode: mlock\n    sise: 1MiB\n",
		"modules:\n  x:\n    mode: populate\n    hugepages: true\n",
		"modules:\n  x:\n    mode: mlock\n    onfault: true\n",
		"modules:\n  x:\n    mode: mlock\n    size: lots\n",
	} {
		if _, err := ParseConfig([]byte(bad), 64<<20); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseSizeUnits(f *testing.F) {
	for _, s := range []string{"32KiB", "1MiB", "4096", "auto", "2 G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := ParseSize(s); err != nil && !errors.Is(err, errMalformed) {
			t.Fatal(err)
		}
	})
}

// FuzzParseConfigTestdata checks a round trip: a configuration that
// parses, written back out as YAML from the parsed modules (sizes in
// Bytes.String's spelling), parses to the same modules. A field the parser
// drops, a size whose String form parses to another value, or a value the
// decoder reads differently the second time fails it.
func FuzzParseConfigTestdata(f *testing.F) {
	f.Add(readTestdata(f, "config.yml"))
	f.Add([]byte("modules:\n  a:\n    mode: onfault\n    size: 12345\n    touch_size: 1KB\n    timeout: 1m30s\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, 64<<20)
		if err != nil {
			return
		}
		out, ok := renderConfig(c)
		if !ok {
			return // a name JSON cannot quote faithfully (not UTF-8)
		}
		back, err := ParseConfig(out, 64<<20)
		if err != nil {
			t.Fatalf("the parsed config, written back, does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(c.Modules, back.Modules) {
			t.Fatalf("round trip changed the modules:\n%#v\n%#v\n%s", c.Modules, back.Modules, out)
		}
	})
}

// renderConfig writes c as a configuration file. Names and modes are JSON
// strings, which YAML reads as double-quoted scalars.
func renderConfig(c *Config) ([]byte, bool) {
	var w bytes.Buffer
	w.WriteString("modules:\n")
	q := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	for name, m := range c.Modules {
		if !utf8.ValidString(name) || !utf8.ValidString(string(m.Mode)) {
			return nil, false
		}
		fmt.Fprintf(&w, "  %s:\n    mode: %s\n    size: %s\n", q(name), q(string(m.Mode)), m.Size)
		if m.ChunkSize > 0 {
			fmt.Fprintf(&w, "    chunk_size: %s\n", m.ChunkSize)
		}
		if m.TouchSize > 0 {
			fmt.Fprintf(&w, "    touch_size: %s\n", m.TouchSize)
		}
		if m.HugePages {
			w.WriteString("    hugepages: true\n")
		}
		if m.OnFault != nil {
			fmt.Fprintf(&w, "    onfault: %t\n", *m.OnFault)
		}
		if m.Current != nil {
			fmt.Fprintf(&w, "    current: %t\n", *m.Current)
		}
		if m.Timeout != 0 {
			fmt.Fprintf(&w, "    timeout: %s\n", m.Timeout)
		}
		if m.IgnoreHeadroom {
			w.WriteString("    ignore_headroom: true\n")
		}
	}
	return w.Bytes(), true
}
