package collector

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

const (
	realCgroupHelperEnv = "MEMLOCK_EXPORTER_CGROUP_HELPER"
	realCgroupLocked    = 16 << 20
	// realCgroupID names the test's inner cgroup like a docker container
	// (cgroupfs driver: /docker/<id>), so the process's identity is checked too.
	realCgroupID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// TestCgroupMlockHelper is the child process of TestCgroupRealV1: it waits
// until it has been moved into the test's cgroup, locks realCgroupLocked
// bytes, says so, and holds them until its stdin closes.
func TestCgroupMlockHelper(t *testing.T) {
	if os.Getenv(realCgroupHelperEnv) == "" {
		t.Skip("the child process of TestCgroupRealV1, not a test of its own")
	}
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		os.Exit(2)
	}
	mem, err := unix.Mmap(-1, 0, realCgroupLocked, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		fmt.Println("mmap:", err)
		os.Exit(1)
	}
	if err := unix.Mlock(mem); err != nil {
		fmt.Println("mlock:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	io.Copy(io.Discard, in)
	os.Exit(0)
}

// TestCgroupRealV1 creates a memory cgroup on this machine's cgroup v1
// hierarchy, runs a child that locks 16 MiB in it, and checks the exporter
// reports the cgroup's unevictable bytes and the child's container identity.
// It also checks, on the real kernel, the claim the walk's pruning rests on:
// v1's total_unevictable covers descendants, unevictable does not.
func TestCgroupRealV1(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: creates real cgroups and waits for memcg statistics")
	}
	if os.Geteuid() != 0 {
		t.Skip("creating a memory cgroup needs root")
	}
	const mount = "/sys/fs/cgroup/memory"
	if _, err := os.Stat(filepath.Join(mount, "memory.stat")); err != nil {
		t.Skipf("no cgroup v1 memory hierarchy at %s: %v", mount, err)
	}
	parentRel := fmt.Sprintf("memlock_exporter_test_%d", os.Getpid())
	childRel := parentRel + "/docker/" + realCgroupID
	var made []string
	t.Cleanup(func() {
		// Innermost first; a cgroup whose last task just exited may refuse
		// rmdir for a moment.
		for i := len(made) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 50; try++ {
				if err = unix.Rmdir(made[i]); err == nil || errors.Is(err, unix.ENOENT) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, unix.ENOENT) {
				t.Errorf("cannot remove test cgroup %s: %v", made[i], err)
			}
		}
	})
	for _, rel := range []string{parentRel, parentRel + "/docker", childRel} {
		p := filepath.Join(mount, rel)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Skipf("cannot create a memory cgroup: %v", err)
		}
		made = append(made, p)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCgroupMlockHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), realCgroupHelperEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the cgroup cleanup, so it runs first: the child
	// exits before its cgroup is removed.
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(mount, childRel, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		t.Skipf("cannot move a process into the test cgroup: %v", err)
	}
	if _, err := io.WriteString(stdin, "lock\n"); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		if s != "locked" {
			t.Fatalf("child: %q", s)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child did not lock in 30 s")
	}

	// The kernel's own view first: the claim the walk's pruning rests on.
	var parentStat, childStat linux.MemoryStat
	readStat := func(rel string, s *linux.MemoryStat) {
		b, err := os.ReadFile(filepath.Join(mount, rel, "memory.stat"))
		if err != nil {
			t.Fatal(err)
		}
		if err := linux.ParseMemoryStat(b, s); err != nil {
			t.Fatal(err)
		}
	}

	cfg := DefaultConfig()
	cfg.Process.MaxProcesses = 0
	cfg.Process.Smaps = false
	e := newExporter(t, cfg, "cgroup", "process")
	// The memcg unevictable count is the size of the unevictable LRU lists:
	// pages still in a CPU's LRU batch (up to 31 per CPU since 5.19) are not
	// on them yet, so the kernel may show a few pages less than was locked.
	minSeen := float64(realCgroupLocked - runtime.NumCPU()*64*os.Getpagesize())
	var got, own map[string]float64
	var processLabels map[string]string
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	scrapes := 0
	for {
		scrapes++
		// memcg statistics are flushed lazily: poll for a little while.
		readStat(parentRel, &parentStat)
		readStat(childRel, &childStat)
		got, own, processLabels = realCgroupScrape(t, e, pid)
		if got["/"+childRel] >= minSeen || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("exporter saw the lock after %d scrapes, %v", scrapes, time.Since(start).Round(time.Millisecond))
	t.Logf("kernel: child unevictable %d total %d; parent unevictable %d total %d",
		childStat.Unevictable, childStat.TotalUnevictable, parentStat.Unevictable, parentStat.TotalUnevictable)
	if float64(childStat.Unevictable) < minSeen || float64(parentStat.TotalUnevictable) < minSeen {
		t.Errorf("kernel does not show the lock where expected")
	}
	if parentStat.Unevictable != 0 {
		t.Errorf("v1 unevictable of a cgroup without tasks is %d: not local as the collector assumes", parentStat.Unevictable)
	}

	for _, cg := range []string{"/" + childRel, "/" + parentRel + "/docker", "/" + parentRel} {
		if got[cg] < minSeen {
			t.Errorf("memlock_cgroup_subtree_unevictable_bytes{cgroup=%q} = %v, want >= %v (all: %v)", cg, got[cg], minSeen, got)
		}
	}
	// The pages are the child's own; its ancestors hold none of their own,
	// so summing the own series does not count the lock three times.
	if own["/"+childRel] < minSeen {
		t.Errorf("memlock_cgroup_unevictable_bytes{cgroup=%q} = %v, want >= %v (all: %v)", "/"+childRel, own["/"+childRel], minSeen, own)
	}
	for _, cg := range []string{"/" + parentRel + "/docker", "/" + parentRel} {
		if v, ok := own[cg]; !ok || v != 0 {
			t.Errorf("memlock_cgroup_unevictable_bytes{cgroup=%q} = %v (reported %v), want 0: the pages are its child's", cg, v, ok)
		}
	}
	if processLabels == nil {
		t.Fatalf("process %d not reported", pid)
	}
	if processLabels["container_id"] != realCgroupID || processLabels["pod_uid"] != "" {
		t.Errorf("process %d labels %v, want container_id %s", pid, processLabels, realCgroupID)
	}
}

// realCgroupScrape collects once and returns the subtree's and the
// cgroup's own unevictable bytes by cgroup and the labels of pid's
// locked_bytes series.
func realCgroupScrape(t *testing.T, e *Exporter, pid int) (subtree, own map[string]float64, proc map[string]string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	subtree, own = map[string]float64{}, map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "memlock_cgroup_subtree_unevictable_bytes":
				subtree[labels["cgroup"]] = m.GetGauge().GetValue()
			case "memlock_cgroup_unevictable_bytes":
				own[labels["cgroup"]] = m.GetGauge().GetValue()
			case "memlock_process_locked_bytes":
				if labels["pid"] == strconv.Itoa(pid) {
					proc = labels
				}
			case "memlock_scrape_collector_success":
				if m.GetGauge().GetValue() != 1 {
					t.Errorf("collector %s failed", labels["collector"])
				}
			}
		}
	}
	return subtree, own, proc
}
