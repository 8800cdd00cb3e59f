package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The cgroup fixture trees, each a host's /proc and /sys reduced to what the
// cgroup and process collectors read:
//
//	cgroupv1           hybrid v1 host (memory/ and a controller-less unified/),
//	                   kubelet's cgroupfs driver with docker, plain docker beside it
//	cgroupv2           v2, kubelet's systemd driver with containerd, docker and a
//	                   service outside Kubernetes
//	cgroupv2-cgroupfs  v2, kubelet's cgroupfs driver with CRI-O and its conmon
//
// Subtrees below a cgroup without unevictable memory hold a memory.stat that
// is not a memory.stat: reading it would fail the collector, so a passing
// golden test shows those subtrees were skipped.
var cgroupTrees = []string{"cgroupv1", "cgroupv2", "cgroupv2-cgroupfs"}

func cgroupTreeConfig(tree string) Config {
	cfg := DefaultConfig()
	cfg.ProcPath = filepath.Join("testdata", tree, "proc")
	cfg.SysPath = filepath.Join("testdata", tree, "sys")
	return cfg
}

func TestCgroupGolden(t *testing.T) {
	for _, tree := range cgroupTrees {
		t.Run(tree, func(t *testing.T) {
			cfg := cgroupTreeConfig(tree)
			assertGolden(t, cfg, "cgroup", "memlock_cgroup", filepath.Join("testdata", tree, "cgroup.prom"))

			// Include names cgroups without unevictable memory, some of them
			// below a subtree the walk would otherwise skip.
			cfg.Cgroup.Include = regexp.MustCompile(`^(?:/system\.slice/sshd\.service|/user\.slice/user-0\.slice|/kubepods(\.slice)?/kubepods-besteffort(\.slice)?|/kubepods/burstable)$`)
			assertGolden(t, cfg, "cgroup", "memlock_cgroup", filepath.Join("testdata", tree, "cgroup_include.prom"))

		})
	}
}

