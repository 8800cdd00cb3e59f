package main

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/memlock-exporter/memlock_exporter/collector"
)

// metricsHandler serves one scrape per request with a fresh registry, so
// each scrape has its own context and deadline (promhttp's Gatherer has
// neither), and ?collect[]=NAME can pick collectors as in node_exporter.
type metricsHandler struct {
	exp             *collector.Exporter
	exporterMetrics *prometheus.Registry // nil when disabled
	extra           prometheus.Gatherers // e.g. the probes' registry
	inflight        chan struct{}        // nil when unlimited
	defaultTimeout  time.Duration
	timeoutOffset   time.Duration
	logger          *slog.Logger
}

func newMetricsHandler(exp *collector.Exporter, exporterMetrics *prometheus.Registry, extra prometheus.Gatherers,
	maxRequests int, defaultTimeout, timeoutOffset time.Duration, logger *slog.Logger) http.Handler {
	h := &metricsHandler{exp: exp, exporterMetrics: exporterMetrics, extra: extra, defaultTimeout: defaultTimeout,
		timeoutOffset: timeoutOffset, logger: logger}
	if maxRequests > 0 {
		h.inflight = make(chan struct{}, maxRequests)
	}
	if exporterMetrics != nil {
		// promhttp_metric_handler_requests_total and _in_flight.
		return promhttp.InstrumentMetricHandler(exporterMetrics, http.HandlerFunc(h.serve))
	}
	return http.HandlerFunc(h.serve)
}

// scrapeTimeout is the request's deadline: Prometheus's own timeout less
// the offset, or the default when the header is absent or unusable.
func scrapeTimeout(r *http.Request, def, offset time.Duration) time.Duration {
	v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds")
	if v == "" {
		return def
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || secs <= 0 || secs > 86400 {
		return def
	}
	t := time.Duration(secs * float64(time.Second))
	if t > offset {
		t -= offset
	}
	return t
}

// writeGrace is how long past a scrape's deadline its response may take to
// write. A client that stops reading would otherwise block the write, and
// hold a --web.max-requests slot, for ever.
const writeGrace = 10 * time.Second

func (h *metricsHandler) serve(w http.ResponseWriter, r *http.Request) {
	timeout := scrapeTimeout(r, h.defaultTimeout, h.timeoutOffset)
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(timeout + writeGrace)); err != nil {
		h.logger.Debug("cannot set the response's write deadline", "err", err)
	}
	if h.inflight != nil {
		select {
		case h.inflight <- struct{}{}:
			defer func() { <-h.inflight }()
		default:
			http.Error(w, "too many concurrent scrapes (--web.max-requests)", http.StatusServiceUnavailable)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	bound, err := h.exp.Scrape(ctx, r.URL.Query()["collect[]"])
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(bound, versioncollector.NewCollector("memlock_exporter"))
	gatherers := append(prometheus.Gatherers{reg}, h.extra...)
	if h.exporterMetrics != nil {
		gatherers = append(gatherers, h.exporterMetrics)
	}
	promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(h.logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}).ServeHTTP(w, r)
}
