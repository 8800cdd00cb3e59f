package probe

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// standaloneLock is the minimal loop the probe is measured against: map
// fresh anonymous memory (2 MiB aligned for huge pages), mlock it, munlock,
// unmap. It returns how long mlock took.
func standaloneLock(b *testing.B, size int, huge bool) time.Duration {
	extra := 0
	if huge {
		extra = hugePageSize
	}
	m, err := unix.Mmap(-1, 0, size+extra, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(m)
	mem := m[:size]
	if huge {
		off := int((uintptr(hugePageSize) - addrOf(m)%hugePageSize) % hugePageSize)
		mem = m[off : off+size]
		if err := unix.Madvise(mem, unix.MADV_HUGEPAGE); err != nil {
			b.Fatal(err)
		}
	}
	t := time.Now()
	err = unix.Mlock(mem)
	d := time.Since(t)
	if err != nil {
		b.Fatal(err)
	}
	if err := unix.Munlock(mem); err != nil {
		b.Fatal(err)
	}
	return d
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkLockOverhead compares, in the same run and alternating, the lock
// latency the mlock probe reports with the standalone loop's on the same
// size of fresh memory, for 4 KiB pages and for transparent huge pages.
// It reports the median of each per 4 KiB page and the probe's overhead in
// percent (median against median).
func BenchmarkLockOverhead(b *testing.B) {
	const size = 4 << 20
	thp, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	for _, tc := range []struct {
		name string
		huge bool
	}{{"4KiB", false}, {"THP", true}} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.huge && !strings.Contains(string(thp), "[always]") && !strings.Contains(string(thp), "[madvise]") {
				b.Skipf("transparent huge pages are %q", strings.TrimSpace(string(thp)))
			}
			env := NewEnv("/proc", "")
			if h := env.Headroom(); h.Effective < 2*size {
				b.Skipf("this process can lock only %d bytes", h.Effective)
			}
			r, err := NewRunner(Options{Env: env, MaxBytes: size})
			if err != nil {
				b.Fatal(err)
			}
			m := Module{Mode: ModeMlock, Size: size, HugePages: tc.huge}
			log := slog.New(slog.DiscardHandler)
			var probeLock, alone []time.Duration
			var huge uint64
			for i := 0; b.Loop(); i++ {
				if i%2 == 0 {
					alone = append(alone, standaloneLock(b, size, tc.huge))
				}
				res := r.Probe(context.Background(), "mlock", m, log)
				if !res.Success {
					b.Fatalf("%s: %v", res.Reason, res.Err)
				}
				probeLock = append(probeLock, res.Phases[PhaseLock])
				huge += res.HugeBytes
				if i%2 == 1 {
					alone = append(alone, standaloneLock(b, size, tc.huge))
				}
			}
			// Medians: the other core's noise lands in a few samples, not
			// in the typical one.
			const pages = size / 4096
			p, a := median(probeLock), median(alone)
			b.ReportMetric(float64(p.Nanoseconds())/pages, "probe-ns/page")
			b.ReportMetric(float64(a.Nanoseconds())/pages, "loop-ns/page")
			b.ReportMetric(100*(float64(p)/float64(a)-1), "overhead-%")
			b.ReportMetric(float64(huge)/float64(b.N)/size*100, "thp-%")
		})
	}
}
