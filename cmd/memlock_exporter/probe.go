package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

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
	runner    *probe.Runner       // set by run when enabled; newMux serves it
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

// startProbes builds the runner and starts the schedule until ctx ends
// (run reloads the config file on SIGHUP). It returns nil when disabled.
func startProbes(ctx context.Context, p *probeOptions, procPath string, logger *slog.Logger) (*probe.Runner, error) {
	if !p.enable {
		return nil, nil
	}
	logger = logger.With("component", "probe")
	r, err := probe.NewRunner(probe.Options{
		Env:        probe.NewEnv("/proc", ""),
		MaxBytes:   uint64(p.maxBytes),
		Interval:   p.interval,
		Timeout:    p.timeout,
		Scheduled:  p.scheduled,
		OnDemand:   p.onDemand,
		ConfigFile: p.configFile,
		Logger:     logger,
	})
	if err != nil {
		return nil, err
	}
	_ = procPath // probes read the exporter's own /proc/self, never the host's
	r.Start(ctx)
	logger.Info("active probes enabled", "interval", p.interval, "modes", p.modes, "size", p.size.String(),
		"max_bytes", p.maxBytes.String(), "modules", r.ModuleNames())
	return r, nil
}

// registerProbes adds /probe and /-/reload to mux and the runner's metrics
// to the registry served on the metrics path.
func registerProbes(mux *http.ServeMux, o *options, reg *prometheus.Registry, logger *slog.Logger) {
	r := o.probe.runner
	reg.MustRegister(r)
	mux.Handle("/probe", probeHandler(r, o.probe.maxReqs, timeouts{o.scrapeTimeout, o.timeoutOffset, o.maxTimeout}, logger))
	var reloading sync.Mutex // one reload (a read of up to 1 MiB) at a time
	mux.HandleFunc("/-/reload", func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost && req.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "use POST or PUT to reload", http.StatusMethodNotAllowed)
			return
		}
		if !reloading.TryLock() {
			http.Error(w, "a reload is in progress", http.StatusServiceUnavailable)
			return
		}
		defer reloading.Unlock()
		if err := r.Reload(); err != nil {
			// The error names the file and the problem (probe.ParseConfig
			// never quotes the file's content).
			logger.Error("cannot reload probe config; keeping the modules in use", "err", err)
			http.Error(w, "reload failed, the modules in use are kept: "+err.Error(), http.StatusInternalServerError)
			return
		}
		logger.Info("reloaded probe config", "modules", r.ModuleNames())
		fmt.Fprintln(w, "Reloaded")
	})
}

// hexAddr matches what may be a virtual address written in hex.
var hexAddr = regexp.MustCompile(`\b(?:0x)?[0-9a-f]{8,16}\b`)

// redactAddresses replaces hex numbers of 8 to 16 digits that mix digits
// and letters (a decimal byte count or a word is left alone).
func redactAddresses(s string) string {
	return hexAddr.ReplaceAllStringFunc(s, func(m string) string {
		h := strings.TrimPrefix(m, "0x")
		if strings.HasPrefix(m, "0x") || (strings.ContainsAny(h, "0123456789") && strings.ContainsAny(h, "abcdef")) {
			return "<address>"
		}
		return m
	})
}

// probeHandler serves /probe?module=NAME[&debug=true] in blackbox_exporter's
// manner: one probe per request, in a fresh registry, within the scrape's
// X-Prometheus-Scrape-Timeout-Seconds (at most --scrape.max-timeout). At
// most maxReqs requests are in the handler at once (one probing, the others
// waiting their turn); more get 503 at once instead of queueing.
func probeHandler(r *probe.Runner, maxReqs int, to timeouts, logger *slog.Logger) http.Handler {
	slots := make(chan struct{}, maxReqs)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if len(req.URL.RawQuery) > maxQueryBytes {
			http.Error(w, fmt.Sprintf("query string of %d bytes: at most %d", len(req.URL.RawQuery), maxQueryBytes), http.StatusRequestURITooLong)
			return
		}
		q := req.URL.Query()
		name := q.Get("module")
		if name == "" {
			http.Error(w, fmt.Sprintf("module parameter is missing; modules: %s", strings.Join(r.ModuleNames(), ", ")), http.StatusBadRequest)
			return
		}
		m, ok := r.Module(name)
		if !ok {
			http.Error(w, fmt.Sprintf("unknown module %.40q; modules: %s", name, strings.Join(r.ModuleNames(), ", ")), http.StatusBadRequest)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			http.Error(w, "too many concurrent probes (--probe.max-requests)", http.StatusServiceUnavailable)
			return
		}
		timeout := scrapeTimeout(req, to)
		if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + writeGrace)); err != nil {
			logger.Debug("cannot set the response's write deadline", "err", err)
		}
		ctx, cancel := context.WithTimeout(req.Context(), timeout)
		defer cancel()
		var log strings.Builder
		plog := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
		res := r.Probe(ctx, name, m, plog.With("module", name))
		if !res.Success {
			logger.Debug("on-demand probe failed", "module", name, "reason", res.Reason, "err", res.Err)
		}
		reg := prometheus.NewRegistry()
		reg.MustRegister(probe.NewResultCollector(&res))
		if q.Get("debug") == "true" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			// No virtual address reaches a client (ASLR): the probers log none,
			// and an error quoting one (a malformed smaps entry) is redacted.
			fmt.Fprintf(w, "Logs for the probe:\n%s\n\nMetrics that would have been returned:\n", redactAddresses(log.String()))
			mfs, err := reg.Gather()
			if err != nil {
				fmt.Fprintf(w, "error gathering metrics: %v\n", err)
			}
			for _, mf := range mfs {
				expfmt.MetricFamilyToText(w, mf)
			}
			return
		}
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
		}).ServeHTTP(w, req)
	})
}
