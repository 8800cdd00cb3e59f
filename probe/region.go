package probe

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

const hugePageSize = 2 << 20

// liveRegions counts regions mapped and not yet unmapped: the leak test's
// witness, and a guard the runner logs if it is ever nonzero between probes.
var liveRegions atomic.Int64

// region is an anonymous mapping outside the Go heap with a PROT_NONE guard
// on each side, so the kernel never merges it with a neighbour and its smaps
// entry covers exactly the probed bytes.
type region struct {
	reservation []byte // the whole mapping, guards included (from unix.Mmap)
	mem         []byte // the probed bytes, inside reservation
	mayBeLocked bool   // a lock call was made: release must munlock
	released    bool
}

// reserve maps length bytes of PROT_NONE address space plus guards, placing
// the probed range on a huge page boundary when huge is set. Nothing is
// usable until mapRW or mapLocked maps it.
func reserve(length int, huge bool) (*region, error) {
	page := unix.Getpagesize()
	align := page
	if huge {
		align = hugePageSize
	}
	total := length + align + 2*page
	b, err := unix.Mmap(-1, 0, total, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	liveRegions.Add(1)
	base := uintptr(unsafe.Pointer(&b[0]))
	start := (base + uintptr(page) + uintptr(align) - 1) &^ (uintptr(align) - 1)
	off := int(start - base)
	return &region{reservation: b, mem: b[off : off+length : off+length]}, nil
}

// addr is the start of the probed range, as smaps prints it.
func (r *region) addr() uint64 { return uint64(addrOf(r.mem)) }

// mapFixed maps [off, off+n) of the probed range read-write in place of
// the reservation, with extra flags (MAP_LOCKED|MAP_POPULATE for populate).
func (r *region) mapFixed(off, n int, extra int) error {
	if extra&unix.MAP_LOCKED != 0 {
		r.mayBeLocked = true
	}
	_, _, errno := unix.Syscall6(unix.SYS_MMAP, uintptr(unsafe.Pointer(&r.mem[off])), uintptr(n),
		unix.PROT_READ|unix.PROT_WRITE, uintptr(unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED|extra), ^uintptr(0), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// lockChunks locks the probed range chunk by chunk with lock, checking the
// deadline before each chunk: mlock itself cannot be interrupted.
func (r *region) lockChunks(ctx context.Context, chunk int, lock func(b []byte) error) error {
	for off := 0; off < len(r.mem); off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		r.mayBeLocked = true
		if err := lock(r.mem[off:min(off+chunk, len(r.mem))]); err != nil {
			return err
		}
	}
	return nil
}

// release munlocks and unmaps. It is idempotent and runs on every path.
func (r *region) release() error {
	if r == nil || r.released {
		return nil
	}
	r.released = true
	if r.mayBeLocked {
		// Best effort: munmap drops the locks anyway, and a failed
		// MAP_FIXED chunk may have left a hole munlock complains about.
		_ = unix.Munlock(r.mem)
	}
	if err := unix.Munmap(r.reservation); err != nil {
		return err
	}
	liveRegions.Add(-1)
	return nil
}

// mlock2 is mlock2(2), which golang.org/x/sys/unix lacks on Linux.
func mlock2(b []byte, flags int) error {
	_, _, errno := unix.Syscall(unix.SYS_MLOCK2, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(flags))
	if errno != 0 {
		return errno
	}
	return nil
}

// mincore is mincore(2), which golang.org/x/sys/unix lacks on Linux: one
// byte per page in vec, bit 0 set when resident.
func mincore(b []byte, vec []byte) error {
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}

// patternWord is the word written at the start of page i: it differs per
// page and per probe, so a page that was swapped, zeroed or aliased shows.
func patternWord(seed uint64, i int) uint64 {
	return seed ^ (uint64(i)+1)*0x9E3779B97F4A7C15
}

// touch writes the pattern into the first word of pages [0, n).
func touch(mem []byte, page, n int, seed uint64) {
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint64(mem[i*page:], patternWord(seed, i))
	}
}

// readBack counts pages in [0, n) whose first word is not the pattern.
func readBack(mem []byte, page, n int, seed uint64) int {
	bad := 0
	for i := 0; i < n; i++ {
		if binary.LittleEndian.Uint64(mem[i*page:]) != patternWord(seed, i) {
			bad++
		}
	}
	return bad
}

func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
