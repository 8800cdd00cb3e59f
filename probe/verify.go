package probe

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// capSysAdmin is the bit of CAP_SYS_ADMIN in a capability mask: needed to
// read physical frame numbers from pagemap and the flags in kpageflags.
const capSysAdmin = 1 << 21

// Kernel page flags (include/uapi/linux/kernel-page-flags.h).
const (
	kpfUnevictable = 1 << 18
	kpfMlocked     = 1 << 33
)

// maxKpageSamples bounds the pages looked up in kpageflags per probe.
const maxKpageSamples = 256

// Env is what probers share: the process's own procfs files and buffers
// reused from probe to probe. It is not safe for concurrent use; the
// Runner runs one probe at a time.
type Env struct {
	// ProcPath is the procfs holding this process's own files (self/...).
	ProcPath string
	// Exe is the binary started for the mlockall child: the exporter's own.
	Exe string
	// hook, when set (tests), runs after each phase of a local prober.
	hook func(context.Context, Phase, []byte)

	page   int
	reader *linux.Reader
	vec    []byte
}

// NewEnv returns an Env reading procPath ("/proc" unless procfs lives
// elsewhere) and starting exe ("" for /proc/self/exe) as the mlockall child.
func NewEnv(procPath, exe string) *Env {
	if procPath == "" {
		procPath = "/proc"
	}
	if exe == "" {
		exe = "/proc/self/exe"
	}
	return &Env{ProcPath: procPath, Exe: exe, page: unix.Getpagesize(), reader: linux.NewReader(64 << 10)}
}

func (e *Env) read(name string) ([]byte, error) {
	d, err := linux.OpenDir(e.ProcPath)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return e.reader.ReadFile(d, name)
}

// status reads this process's VmLck and effective capabilities.
func (e *Env) status() (linux.Status, error) {
	var s linux.Status
	b, err := e.read("self/status")
	if err != nil {
		return s, err
	}
	err = linux.ParseStatus(b, &s)
	return s, err
}

// smaps finds the smaps entry of the mapping that starts at addr.
func (e *Env) smaps(addr uint64) (linux.SmapsRange, error) {
	var r linux.SmapsRange
	b, err := e.read("self/smaps")
	if err != nil {
		return r, err
	}
	err = linux.ParseSmapsRange(b, addr, &r)
	return r, err
}

// resident counts the pages of mem that mincore says are in memory.
func (e *Env) resident(mem []byte) (int, error) {
	n := len(mem) / e.page
	if cap(e.vec) < n {
		e.vec = make([]byte, n)
	}
	vec := e.vec[:n]
	if err := mincore(mem, vec); err != nil {
		return 0, err
	}
	c := 0
	for _, v := range vec {
		c += int(v & 1)
	}
	return c, nil
}

// kpageflags looks up up to maxKpageSamples of the first pages of mem in
// pagemap and kpageflags and counts those marked mlocked. It needs
// CAP_SYS_ADMIN; without it the caller does not call it.
func (e *Env) kpageflags(mem []byte, pages int) (looked, mlocked uint64, err error) {
	pm, err := os.Open(e.ProcPath + "/self/pagemap")
	if err != nil {
		return 0, 0, err
	}
	defer pm.Close()
	kf, err := os.Open(e.ProcPath + "/kpageflags")
	if err != nil {
		return 0, 0, err
	}
	defer kf.Close()
	step := max(1, pages/maxKpageSamples)
	base := uint64(addrOf(mem)) / uint64(e.page)
	var buf [8]byte
	for i := 0; i < pages; i += step {
		if _, err := pm.ReadAt(buf[:], int64((base+uint64(i))*8)); err != nil {
			return looked, mlocked, fmt.Errorf("pagemap: %w", err)
		}
		ent := binary.LittleEndian.Uint64(buf[:])
		if ent&(1<<63) == 0 {
			continue // not present
		}
		pfn := ent & (1<<55 - 1)
		if _, err := kf.ReadAt(buf[:], int64(pfn*8)); err != nil {
			return looked, mlocked, fmt.Errorf("kpageflags: %w", err)
		}
		looked++
		if f := binary.LittleEndian.Uint64(buf[:]); f&kpfMlocked != 0 && f&kpfUnevictable != 0 {
			mlocked++
		}
	}
	return looked, mlocked, nil
}

