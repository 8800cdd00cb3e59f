package collector

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/bpf/bpftest"
)

// TestIdentityCacheFollowsMoves: on the BPF path a locking child in a
// pod-like memory cgroup (cgroup v1 here) is reported with that pod's uid
// and container id; after the cache serves it (the second scrape confirms
// the key, the third is a hit, no read), the child is moved to another pod's
// cgroup and the very next scrape reports the new pod and container, and so
// does a move back. The expected labels are the cgroup names the test made.
func TestIdentityCacheFollowsMoves(t *testing.T) {
	bpftest.RequireRoot(t)
	m, err := bpf.Open()
	if err != nil {
		t.Skipf("cannot load the task iterator here: %v", err)
	}
	defer m.Close()
	base := selfMemoryCgroupDir()
	if base == "" {
		t.Skip("no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory")
	}
	type pod struct{ uid, cid, dir string }
	pods := []pod{
		{uid: "0b6f3a2e-1111-4c3d-9a7e-000000000001", cid: strings.Repeat("a1", 32)},
		{uid: "0b6f3a2e-2222-4c3d-9a7e-000000000002", cid: strings.Repeat("b2", 32)},
	}
	root := filepath.Join(base, "memlock-ident-"+strconv.Itoa(os.Getpid()))
	for i := range pods {
		pods[i].dir = filepath.Join(root, "kubepods", "burstable", "pod"+pods[i].uid, pods[i].cid)
		if err := os.MkdirAll(pods[i].dir, 0o755); err != nil {
			t.Skipf("cannot make memory cgroups: %v", err)
		}
	}
	c := bpftest.Start(t, bpftest.Opts{UID: -1}, "lock", 64<<10)
	c.Expect("ready")
	move := func(dir string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(c.Pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		move(base)
		for _, p := range pods {
			for d := p.dir; d != base; d = filepath.Dir(d) {
				os.Remove(d)
			}
		}
	}()

	cfg := DefaultConfig()
	cfg.Tasks = m
	e, err := New(cfg, []string{"process"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.scanner.idents == nil {
		t.Fatal("no identity cache on the BPF path")
	}
	labels := func() string {
		t.Helper()
		out, err := testutil.CollectAndFormat(e, expfmt.TypeTextPlain, "memlock_process_locked_bytes")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, `pid="`+strconv.Itoa(c.Pid)+`"`) {
				return line
			}
		}
		t.Fatalf("child %d not reported:\n%s", c.Pid, out)
		return ""
	}
	check := func(when string, p pod) {
		t.Helper()
		line := labels()
		if !strings.Contains(line, `pod_uid="`+p.uid+`"`) || !strings.Contains(line, `container_id="`+p.cid+`"`) {
			t.Errorf("%s: %s, want pod %s container %s", when, line, p.uid, p.cid)
		}
	}
	move(pods[0].dir)
	check("first scrape", pods[0])
	check("second scrape", pods[0])
	hits := e.scanner.idents.hits
	check("third scrape", pods[0])
	if e.scanner.idents.hits == hits {
		t.Errorf("third scrape in the same cgroup read /proc/%d/cgroup again: the cache served nothing", c.Pid)
	}
	move(pods[1].dir)
	check("after the move", pods[1])
	check("after the move, again", pods[1])
	check("after the move, cached", pods[1])
	move(pods[0].dir)
	check("moved back", pods[0])
}

// selfMemoryCgroupDir is this process's cgroup v1 memory directory, or "".
func selfMemoryCgroupDir() string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) == 3 && f[1] == "memory" {
			dir := filepath.Join("/sys/fs/cgroup/memory", f[2])
			if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err == nil {
				return dir
			}
		}
	}
	return ""
}
