package probe

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"go.yaml.in/yaml/v2"
	"golang.org/x/sys/unix"
)

// ErrZeroSize is wrapped by ParseSize's error for a size of zero bytes.
var ErrZeroSize = errors.New("zero bytes")

// Bytes is a size in bytes that YAML and flags write as "64KiB", "1MiB",
// "4096" or "auto" (0).
type Bytes uint64

// ParseSize parses a size: a whole decimal number with an optional base-2
// unit as alecthomas/units.ParseBase2Bytes spells them (B, KiB or KB, MiB
// or MB, GiB or GB, TiB ...; KB means 1024, kB and a bare K are refused),
// or "auto", which is 0. A number of zero bytes is
// refused: auto must be asked for by name.
func ParseSize(s string) (Bytes, error) {
	b, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("size %.40q: %w", s, err)
	}
	return b, nil
}

// parseSize is ParseSize with errors that do not repeat s.
func parseSize(s string) (Bytes, error) {
	t := strings.TrimSpace(s)
	if t == "auto" {
		return 0, nil
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%w: no number", errMalformed)
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errMalformed, bareNumErr(err))
	}
	// The unit's spelling and multiplier are alecthomas/units' (KB = KiB =
	// 1024, as in blackbox_exporter's sizes); the arithmetic stays in
	// integers here, because units.ParseUnit computes in float64 (a size
	// above 2^53 bytes would round) and also takes signs, fractions and
	// sums such as 1GiB512MiB, which a size flag should refuse.
	unit := strings.TrimSpace(t[i:])
	if unit == "" {
		unit = "B"
	}
	m, err := units.ParseBase2Bytes("1" + unit)
	if err != nil || m <= 0 || strings.ContainsAny(unit, "0123456789.+-") {
		return 0, fmt.Errorf("%w: unknown unit (B, KiB or KB, MiB or MB, GiB or GB, TiB or TB)", errMalformed)
	}
	mult := uint64(m)
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("%w: too large", errMalformed)
	}
	if n == 0 {
		// 0 is not a shorthand for auto: a probe of no bytes is a mistake,
		// and auto can lock far more than the operator meant.
		return 0, fmt.Errorf("%w: %w", errMalformed, ErrZeroSize)
	}
	return Bytes(n * mult), nil
}

// bareNumErr is strconv's reason without its copy of the input.
func bareNumErr(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
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
	v, err := parseSize(s) // the error must not quote the file
	if err != nil {
		return fmt.Errorf("a size: %w", err)
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
	// Current (mlockall only, default true) keeps MCL_CURRENT, which the
	// kernel refuses (ENOMEM) unless the child's whole address space
	// (total_vm, hundreds of MiB for a Go program) fits in RLIMIT_MEMLOCK or
	// it has CAP_IPC_LOCK. false calls mlockall(MCL_FUTURE) only and maps
	// the region afterwards, which the kernel locks and checks against the
	// limit like any lock (locked_vm plus the region): the probe then runs
	// under an ordinary finite limit.
	Current *bool `yaml:"current"`
	// Timeout caps the probe below the scrape's own deadline; 0: none.
	Timeout time.Duration `yaml:"timeout"`
	// IgnoreHeadroom attempts the probe even when it exceeds the
	// headroom, to see the kernel's own answer.
	IgnoreHeadroom bool `yaml:"ignore_headroom"`
}

// Validate checks m against the byte budget maxBytes.
func (m *Module) Validate(maxBytes uint64) error {
	known := false
	for _, x := range modes {
		known = known || m.Mode == x
	}
	switch {
	case !known:
		return fmt.Errorf("unknown mode %.20q (want one of mlock, onfault, populate, mlockall)", m.Mode)
	case uint64(m.Size) > maxBytes:
		return fmt.Errorf("size %s exceeds the byte budget %s", m.Size, Bytes(maxBytes))
	case m.HugePages && m.Mode == ModePopulate:
		return fmt.Errorf("hugepages needs madvise before the pages fault in, which populate cannot do")
	case m.OnFault != nil && m.Mode != ModeMlockall:
		return fmt.Errorf("onfault applies to mode mlockall only (mode onfault is mlock2(MLOCK_ONFAULT))")
	case m.Current != nil && m.Mode != ModeMlockall:
		return fmt.Errorf("current applies to mode mlockall only")
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

func (m *Module) mlockallCurrent() bool { return m.Current == nil || *m.Current }

// Config is the probe configuration file.
type Config struct {
	Modules map[string]Module `yaml:"modules"`
}

// ParseConfig parses and validates a configuration file's contents;
// unknown keys are errors. Errors name the line and the kind of problem,
// never the file's text: /-/reload answers them to any client, and the file
// named may be one it should not see (yaml's own messages quote values).
func ParseConfig(b []byte, maxBytes uint64) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, yamlProblem(err)
	}
	for name, m := range c.Modules {
		if name == "" {
			return nil, fmt.Errorf("a module has an empty name")
		}
		if err := m.Validate(maxBytes); err != nil {
			return nil, fmt.Errorf("module %.40q: %w", name, err)
		}
	}
	return &c, nil
}

// MaxConfigBytes bounds the probe configuration file.
const MaxConfigBytes = 1 << 20

// LoadConfig reads and parses the configuration file at path: a regular
// file of at most MaxConfigBytes.
func LoadConfig(path string, maxBytes uint64) (*Config, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0) // a FIFO must not block
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return nil, err
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxConfigBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxConfigBytes)
	}
	return ParseConfig(b, maxBytes)
}

var (
	yamlLineRe  = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlTypeRe  = regexp.MustCompile(`^cannot unmarshal (!!\w+) .* into (\S+)$`)
	yamlFieldRe = regexp.MustCompile(`^field .* not found in type (\S+)$`)
	yamlKeyRe   = regexp.MustCompile(`^key .* already set in map$`)
)

// yamlProblem rewrites a yaml error to its line numbers and kinds of
// problem, dropping every quoted value, key and field name.
func yamlProblem(err error) error {
	if errors.Is(err, errMalformed) {
		return err // ours (a size), which quotes nothing
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		msg := err.Error()
		if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
			return fmt.Errorf("%w: yaml syntax error on line %s: %s", errMalformed, m[1], syntaxKind(m[2]))
		}
		return fmt.Errorf("%w: %s", errMalformed, syntaxKind(strings.TrimPrefix(msg, "yaml: ")))
	}
	var parts []string
	for i, e := range te.Errors {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(te.Errors)-i))
			break
		}
		line, what := "?", "invalid value"
		if m := yamlLineRe.FindStringSubmatch(e); m != nil {
			line = m[1]
			switch {
			case yamlTypeRe.MatchString(m[2]):
				t := yamlTypeRe.FindStringSubmatch(m[2])
				what = fmt.Sprintf("a %s value where %s belongs", t[1], t[2])
			case yamlFieldRe.MatchString(m[2]):
				what = "unknown key in " + yamlFieldRe.FindStringSubmatch(m[2])[1]
			case yamlKeyRe.MatchString(m[2]):
				what = "a key given twice"
			}
		}
		parts = append(parts, "line "+line+": "+what)
	}
	return fmt.Errorf("%w: %s", errMalformed, strings.Join(parts, "; "))
}

// syntaxKind keeps a yaml syntax message unless it quotes the text.
func syntaxKind(msg string) string {
	if strings.ContainsAny(msg, "`'\"") || len(msg) > 80 {
		return "malformed YAML"
	}
	return msg
}
