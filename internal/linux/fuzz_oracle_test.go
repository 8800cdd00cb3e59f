package linux

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/prometheus/procfs"
)

// Differential oracles: prometheus/procfs parses the same files (from a
// directory it opens itself). Where both parsers accept an input they must
// read the same values; what only one accepts is not compared (procfs is
// lenient where this package refuses a file the kernel would not write).

// leadingZero matches a number written with a leading zero ("044"), which
// the kernel never prints (seq_put_decimal_ull) and procfs reads as octal
// in some files (strconv base 0): such inputs are not compared.
var leadingZero = regexp.MustCompile(`(^|[^0-9])0[0-9]`)

func oracleFS(t *testing.T, files map[string][]byte) procfs.FS {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs, err := procfs.NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func FuzzMeminfoAgainstProcfs(f *testing.F) {
	seed(f, "meminfo.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		ours, err := ParseMeminfo(b)
		mustBeMalformed(t, err)
		if err != nil || leadingZero.Match(b) {
			return
		}
		theirs, perr := oracleFS(t, map[string][]byte{"meminfo": b}).Meminfo()
		if perr != nil || theirs.MemTotalBytes == nil || theirs.MlockedBytes == nil || theirs.UnevictableBytes == nil {
			return
		}
		if ours.MemTotal != *theirs.MemTotalBytes || ours.Mlocked != *theirs.MlockedBytes || ours.Unevictable != *theirs.UnevictableBytes {
			t.Fatalf("ours %+v, procfs MemTotal %d Mlocked %d Unevictable %d",
				ours, *theirs.MemTotalBytes, *theirs.MlockedBytes, *theirs.UnevictableBytes)
		}
	})
}

func FuzzStatusAgainstProcfs(f *testing.F) {
	seed(f, "status.txt", "status_locked.txt", "status_kthread.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		var ours Status
		err := ParseStatus(b, &ours)
		mustBeMalformed(t, err)
		if err != nil || leadingZero.Match(b) {
			return
		}
		p, perr := oracleFS(t, map[string][]byte{"1/status": b}).Proc(1)
		if perr != nil {
			t.Fatal(perr)
		}
		theirs, perr := p.NewStatus()
		if perr != nil {
			return
		}
		if ours.Locked != theirs.VmLck || ours.Pinned != theirs.VmPin || uint64(ours.UID) != theirs.UIDs[0] {
			t.Fatalf("ours VmLck %d VmPin %d uid %d, procfs %d %d %d", ours.Locked, ours.Pinned, ours.UID, theirs.VmLck, theirs.VmPin, theirs.UIDs[0])
		}
	})
}

func FuzzLimitsAgainstProcfs(f *testing.F) {
	seed(f, "limits.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		ours, err := ParseMemlockLimit(b)
		mustBeMalformed(t, err)
		if err != nil || leadingZero.Match(b) {
			return
		}
		p, perr := oracleFS(t, map[string][]byte{"1/limits": b}).Proc(1)
		if perr != nil {
			t.Fatal(perr)
		}
		theirs, perr := p.Limits()
		if perr != nil {
			return
		}
		// procfs keeps only the soft column, unlimited as ^uint64(0), and
		// leaves 0 for a row it cannot split (it splits at two or more
		// spaces; the kernel pads the name to 25 columns).
		if theirs.LockedMemory != 0 && ours.Soft != theirs.LockedMemory {
			t.Fatalf("soft memlock: ours %d, procfs %d", ours.Soft, theirs.LockedMemory)
		}
	})
}
