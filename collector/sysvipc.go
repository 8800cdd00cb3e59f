package collector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/memlock-exporter/memlock_exporter/internal/metricutil"
	"github.com/prometheus/client_golang/prometheus"
)

// sysvipcCollector reports SysV shared memory segments locked with
// shmctl(SHM_LOCK), per owner uid. /proc/sysvipc/shm lists the segments of
// the reader's IPC namespace, whatever procfs mount it is read through:
// the collector says whether that is the host's (the initial one), and sees no
// segment of another IPC namespace (a pod's own, without hostIPC). Seeing
// those would take setns(2) into each, which needs CAP_SYS_ADMIN over the
// namespace's owner: the exporter does not.
type sysvipcCollector struct {
	path, procPath  string
	bytes, segments *prometheus.Desc
	hostNS          *prometheus.Desc
}

func newSysvipcCollector(en *env) (Collector, error) {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "sysvipc", name), help, []string{"uid"}, nil)
	}
	return &sysvipcCollector{
		path:     filepath.Join(en.cfg.ProcPath, "sysvipc", "shm"),
		procPath: en.cfg.ProcPath,
		bytes: d("shm_locked_bytes",
			"Size of SysV shared memory segments locked with SHM_LOCK, per owner uid (/proc/sysvipc/shm), in the exporter's IPC namespace only (see memlock_sysvipc_host_ipc_namespace). The kernel charges a lock to the user who called shmctl(SHM_LOCK), which need not be the owner and which no /proc file shows."),
		segments: d("shm_locked_segments", "Number of SysV shared memory segments locked with SHM_LOCK, per owner uid, in the exporter's IPC namespace only."),
		hostNS: prometheus.NewDesc(prometheus.BuildFQName(namespace, "sysvipc", "host_ipc_namespace"),
			"Whether the exporter's IPC namespace, whose segments /proc/sysvipc/shm lists whatever --path.procfs says, is the initial one (1: the host's, with hostIPC or --ipc=host) or another (0: segments of the host and of other containers are not seen).", nil, nil),
	}, nil
}

func (c *sysvipcCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.segments
	ch <- c.hostNS
}

// hostIPCNamespace tells whether the exporter is in the initial IPC
// namespace, by its own ns/ipc link, which it may always read.
func (c *sysvipcCollector) hostIPCNamespace() (bool, bool) {
	own, err := os.Readlink("/proc/thread-self/ns/ipc")
	if err != nil {
		if own, err = os.Readlink(filepath.Join(c.procPath, "thread-self", "ns", "ipc")); err != nil {
			return false, false
		}
	}
	return own == linux.InitIPCNSLink, true
}

// maxShmFileSize bounds /proc/sysvipc/shm: a line is about 200 bytes and
// kernel.shmmni is at most 32768 segments (6.5 MiB).
const maxShmFileSize = 16 << 20

type shmTotal struct {
	bytes    uint64
	segments int
}

func (c *sysvipcCollector) Update(_ context.Context, _ *Scrape, ch chan<- prometheus.Metric) error {
	if same, ok := c.hostIPCNamespace(); ok {
		ch <- prometheus.MustNewConstMetric(c.hostNS, prometheus.GaugeValue, metricutil.Bool(same))
	}
	b, err := linux.ReadSystemFile(c.path, maxShmFileSize)
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
		var overflow bool
		if t.bytes, overflow = addSat(t.bytes, s.Size, false); overflow {
			return fmt.Errorf("%s: %w: uid %d: locked sizes sum past 2^64", c.path, linux.ErrMalformed, s.UID)
		}
		t.segments++
	}
	for uid, t := range owners {
		id := strconv.FormatUint(uint64(uid), 10)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(t.bytes), id)
		ch <- prometheus.MustNewConstMetric(c.segments, prometheus.GaugeValue, float64(t.segments), id)
	}
	return nil
}
