// Package metricutil turns kernel values into sample values, the same way
// for the collectors and the probes.
package metricutil

import (
	"math"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// BytesOrInf is v as a sample, +Inf for linux.Unlimited (RLIM_INFINITY,
// cgroup v2's "max").
func BytesOrInf(v uint64) float64 {
	if v == linux.Unlimited {
		return math.Inf(1)
	}
	return float64(v)
}

// Bool is 1 for true, 0 for false.
func Bool(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
