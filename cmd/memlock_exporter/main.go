// Command memlock_exporter exports how much memory is locked on a Linux
// host, by whom, and how close each process and user is to RLIMIT_MEMLOCK.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/memlock-exporter/memlock_exporter/collector"
	"github.com/memlock-exporter/memlock_exporter/probe"
)

// defaultAddress is memlock_exporter's own port (not yet on the Prometheus
// wiki's list of default port allocations).
const defaultAddress = ":9947"

// options is everything the command line sets.
type options struct {
	web             *web.FlagConfig
	metricsPath     string
	maxRequests     int
	disableExporter bool
	enablePprof     bool
	scrapeTimeout   time.Duration
	maxTimeout      time.Duration
	timeoutOffset   time.Duration
	collectors      map[string]*bool
	processInclude  string
	processExclude  string
	cgroupInclude   string
	cfg             collector.Config
	log             *promslog.Config
	probe           probeOptions
	bpfMode         string
	tracefs         string
}

func newApp(o *options) *kingpin.Application {
	app := kingpin.New("memlock_exporter", "Prometheus exporter of locked memory: who holds it, how close each process and user is to RLIMIT_MEMLOCK.")
	app.Version(version.Print("memlock_exporter"))
	app.HelpFlag.Short('h')
	app.UsageWriter(os.Stdout)

	o.cfg = collector.DefaultConfig()
	o.web = kingpinflag.AddFlags(app, defaultAddress)
	app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").StringVar(&o.metricsPath)
	app.Flag("web.max-requests", "Maximum number of parallel scrape requests; 0 disables the limit.").Default("40").SetValue(&intValue{p: &o.maxRequests, max: maxIntFlag})
	app.Flag("web.disable-exporter-metrics", "Exclude the exporter's own metrics (promhttp_*, process_*, go_*).").BoolVar(&o.disableExporter)
	app.Flag("web.enable-pprof", "Serve Go profiling at /debug/pprof/.").BoolVar(&o.enablePprof)
	app.Flag("scrape.timeout", "Deadline of a scrape whose request has no X-Prometheus-Scrape-Timeout-Seconds header.").Default("10s").DurationVar(&o.scrapeTimeout)
	app.Flag("scrape.max-timeout", "Longest deadline a scrape or /probe request may have, whatever its X-Prometheus-Scrape-Timeout-Seconds header asks: how long one request can hold a --web.max-requests slot (plus 10s to write).").Default("30s").DurationVar(&o.maxTimeout)
	app.Flag("scrape.timeout-offset", "Subtracted from X-Prometheus-Scrape-Timeout-Seconds so the answer arrives before Prometheus gives up.").Default("500ms").DurationVar(&o.timeoutOffset)
	app.Flag("path.procfs", "procfs mountpoint (the host's /proc when running in a container).").Default(o.cfg.ProcPath).StringVar(&o.cfg.ProcPath)
	app.Flag("path.sysfs", "sysfs mountpoint.").Default(o.cfg.SysPath).StringVar(&o.cfg.SysPath)

	o.collectors = map[string]*bool{}
	for _, c := range collector.Available() {
		def := "false"
		if c.DefaultEnabled {
			def = "true"
		}
		o.collectors[c.Name] = app.Flag("collector."+c.Name, "Enable the "+c.Name+" collector: "+c.Help+" (default: "+map[bool]string{true: "enabled", false: "disabled"}[c.DefaultEnabled]+").").Default(def).Bool()
	}
	app.Flag("collector.process.include", "Regexp of process names (comm) always reported, even with nothing locked: list the services that must lock, so a failed lock shows.").PlaceHolder("REGEXP").StringVar(&o.processInclude)
	app.Flag("collector.process.exclude", "Regexp of process names (comm) never reported; wins over --collector.process.include.").PlaceHolder("REGEXP").StringVar(&o.processExclude)
	app.Flag("collector.process.max-processes", "Most processes reported per scrape (named ones first, then the largest); 0 for no cap.").Default(fmt.Sprint(o.cfg.Process.MaxProcesses)).SetValue(&intValue{p: &o.cfg.Process.MaxProcesses, max: maxIntFlag})
	app.Flag("collector.cgroup.include", "Regexp of cgroup paths (as in /proc/<pid>/cgroup, e.g. /system.slice/vault.service) always reported, even without unevictable memory.").PlaceHolder("REGEXP").StringVar(&o.cgroupInclude)
	app.Flag("collector.cgroup.max-cgroups", "Most cgroups reported per scrape (a parent before its children); 0 for no cap.").Default(fmt.Sprint(o.cfg.Cgroup.MaxCgroups)).SetValue(&intValue{p: &o.cfg.Cgroup.MaxCgroups, max: maxIntFlag})
	app.Flag("collector.process.smaps", "Read smaps_rollup of processes with locked memory for resident locked bytes (needs ptrace read access).").Default("true").BoolVar(&o.cfg.Process.Smaps)

	app.Flag("collector.lockcalls.max-series", "Most failed-lock-call series (process, syscall, errno) reported per scrape, the latest failures first; 0 for no cap.").Default(fmt.Sprint(o.cfg.LockCalls.MaxSeries)).SetValue(&intValue{p: &o.cfg.LockCalls.MaxSeries, max: maxIntFlag})
	app.Flag("collector.lockcalls.tracefs", "tracefs mountpoint the lock-call tracepoints' ids are read from; empty looks at /sys/kernel/tracing, then /sys/kernel/debug/tracing.").PlaceHolder("PATH").StringVar(&o.tracefs)

	addBPFFlag(app, &o.bpfMode)
	addProbeFlags(app, &o.probe)

	o.log = &promslog.Config{}
	promslogflag.AddFlags(app, o.log)
	return app
}

