package bpf

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCgroupID: CgroupID is the id of the task's cgroup in the default
// (v2) hierarchy, which is the inode number of its directory in a cgroup2
// mount. The test mounts cgroup2 in a private mount namespace (this host
// mounts only v1, so the v2 hierarchy has no controllers and is otherwise
// unused), makes a cgroup, moves a child into it and compares the inode
// with what the iterator reports for the child, and the test process's own
// v2 cgroup (the root here) with the test's.
func TestCgroupID(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	c := startChild(t, childOpts{UID: -1}, "lock", 0)
	c.Expect("ready")

	type result struct {
		root, leaf uint64
		err        error
	}
	done := make(chan result)
	release := make(chan struct{})
	go func() {
		// The namespace belongs to this thread, which is never unlocked:
		// Go retires it when the goroutine returns.
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if r.err = unix.Unshare(unix.CLONE_NEWNS); r.err != nil {
			return
		}
		if r.err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); r.err != nil {
			return
		}
		dir, err := os.MkdirTemp("", "memlock-cg2")
		if err != nil {
			r.err = err
			return
		}
		defer os.Remove(dir)
		if r.err = unix.Mount("none", dir, "cgroup2", 0, ""); r.err != nil {
			return
		}
		defer unix.Unmount(dir, unix.MNT_DETACH)
		leaf := filepath.Join(dir, "memlock-bpf-test-"+strconv.Itoa(os.Getpid()))
		if r.err = os.Mkdir(leaf, 0o755); r.err != nil {
			return
		}
		defer os.Remove(leaf)
		var st unix.Stat_t
		if r.err = unix.Stat(filepath.Join(dir, selfV2Path()), &st); r.err != nil {
			return
		}
		r.root = st.Ino
		if r.err = unix.Stat(leaf, &st); r.err != nil {
			return
		}
		r.leaf = st.Ino
		if r.err = os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(c.Pid)), 0); r.err != nil {
			return
		}
		done <- r
		<-release
		// Move the child back so the cgroup can be removed.
		r.err = os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(c.Pid)), 0)
	}()
	r := <-done
	if r.err != nil {
		t.Skipf("cannot mount cgroup2 here: %v", r.err)
	}
	s := snapshot(t, m)
	close(release)
	if r2 := <-done; r2.err != nil {
		t.Errorf("cleanup: %v", r2.err)
	}
	task, self := s.find(c.Pid), s.find(os.Getpid())
	if task == nil || self == nil || task.Flags&FlagCgroup == 0 {
		t.Fatalf("child %+v self %+v", task, self)
	}
	if task.CgroupID != r.leaf {
		t.Errorf("child's cgroup id %d, its cgroup2 directory's inode %d", task.CgroupID, r.leaf)
	}
	if self.CgroupID != r.root {
		t.Errorf("test's cgroup id %d, its cgroup2 directory's inode %d", self.CgroupID, r.root)
	}
}

// selfV2Path is the test process's cgroup in the v2 hierarchy: the "0::"
// line of /proc/self/cgroup, or the root where there is none (v1 only).
func selfV2Path() string {
	b, _ := os.ReadFile("/proc/self/cgroup")
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p
		}
	}
	return "/"
}

// TestMemcgID: MemcgID is the id of the task's cgroup in the memory
// controller's hierarchy, the inode of its directory there. On this host
// (cgroup v1) the test makes a memory cgroup under its own, moves a child
// into it and back, and compares the child's MemcgID with each directory's
// inode: a moved process shows the new cgroup's id in the next pass.
func TestMemcgID(t *testing.T) {
	requireRoot(t)
	m := openModule(t)
	base := selfV1MemoryDir()
	if base == "" {
		t.Skip("no cgroup v1 memory hierarchy mounted at /sys/fs/cgroup/memory")
	}
	leaf := filepath.Join(base, "memlock-bpf-memcg-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(leaf, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup: %v", err)
	}
	defer os.Remove(leaf)
	c := startChild(t, childOpts{UID: -1}, "lock", 0)
	c.Expect("ready")
	ino := func(dir string) uint64 {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	memcg := func() uint64 {
		task := snapshot(t, m).find(c.Pid)
		if task == nil || task.Flags&FlagMemcg == 0 {
			t.Fatalf("child %+v", task)
		}
		return task.MemcgID
	}
	move := func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(c.Pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := memcg(), ino(base); got != want {
		t.Errorf("child in the test's memory cgroup: MemcgID %d, directory inode %d", got, want)
	}
	move(leaf)
	if got, want := memcg(), ino(leaf); got != want {
		t.Errorf("child moved: MemcgID %d, new directory's inode %d", got, want)
	}
	move(base)
	if got, want := memcg(), ino(base); got != want {
		t.Errorf("child moved back: MemcgID %d, directory inode %d", got, want)
	}
}

// selfV1MemoryDir is the test process's memory cgroup directory under
// /sys/fs/cgroup/memory (cgroup v1), or "" where there is none.
func selfV1MemoryDir() string {
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
