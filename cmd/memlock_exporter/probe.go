package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/memlock-exporter/memlock_exporter/probe"
)

// startProbes builds the runner and starts the schedule until ctx ends
// (run reloads the config file on SIGHUP). It returns nil when disabled.
func startProbes(ctx context.Context, p *probeOptions, logger *slog.Logger) (*probe.Runner, error) {
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
	r.Start(ctx)
	logger.Info("active probes enabled", "interval", p.interval, "modes", p.modes, "size", p.size.String(),
		"max_bytes", p.maxBytes.String(), "modules", r.ModuleNames())
	return r, nil
}

// reloadOnHUP reloads the probe config on SIGHUP until ctx ends; without
// probes there is nothing to reload, and the signal is logged and ignored.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, r *probe.Runner, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if r == nil {
				logger.Info("SIGHUP: nothing to reload (only --probe.config.file is reloadable, with --probe.enable)")
				continue
			}
			if err := r.Reload(); err != nil {
				logger.Error("cannot reload probe config; keeping the modules in use", "err", err)
			} else {
				logger.Info("reloaded probe config", "modules", r.ModuleNames())
			}
		}
	}
}
