package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakEnv sets the soak's length (a Go duration); `make soak` sets 10m.
// Without it the soak runs its short CI form.
const soakEnv = "MEMLOCK_SOAK_DURATION"

type soakSample struct {
	rssKB, goroutines, fds, maps, vmLckKB int
}

// TestSoak runs the built exporter with probes on (every mode, every
// second) under steady scrapes of /metrics and /probe and a churn of
// short-lived locking processes, sampling its RSS, go_goroutines, open
// file descriptors, mappings and VmLck each second. Flat means: the last
// quarter's maximum is within a margin of the first quarter's (after a
// warm-up of a tenth of the run), and VmLck returns to its baseline (0)
// once the load stops.
func TestSoak(t *testing.T) {
	t.Parallel()
	requireLinuxProc(t)
	d := 40 * time.Second
	if v := os.Getenv(soakEnv); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("%s=%q: %v", soakEnv, v, err)
		}
	} else if testing.Short() {
		t.Skip("-short")
	}
	bin, locker := sharedBuild(t)
	e := startExporter(t, bin, -1, "--probe.enable", "--probe.interval=1s", "--probe.modes=mlock,onfault,populate,mlockall",
		"--probe.size=1MiB", "--collector.process.include="+lockerComm)
	pid := e.cmd.Process.Pid
	client := &http.Client{Timeout: 15 * time.Second}
	baseline := vmLck(pid)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	loop := func(every time.Duration, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					f()
				}
			}
		}()
	}
	var scrapes, probes, churned int
	getOK := func(path string) string {
		resp, err := client.Get("http://" + e.addr + path)
		if err != nil {
			fail("%s: %v", path, err)
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			fail("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	loop(250*time.Millisecond, func() { getOK("/metrics"); mu.Lock(); scrapes++; mu.Unlock() })
	loop(time.Second, func() { getOK("/probe?module=onfault"); mu.Lock(); probes++; mu.Unlock() })
	// Churn: a locker starts every 200 ms and lives about a second.
	var lockers sync.WaitGroup
	loop(200*time.Millisecond, func() {
		cmd := exec.Command(locker)
		cmd.Env = append(os.Environ(), childEnv+"=1")
		stdin, _ := cmd.StdinPipe()
		cmd.Stdout = io.Discard
		if err := cmd.Start(); err != nil {
			fail("locker: %v", err)
			return
		}
		mu.Lock()
		churned++
		mu.Unlock()
		lockers.Add(1)
		time.AfterFunc(time.Second, func() { defer lockers.Done(); stdin.Close(); cmd.Wait() })
	})

	var samples []soakSample
	start := time.Now()
	for time.Since(start) < d {
		time.Sleep(time.Second)
		s := soakSample{
			rssKB:   atoiKB(procStatusField(t, pid, "VmRSS")),
			vmLckKB: vmLck(pid),
			fds:     countDir(t, fmt.Sprintf("/proc/%d/fd", pid)),
			maps:    countLines(t, fmt.Sprintf("/proc/%d/maps", pid)),
		}
		body := getOK("/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
				s.goroutines, _ = strconv.Atoi(v)
			}
		}
		samples = append(samples, s)
	}
	close(stop)
	wg.Wait()
	lockers.Wait() // every locker has exited and been reaped
	for _, msg := range errs {
		t.Error(msg)
	}

	// VmLck back at its baseline once the schedule's probe in flight ends.
	end := time.Now().Add(15 * time.Second)
	final := vmLck(pid)
	for final != baseline && time.Now().Before(end) {
		time.Sleep(100 * time.Millisecond)
		final = vmLck(pid)
	}
	if final != baseline {
		t.Errorf("VmLck %d kB after the soak, baseline %d kB", final, baseline)
	}

	warm := len(samples) / 10
	run := samples[warm:]
	if len(run) < 8 {
		t.Fatalf("only %d samples after warm-up", len(run))
	}
	q := len(run) / 4
	first, last := run[:q], run[len(run)-q:]
	maxOf := func(ss []soakSample, f func(soakSample) int) int {
		m := 0
		for _, s := range ss {
			m = max(m, f(s))
		}
		return m
	}
	for _, c := range []struct {
		name   string
		f      func(soakSample) int
		ratio  float64
		margin int
	}{
		// RSS: the Go heap breathes with GC; 25% and 8 MiB over the
		// first quarter's peak is growth, not breathing.
		{"RSS kB", func(s soakSample) int { return s.rssKB }, 1.25, 8 << 10},
		// Goroutines and fds: in-flight requests and probe children come
		// and go; a leak grows by one per scrape or probe, hundreds here.
		{"goroutines", func(s soakSample) int { return s.goroutines }, 1, 20},
		{"open fds", func(s soakSample) int { return s.fds }, 1, 20},
		{"mappings", func(s soakSample) int { return s.maps }, 1.1, 20},
	} {
		a, b := maxOf(first, c.f), maxOf(last, c.f)
		limit := int(float64(a)*c.ratio) + c.margin
		t.Logf("%-10s first quarter max %6d, last quarter max %6d (limit %d)", c.name, a, b, limit)
		if b > limit {
			t.Errorf("%s grew: %d in the last quarter, %d in the first (limit %d)", c.name, b, a, limit)
		}
	}
	t.Logf("soak of %v: %d scrapes, %d on-demand probes, %d lockers started; %d samples; VmLck baseline %d kB, peak %d kB, final %d kB",
		d, scrapes, probes, churned, len(samples), baseline, maxOf(samples, func(s soakSample) int { return s.vmLckKB }), final)
}

func atoiKB(v string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(v, " kB"))
	return n
}

func countDir(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
