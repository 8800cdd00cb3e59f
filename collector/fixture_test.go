package collector

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// fixturePageSize is the page size of the host the fixture tree under
// testdata/ describes (x86-64).
const fixturePageSize = 4096

// TestFixtureTreeAgrees: the fixture tree is one host, so its files say what
// one kernel would. fs/proc/meminfo.c prints Mlocked from NR_MLOCK and
// Unevictable from the unevictable LRU, the counters vmstat shows as
// nr_mlock and nr_unevictable (in pages); the NUMA nodes' meminfo add up to
// the host's.
func TestFixtureTreeAgrees(t *testing.T) {
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mi, err := linux.ParseMeminfo(read("testdata/proc/meminfo"))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := linux.ParseVMStat(read("testdata/proc/vmstat"))
	if err != nil {
		t.Fatal(err)
	}
	if mi.Mlocked != vs.NrMlock*fixturePageSize {
		t.Errorf("meminfo Mlocked %d bytes, vmstat nr_mlock %d pages = %d bytes", mi.Mlocked, vs.NrMlock, vs.NrMlock*fixturePageSize)
	}
	if mi.Unevictable != vs.NrUnevictable*fixturePageSize {
		t.Errorf("meminfo Unevictable %d bytes, vmstat nr_unevictable %d pages = %d bytes", mi.Unevictable, vs.NrUnevictable, vs.NrUnevictable*fixturePageSize)
	}
	nodes, err := filepath.Glob("testdata/sys/devices/system/node/node[0-9]*/meminfo")
	if err != nil || len(nodes) == 0 {
		t.Fatalf("no node meminfo: %v", err)
	}
	var sum linux.Meminfo
	for _, n := range nodes {
		m, err := linux.ParseMeminfo(read(n))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		sum.MemTotal += m.MemTotal
		sum.Mlocked += m.Mlocked
		sum.Unevictable += m.Unevictable
	}
	if sum.MemTotal != mi.MemTotal || sum.Mlocked != mi.Mlocked || sum.Unevictable != mi.Unevictable {
		t.Errorf("nodes add up to MemTotal %d Mlocked %d Unevictable %d, meminfo says %d %d %d",
			sum.MemTotal, sum.Mlocked, sum.Unevictable, mi.MemTotal, mi.Mlocked, mi.Unevictable)
	}
}
