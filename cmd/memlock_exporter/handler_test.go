package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/memlock-exporter/memlock_exporter/collector"
)

// TestScrapeTimeout: the header's value less the offset, capped by
// --scrape.max-timeout; the default for anything that is not a positive
// number. Before the cap, "1e5" (a day and more) was honoured and "NaN"
// passed validation and gave a negative deadline.
func TestScrapeTimeout(t *testing.T) {
	to := timeouts{def: 10 * time.Second, offset: 500 * time.Millisecond, max: 30 * time.Second}
	for header, want := range map[string]time.Duration{
		"":                     to.def,
		"15":                   14500 * time.Millisecond,
		"0.25":                 250 * time.Millisecond, // shorter than the offset: kept whole
		"banana":               to.def,
		"-3":                   to.def,
		"0":                    to.def,
		"-0":                   to.def,
		"NaN":                  to.def,
		"nan":                  to.def,
		"-Inf":                 to.def,
		"+Inf":                 to.max,
		"Inf":                  to.max,
		"1e9":                  to.max,
		"86400":                to.max,
		"30":                   to.max,
		"29":                   28500 * time.Millisecond,
		"1e-300":               time.Millisecond, // rounds to 0 ns: the smallest deadline, never none
		"99999999999999999999": to.max,
		" 5":                   to.def,
	} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		if header != "" {
			r.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", header)
		}
		got := scrapeTimeout(r, to)
		if got != want {
			t.Errorf("header %q: %v, want %v", header, got, want)
		}
		if got <= 0 || got > to.max {
			t.Errorf("header %q: %v is outside (0, %v]", header, got, to.max)
		}
	}
	// A default above the cap is capped too (validate refuses it anyway).
	if got := scrapeTimeout(httptest.NewRequest("GET", "/metrics", nil), timeouts{def: time.Minute, max: time.Second}); got != time.Second {
		t.Errorf("default above the cap: %v", got)
	}
}

func testHandler(t *testing.T, exporterMetrics *prometheus.Registry) http.Handler {
	t.Helper()
	exp, err := collector.New(collector.DefaultConfig(), []string{"system", "user"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newMetricsHandler(exp, exporterMetrics, nil, 0, timeouts{def: time.Second, max: time.Minute}, slog.New(slog.DiscardHandler))
}

func get(h http.Handler, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", target, nil))
	return w
}

func TestMetricsHandler(t *testing.T) {
	h := testHandler(t, prometheus.NewRegistry())
	w := get(h, "/metrics")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "memlock_system_mlocked_bytes") ||
		!strings.Contains(w.Body.String(), "memlock_exporter_build_info") ||
		!strings.Contains(w.Body.String(), "promhttp_metric_handler_requests_total") {
		t.Errorf("status %d:\n%s", w.Code, w.Body)
	}
	w = get(h, "/metrics?collect[]=user")
	if w.Code != 200 || strings.Contains(w.Body.String(), "memlock_system_") || !strings.Contains(w.Body.String(), `collector="user"`) {
		t.Errorf("collect[] filter: status %d:\n%s", w.Code, w.Body)
	}
	if w = get(h, "/metrics?collect[]=nope"); w.Code != http.StatusBadRequest {
		t.Errorf("unknown collector: status %d", w.Code)
	}
}

func TestDisableExporterMetrics(t *testing.T) {
	h := testHandler(t, nil)
	body := get(h, "/metrics").Body.String()
	if strings.Contains(body, "promhttp_") || strings.Contains(body, "go_goroutines") {
		t.Errorf("exporter metrics present:\n%s", body)
	}
}

func TestMaxRequests(t *testing.T) {
	exp, err := collector.New(collector.DefaultConfig(), []string{"system"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mh := &metricsHandler{exp: exp, enabled: exp.Names(), inflight: make(chan struct{}, 1), timeouts: timeouts{def: time.Second, max: time.Minute}, logger: slog.New(slog.DiscardHandler)}
	mh.inflight <- struct{}{} // one scrape in flight
	w := httptest.NewRecorder()
	mh.serve(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("over the limit: status %d", w.Code)
	}
	<-mh.inflight
	w = httptest.NewRecorder()
	mh.serve(w, httptest.NewRequest("GET", "/metrics", nil))
	if w.Code != 200 {
		t.Errorf("under the limit: status %d", w.Code)
	}
}

func TestMuxHasNoPprofUnlessAsked(t *testing.T) {
	for _, enable := range []bool{false, true} {
		var o options
		app := newApp(&o)
		args := []string{}
		if enable {
			args = append(args, "--web.enable-pprof")
		}
		if _, err := app.Parse(args); err != nil {
			t.Fatal(err)
		}
		if err := o.validate(); err != nil {
			t.Fatal(err)
		}
		exp, err := collector.New(o.cfg, []string{"system"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		mux, err := newMux(&o, exp, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		code := get(mux, "/debug/pprof/").Code
		if enable != (code == 200) {
			t.Errorf("pprof enabled=%v: /debug/pprof/ status %d", enable, code)
		}
		for _, path := range []string{"/-/healthy", "/-/ready", "/"} {
			if c := get(mux, path).Code; c != 200 {
				t.Errorf("%s: status %d", path, c)
			}
		}
	}
}

// TestDisableExporterMetricsWithProbes: probe metrics are the exporter's
// product, not its own instrumentation, and stay when the latter is off.
func TestDisableExporterMetricsWithProbes(t *testing.T) {
	var o options
	app := newApp(&o)
	if _, err := app.Parse([]string{"--web.disable-exporter-metrics", "--probe.enable", "--probe.interval=0"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var err error
	runner, err := startProbes(ctx, &o.probe, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Stop()
	exp, err := collector.New(o.cfg, []string{"system"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux, err := newMux(&o, exp, runner, logger)
	if err != nil {
		t.Fatal(err)
	}
	body := get(mux, "/metrics").Body.String()
	if !strings.Contains(body, "memlock_probe_headroom_bytes") {
		t.Errorf("probe metrics missing:\n%s", body)
	}
	if strings.Contains(body, "promhttp_") || strings.Contains(body, "go_goroutines") {
		t.Errorf("exporter metrics present despite --web.disable-exporter-metrics:\n%s", body)
	}
}

func TestRedactAddresses(t *testing.T) {
	for in, want := range map[string]string{
		"smaps: entry at 7f48b17be000 lacks Size": "smaps: entry at <address> lacks Size",
		"addr=0x7f48b17be000 bytes=16777216":      "addr=<address> bytes=16777216",
		"bytes=16777216 probe_bytes=1048576":      "bytes=16777216 probe_bytes=1048576",
		"msg=verified acceptedfeedface":           "msg=verified acceptedfeedface",
	} {
		if got := redactAddresses(in); got != want {
			t.Errorf("redactAddresses(%q) = %q, want %q", in, got, want)
		}
	}
}
