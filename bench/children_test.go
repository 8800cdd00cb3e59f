package bench

import (
	"testing"
	"time"
)

// The churn check must tell a dead pid from one reused by a new child.
func TestDeadSince(t *testing.T) {
	t0 := time.Now()
	c := &Children{alive: map[int]string{}, died: map[int]time.Time{}, born: map[int]time.Time{}}
	c.born[10] = t0.Add(-3 * time.Second)
	c.died[10] = t0.Add(-2 * time.Second) // dead before the scrape began
	c.born[11] = t0.Add(-3 * time.Second)
	c.died[11] = t0.Add(-2 * time.Second)
	c.born[11] = t0.Add(-time.Second)     // and reused since
	c.died[12] = t0.Add(time.Second)      // died during the scrape
	c.born[13] = t0.Add(-5 * time.Second) // alive
	for pid, want := range map[int]bool{10: true, 11: false, 12: false, 13: false, 14: false} {
		if got := c.DeadSince(pid, t0); got != want {
			t.Errorf("DeadSince(%d) = %v, want %v", pid, got, want)
		}
	}
}
