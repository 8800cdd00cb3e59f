package collector

import (
	"context"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkDyingLocker measures the cost of reading a dying locker (mmput
// in the reader's syscall, kernel/fork.c): a process that locked
// MEMLOCK_BENCH_DYING_LOCKER MiB is killed while the exporter reads
// its status in a loop (as a scan does, from two goroutines, so that a
// read almost always holds a reference on its mm) and while full scrapes
// and GCs run. The read that drops the last reference tears the address
// space down in the exporter's syscall. Reported per run (one dying
// locker each): the longest status read, the longest scrape, the longest
// GC stop-the-world pause (runtime/metrics /sched/pauses/total/gc:seconds)
// and how late a 1 ms sleep woke at worst. Off by default (it locks
// gigabytes): MEMLOCK_BENCH_DYING_LOCKER=2048 go test -run '^$' -bench DyingLocker -benchtime 3x ./collector
func BenchmarkDyingLocker(b *testing.B) {
	mib, _ := strconv.Atoi(os.Getenv("MEMLOCK_BENCH_DYING_LOCKER"))
	if mib <= 0 {
		b.Skip("set MEMLOCK_BENCH_DYING_LOCKER to the locker's size in MiB (at most 4096 on a 24 GiB machine)")
	}
	if os.Geteuid() != 0 {
		b.Skip("locking gigabytes needs CAP_IPC_LOCK")
	}
	e := newExporter(b, DefaultConfig(), "process", "user")
	var worstRead, worstScrape, worstPause, worstTick time.Duration
	for i := 0; i < b.N; i++ {
		p := startTruth(b, "lock", []string{"MEMLOCK_TRUTH_BYTES=" + strconv.Itoa(mib<<20)}, nil)
		read, scrape, pause, tick := dyingRun(b, e, p.pid)
		worstRead, worstScrape, worstPause, worstTick = max(worstRead, read), max(worstScrape, scrape), max(worstPause, pause), max(worstTick, tick)
	}
	b.ReportMetric(worstRead.Seconds()*1e3, "max-read-ms")
	b.ReportMetric(worstScrape.Seconds()*1e3, "max-scrape-ms")
	b.ReportMetric(worstPause.Seconds()*1e3, "max-gc-pause-ms")
	b.ReportMetric(worstTick.Seconds()*1e3, "max-sleep-late-ms")
}

func dyingRun(b *testing.B, e *Exporter, pid int) (read, scrape, pause, tick time.Duration) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	var mu sync.Mutex
	note := func(d *time.Duration, v time.Duration) {
		mu.Lock()
		*d = max(*d, v)
		mu.Unlock()
	}
	dir, err := linux.OpenDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := linux.NewReader(4096)
			for !stop.Load() {
				t0 := time.Now()
				r.ReadPid(dir, pid, "status")
				note(&read, time.Since(t0))
			}
		}()
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			t0 := time.Now()
			s, _ := e.Scrape(context.Background(), nil)
			reg := prometheus.NewRegistry()
			reg.MustRegister(s)
			reg.Gather()
			note(&scrape, time.Since(t0))
		}
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			note(&tick, time.Since(t0)-time.Millisecond)
		}
	}()
	sample := []metrics.Sample{{Name: "/sched/pauses/total/gc:seconds"}}
	metrics.Read(sample)
	before := sample[0].Value.Float64Histogram()
	beforeCounts := append([]uint64(nil), before.Counts...)
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 1000; i++ {
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil || len(st) == 0 || hasZombieState(st) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	metrics.Read(sample)
	after := sample[0].Value.Float64Histogram()
	for j := len(after.Counts) - 1; j >= 0; j-- {
		if after.Counts[j] > beforeCounts[j] {
			pause = time.Duration(after.Buckets[j+1] * float64(time.Second))
			if after.Buckets[j+1] > 1e9 { // +Inf bucket
				pause = time.Duration(after.Buckets[j] * float64(time.Second))
			}
			break
		}
	}
	return read, scrape, pause, tick
}

// hasZombieState reports whether a /proc/<pid>/stat line says Z or X.
func hasZombieState(st []byte) bool {
	for i := len(st) - 1; i > 0; i-- {
		if st[i] == ')' && i+2 < len(st) {
			return st[i+2] == 'Z' || st[i+2] == 'X'
		}
	}
	return false
}
