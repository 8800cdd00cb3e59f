package collector_test

// Benchmarks of a whole collection against the machine's real /proc: what
// one scrape costs the exporter before HTTP and exposition. The process
// count is whatever the machine runs; `make bench` (bench/) measures at
// 1,000 and 10,000 processes.
// Run with: go test -run '^$' -bench . -benchmem ./collector

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/memlock-exporter/memlock_exporter/collector"
)

func benchCollect(b *testing.B, names []string) {
	cfg := collector.DefaultConfig()
	cfg.Process.MaxProcesses = 0
	e, err := collector.New(cfg, names, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	series := 0
	for b.Loop() {
		ch := make(chan prometheus.Metric, 256)
		done := make(chan int)
		go func() {
			n := 0
			for range ch {
				n++
			}
			done <- n
		}()
		e.Collect(ch)
		close(ch)
		series = <-done
	}
	b.ReportMetric(float64(series), "series/op")
}

// BenchmarkExporterCollect runs every default collector, as a scrape does.
func BenchmarkExporterCollect(b *testing.B) {
	var names []string
	for _, c := range collector.Available() {
		if c.DefaultEnabled {
			names = append(names, c.Name)
		}
	}
	benchCollect(b, names)
}

// BenchmarkProcessScan runs the process and user collectors alone: the
// /proc walk that grows with the number of processes.
func BenchmarkProcessScan(b *testing.B) {
	benchCollect(b, []string{"process", "user"})
}
