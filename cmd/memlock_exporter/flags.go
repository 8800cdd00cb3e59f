package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/memlock-exporter/memlock_exporter/probe"
)

// intValue is a kingpin flag value for a whole number in [0, max]. kingpin's
// own IntVar parses with ParseFloat, so "1e3" passes and
// "99999999999999999999" becomes -9223372036854775808.
type intValue struct {
	p   *int
	max int
}

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	switch {
	case err != nil && strings.Contains(err.Error(), "out of range"):
		return fmt.Errorf("%q is out of range: at most %d", s, v.max)
	case err != nil:
		return fmt.Errorf("%q is not a whole number", s)
	case n < 0:
		return fmt.Errorf("must be 0 or more, not %d", n)
	case n > int64(v.max):
		return fmt.Errorf("%d is out of range: at most %d", n, v.max)
	}
	*v.p = int(n)
	return nil
}

func (v *intValue) String() string { return strconv.Itoa(*v.p) }

// maxIntFlag bounds the integer flags: far beyond any sensible value, and
// small enough that nothing derived from them overflows.
const maxIntFlag = math.MaxInt32

// sizeValue is a --probe.* byte size; auto (0) only where allowed.
type sizeValue struct {
	p    *probe.Bytes
	auto bool
}

func (v *sizeValue) Set(s string) error {
	if strings.TrimSpace(s) == "auto" && !v.auto {
		return fmt.Errorf("takes a size (e.g. 16MiB), not auto")
	}
	err := v.p.Set(s)
	if v.auto && errors.Is(err, probe.ErrZeroSize) {
		return fmt.Errorf("%w; write auto for half the headroom", err)
	}
	return err
}

func (v *sizeValue) String() string { return v.p.String() }
