package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/memlock-exporter/memlock_exporter/probe"
)

// probeOptions are the --probe.* flags. Probes are off unless enabled.
type probeOptions struct {
	enable     bool
	interval   time.Duration
	timeout    time.Duration
	modes      string
	size       probe.Bytes
	maxBytes   probe.Bytes
	configFile string
	maxReqs    int

	scheduled []probe.NamedModule
	onDemand  []probe.NamedModule // the built-in modes the schedule does not run
}

func addProbeFlags(app *kingpin.Application, p *probeOptions) {
	app.Flag("probe.enable", "Enable active probes: lock a small region of memory in each --probe.modes mode every --probe.interval and serve /probe?module=NAME.").BoolVar(&p.enable)
	app.Flag("probe.interval", "Interval of the background probes whose results appear on the metrics path; 0 disables the schedule (/probe still works).").Default("1m").DurationVar(&p.interval)
	app.Flag("probe.timeout", "Deadline of each background probe.").Default("10s").DurationVar(&p.timeout)
	app.Flag("probe.modes", "Comma-separated modes the background schedule runs: mlock, onfault, populate, mlockall. Every mode is a /probe module of the same name, scheduled or not.").Default("mlock,onfault,populate").StringVar(&p.modes)
	app.Flag("probe.size", "Bytes each built-in mode's probe locks (e.g. 32KiB, 4MiB; not 0), or auto: half the headroom, within --probe.max-bytes.").Default("32KiB").SetValue(&sizeValue{p: &p.size, auto: true})
	app.Flag("probe.max-bytes", "Hard byte budget: no probe locks more, whatever its module says (at least one page).").Default("16MiB").SetValue(&sizeValue{p: &p.maxBytes})
	app.Flag("probe.max-requests", "Most /probe requests at once: one probes, the others wait their turn within their deadline; more get 503 at once.").Default("4").SetValue(&intValue{p: &p.maxReqs, max: 1024})
	app.Flag("probe.config.file", "YAML file of more /probe modules (see docs/probes.md); reloaded on SIGHUP and POST /-/reload.").PlaceHolder("FILE").StringVar(&p.configFile)
}

// validate checks the flags and builds the scheduled modules.
func (p *probeOptions) validate() error {
	page := uint64(os.Getpagesize())
	if p.interval < 0 {
		return fmt.Errorf("--probe.interval must not be negative, not %s", p.interval)
	}
	if p.timeout <= 0 {
		return fmt.Errorf("--probe.timeout must be positive, not %s", p.timeout)
	}
	if uint64(p.maxBytes) < page {
		return fmt.Errorf("--probe.max-bytes must be at least one page (%d bytes), not %d", page, uint64(p.maxBytes))
	}
	if p.maxReqs < 1 {
		return fmt.Errorf("--probe.max-requests must be at least 1, not %d", p.maxReqs)
	}
	if p.size > p.maxBytes {
		return fmt.Errorf("--probe.size %s exceeds --probe.max-bytes %s", p.size, p.maxBytes)
	}
	p.scheduled = nil
	seen := map[string]bool{}
	for _, s := range strings.Split(p.modes, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if seen[s] {
			return fmt.Errorf("--probe.modes names %q twice", s)
		}
		seen[s] = true
		m := probe.NamedModule{Name: s, Module: probe.Module{Mode: probe.Mode(s), Size: p.size}}
		if err := m.Validate(uint64(p.maxBytes)); err != nil {
			return fmt.Errorf("--probe.modes: %w", err)
		}
		p.scheduled = append(p.scheduled, m)
	}
	p.onDemand = nil
	for _, mode := range probe.Modes() {
		if !seen[string(mode)] {
			p.onDemand = append(p.onDemand, probe.NamedModule{Name: string(mode), Module: probe.Module{Mode: mode, Size: p.size}})
		}
	}
	if p.enable && p.configFile == "" && len(p.scheduled) == 0 {
		return fmt.Errorf("--probe.modes names no mode and there is no --probe.config.file: nothing to probe")
	}
	if p.configFile != "" {
		if _, err := probe.LoadConfig(p.configFile, uint64(p.maxBytes)); err != nil {
			return fmt.Errorf("--probe.config.file %q: %w", p.configFile, err)
		}
	}
	return nil
}