func TestCgroupLint(t *testing.T) {
	for _, tree := range cgroupTrees {
		problems, err := testutil.CollectAndLint(newExporter(t, cgroupTreeConfig(tree), "cgroup", "process"))
		if err != nil {
			t.Fatalf("%s: %v", tree, err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", tree, p.Metric, p.Text)
		}
	}
}

func TestDetectCgroupHierarchy(t *testing.T) {
	mk := func(t *testing.T, files map[string]string) string {
		dir := t.TempDir()
		for name, content := range files {
			p := filepath.Join(dir, "fs", "cgroup", name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		root  string // relative to fs/cgroup; "" with err
		v2    bool
		err   bool
	}{
		{"unified", map[string]string{"cgroup.controllers": "cpuset cpu io memory pids\n"}, ".", true, false},
		{"unified without memory", map[string]string{"cgroup.controllers": "cpu pids\n"}, "", false, true},
		{"hybrid", map[string]string{"unified/cgroup.controllers": "", "memory/memory.stat": "unevictable 0\n"}, "memory", false, false},
		{"pure v1", map[string]string{"memory/memory.stat": "unevictable 0\n", "cpu/cpu.shares": "1024\n"}, "memory", false, false},
		{"hybrid with memory on unified", map[string]string{"unified/cgroup.controllers": "memory\n"}, "unified", true, false},
		{"nothing", map[string]string{"unified/cgroup.controllers": ""}, "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := mk(t, tc.files)
			h, err := linux.FindMemoryHierarchy(sys)
			if tc.err {
				// A host without the memory controller has no data, which
				// is not a failure.
				if !errors.Is(err, linux.ErrNoMemoryController) {
					t.Fatalf("got %+v, %v, want ErrNoMemoryController", h, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(sys, "fs", "cgroup", tc.root); h.Root != want || h.V2 != tc.v2 {
				t.Errorf("got %+v, want root %s v2 %v", h, want, tc.v2)
			}
		})
	}
}

func TestCgroupMalformedAndVanished(t *testing.T) {
	cfg := cgroupTreeConfig("cgroupv2")
	cfg.SysPath = copyTree(t, cfg.SysPath)
	cg := filepath.Join(cfg.SysPath, "fs", "cgroup")
	// A malformed memory.stat fails the collector but not the walk.
	if err := os.WriteFile(filepath.Join(cg, "system.slice", "chronyd.service", "memory.stat"), []byte("unevictable lots\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A cgroup removed between listing and reading is skipped silently.
	if err := os.Remove(filepath.Join(cg, "system.slice", "docker-3b1f9a6c2d8e4f7a0b5c9d1e3f6a8b2c4d7e9f0a1b3c5d8e2f4a6b9c1d3e5f7a.scope", "memory.stat")); err != nil {
		t.Fatal(err)
	}
	out := scrapeText(t, cfg, "cgroup")
	for _, want := range []string{
		`memlock_scrape_collector_success{collector="cgroup"} 0`,
		`memlock_cgroup_subtree_unevictable_bytes{cgroup="/kubepods.slice/kubepods-pod` + "c2e4a6b8_1d3f_4a5c_9e7b_2f4d6a8c0e1b" + `.slice",container_id="",pod_uid="c2e4a6b8-1d3f-4a5c-9e7b-2f4d6a8c0e1b"} 2.097152e+06`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	if strings.Contains(out, "chronyd") || strings.Contains(out, "docker-") {
		t.Errorf("malformed or vanished cgroups reported:\n%s", out)
	}
}

func TestCgroupDeadline(t *testing.T) {
	e := newExporter(t, cgroupTreeConfig("cgroupv2"), "cgroup")
	c := e.collectors["cgroup"]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ch := make(chan prometheus.Metric, 100)
	if err := c.Update(ctx, &Scrape{}, ch); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("Update on a canceled context: %v", err)
	}
}

func TestCgroupMayMatchBelow(t *testing.T) {
	for _, tc := range []struct {
		include, cg string
		want        bool
	}{
		{`/system\.slice/sshd\.service`, "/system.slice", true},
		{`/system\.slice/sshd\.service`, "/", true},
		{`/system\.slice/sshd\.service`, "/user.slice", false},
		{`/system\.slice/sshd\.service`, "/system.slice/sshd.service", true}, // its sub-cgroups could match a longer include; harmless
		{`/kubepods\.slice/.*`, "/kubepods.slice/kubepods-besteffort.slice", true},
		{`/kubepods\.slice/.*`, "/system.slice", false},
		{`.*foo`, "/anything", true},
	} {
		c := &cgroupCollector{include: regexp.MustCompile("^(?:" + tc.include + ")$")}
		c.includePrefix, _ = c.include.LiteralPrefix()
		w := &cgroupWalk{c: c}
		if got := w.mayMatchBelow(tc.cg); got != tc.want {
			t.Errorf("include %q (prefix %q), below %q: %v, want %v", tc.include, c.includePrefix, tc.cg, got, tc.want)
		}
	}
	// No include: nothing below a zero cgroup is visited.
	if (&cgroupWalk{c: &cgroupCollector{}}).mayMatchBelow("/") {
		t.Error("no include matched below /")
	}
}

func TestCgroupNonUTF8Name(t *testing.T) {
	cfg := cgroupTreeConfig("cgroupv2")
	cfg.SysPath = copyTree(t, cfg.SysPath)
	bad := filepath.Join(cfg.SysPath, "fs", "cgroup", "system.slice", "bad\xffname")
	if err := os.Mkdir(bad, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bad, "memory.stat"), []byte("unevictable 4096\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := scrapeText(t, cfg, "cgroup")
	if !strings.Contains(out, "memlock_cgroup_unevictable_bytes{cgroup=\"/system.slice/bad\uFFFDname\"") {
		t.Errorf("non-UTF-8 cgroup name not reported with a replacement character:\n%s", out)
	}
}

// TestCgroupCap (10.6): a node of 300 pods whose 903 cgroups all qualify
// (--collector.cgroup.include=.*) answers with at most MaxCgroups cgroups'
// series and counts the others; the first reported is the root.
func TestCgroupCap(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds and walks a tree of 900 cgroups")
	}
	const pods, max = 300, 100
	const cgroups = 3 + 3*pods // root, kubepods, the QoS slice, 3 per pod
	cfg := DefaultConfig()
	cfg.SysPath = benchCgroupTree(t, pods)
	cfg.Cgroup.Include = regexp.MustCompile(`^(?:.*)$`)
	cfg.Cgroup.MaxCgroups = max
	out := scrapeText(t, cfg, "cgroup")
	if n := strings.Count(out, "\nmemlock_cgroup_unevictable_bytes{"); n != max {
		t.Errorf("%d cgroups reported, want %d", n, max)
	}
	for _, want := range []string{
		fmt.Sprintf("memlock_cgroups_reported %d\n", max),
		fmt.Sprintf("memlock_cgroups_omitted %d\n", cgroups-max),
		`memlock_cgroup_subtree_unevictable_bytes{cgroup="/",container_id="",pod_uid=""} 1.048576e+06`,
		`memlock_scrape_collector_success{collector="cgroup"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q", want)
		}
	}
}

// TestCgroupOwnSumsToRoot: the cgroups' own unevictable bytes add up to the
// root's hierarchical value in the fixture's memory.stat, so sum() over the
// default series counts every page once; the subtree series, which repeat
// their children's, add up to more wherever a cgroup has a reported child.
func TestCgroupOwnSumsToRoot(t *testing.T) {
	for _, tree := range cgroupTrees {
		cfg := cgroupTreeConfig(tree)
		h, err := linux.FindMemoryHierarchy(cfg.SysPath)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(h.Root, "memory.stat"))
		if err != nil {
			t.Fatal(err)
		}
		var root linux.MemoryStat
		if err := linux.ParseMemoryStat(b, &root); err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(newExporter(t, cfg, "cgroup"))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		sums := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				sums[mf.GetName()] += m.GetGauge().GetValue()
			}
		}
		if got, want := sums["memlock_cgroup_unevictable_bytes"], float64(root.Hierarchical()); got != want || want == 0 {
			t.Errorf("%s: sum(memlock_cgroup_unevictable_bytes) = %v, want the root's %v", tree, got, want)
		}
		if sums["memlock_cgroup_subtree_unevictable_bytes"] <= float64(root.Hierarchical()) {
			t.Errorf("%s: the subtree series add up to %v, no more than the root's %v: the fixture has no nesting to test", tree, sums["memlock_cgroup_subtree_unevictable_bytes"], root.Hierarchical())
		}
	}
}

// TestCgroupNoMemoryController: on a v2 host whose root lacks the memory
// controller the cgroup collector reports no cgroup series and succeeds,
// says why once at Info and then only at Debug; a --path.sysfs without a
// cgroup file system at all is a failure.
func TestCgroupNoMemoryController(t *testing.T) {
	sys := t.TempDir()
	base := filepath.Join(sys, "fs", "cgroup")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "cgroup.controllers"), []byte("cpuset cpu io pids\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.SysPath = sys
	var logs bytes.Buffer
	e, err := New(cfg, []string{"cgroup"}, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	for range 3 {
		out := string(gatherText(t, reg))
		if !strings.Contains(out, `memlock_scrape_collector_success{collector="cgroup"} 1`) {
			t.Errorf("collector not successful:\n%s", out)
		}
		if strings.Contains(out, "memlock_cgroup_") {
			t.Errorf("cgroup series without a memory controller:\n%s", out)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("want one INFO line over three scrapes, got:\n%s", logs.String())
	}

	cfg.SysPath = filepath.Join(sys, "missing")
	out := scrapeText(t, cfg, "cgroup")
	if !strings.Contains(out, `memlock_scrape_collector_success{collector="cgroup"} 0`) {
		t.Errorf("no cgroup file system is not a failure:\n%s", out)
	}
}