// compileName compiles a flag's regexp anchored at both ends, as
// node_exporter's include and exclude flags are.
func compileName(flag, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile("^(?:" + expr + ")$")
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return re, nil
}

// nameFlag adds the flag's name to a value error, which kingpin reports
// bare ("strconv.ParseFloat: parsing \"lots\""), by setting each parsed flag
// value again until one fails. It is only called on the way to exit.
func nameFlag(app *kingpin.Application, args []string, err error) error {
	ctx, cerr := app.ParseContext(args)
	if cerr != nil || ctx == nil {
		return err
	}
	for _, el := range ctx.Elements {
		fc, ok := el.Clause.(*kingpin.FlagClause)
		if !ok || el.Value == nil {
			continue
		}
		if m := fc.Model(); m.Value.Set(*el.Value) != nil {
			return fmt.Errorf("--%s=%q: %w", m.Name, *el.Value, err)
		}
	}
	return err
}

// validate turns the parsed flags into a Config, or says what is wrong.
func (o *options) validate() error {
	var err error
	if o.cfg.Process.Include, err = compileName("collector.process.include", o.processInclude); err != nil {
		return err
	}
	if o.cfg.Process.Exclude, err = compileName("collector.process.exclude", o.processExclude); err != nil {
		return err
	}
	if o.cfg.Cgroup.Include, err = compileName("collector.cgroup.include", o.cgroupInclude); err != nil {
		return err
	}
	if o.scrapeTimeout <= 0 {
		return fmt.Errorf("--scrape.timeout must be positive, not %s", o.scrapeTimeout)
	}
	if o.maxTimeout < o.scrapeTimeout {
		return fmt.Errorf("--scrape.max-timeout %s is shorter than --scrape.timeout %s", o.maxTimeout, o.scrapeTimeout)
	}
	if o.timeoutOffset < 0 {
		return fmt.Errorf("--scrape.timeout-offset must not be negative, not %s", o.timeoutOffset)
	}
	if len(o.metricsPath) == 0 || o.metricsPath[0] != '/' {
		return fmt.Errorf("--web.telemetry-path must start with /, not %q", o.metricsPath)
	}
	if err := readableDir("path.procfs", o.cfg.ProcPath); err != nil {
		return err
	}
	if err := readableDir("path.sysfs", o.cfg.SysPath); err != nil {
		return err
	}
	if err := o.probe.validate(); err != nil {
		return err
	}
	if f := *o.web.WebConfigFile; f != "" {
		if err := web.Validate(f); err != nil {
			return fmt.Errorf("--web.config.file %q: %s", f, redactYAML(err.Error()))
		}
	}
	return nil
}

// yamlQuoted and yamlField match what yaml's messages quote of a file: a
// value in backquotes, and a key named as a field not found.
var (
	yamlQuoted = regexp.MustCompile("`[^`]*`")
	yamlField  = regexp.MustCompile(`field .* not found in type`)
)

// redactYAML drops the file's text from a yaml error message, so that a
// --web.config.file naming the wrong file (a secret) does not print it.
func redactYAML(msg string) string {
	msg = yamlQuoted.ReplaceAllString(msg, "(value)")
	return yamlField.ReplaceAllString(msg, "unknown field in type")
}

// readableDir checks that a --path.* flag names a directory this process
// can list, so that a wrong mount fails at start rather than as collectors
// failing on every scrape.
func readableDir(flag, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--%s %q cannot be used: %w", flag, path, bareErr(err))
	}
	if !st.IsDir() {
		return fmt.Errorf("--%s %q is not a directory (it is a %s)", flag, path, fileKind(st.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--%s %q is a directory this process cannot read: %w", flag, path, bareErr(err))
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("--%s %q is a directory this process cannot read: %w", flag, path, bareErr(err))
	}
	return nil
}

// bareErr drops the path an *os.PathError repeats.
func bareErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	}
	return m.Type().String()
}

func (o *options) enabled() []string {
	var names []string
	for _, c := range collector.Available() {
		if *o.collectors[c.Name] {
			names = append(names, c.Name)
		}
	}
	return names
}

