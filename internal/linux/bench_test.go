package linux_test

// Benchmarks of every parser on the fixtures in testdata, and of the whole
// read+parse of a live status file against prometheus/procfs's
// Proc.NewStatus, which is what justifies keeping a status parser of our own.
// Run with: go test -run '^$' -bench . -benchmem ./internal/linux

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/procfs"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

func benchInput(b *testing.B, name string) []byte {
	b.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	return data
}

func BenchmarkParseStatus(b *testing.B) {
	for _, name := range []string{"status.txt", "status_locked.txt", "status_kthread.txt"} {
		b.Run(name, func(b *testing.B) {
			data := benchInput(b, name)
			var st linux.Status
			for b.Loop() {
				if err := linux.ParseStatus(data, &st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseMemlockLimit(b *testing.B) {
	data := benchInput(b, "limits.txt")
	for b.Loop() {
		if _, err := linux.ParseMemlockLimit(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSmapsRollupLocked(b *testing.B) {
	data := benchInput(b, "smaps_rollup.txt")
	for b.Loop() {
		if _, err := linux.ParseSmapsRollupLocked(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseVMStat(b *testing.B) {
	data := benchInput(b, "vmstat.txt")
	for b.Loop() {
		if _, err := linux.ParseVMStat(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseMeminfo(b *testing.B) {
	data := benchInput(b, "node_meminfo.txt")
	for b.Loop() {
		if _, err := linux.ParseMeminfo(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSysvShm(b *testing.B) {
	data := benchInput(b, "sysvipc_shm.txt")
	for b.Loop() {
		if _, err := linux.ParseSysvShm(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatusSelf compares what one process costs per scrape: our
// Reader+ParseStatus against procfs's Proc.NewStatus, both reading the live
// /proc/self/status (procfs has no exported parser of bytes). The kernel's
// share (open, read, close) is the same in both; the difference is parsing
// and allocation.
func BenchmarkStatusSelf(b *testing.B) {
	pid := os.Getpid()
	b.Run("linux.Reader+ParseStatus", func(b *testing.B) {
		b.ReportAllocs()
		dir, err := linux.OpenDir("/proc")
		if err != nil {
			b.Fatal(err)
		}
		defer dir.Close()
		r := linux.NewReader(4096)
		var st linux.Status
		for b.Loop() {
			data, err := r.ReadPid(dir, pid, "status")
			if err != nil {
				b.Fatal(err)
			}
			if err := linux.ParseStatus(data, &st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("procfs.Proc.NewStatus", func(b *testing.B) {
		b.ReportAllocs()
		fs, err := procfs.NewFS("/proc")
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			p, err := fs.Proc(pid)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := p.NewStatus(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The parse alone, on bytes already read, to show the kernel's share.
	b.Run("linux.ParseStatus-only", func(b *testing.B) {
		b.ReportAllocs()
		data, err := os.ReadFile("/proc/self/status")
		if err != nil {
			b.Fatal(err)
		}
		var st linux.Status
		for b.Loop() {
			if err := linux.ParseStatus(data, &st); err != nil {
				b.Fatal(err)
			}
		}
	})
}
