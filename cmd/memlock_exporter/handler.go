package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/memlock-exporter/memlock_exporter/collector"
)

// Request size bounds. A scrape URL is a path and at most a few collect[]
// values: a longer query is refused (414) before it is parsed, and the
// request line and headers together may not exceed maxHeaderBytes
// (http.Server.MaxHeaderBytes; net/http answers 431).
const (
	maxQueryBytes  = 4 << 10
	maxHeaderBytes = 64 << 10
)

// timeouts are the flags that set a request's deadline.
type timeouts struct {
	def    time.Duration // --scrape.timeout: without the header
	offset time.Duration // --scrape.timeout-offset
	max    time.Duration // --scrape.max-timeout: whatever the header says
}

// metricsHandler serves one scrape per request with a fresh registry, so
// each scrape has its own context and deadline (promhttp's Gatherer has
// neither), and ?collect[]=NAME can pick collectors as in node_exporter.
type metricsHandler struct {
	exp             *collector.Exporter
	enabled         []string
	exporterMetrics *prometheus.Registry // nil when disabled
	extra           prometheus.Gatherers // e.g. the probes' registry
	inflight        chan struct{}        // nil when unlimited
	timeouts        timeouts
	logger          *slog.Logger
}

func newMetricsHandler(exp *collector.Exporter, exporterMetrics *prometheus.Registry, extra prometheus.Gatherers,
	maxRequests int, to timeouts, logger *slog.Logger) http.Handler {
	h := &metricsHandler{exp: exp, enabled: exp.Names(), exporterMetrics: exporterMetrics, extra: extra, timeouts: to, logger: logger}
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
// the offset, at most to.max; the default when the header is absent or is
// not a positive number (garbage, NaN, zero, negative). +Inf is the maximum.
func scrapeTimeout(r *http.Request, to timeouts) time.Duration {
	v := r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds")
	if v == "" {
		return min(to.def, to.max)
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(secs) || secs <= 0 {
		return min(to.def, to.max)
	}
	if secs >= to.max.Seconds() {
		return to.max // also keeps the conversion below in range
	}
	t := time.Duration(secs * float64(time.Second))
	if t > to.offset {
		t -= to.offset
	}
	return max(t, time.Millisecond)
}

// collectParam returns the request's distinct collect[] values, or an
// error fit for the client: a short message that never repeats the query.
func collectParam(r *http.Request, enabled []string) ([]string, int, error) {
	if len(r.URL.RawQuery) > maxQueryBytes {
		return nil, http.StatusRequestURITooLong, fmt.Errorf("query string of %d bytes: at most %d", len(r.URL.RawQuery), maxQueryBytes)
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("malformed query string")
	}
	var names []string
	for _, n := range q["collect[]"] {
		if slices.Contains(names, n) {
			continue // repeated: costs nothing
		}
		if !slices.Contains(enabled, n) {
			return nil, http.StatusBadRequest, fmt.Errorf("collect[]=%.40q is not an enabled collector; enabled: %s", n, strings.Join(enabled, ", "))
		}
		names = append(names, n)
	}
	return names, 0, nil
}

// writeGrace is how long past a scrape's deadline its response may take to
// write. A client that stops reading would otherwise block the write, and
// hold a --web.max-requests slot, for ever.
const writeGrace = 10 * time.Second

func (h *metricsHandler) serve(w http.ResponseWriter, r *http.Request) {
	names, code, err := collectParam(r, h.enabled)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	timeout := scrapeTimeout(r, h.timeouts)
	h.logger.Debug("scrape", "timeout_seconds", timeout.Seconds(), "collectors", names)
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

	bound, err := h.exp.Scrape(ctx, names)
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
