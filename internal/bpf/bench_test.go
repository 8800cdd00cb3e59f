package bpf

import (
	"context"
	"fmt"
	"testing"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// The benchmarks compare one full pass of the iterator with what the /proc
// path does for the same numbers: list /proc and read and parse every
// /proc/<pid>/status (the exporter's bounded, allocation-free reader), on
// the host's processes and with 1,000 extra children. Run with
//
//	go test -run '^$' -bench 'Tasks|ProcStatus|Open' -benchtime 200x -count 5 ./internal/bpf/
//
// ns/task divides by the processes each pass saw.

func withChildren(b *testing.B, n int) {
	b.Helper()
	for range n {
		startChild(b, childOpts{uid: -1}, "lock", 0).expect("ready")
	}
}

func BenchmarkTasks(b *testing.B) {
	for _, extra := range []int{0, 1000} {
		b.Run(fmt.Sprintf("extra=%d", extra), func(b *testing.B) {
			m := openModule(b)
			withChildren(b, extra)
			ctx := context.Background()
			n := len(snapshot(b, m).Tasks)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				s, err := m.Tasks(ctx)
				if err != nil {
					b.Fatal(err)
				}
				n = len(s.Tasks)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/task")
			b.ReportMetric(float64(n), "tasks")
		})
	}
}

func BenchmarkProcStatus(b *testing.B) {
	for _, extra := range []int{0, 1000} {
		b.Run(fmt.Sprintf("extra=%d", extra), func(b *testing.B) {
			withChildren(b, extra)
			d, err := linux.OpenDir("/proc")
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			r := linux.NewReader(4096)
			var pids []int
			var st linux.Status
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				pids, err = r.Pids(d, pids[:0])
				if err != nil {
					b.Fatal(err)
				}
				n = 0
				for _, pid := range pids {
					buf, err := r.ReadPid(d, pid, "status")
					if err != nil {
						continue
					}
					if linux.ParseStatus(buf, &st) == nil {
						n++
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(max(n, 1)), "ns/task")
			b.ReportMetric(float64(n), "tasks")
		})
	}
}

// BenchmarkOpen is the load time: BTF parse, CO-RE relocation, verifier,
// link; what Open costs once at start.
func BenchmarkOpen(b *testing.B) {
	openModule(b) // skip where it cannot load
	for b.Loop() {
		m, err := Open()
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}
