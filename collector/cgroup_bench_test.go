package collector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// benchCgroupTree writes a cgroup v2 tree shaped like a busy node: that many
// Burstable pods of two containers each (3 cgroups per pod), of which only
// the first pod holds unevictable memory.
func benchCgroupTree(b testing.TB, pods int) string {
	b.Helper()
	sys := b.TempDir()
	root := filepath.Join(sys, "fs", "cgroup")
	write := func(dir string, unevictable int) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		stat := fmt.Sprintf("anon 1048576\nfile 0\nunevictable %d\nslab 0\n", unevictable)
		for name, content := range map[string]string{"memory.stat": stat, "memory.max": "max\n", "memory.current": "1048576\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpu memory pids\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	const locked = 1 << 20
	write(root, locked)
	write(filepath.Join(root, "kubepods.slice"), locked)
	qos := filepath.Join(root, "kubepods.slice", "kubepods-burstable.slice")
	write(qos, locked)
	for i := 0; i < pods; i++ {
		v := 0
		if i == 0 {
			v = locked
		}
		pod := filepath.Join(qos, fmt.Sprintf("kubepods-burstable-pod%08x_0000_4000_8000_000000000000.slice", i))
		write(pod, v)
		write(filepath.Join(pod, fmt.Sprintf("cri-containerd-%064x.scope", 2*i)), v)
		write(filepath.Join(pod, fmt.Sprintf("cri-containerd-%064x.scope", 2*i+1)), 0)
	}
	return sys
}

// BenchmarkCgroupWalk: a scrape of the cgroup collector on a node of 1,000
// pods (3,003 cgroups), pruned as by default, and with an include flag that
// can match anywhere (every directory listed, memory.stat still read only
// where the parent has unevictable memory).
func BenchmarkCgroupWalk(b *testing.B) {
	sys := benchCgroupTree(b, 1000)
	for _, bc := range []struct {
		name    string
		include *regexp.Regexp
	}{
		{"pruned", nil},
		{"include-anywhere", regexp.MustCompile(`^(?:.*nothing-matches)$`)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.SysPath = sys
			cfg.Cgroup.Include = bc.include
			e := newExporter(b, cfg, "cgroup")
			c := e.collectors["cgroup"]
			b.ReportAllocs()
			for b.Loop() {
				ch := make(chan prometheus.Metric, 64)
				go func() {
					for range ch {
					}
				}()
				if err := c.Update(context.Background(), &Scrape{}, ch); err != nil {
					b.Fatal(err)
				}
				close(ch)
			}
		})
	}
}