// lockedShape is what a locked region must look like to the kernel's
// reports: which pages are resident and locked, and how VmLck moves.
type lockedShape struct {
	onfault bool // lf set; only touched pages resident and locked
	huge    bool // THP: touching one byte may fault a whole huge page
	// wholeProcess: mlockall locks the whole process, so VmLck rises by
	// at least the region, not exactly by it.
	wholeProcess bool
}

// verifyRegion checks the region the kernel selftests' way. baseline is
// VmLck before the lock; touchedPages the pages written with seed.
func (e *Env) verifyRegion(r *region, res *Result, want lockedShape, baseline uint64, touchedPages int, seed uint64) error {
	length := uint64(len(r.mem))
	touched := uint64(touchedPages * e.page)
	st, err := e.status()
	if err != nil {
		return fmt.Errorf("%w: status: %v", ErrVerification, err)
	}
	if st.Locked >= baseline {
		res.LockedDelta = st.Locked - baseline
	}
	if res.LockedDelta != length && !(want.wholeProcess && res.LockedDelta > length) {
		return fmt.Errorf("%w: VmLck rose by %d bytes, want %d", ErrVerification, res.LockedDelta, length)
	}
	sm, err := e.smaps(r.addr())
	if err != nil {
		return fmt.Errorf("%w: smaps: %v", ErrVerification, err)
	}
	res.ResidentLocked, res.HugeBytes = sm.Locked, sm.AnonHugePages
	switch {
	case sm.Size != length:
		return fmt.Errorf("%w: smaps Size %d, want %d", ErrVerification, sm.Size, length)
	case !sm.VmLocked:
		return fmt.Errorf("%w: smaps VmFlags lack lo", ErrVerification)
	case sm.VmLockOnFault != want.onfault:
		return fmt.Errorf("%w: smaps VmFlags lf is %t, want %t", ErrVerification, sm.VmLockOnFault, want.onfault)
	}
	wantLocked := length
	if want.onfault {
		wantLocked = touched
	}
	if want.onfault && want.huge {
		if sm.Locked < touched || sm.Locked > length {
			return fmt.Errorf("%w: smaps Locked %d, want between %d and %d", ErrVerification, sm.Locked, touched, length)
		}
	} else if sm.Locked != wantLocked || sm.Rss != wantLocked {
		return fmt.Errorf("%w: smaps Rss %d, Locked %d, want %d", ErrVerification, sm.Rss, sm.Locked, wantLocked)
	}
	n, err := e.resident(r.mem)
	if err != nil {
		return fmt.Errorf("%w: mincore: %v", ErrVerification, err)
	}
	res.Resident = uint64(n * e.page)
	if want.onfault && want.huge {
		if res.Resident < touched {
			return fmt.Errorf("%w: mincore: %d bytes resident, want at least %d", ErrVerification, res.Resident, touched)
		}
	} else if res.Resident != wantLocked {
		return fmt.Errorf("%w: mincore: %d bytes resident, want %d", ErrVerification, res.Resident, wantLocked)
	}
	if bad := readBack(r.mem, e.page, touchedPages, seed); bad > 0 {
		return fmt.Errorf("%w: %d of %d pages did not read back the pattern", ErrVerification, bad, touchedPages)
	}
	if st.CapEff&capSysAdmin != 0 {
		pages := int(wantLocked) / e.page
		if looked, ml, err := e.kpageflags(r.mem, pages); err == nil {
			res.KpageflagsChecked, res.KpageflagsPages, res.KpageflagsMlocked = true, looked, ml
		}
	}
	return nil
}

// verifyUnlocked checks VmLck fell back to baseline after munlock.
func (e *Env) verifyUnlocked(baseline uint64) error {
	st, err := e.status()
	if err != nil {
		return fmt.Errorf("%w: status: %v", ErrVerification, err)
	}
	if st.Locked != baseline {
		return fmt.Errorf("%w: VmLck is %d bytes after munlock, want %d", ErrVerification, st.Locked, baseline)
	}
	return nil
}
