package linux

import (
	"errors"
	"os"
	"testing"
)

// smaps_probe.txt is /proc/self/smaps of a process that mlock2(ONFAULT)ed
// 64 KiB at 7f5f77840000 and touched 16 KiB, and mapped 32 KiB with
// MAP_LOCKED|MAP_POPULATE at 7f5fbe204000.
func readSmapsProbe(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/smaps_probe.txt")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSmapsRangeProbeFixture(t *testing.T) {
	b := readSmapsProbe(t)
	var r SmapsRange
	if err := ParseSmapsRange(b, 0x7f5f77840000, &r); err != nil {
		t.Fatal(err)
	}
	want := SmapsRange{Start: 0x7f5f77840000, End: 0x7f5f77850000, Size: 64 << 10, Rss: 16 << 10, Locked: 16 << 10, VmLocked: true, VmLockOnFault: true}
	if r != want {
		t.Errorf("onfault region: got %+v, want %+v", r, want)
	}
	if err := ParseSmapsRange(b, 0x7f5fbe204000, &r); err != nil {
		t.Fatal(err)
	}
	want = SmapsRange{Start: 0x7f5fbe204000, End: 0x7f5fbe20c000, Size: 32 << 10, Rss: 32 << 10, Locked: 32 << 10, VmLocked: true}
	if r != want {
		t.Errorf("populate region: got %+v, want %+v", r, want)
	}
	if err := ParseSmapsRange(b, 0x1000, &r); !errors.Is(err, ErrNoMapping) {
		t.Errorf("absent address: err %v, want ErrNoMapping", err)
	}
	for _, bad := range []string{
		"1000-2000 rw-p 0 00:00 0\nSize: x kB\n",
		"1000-2000 rw-p 0 00:00 0\nSize: 4 kB\nRss: 4 kB\n", // no Locked, no VmFlags
		"1g00-2000 rw-p\n",
		"1000-0800 rw-p 0 00:00 0\n",
	} {
		if err := ParseSmapsRange([]byte(bad), 0x1000, &r); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err %v, want ErrMalformed", bad, err)
		}
	}
}

func FuzzParseSmapsRangeProbeFixture(f *testing.F) {
	f.Add(readSmapsProbe(f), uint64(0x7f5f77840000))
	f.Add([]byte("1000-2000 rw-p 0 00:00 0\nSize: 4 kB\nRss: 4 kB\nLocked: 4 kB\nVmFlags: rd lo lf\n"), uint64(0x1000))
	f.Fuzz(func(t *testing.T, b []byte, start uint64) {
		var r SmapsRange
		err := ParseSmapsRange(b, start, &r)
		if err != nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoMapping) {
			t.Fatalf("error wraps neither ErrMalformed nor ErrNoMapping: %v", err)
		}
		if err == nil && (r.Start != start || r.End < r.Start) {
			t.Fatalf("parsed %+v for start %x", r, start)
		}
	})
}
