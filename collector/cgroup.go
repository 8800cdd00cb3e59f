package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
	"github.com/prometheus/client_golang/prometheus"
)

// cgroupCollector reports unevictable memory per cgroup from memory.stat,
// with the cgroup's memory limit and usage beside it, for the cgroups that
// hold unevictable memory or that CgroupConfig.Include names.
//
// memory.stat is hierarchical where it matters: cgroup v2's "unevictable"
// and v1's "total_unevictable" cover the cgroup and all its descendants
// (v1's plain "unevictable" only the cgroup's own pages; mm/memcontrol-v1.c
// prints it with memcg_page_state_local). So a cgroup with zero has only
// zeros below it, and the walk skips its subtree: on a node with thousands
// of cgroups only the few branches that lock memory are read.
//
// Two series say it: subtree_unevictable_bytes is the hierarchical value,
// the one that counts against the cgroup's own memory limit, and
// unevictable_bytes is the cgroup's own part (v1: "unevictable"; v2: its
// "unevictable" minus its children's, read in the same walk), so that
// sum(memlock_cgroup_unevictable_bytes) counts every page once.
type cgroupCollector struct {
	sysPath       string
	include       *regexp.Regexp
	includePrefix string
	max           int
	logger        *slog.Logger
	bufs          bufPool

	mu    sync.Mutex
	found *linux.MemoryHierarchy // once found

	unevictable, subtree *prometheus.Desc
	limit, usage         *prometheus.Desc
	scanned, reported    *prometheus.Desc
	omitted              *prometheus.Desc
}

var cgroupLabels = []string{"cgroup", "pod_uid", "container_id"}

func newCgroupCollector(en *env) (Collector, error) {
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "cgroup", name), help, labels, nil)
	}
	c := &cgroupCollector{
		sysPath: en.cfg.SysPath,
		include: en.cfg.Cgroup.Include,
		max:     en.cfg.Cgroup.MaxCgroups,
		logger:  en.logger,
		unevictable: d("unevictable_bytes",
			"Unevictable memory charged to the cgroup itself, not to its descendants (memory.stat unevictable in v1; in v2 the cgroup's unevictable minus its child cgroups', read in the same scrape): mlocked pages, SHM_LOCKed segments, ramfs. Summing it over cgroups counts each page once.", cgroupLabels),
		subtree: d("subtree_unevictable_bytes",
			"Unevictable memory charged to the cgroup and its descendants (memory.stat unevictable in v2, total_unevictable in v1): mlocked pages, SHM_LOCKed segments, ramfs. It counts against the cgroup's memory limit and cannot be reclaimed; a parent repeats its children's, so do not sum it over cgroups.", cgroupLabels),
		limit: d("memory_limit_bytes",
			"Memory limit of the cgroup (memory.max in v2, memory.limit_in_bytes in v1); +Inf when unlimited.", cgroupLabels),
		usage: d("memory_usage_bytes",
			"Memory charged to the cgroup and its descendants (memory.current in v2, memory.usage_in_bytes in v1); a parent repeats its children's, so do not sum it over cgroups.", cgroupLabels),
		scanned: prometheus.NewDesc("memlock_cgroups_scanned",
			"Cgroups whose memory.stat was read in the last scrape; subtrees without unevictable memory are skipped.", nil, nil),
		reported: prometheus.NewDesc("memlock_cgroups_reported",
			"Cgroups reported with series of their own in the last scrape.", nil, nil),
		omitted: prometheus.NewDesc("memlock_cgroups_omitted",
			"Cgroups that qualified for series but were left out by --collector.cgroup.max-cgroups (the walk reports a parent before its children, so the ones left out are the deepest and last).", nil, nil),
	}
	if c.include != nil {
		c.includePrefix, _ = c.include.LiteralPrefix()
	}
	c.bufs = newBufPool(4)
	return c, nil
}

func (c *cgroupCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.unevictable, c.subtree, c.limit, c.usage, c.scanned, c.reported, c.omitted} {
		ch <- d
	}
}

