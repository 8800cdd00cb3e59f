package collector

import "github.com/memlock-exporter/memlock_exporter/internal/linux"

// readBufs is what reading kernel files needs: a Reader, and the pid list
// of a /proc scan.
type readBufs struct {
	r    *linux.Reader
	pids []int
}

// bufPool keeps readBufs from one scrape to the next. A sync.Pool would not:
// it is emptied by every other GC, and a GC runs about once a scrape, so the
// buffers would be allocated again on most scrapes.
type bufPool chan *readBufs

// newBufPool keeps up to n spare sets, enough for the scrapes that run at
// once; more are allocated and dropped.
func newBufPool(n int) bufPool { return make(bufPool, n) }

func (p bufPool) get() *readBufs {
	select {
	case b := <-p:
		return b
	default:
		return &readBufs{r: linux.NewReader(4096), pids: make([]int, 0, 1024)}
	}
}

func (p bufPool) put(b *readBufs) {
	select {
	case p <- b:
	default:
	}
}
