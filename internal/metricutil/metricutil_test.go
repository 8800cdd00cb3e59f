package metricutil

import (
	"math"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBytesOrInf(t *testing.T) {
	// RLIM_INFINITY as the kernel returns it from prlimit(2).
	if v := BytesOrInf(unix.RLIM_INFINITY); !math.IsInf(v, 1) {
		t.Errorf("RLIM_INFINITY = %v, want +Inf", v)
	}
	if v := BytesOrInf(8 << 20); v != 8<<20 {
		t.Errorf("8 MiB = %v", v)
	}
	if Bool(true) != 1 || Bool(false) != 0 {
		t.Error("Bool")
	}
}
