package linux

import (
	"errors"
	"os"
	"testing"
)

func TestFindCgroupMount(t *testing.T) {
	b := fixture(t, "mountinfo_hybrid.txt")
	m, err := FindCgroupMount(b, false)
	if err != nil || m.Mountpoint != "/sys/fs/cgroup/memory" || m.Root != "/" {
		t.Errorf("v1: got %+v, %v", m, err)
	}
	m, err = FindCgroupMount(b, true)
	if err != nil || m.Mountpoint != "/sys/fs/cgroup/unified" {
		t.Errorf("v2: got %+v, %v", m, err)
	}
	m, err = FindCgroupMount([]byte(`30 20 0:26 /kubepods/pod1 /sys/fs/cgroup\040x rw - cgroup2 cgroup2 rw`+"\n"), true)
	if err != nil || m.Mountpoint != "/sys/fs/cgroup x" || m.Root != "/kubepods/pod1" {
		t.Errorf("escaped: got %+v, %v", m, err)
	}
	if _, err := FindCgroupMount([]byte("30 20 0:26 / /proc rw - proc proc rw\n"), true); !errors.Is(err, ErrMalformed) {
		t.Errorf("no cgroup mount: %v, want ErrMalformed", err)
	}
}

// TestFindCgroupMountReal finds this machine's memory hierarchy (cgroup v1
// here) in the real mountinfo and checks the mount point is a directory
// holding the v1 controller's memory.usage_in_bytes.
func TestFindCgroupMountReal(t *testing.T) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no mountinfo: %v", err)
	}
	m, err := FindCgroupMount(b, false)
	if err != nil {
		t.Skipf("no v1 memory hierarchy mounted: %v", err)
	}
	if _, err := os.Stat(m.Mountpoint + "/memory.usage_in_bytes"); err != nil {
		t.Errorf("mount %+v: %v", m, err)
	}
}

func TestCgroupMountDir(t *testing.T) {
	for _, tc := range []struct {
		path, root, mnt, want string
		ok                    bool
	}{
		{"/a/b", "/", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/a/b", true},
		{"/", "/", "/sys/fs/cgroup", "/sys/fs/cgroup", true},
		{"/kubepods/pod1/c", "/kubepods/pod1", "/sys/fs/cgroup", "/sys/fs/cgroup/c", true},
		{"/other", "/kubepods", "/sys/fs/cgroup", "", false},
		{"/a/../../etc", "/", "/sys/fs/cgroup", "", false},
	} {
		got, ok := CgroupMount{Root: tc.root, Mountpoint: tc.mnt}.Dir(tc.path)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Dir(%q) below %q at %q = %q, %t", tc.path, tc.root, tc.mnt, got, ok)
		}
	}
}

func FuzzFindCgroupMount(f *testing.F) {
	f.Add(fixture(f, "mountinfo_hybrid.txt"), false)
	f.Add(fixture(f, "mountinfo_hybrid.txt"), true)
	f.Fuzz(func(t *testing.T, b []byte, v2 bool) {
		if _, err := FindCgroupMount(b, v2); err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
	})
}
