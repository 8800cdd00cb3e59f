package collector

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
)

// systemCollector reports system-wide locked and unevictable memory from
// /proc/meminfo, the unevictable LRU's events from /proc/vmstat, and per
// NUMA node values from sysfs. vmstat's nr_mlock and nr_unevictable are not
// reported: fs/proc/meminfo.c prints the same counters (NR_MLOCK and
// NR_LRU_BASE+LRU_UNEVICTABLE) as Mlocked and Unevictable.
type systemCollector struct {
	procPath string
	sysPath  string

	memTotal, mlocked, unevictable             *prometheus.Desc
	events                                     *prometheus.Desc
	nodeMemTotal, nodeMlocked, nodeUnevictable *prometheus.Desc
}

func newSystemCollector(en *env) (Collector, error) {
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
	}
	return &systemCollector{
		procPath: en.cfg.ProcPath,
		sysPath:  en.cfg.SysPath,
		memTotal: d("system", "memory_total_bytes", "Usable RAM (MemTotal in /proc/meminfo)."),
		mlocked:  d("system", "mlocked_bytes", "Memory locked with mlock, mlockall or MAP_LOCKED (Mlocked in /proc/meminfo)."),
		unevictable: d("system", "unevictable_bytes",
			"Memory on the unevictable LRU: mlocked pages, ramfs, SHM_LOCKed segments (Unevictable in /proc/meminfo). Pages of a segment touched before its SHM_LOCK stay on the evictable LRU until reclaim scans them."),
		events: d("system", "unevictable_pages_total",
			"Pages through unevictable_pgs_<event> events of /proc/vmstat (mlocked, munlocked, culled, scanned, rescued, cleared, stranded).", "event"),
		nodeMemTotal:    d("node", "memory_total_bytes", "RAM of the NUMA node (MemTotal in node<N>/meminfo).", "node"),
		nodeMlocked:     d("node", "mlocked_bytes", "Mlocked memory on the NUMA node.", "node"),
		nodeUnevictable: d("node", "unevictable_bytes", "Unevictable memory on the NUMA node.", "node"),
	}, nil
}

func (c *systemCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.memTotal, c.mlocked, c.unevictable, c.events,
		c.nodeMemTotal, c.nodeMlocked, c.nodeUnevictable} {
		ch <- d
	}
}

func (c *systemCollector) Update(ctx context.Context, _ *Scrape, ch chan<- prometheus.Metric) error {
	b, err := linux.ReadSystemFile(filepath.Join(c.procPath, "meminfo"), linux.MaxFileSize)
	if err != nil {
		return fmt.Errorf("meminfo: %w", err)
	}
	mi, err := linux.ParseMeminfo(b)
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(c.memTotal, prometheus.GaugeValue, float64(mi.MemTotal))
	ch <- prometheus.MustNewConstMetric(c.mlocked, prometheus.GaugeValue, float64(mi.Mlocked))
	ch <- prometheus.MustNewConstMetric(c.unevictable, prometheus.GaugeValue, float64(mi.Unevictable))

	b, err = linux.ReadSystemFile(filepath.Join(c.procPath, "vmstat"), linux.MaxFileSize)
	if err != nil {
		return err
	}
	vs, err := linux.ParseVMStat(b)
	if err != nil {
		return err
	}
	for _, e := range vs.Events {
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(e.Value), e.Name)
	}
	return c.updateNodes(ch)
}

// updateNodes reports per NUMA node values; a kernel without NUMA support
// has no node directory, which is not an error.
func (c *systemCollector) updateNodes(ch chan<- prometheus.Metric) error {
	nodes, err := filepath.Glob(filepath.Join(c.sysPath, "devices/system/node/node[0-9]*"))
	if err != nil {
		return err
	}
	for _, dir := range nodes {
		b, err := linux.ReadSystemFile(filepath.Join(dir, "meminfo"), linux.MaxFileSize)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		m, err := linux.ParseMeminfo(b)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		node := strings.TrimPrefix(filepath.Base(dir), "node")
		ch <- prometheus.MustNewConstMetric(c.nodeMemTotal, prometheus.GaugeValue, float64(m.MemTotal), node)
		ch <- prometheus.MustNewConstMetric(c.nodeMlocked, prometheus.GaugeValue, float64(m.Mlocked), node)
		ch <- prometheus.MustNewConstMetric(c.nodeUnevictable, prometheus.GaugeValue, float64(m.Unevictable), node)
	}
	return nil
}