func main() {
	// The mlockall probe's child is this binary: it must run before
	// anything else, and never as the exporter.
	if probe.IsChild() {
		os.Exit(probe.RunChild())
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	var o options
	app := newApp(&o)
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "memlock_exporter: %v\n", nameFlag(app, args, err))
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "memlock_exporter: %v\n", err)
		return 2
	}
	tasks, loadErr, err := openTasks(o.bpfMode, o.enabled(), &o.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "memlock_exporter: %v\n", err)
		return 2
	}
	defer func() {
		if tasks != nil {
			tasks.Close() // the iterator's link and program, at exit
		}
	}()
	attachErr := attachLockCalls(tasks, o.enabled(), o.tracefs, &o.cfg)
	// SIGHUP (systemd's ExecReload) must never end the process, probes or
	// not: catch it before anything else can take time.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	logger := slog.New(boundedHandler{promslog.New(o.log).Handler()})
	logger.Info("starting memlock_exporter", "version", version.Info(), "build_context", version.BuildContext())

	exp, err := collector.New(o.cfg, o.enabled(), logger)
	if err != nil {
		logger.Error("cannot set up collectors", "err", err)
		return 1
	}
	logger.Info("enabled collectors", "collectors", exp.Names())
	if source, _ := exp.ScanSource(); tasks != nil && source != "" && source != collector.SourceBPF {
		if o.bpfMode == "on" {
			fmt.Fprintf(stderr, "memlock_exporter: --collector.bpf=on: --path.procfs %q shows another pid namespace than the exporter's, whose pids the BPF task iterator walks\n", o.cfg.ProcPath)
			return 2
		}
		// The lockcalls collector, which sees the same pid namespace,
		// does not use the module either.
		tasks.Close()
		tasks = nil
	}
	logScanSource(exp, loadErr, logger)
	if on, _, _ := exp.LockCallTracing(); !on && tasks != nil {
		// Attached but unused (another pid namespace): every syscall on
		// the host would pay for nothing.
		if err := tasks.DetachFailures(); err != nil {
			logger.Warn("cannot detach the lock-call tracepoints", "err", err)
		}
	}
	logLockCalls(exp, loadErr, attachErr, logger)
	missingPrivileges(o.cfg, logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	runner, err := startProbes(ctx, &o.probe, logger)
	if err != nil {
		logger.Error("cannot set up probes", "err", err)
		return 1
	}
	go reloadOnHUP(ctx, hup, runner, logger)

	mux, err := newMux(&o, exp, runner, logger)
	if err != nil {
		logger.Error("cannot set up HTTP handlers", "err", err)
		return 1
	}
	// ReadHeaderTimeout ends header tricklers (slowloris); IdleTimeout closes
	// keep-alive connections left idle, which otherwise stay open for ever,
	// above the usual scrape intervals so Prometheus's are reused. There is
	// no ReadTimeout (it would cancel a scrape's context once it expired)
	// and no WriteTimeout (a scrape may take its full deadline): the
	// metrics handler bounds each response's write by the scrape's deadline.
	// MaxHeaderBytes bounds the request line and headers (a URL of
	// megabytes is refused with 431 before any handler runs). ErrorLog puts
	// net/http's own messages (TLS handshake errors, say) through the
	// logger, so --log.format=json stays JSON.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: maxHeaderBytes, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	webLogger := slog.New(yamlRedactingHandler{logger.Handler()})
	go func() { serveErr <- web.ListenAndServe(srv, o.web, webLogger) }()

	select {
	case err := <-serveErr:
		logger.Error("cannot serve", "err", err)
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	if runner != nil {
		runner.Stop() // release a region being probed before anything else
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown did not finish cleanly", "err", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("server stopped with an error", "err", err)
		return 1
	}
	return 0
}

// newMux serves the metrics path and, when runner is not nil (probes
// enabled), /probe and /-/reload.
func newMux(o *options, exp *collector.Exporter, runner *probe.Runner, logger *slog.Logger) (*http.ServeMux, error) {
	mux := http.NewServeMux()
	var exporterMetrics *prometheus.Registry
	if !o.disableExporter {
		exporterMetrics = prometheus.NewRegistry()
		exporterMetrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	// Probe metrics and the exporter's own memlock limits have a registry
	// of their own, so that --web.disable-exporter-metrics leaves out
	// exactly the Go and process instrumentation. The limits are there with
	// probes or without: they describe the exporter itself.
	self := prometheus.NewRegistry()
	self.MustRegister(probe.NewSelfCollector())
	extra := prometheus.Gatherers{self}
	if runner != nil {
		probeMetrics := prometheus.NewRegistry()
		registerProbes(mux, o, runner, probeMetrics, logger)
		extra = append(extra, probeMetrics)
	}
	mux.Handle(o.metricsPath, newMetricsHandler(exp, exporterMetrics, extra, o.maxRequests, timeouts{o.scrapeTimeout, o.timeoutOffset, o.maxTimeout}, logger))
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Healthy") })
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "Ready") })
	if o.enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if o.metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "memlock_exporter",
			Description: "Prometheus exporter of locked memory and RLIMIT_MEMLOCK headroom",
			Version:     version.Info(),
			Links: []web.LandingLinks{
				{Address: o.metricsPath, Text: "Metrics"},
				{Address: "/-/healthy", Text: "Health"},
			},
			Profiling: fmt.Sprint(o.enablePprof),
		})
		if err != nil {
			return nil, err
		}
		mux.Handle("/", landing)
	}
	return mux, nil
}
