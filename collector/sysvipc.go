package collector

import (
	"context"
	"os"
	"path/filepath"
	"strconv"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
)

// sysvipcCollector reports SysV shared memory segments locked with
// shmctl(SHM_LOCK), per owner uid: the kernel charges them to the owner's
// per-user locked total.
type sysvipcCollector struct {
	path            string
	bytes, segments *prometheus.Desc
}

func newSysvipcCollector(en *env) (Collector, error) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "sysvipc", name), help, []string{"uid"}, nil)
	}
	return &sysvipcCollector{
		path:     filepath.Join(en.cfg.ProcPath, "sysvipc", "shm"),
		bytes:    d("shm_locked_bytes", "Size of SysV shared memory segments locked with SHM_LOCK, per owner uid (/proc/sysvipc/shm)."),
		segments: d("shm_locked_segments", "Number of SysV shared memory segments locked with SHM_LOCK, per owner uid."),
	}, nil
}

func (c *sysvipcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.segments
}

// maxShmFileSize bounds /proc/sysvipc/shm: a line is about 200 bytes and
// kernel.shmmni is at most 32768 segments (6.5 MiB).
const maxShmFileSize = 16 << 20

type shmTotal struct {
	bytes    uint64
	segments int
}

func (c *sysvipcCollector) Update(_ context.Context, _ *Scrape, ch chan<- prometheus.Metric) error {
	b, err := readRegular(c.path, maxShmFileSize)
	if os.IsNotExist(err) {
		return nil // a kernel without CONFIG_SYSVIPC
	}
	if err != nil {
		return err
	}
	segs, err := linux.ParseSysvShm(b)
	if err != nil {
		return err
	}
	owners := map[uint32]*shmTotal{}
	for _, s := range segs {
		if !s.Locked() {
			continue
		}
		t := owners[s.UID]
		if t == nil {
			t = &shmTotal{}
			owners[s.UID] = t
		}
		t.bytes += s.Size
		t.segments++
	}
	for uid, t := range owners {
		id := strconv.FormatUint(uint64(uid), 10)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(t.bytes), id)
		ch <- prometheus.MustNewConstMetric(c.segments, prometheus.GaugeValue, float64(t.segments), id)
	}
	return nil
}
