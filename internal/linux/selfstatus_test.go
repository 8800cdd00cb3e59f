package linux

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSelfStatus: the capability masks and uid that SelfStatus reads agree
// with what capget(2) and getuid(2) say of this process.
func TestSelfStatus(t *testing.T) {
	s, err := SelfStatus("/proc")
	if err != nil {
		t.Fatal(err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	if s.CapEff != eff {
		t.Errorf("CapEff %#x, capget says %#x", s.CapEff, eff)
	}
	if got, want := s.IPCLock(), eff&(1<<unix.CAP_IPC_LOCK) != 0; got != want {
		t.Errorf("IPCLock() = %v, capget says %v", got, want)
	}
	if s.UID != uint32(os.Getuid()) {
		t.Errorf("UID %d, getuid says %d", s.UID, os.Getuid())
	}
}