// hierarchy finds the memory hierarchy, once: the mounts do not change
// under a running exporter. A host without the memory controller has no
// data (ErrNoData) and is asked again next scrape.
func (c *cgroupCollector) hierarchy() (linux.MemoryHierarchy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.found != nil {
		return *c.found, nil
	}
	h, err := linux.FindMemoryHierarchy(c.sysPath)
	if errors.Is(err, linux.ErrNoMemoryController) {
		return h, fmt.Errorf("%w: %w", ErrNoData, err)
	}
	if err != nil {
		return h, err
	}
	c.found = &h
	return h, nil
}

// cgroupWalk is the state of one scrape's walk.
type cgroupWalk struct {
	c        *cgroupCollector
	ctx      context.Context
	h        linux.MemoryHierarchy
	dir      *linux.Dir
	r        *linux.Reader
	ch       chan<- prometheus.Metric
	stat     linux.MemoryStat
	visited  int
	scanned  int
	reported int
	omitted  int
	failures int
	firstErr error
}

func (c *cgroupCollector) Update(ctx context.Context, _ *Scrape, ch chan<- prometheus.Metric) error {
	h, err := c.hierarchy()
	if err != nil {
		return err
	}
	dir, err := linux.OpenDir(h.Root)
	if err != nil {
		return err
	}
	defer dir.Close()
	bufs := c.bufs.get()
	defer c.bufs.put(bufs)
	r := bufs.r

	w := &cgroupWalk{c: c, ctx: ctx, h: h, dir: dir, r: r, ch: ch}
	_, _, walkErr := w.visit("", false)
	ch <- prometheus.MustNewConstMetric(c.scanned, prometheus.GaugeValue, float64(w.scanned))
	ch <- prometheus.MustNewConstMetric(c.reported, prometheus.GaugeValue, float64(w.reported))
	ch <- prometheus.MustNewConstMetric(c.omitted, prometheus.GaugeValue, float64(w.omitted))
	if walkErr != nil {
		return fmt.Errorf("walked %d cgroups: %w", w.scanned, walkErr)
	}
	if w.failures > 0 {
		return fmt.Errorf("%d cgroup files could not be read: %w", w.failures, w.firstErr)
	}
	return nil
}

