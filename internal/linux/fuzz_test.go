package linux

import (
	"errors"
	"testing"
)

// Each fuzz target checks that a parser never panics, and that whatever it
// rejects it rejects with ErrMalformed. `go test` runs the seeds (the real
// files in testdata and every corpus entry in testdata/fuzz); `make fuzz`
// runs each target for a while.

func seed(f *testing.F, files ...string) {
	for _, name := range files {
		f.Add(fixture(f, name))
	}
}

func mustBeMalformed(t *testing.T, err error) {
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error does not wrap ErrMalformed: %v", err)
	}
}

func FuzzParseStatus(f *testing.F) {
	seed(f, "status.txt", "status_locked.txt", "status_kthread.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Status
		err := ParseStatus(b, &s)
		mustBeMalformed(t, err)
		if err == nil && s.Locked%1024 != 0 {
			t.Fatalf("VmLck %d is not a whole number of kB", s.Locked)
		}
		if len(s.Name) > MaxComm {
			t.Fatalf("name of %d bytes, more than a comm holds", len(s.Name))
		}
	})
}

func FuzzParseMemlockLimit(f *testing.F) {
	seed(f, "limits.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseMemlockLimit(b)
		mustBeMalformed(t, err)
	})
}

func FuzzParseSmapsRollupLocked(f *testing.F) {
	seed(f, "smaps_rollup.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseSmapsRollupLocked(b)
		mustBeMalformed(t, err)
	})
}

func FuzzParseVMStat(f *testing.F) {
	seed(f, "vmstat.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseVMStat(b)
		mustBeMalformed(t, err)
	})
}

func FuzzParseMeminfo(f *testing.F) {
	seed(f, "meminfo.txt", "node_meminfo.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := ParseMeminfo(b)
		mustBeMalformed(t, err)
	})
}

func FuzzParseSysvShm(f *testing.F) {
	seed(f, "sysvipc_shm.txt")
	f.Fuzz(func(t *testing.T, b []byte) {
		segs, err := ParseSysvShm(b)
		mustBeMalformed(t, err)
		if err != nil && segs != nil {
			t.Fatal("segments returned with an error")
		}
	})
}
