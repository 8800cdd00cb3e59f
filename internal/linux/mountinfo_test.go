package linux

import (
	"os"
	"os/exec"
	"testing"
)

func TestProcHidesPids(t *testing.T) {
	info := []byte(`22 1 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
30 22 0:30 / /proc/sys/fs/binfmt_misc rw,relatime shared:13 - autofs systemd-1 rw,fd=29
41 1 0:40 / /host/proc rw,relatime - proc proc rw,hidepid=invisible
42 1 0:41 / /mnt/my\040proc rw,relatime - proc proc rw,hidepid=0
43 1 0:42 / /srv/p rw,relatime - proc proc rw,hidepid=2,gid=4
44 1 0:42 / /srv/p rw,relatime - proc proc rw,subset=pid
`)
	for mp, want := range map[string]bool{
		"/proc": false, "/host/proc": true, "/mnt/my proc": false,
		"/srv/p":  false, // the later mount at the same point is the one seen
		"/absent": true,
	} {
		if got := ProcHidesPids(info, mp); got != want {
			t.Errorf("%s: %v, want %v", mp, got, want)
		}
	}
}

// TestProcHidesPidsReal mounts two procfs in a private mount namespace, one
// with hidepid=2 and one without, and asks the kernel's own mountinfo.
func TestProcHidesPidsReal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a procfs in a private mount namespace")
	}
	hidden, open := t.TempDir(), t.TempDir()
	script := `mount -t proc -o hidepid=2 proc "$1" && mount -t proc proc "$2" && cat /proc/self/mountinfo`
	out, err := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", hidden, open).Output()
	if err != nil {
		t.Skipf("unshare -m with procfs mounts: %v", err)
	}
	if !ProcHidesPids(out, hidden) {
		t.Errorf("hidepid=2 at %s not seen in:\n%s", hidden, out)
	}
	if ProcHidesPids(out, open) {
		t.Errorf("procfs at %s without hidepid seen as hiding:\n%s", open, out)
	}
}
