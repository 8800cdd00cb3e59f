package collector

import (
	"sync"
	"time"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// cgroupKey is what decides the path of /proc/<pid>/cgroup the identity is
// parsed from (linux.ParseProcCgroup: the memory controller's line, else the
// unified one): the kernfs ids of the task's cgroup in the default hierarchy
// and of its memory controller's cgroup, which the BPF pass reads. kernfs
// ids are never reused, and a process moved to another cgroup has another
// id, so a key names one path for as long as the cgroups exist.
type cgroupKey struct {
	dfl, memcg uint64
	hasMemcg   bool
}

// keyOf returns the task's key; ok is false when the pass has no cgroup id.
func keyOf(t *bpf.Task) (cgroupKey, bool) {
	if t.Flags&bpf.FlagCgroup == 0 {
		return cgroupKey{}, false
	}
	return cgroupKey{dfl: t.CgroupID, memcg: t.MemcgID, hasMemcg: t.Flags&bpf.FlagMemcg != 0}, true
}

// identityTTL bounds how long a cached identity is used before its
// /proc/<pid>/cgroup is read again: a cgroup directory can be renamed
// (rename(2) within its parent keeps the kernfs id), which no runtime does
// but which must not stay hidden.
const identityTTL = 5 * time.Minute

// identityCache maps cgroup keys to the pod and container identity parsed
// for them, so that /proc/<pid>/cgroup is read only for a key not yet
// confirmed. An entry is used only after two reads for the key, in
// different scrapes, gave the same path: the pass reads the key before the
// file is read, so a process that moved between the two would otherwise
// file its new cgroup's identity under its old key. Entries whose key no
// reported process had in a scrape are dropped, so the cache holds at most
// one entry per distinct cgroup of the reported processes.
type identityCache struct {
	mu      sync.Mutex
	gen     uint64
	entries map[cgroupKey]*identityEntry
	// hits and reads count lookups answered from the cache and files
	// read, for tests and the benchmark's notes.
	hits, reads int
}

type identityEntry struct {
	path      string
	id        linux.CgroupIdentity
	confirmed bool
	readAt    time.Time
	readGen   uint64 // scrape of the last read
	usedGen   uint64
}

func newIdentityCache() *identityCache {
	return &identityCache{entries: map[cgroupKey]*identityEntry{}}
}

// begin starts a scrape's lookups.
func (c *identityCache) begin() {
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
}

// end drops the entries no lookup of this scrape used.
func (c *identityCache) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.usedGen != c.gen {
			delete(c.entries, k)
		}
	}
}

// lookup returns the identity cached for k, if confirmed and fresh.
func (c *identityCache) lookup(k cgroupKey, now time.Time) (linux.CgroupIdentity, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[k]
	if e == nil {
		return linux.CgroupIdentity{}, false
	}
	e.usedGen = c.gen
	if !e.confirmed || now.Sub(e.readAt) > identityTTL {
		return linux.CgroupIdentity{}, false
	}
	c.hits++
	return e.id, true
}

// store records what a read of /proc/<pid>/cgroup gave for k: the entry is
// confirmed when an earlier scrape's read for k gave the same path, and
// replaced (unconfirmed) when it gave another.
func (c *identityCache) store(k cgroupKey, path []byte, id linux.CgroupIdentity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	e := c.entries[k]
	switch {
	case e == nil || e.path != string(path):
		c.entries[k] = &identityEntry{path: string(path), id: id, readAt: now, readGen: c.gen, usedGen: c.gen}
	case e.readGen != c.gen:
		e.confirmed, e.readAt, e.readGen, e.usedGen = true, now, c.gen, c.gen
	default:
		e.usedGen = c.gen
	}
}
