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
	time.Sleep(500 * time.Millisecond)
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

// TestShutdownDuringProbe sends SIGTERM while a background probe locks
// 512 MiB (about a second of mlock): exit status 0, the probe cancelled
// and its region released before the exporter's exit (its log says so
// after "shutting down"; VmLck is sampled to the end).
func TestShutdownDuringProbe(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_IPC_LOCK (root) to lock 512 MiB")
	}
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1, "--probe.enable", "--probe.modes=mlock", "--probe.size=512MiB", "--probe.max-bytes=512MiB",
		"--probe.interval=1h", "--probe.timeout=60s", "--log.level=debug")
	pid := e.cmd.Process.Pid
	// The schedule's first run starts at once: wait until it holds memory.
	deadline := time.Now().Add(10 * time.Second)
	peak := 0
	for peak == 0 {
		if v := vmLck(pid); v > 0 {
			peak = v
		}
		if time.Now().After(deadline) {
			t.Skipf("the probe never locked anything (VmLck 0 for 10 s)\n%s", e.logs)
		}
	}
	if strings.Contains(e.logs.String(), "probe succeeded") {
		t.Skip("the probe finished before it could be interrupted")
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	sent := time.Now()
	last := peak
	for {
		v := vmLck(pid)
		if v < 0 {
			break
		}
		last = v
		if time.Since(sent) > 15*time.Second {
			t.Fatalf("still running 15 s after SIGTERM, VmLck %d kB\n%s", v, e.logs)
		}
	}
	if err := e.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM during a probe: %v\n%s", err, e.logs)
	}
	logs := e.logs.String()
	down := strings.Index(logs, "shutting down")
	failed := strings.LastIndex(logs, "probe failed")
	if down < 0 || failed < down {
		t.Errorf("the probe did not end (and release its region) after shutdown began:\n%s", logs)
	}
	t.Logf("VmLck %d kB when SIGTERM was sent mid-probe; last sampled before exit %d kB; exit 0 in %v", peak, last, time.Since(sent).Round(time.Millisecond))
	if last != 0 {
		t.Logf("(the last sample, %d kB, preceded the release: sampling races the exit)", last)
	}
}
