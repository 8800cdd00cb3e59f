package collector_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/collector"
	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
)

// BenchmarkScanSource compares, in one run, the CPU of one scrape of the
// process and user collectors on each source with the floor, the least a
// program can do on the /proc path (bench/'s floor reader: getdents, one
// read of every /proc/<pid>/status, and for the processes with VmLck or
// VmPin above zero their limits, cgroup and, with VmLck, smaps_rollup): at the host's process count, and with MEMLOCK_BENCH_PROCS=1000,10000
// at those totals, made up with sleeping children. cpu-us/op is the
// process's user+sys CPU (getrusage RUSAGE_SELF, garbage collection and the
// iterator's kernel time included) per scrape.
//
//	go test -run '^$' -bench ScanSource -benchtime 20x ./collector/
//	MEMLOCK_BENCH_PROCS=1000,10000 go test -run '^$' -bench ScanSource -benchtime 20x -timeout 30m ./collector/
func BenchmarkScanSource(b *testing.B) {
	m, err := bpf.Open()
	if err != nil {
		b.Skipf("cannot load the task iterator here: %v", err)
	}
	defer m.Close()
	targets := []int{0}
	if env := os.Getenv("MEMLOCK_BENCH_PROCS"); env != "" {
		targets = nil
		for _, f := range strings.Split(env, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("MEMLOCK_BENCH_PROCS=%q", env)
			}
			targets = append(targets, n)
		}
	}
	var kids []*exec.Cmd
	defer func() {
		for _, c := range kids {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for _, target := range targets {
		for missing := target - countPids(b); missing > 0; missing-- {
			c := exec.Command("sleep", "3600")
			if err := c.Start(); err != nil {
				b.Fatal(err)
			}
			kids = append(kids, c)
		}
		n := countPids(b)
		b.Run(fmt.Sprintf("procs=%d/source=floor", n), func(b *testing.B) {
			// getdents of /proc into one buffer, then openat, one read
			// and close of each status: no parsing, no allocation.
			proc, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer unix.Close(proc)
			buf, dents := make([]byte, 4096), make([]byte, 32<<10)
			path := make([]byte, 0, 32)
			measure(b, func() {
				_, _ = unix.Seek(proc, 0, 0)
				for {
					nb, err := unix.Getdents(proc, dents)
					if err != nil || nb <= 0 {
						break
					}
					for d := dents[:nb]; len(d) >= 19; {
						reclen := int(d[16]) | int(d[17])<<8
						name := d[19:reclen]
						d = d[reclen:]
						if len(name) == 0 || name[0] < '1' || name[0] > '9' {
							continue
						}
						path = path[:0]
						for _, c := range name {
							if c == 0 {
								break
							}
							path = append(path, c)
						}
						path = append(path, "/status"...)
						fd, err := unix.Openat(proc, string(path), unix.O_RDONLY|unix.O_CLOEXEC, 0)
						if err != nil {
							continue
						}
						nr, _ := unix.Read(fd, buf)
						unix.Close(fd)
						if nr <= 0 {
							continue
						}
						locked, pinned := nonZero(buf[:nr], "VmLck:"), nonZero(buf[:nr], "VmPin:")
						if !locked && !pinned {
							continue
						}
						files := []string{"/limits", "/cgroup", "/smaps_rollup"}
						if !locked {
							files = files[:2]
						}
						for _, f := range files {
							path = append(path[:len(path)-len("/status")], f...)
							if fd, err := unix.Openat(proc, string(path), unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
								_, _ = unix.Read(fd, buf)
								unix.Close(fd)
							}
							path = append(path[:len(path)-len(f)], "/status"...)
						}
					}
				}
			})
		})
		for _, src := range []string{"procfs", "bpf"} {
			b.Run(fmt.Sprintf("procs=%d/source=%s", n, src), func(b *testing.B) {
				cfg := collector.DefaultConfig()
				if src == "bpf" {
					cfg.Tasks = m
				}
				e, err := collector.New(cfg, []string{"process", "user"}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if got, _ := e.ScanSource(); got != src {
					b.Fatalf("source %s, want %s", got, src)
				}
				measure(b, func() { collectAll(e) })
			})
		}
	}
}

// nonZero reports whether the status line key holds a number above 0.
func nonZero(b []byte, key string) bool {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return false
	}
	for _, c := range b[i+len(key):] {
		switch {
		case c == ' ' || c == '\t':
		case c >= '1' && c <= '9':
			return true
		default:
			return false
		}
	}
	return false
}

// measure runs f b.N times and reports the process's CPU per run.
func measure(b *testing.B, f func()) {
	b.Helper()
	b.ReportAllocs()
	c0 := processCPU()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64((processCPU()-c0).Microseconds())/float64(b.N), "cpu-us/op")
}

func processCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func collectAll(e *collector.Exporter) {
	ch := make(chan prometheus.Metric, 256)
	done := make(chan struct{})
	go func() {
		for range ch {
		}
		close(done)
	}()
	e.Collect(ch)
	close(ch)
	<-done
}

func listPids(b *testing.B, pids []int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func countPids(b *testing.B) int { return len(listPids(b, nil)) }
