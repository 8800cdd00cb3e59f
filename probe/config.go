package probe

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v2"
)

// ErrZeroSize is wrapped by ParseSize's error for a size of zero bytes.
var ErrZeroSize = errors.New("zero bytes")

// Bytes is a size in bytes that YAML and flags write as "64KiB", "1MiB",
// "4096" or "auto" (0).
type Bytes uint64

// ParseSize parses a size: a decimal number with an optional base-2 unit
// (B, K, KB, KiB, M, MB, MiB, G, GB, GiB; K and KB mean 1024, as in
// kingpin's byte flags), or "auto", which is 0. A number of zero bytes is
// refused: auto must be asked for by name.
func ParseSize(s string) (Bytes, error) {
	t := strings.TrimSpace(s)
	if t == "auto" {
		return 0, nil
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: %w: no number", s, errMalformed)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w: %v", s, errMalformed, err)
	}
	var mult uint64
	switch strings.TrimSpace(t[i:]) {
	case "", "B":
		mult = 1
	case "K", "KB", "KiB", "k", "kB":
		mult = 1 << 10
	case "M", "MB", "MiB":
		mult = 1 << 20
	case "G", "GB", "GiB":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("size %q: %w: unknown unit", s, errMalformed)
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q: %w: too large", s, errMalformed)
	}
	if n == 0 {
		// 0 is not a shorthand for auto: a probe of no bytes is a mistake,
		// and auto can lock far more than the operator meant.
		return 0, fmt.Errorf("size %q: %w: %w", s, errMalformed, ErrZeroSize)
	}
	return Bytes(n * mult), nil
}

func (b Bytes) String() string {
	switch {
	case b == 0:
		return "auto"
	case b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return strconv.FormatUint(uint64(b), 10)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *Bytes) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Set and Type make Bytes a flag value.
func (b *Bytes) Set(s string) error {
	v, err := ParseSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Module is one named probe configuration.
type Module struct {
	Mode Mode `yaml:"mode"`
	// Size of the region; 0 ("auto") is half the effective headroom,
	// capped by the byte budget. Rounded up to whole pages.
	Size Bytes `yaml:"size"`
	// ChunkSize is how much one lock call covers (default 4MiB); the
	// deadline is checked between chunks.
	ChunkSize Bytes `yaml:"chunk_size"`
	// HugePages places the region on a 2 MiB boundary and asks for
	// transparent huge pages with madvise(MADV_HUGEPAGE).
	HugePages bool `yaml:"hugepages"`
	// TouchSize is how much of an onfault region is written (default half).
	TouchSize Bytes `yaml:"touch_size"`
	// OnFault (mlockall only, default true) adds MCL_ONFAULT: without it
	// MCL_CURRENT faults in every writable mapping of the child, the Go
	// heap arena included (tens of MiB).
	OnFault *bool `yaml:"onfault"`
	// Timeout caps the probe below the scrape's own deadline; 0: none.
	Timeout time.Duration `yaml:"timeout"`
	// IgnoreHeadroom attempts the probe even when it exceeds the
	// headroom, to see the kernel's own answer.
	IgnoreHeadroom bool `yaml:"ignore_headroom"`
}

// Validate checks m against the byte budget maxBytes.
func (m *Module) Validate(maxBytes uint64) error {
	known := false
	for _, x := range Modes {
		known = known || m.Mode == x
	}
	switch {
	case !known:
		return fmt.Errorf("unknown mode %q (want one of mlock, onfault, populate, mlockall)", m.Mode)
	case uint64(m.Size) > maxBytes:
		return fmt.Errorf("size %s exceeds the byte budget %s", m.Size, Bytes(maxBytes))
	case m.HugePages && m.Mode == ModePopulate:
		return fmt.Errorf("hugepages needs madvise before the pages fault in, which populate cannot do")
	case m.OnFault != nil && m.Mode != ModeMlockall:
		return fmt.Errorf("onfault applies to mode mlockall only (mode onfault is mlock2(MLOCK_ONFAULT))")
	case m.TouchSize > 0 && m.Mode != ModeOnfault:
		return fmt.Errorf("touch_size applies to mode onfault only")
	case m.TouchSize > m.Size && m.Size > 0:
		return fmt.Errorf("touch_size %s exceeds size %s", m.TouchSize, m.Size)
	case m.Timeout < 0:
		return fmt.Errorf("timeout must not be negative")
	}
	return nil
}

func (m *Module) mlockallOnFault() bool { return m.OnFault == nil || *m.OnFault }

// Config is the probe configuration file.
type Config struct {
	Modules map[string]Module `yaml:"modules"`
}

// ParseConfig parses and validates a configuration file's contents;
// unknown keys are errors.
func ParseConfig(b []byte, maxBytes uint64) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, err
	}
	for name, m := range c.Modules {
		if name == "" {
			return nil, fmt.Errorf("a module has an empty name")
		}
		if err := m.Validate(maxBytes); err != nil {
			return nil, fmt.Errorf("module %q: %w", name, err)
		}
	}
	return &c, nil
}

// LoadConfig reads and parses the configuration file at path.
func LoadConfig(path string, maxBytes uint64) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(b, maxBytes)
}