func (w *cgroupWalk) fail(err error) {
	w.failures++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// vanished is true for a cgroup removed during the walk.
func vanished(err error) bool { return errors.Is(err, os.ErrNotExist) }

// ctxCheckCgroups is how many cgroups are read between deadline checks.
const ctxCheckCgroups = 64

// visit reads the cgroup at rel (relative to the hierarchy's root, "" for
// the root), reports it if it qualifies and walks its children. knownZero
// says the parent had no unevictable memory, so neither has this cgroup:
// it is visited only because Include may name it or a descendant, and its
// memory.stat is not read. It returns the cgroup's hierarchical
// unevictable bytes and whether they are known, for the parent's own part.
func (w *cgroupWalk) visit(rel string, knownZero bool) (uint64, bool, error) {
	if w.visited%ctxCheckCgroups == 0 && w.ctx.Err() != nil {
		return 0, false, w.ctx.Err()
	}
	w.visited++
	cg := "/" + rel
	var unevictable, local uint64
	haveStat := knownZero
	if !knownZero {
		b, err := w.r.ReadFile(w.dir, join(rel, "memory.stat"))
		if err == nil {
			w.scanned++
			err = linux.ParseMemoryStat(b, &w.stat)
		}
		switch {
		case err == nil:
			unevictable, local, haveStat = w.stat.Hierarchical(), w.stat.Unevictable, true
		case rel == "" && vanished(err):
			// Some kernels have no memory.stat at the v2 root: walk on
			// without knowing the total.
		case vanished(err):
			// Removed, or (v2) a child of a cgroup that does not enable
			// the memory controller for it: its pages are charged above.
			return 0, true, nil
		default:
			w.fail(fmt.Errorf("%s: %w", cg, err))
			return 0, false, nil
		}
	}
	var lv []string
	if haveStat && (unevictable > 0 || w.c.include != nil && w.c.include.MatchString(cg)) {
		lv = w.report(rel, cg, unevictable)
	}
	zero := haveStat && unevictable == 0
	if zero && !w.mayMatchBelow(cg) {
		w.reportOwn(lv, 0)
		return 0, true, nil
	}
	children, childrenKnown := w.visitChildren(rel, zero)
	if children.err != nil {
		return 0, false, children.err
	}
	// v1 gives the cgroup's own pages; v2 only the subtree's, so its own
	// part is what its children do not hold. The children are read after
	// the parent: clamp a race to zero.
	own := local
	if w.h.V2 {
		own = 0
		if unevictable > children.sum {
			own = unevictable - children.sum
		}
	}
	if !w.h.V2 || childrenKnown {
		w.reportOwn(lv, own)
	}
	return unevictable, haveStat, nil
}

type childSum struct {
	sum uint64
	err error
}

// visitChildren walks the child cgroups of rel and adds up their
// hierarchical unevictable bytes; known is false where one could not be read.
func (w *cgroupWalk) visitChildren(rel string, zero bool) (childSum, bool) {
	var cs childSum
	f, err := os.Open(filepath.Join(w.h.Root, rel))
	if err != nil {
		if !vanished(err) {
			w.fail(err)
			return cs, false
		}
		return cs, true
	}
	entries, err := f.ReadDir(-1)
	f.Close()
	known := true
	if err != nil && !vanished(err) {
		w.fail(err)
		known = false
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v, ok, err := w.visit(join(rel, e.Name()), zero)
		if err != nil {
			cs.err = err
			return cs, false
		}
		cs.sum += v
		known = known && ok
	}
	return cs, known
}

// mayMatchBelow reports whether Include could match a cgroup below cg,
// judged by the literal prefix every match of Include starts with.
func (w *cgroupWalk) mayMatchBelow(cg string) bool {
	if w.c.include == nil {
		return false
	}
	below := strings.TrimSuffix(cg, "/") + "/"
	p := w.c.includePrefix
	return strings.HasPrefix(p, below) || strings.HasPrefix(below, p)
}

func join(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// report sends the series of a qualifying cgroup but its own unevictable
// bytes, which are known only after its children are read, and returns
// their label values; nil when --collector.cgroup.max-cgroups leaves it out.
func (w *cgroupWalk) report(rel, cg string, unevictable uint64) []string {
	if w.c.max > 0 && w.reported >= w.c.max {
		w.omitted++
		return nil
	}
	id := linux.ParseCgroupPath(cg)
	// A directory name need not be UTF-8; a label value must.
	lv := []string{strings.ToValidUTF8(cg, "\uFFFD"), id.PodUID, id.ContainerID}
	w.ch <- prometheus.MustNewConstMetric(w.c.subtree, prometheus.GaugeValue, float64(unevictable), lv...)
	w.reported++

	limitFile, usageFile := "memory.limit_in_bytes", "memory.usage_in_bytes"
	if w.h.V2 {
		limitFile, usageFile = "memory.max", "memory.current"
	}
	// The v2 root has neither file: it has no limit, and its usage is the
	// host's.
	if v, ok := w.readValue(rel, limitFile); ok {
		limit := float64(v)
		if v == linux.Unlimited || !w.h.V2 && linux.CgroupV1Unlimited(v) {
			limit = math.Inf(1)
		}
		w.ch <- prometheus.MustNewConstMetric(w.c.limit, prometheus.GaugeValue, limit, lv...)
	}
	if v, ok := w.readValue(rel, usageFile); ok && v != linux.Unlimited {
		w.ch <- prometheus.MustNewConstMetric(w.c.usage, prometheus.GaugeValue, float64(v), lv...)
	}
	return lv
}

// reportOwn sends a reported cgroup's own unevictable bytes.
func (w *cgroupWalk) reportOwn(lv []string, own uint64) {
	if lv != nil {
		w.ch <- prometheus.MustNewConstMetric(w.c.unevictable, prometheus.GaugeValue, float64(own), lv...)
	}
}

func (w *cgroupWalk) readValue(rel, name string) (uint64, bool) {
	b, err := w.r.ReadFile(w.dir, join(rel, name))
	if err == nil {
		var v uint64
		if v, err = linux.ParseCgroupMemoryValue(b); err == nil {
			return v, true
		}
	}
	if !vanished(err) {
		w.fail(fmt.Errorf("/%s: %w", join(rel, name), err))
	}
	return 0, false
}
