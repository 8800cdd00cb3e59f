package main

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// vmLck returns the exporter's VmLck in kB, or -1 once it has no memory
// map (exited).
func vmLck(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmLck:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// TestShutdownDuringScrape sends SIGTERM while scrapes run: exit status 0.
// Then a new exporter on the same port serves again, and how soon is
// logged (bound: 5 s, a liveness check, not a timing assertion).
func TestShutdownDuringScrape(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1, "--collector.process.include=.*", "--collector.process.max-processes=0")
	stop := make(chan struct{})
	var scrapes atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := http.Get("http://" + e.addr + "/metrics"); err == nil {
					resp.Body.Close()
					scrapes.Add(1)
				}
			}
		}()
	}
	// Signal once scrapes are flowing, not after a guessed delay.
	for deadline := time.Now().Add(10 * time.Second); scrapes.Load() < 8; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d scrapes served in 10 s\n%s", scrapes.Load(), e.logs)
		}
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	err := e.wait(t, 10*time.Second)
	exited := time.Now()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("exit after SIGTERM during %d scrapes: %v\n%s", scrapes.Load(), err, e.logs)
	}

	// Restart on the same address.
	cmd := exec.Command(bin, "--web.listen-address="+e.addr)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for {
		resp, err := http.Get("http://" + e.addr + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Since(exited) > 5*time.Second {
			t.Fatalf("the restarted exporter does not serve on %s: %v\n%s", e.addr, err, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("SIGTERM during %d scrapes: exit 0; restarted on the same port, serving %v after the exit", scrapes.Load(), time.Since(exited).Round(time.Millisecond))
}

// TestShutdownDuringProbe sends SIGTERM while a background mlock probe is
// inside its lock phase: the test polls the exporter's VmLck (one read of
// /proc/PID/status) until it is above zero, which happens within the first
// lock chunk of a 1 GiB region whose whole lock takes about two seconds
// here, then signals. The exporter must exit 0 within a bound; its log
// must show the probe failing with reason timeout after "shutting down"
// (the prober releases its region before the runner logs the result) and
// no region left mapped. No outcome is skipped: a probe that finished
// before the signal fails the test.
func TestShutdownDuringProbe(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_IPC_LOCK (root) to lock 1 GiB")
	}
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1, "--probe.enable", "--probe.modes=mlock", "--probe.size=1GiB", "--probe.max-bytes=1GiB",
		"--probe.interval=1h", "--probe.timeout=60s", "--log.level=debug")
	pid := e.cmd.Process.Pid
	// The schedule's first run starts at once: wait until it holds memory.
	locked := 0
	for deadline := time.Now().Add(20 * time.Second); locked <= 0; locked = vmLck(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the probe never locked anything (VmLck 0 for 20 s)\n%s", e.logs)
		}
	}
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := e.wait(t, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM during a probe: %v\n%s", err, e.logs)
	}
	logs := e.logs.String()
	down := strings.Index(logs, "shutting down")
	failed := strings.LastIndex(logs, "probe failed")
	switch {
	case strings.Contains(logs, "probe succeeded"):
		t.Fatalf("the 1 GiB probe finished although SIGTERM was sent at VmLck %d kB (was the test descheduled for seconds?)\n%s", locked, logs)
	case down < 0 || failed < down:
		t.Errorf("the probe did not fail after shutdown began:\n%s", logs)
	case !strings.Contains(logs[failed:], "reason=timeout"):
		t.Errorf("the interrupted probe's reason is not timeout:\n%s", logs[failed:])
	}
	if strings.Contains(logs, "still mapped") {
		t.Errorf("a probe region was left mapped:\n%s", logs)
	}
	t.Logf("SIGTERM at VmLck %d kB mid-probe: probe failed (timeout) after shutting down, exit 0", locked)
}
