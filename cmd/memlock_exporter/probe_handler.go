package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"

	"github.com/memlock-exporter/memlock_exporter/probe"
)

// registerProbes adds /probe and /-/reload to mux and the runner's metrics
// to the registry served on the metrics path.
func registerProbes(mux *http.ServeMux, o *options, r *probe.Runner, reg *prometheus.Registry, logger *slog.Logger) {
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
