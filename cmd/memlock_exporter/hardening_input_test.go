package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Hostile clients and careless operators, against the real binary:
// amplified requests, SIGHUP, a /probe storm, scrape-timeout
// headers, unusable --path.* directories, what /-/reload and debug=true
// disclose, and net/http's own log lines.

// maxLogLine bounds any log line: each string in it is cut to maxLogValue.
const maxLogLine = 8 << 10

func checkLogLines(t *testing.T, logs string) {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		if len(l) > maxLogLine {
			t.Errorf("a log line of %d bytes (bound %d): %.200s...", len(l), maxLogLine, l)
		}
	}
}

// TestAmplificationBounded sends /metrics with collect[]=system repeated
// 10,000 times (a 170 KB URL: before, 7,000 such values ran the collector
// 7,000 times, RSS 12 to 371 MiB, one 33 MB log line), a 3.4 KB query of
// 200 repeats, an over-long query and a 3,000-byte unknown name. The
// exporter's peak RSS (VmHWM, from the kernel) may rise by at most 4 MiB
// over all of them, no log line may exceed 8 KiB, and no answer repeats
// what it was sent.
func TestAmplificationBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (amplified requests against the built exporter): make test runs it")
	}
	t.Parallel()
	requireLinuxProc(t)
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1)
	pid := e.cmd.Process.Pid
	client := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + e.addr
	for range 3 { // warm up: the first scrapes grow the heap to its working size
		if code, _, err := fetch(client, base+"/metrics", "", ""); err != nil || code != 200 {
			t.Fatalf("scrape: %d %v", code, err)
		}
	}
	before := atoiKB(procStatusField(t, pid, "VmHWM"))

	huge := "/metrics?" + strings.Repeat("collect[]=system&", 10000)
	code, body, err := fetch(client, base+huge, "", "")
	if err != nil || code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("%d-byte URL: %d %v, want 431", len(huge), code, err)
	}
	if len(body) > 1024 {
		t.Errorf("%d-byte URL: a %d-byte answer", len(huge), len(body))
	}

	code, body, err = fetch(client, base+"/metrics?"+strings.Repeat("collect[]=system&", 200), "", "")
	if err != nil || code != 200 {
		t.Fatalf("200 repeats of collect[]=system: %d %v\n%.300s", code, err, body)
	}
	if n := strings.Count(body, `memlock_scrape_collector_success{collector="system"}`); n != 1 {
		t.Errorf("200 repeats of collect[]=system: the collector reported %d times, want once", n)
	}
	if strings.Contains(body, `collector="process"`) {
		t.Error("collect[]=system ran the process collector too")
	}

	code, body, err = fetch(client, base+"/metrics?"+strings.Repeat("collect[]=system&", 300), "", "")
	if err != nil || code != http.StatusRequestURITooLong || len(body) > 200 {
		t.Errorf("5.1 KB query: %d %v %q, want 414 and a short answer", code, err, body)
	}

	unknown := strings.Repeat("A", 3000)
	code, body, err = fetch(client, base+"/metrics?collect[]="+unknown, "", "")
	if err != nil || code != http.StatusBadRequest || len(body) > 200 || !strings.Contains(body, "not an enabled collector") {
		t.Errorf("unknown collector: %d %v %q, want 400 and a short answer", code, err, body)
	}

	// Still serving, and the peak resident set barely moved.
	if code, _, err := fetch(client, base+"/metrics", "", ""); err != nil || code != 200 {
		t.Fatalf("scrape after: %d %v", code, err)
	}
	after := atoiKB(procStatusField(t, pid, "VmHWM"))
	t.Logf("VmHWM %d kB before, %d kB after a %d-byte URL, 200 repeats, an over-long query and a 3,000-byte unknown name", before, after, len(huge))
	if after-before > 4<<10 {
		t.Errorf("VmHWM rose by %d kB (bound 4096 kB)", after-before)
	}
	checkLogLines(t, e.logs.String())
}

// TestSIGHUPWithoutProbes: systemctl reload sends SIGHUP; without
// --probe.enable its default action used to end the exporter.
func TestSIGHUPWithoutProbes(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1)
	for range 3 {
		if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// A scrape after the signals: served, by the same process.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.String(), "SIGHUP: nothing to reload"); time.Sleep(10 * time.Millisecond) {
		select {
		case <-e.exited:
			t.Fatalf("the exporter exited on SIGHUP: %v\n%s", e.err, e.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for SIGHUP\n%s", e.logs)
		}
	}
	code, _, err := fetch(&http.Client{Timeout: 10 * time.Second}, "http://"+e.addr+"/metrics", "", "")
	if err != nil || code != 200 {
		t.Fatalf("scrape after SIGHUP: %d %v\n%s", code, err, e.logs)
	}
	select {
	case <-e.exited:
		t.Fatalf("the exporter exited on SIGHUP: %v", e.err)
	default:
	}
}

// metricValue finds one series' value in a text exposition; false when absent.
func metricValue(body, series string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestProbeStorm: 32 clients send /probe?module=big (a 64 MiB mlock) in a
// loop for 3 s with a one-day scrape-timeout header, while the background
// schedule probes every 100 ms with a 1 s timeout. Before, the requests
// queued without bound and the background probes timed out behind them
// (failures_total{reason="timeout"}, which fires MemlockProbeFailing). Now
// at most --probe.max-requests (4) are in /probe, the rest get 503 at once,
// and the background schedule keeps running with no failure.
func TestProbeStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (a storm of /probe requests against the built exporter): make test runs it")
	}
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_IPC_LOCK (root) to lock 64 MiB")
	}
	bin, _ := sharedBuild(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "probes.yml")
	if err := os.WriteFile(cfg, []byte("modules:\n  big:\n    mode: mlock\n    size: 64MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startExporter(t, bin, -1, "--probe.enable", "--probe.modes=mlock", "--probe.interval=100ms", "--probe.timeout=1s",
		"--probe.max-bytes=64MiB", "--probe.config.file="+cfg, "--probe.max-requests=4")
	base := "http://" + e.addr
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	_, body, err := fetch(client, base+"/metrics", "", "")
	if err != nil {
		t.Fatal(err)
	}
	runsBefore, _ := metricValue(body, `memlock_probe_runs_total{mode="mlock"}`)

	var served, refused, succeeded atomic.Int64
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				req, _ := http.NewRequest("GET", base+"/probe?module=big", nil)
				req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "86400")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("/probe: %v", err)
					return
				}
				var b strings.Builder
				bufio.NewReader(resp.Body).WriteTo(&b)
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					served.Add(1)
					if strings.Contains(b.String(), "probe_success 1") {
						succeeded.Add(1)
					}
				case http.StatusServiceUnavailable:
					refused.Add(1)
					time.Sleep(20 * time.Millisecond) // a storm, not a busy loop on a shared machine
				default:
					t.Errorf("/probe: status %d %.200s", resp.StatusCode, b.String())
					return
				}
			}
		}()
	}
	wg.Wait()

	_, body, err = fetch(client, base+"/metrics", "", "")
	if err != nil {
		t.Fatal(err)
	}
	runsAfter, _ := metricValue(body, `memlock_probe_runs_total{mode="mlock"}`)
	var failed float64
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, `memlock_probe_failures_total{mode="mlock"`) {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			failed += v
			if v != 0 {
				t.Errorf("a background probe failed during the storm: %s", l)
			}
		}
	}
	t.Logf("storm of 3 s: %d probes served (%d succeeded), %d refused with 503; background runs %v -> %v, failures %v",
		served.Load(), succeeded.Load(), refused.Load(), runsBefore, runsAfter, failed)
	if refused.Load() == 0 {
		t.Error("32 concurrent clients and no 503: /probe is not bounded")
	}
	if succeeded.Load() == 0 {
		t.Error("no on-demand probe succeeded")
	}
	if runsAfter-runsBefore < 2 {
		t.Errorf("the background schedule ran %v times during the storm", runsAfter-runsBefore)
	}
	if v, ok := metricValue(body, `memlock_probe_success{mode="mlock"}`); !ok || v != 1 {
		t.Errorf("memlock_probe_success{mode=\"mlock\"} %v %v after the storm", v, ok)
	}
}

// lastLogLine returns the last line of logs containing s.
func lastLogLine(logs, s string) string {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], s) {
			return lines[i]
		}
	}
	return ""
}

// TestScrapeTimeoutHeaderOverHTTP sends real scrapes with hostile
// X-Prometheus-Scrape-Timeout-Seconds values and reads the deadline each
// got from the debug log: capped by --scrape.max-timeout, the default for
// garbage. Before, 86400 was honoured and NaN gave a negative deadline, an
// empty reply and dozens of ERROR lines a request.
func TestScrapeTimeoutHeaderOverHTTP(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1, "--log.level=debug", "--scrape.timeout=5s", "--scrape.max-timeout=7s", "--scrape.timeout-offset=500ms")
	client := &http.Client{Timeout: 30 * time.Second}
	for i, tc := range []struct{ header, want string }{
		{"86400", "timeout_seconds=7 "},
		{"+Inf", "timeout_seconds=7 "},
		{"NaN", "timeout_seconds=5 "},
		{"-1", "timeout_seconds=5 "},
		{"0", "timeout_seconds=5 "},
		{"soon", "timeout_seconds=5 "},
		{"3", "timeout_seconds=2.5 "},
	} {
		req, _ := http.NewRequest("GET", "http://"+e.addr+"/metrics", nil)
		req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", tc.header)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("header %q: %v", tc.header, err)
			continue
		}
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(b.String(), `memlock_scrape_collector_success{collector="system"} 1`) {
			t.Errorf("header %q: status %d\n%.300s", tc.header, resp.StatusCode, b.String())
		}
		// The log comes through a pipe: wait for this request's line.
		for deadline := time.Now().Add(10 * time.Second); strings.Count(e.logs.String(), "msg=scrape ") < i+1; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("header %q: no scrape log line\n%s", tc.header, e.logs)
			}
		}
		if l := lastLogLine(e.logs.String(), "msg=scrape "); !strings.Contains(l, tc.want) {
			t.Errorf("header %q: log %q, want %s", tc.header, l, tc.want)
		}
	}
	if n := strings.Count(e.logs.String(), "level=ERROR"); n > 0 {
		t.Errorf("%d ERROR lines:\n%s", n, e.logs)
	}
}

// TestUnreadablePaths: --path.procfs or --path.sysfs on a directory the
// exporter (uid 65534) cannot read exits 2 at start with a message that says
// so. Before, it started with four failing collectors.
func TestUnreadablePaths(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the exporter as uid 65534")
	}
	bin, _ := sharedBuild(t)
	dir, err := os.MkdirTemp("", "memlock-paths-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	closed := filepath.Join(dir, "closed")
	if err := os.Mkdir(closed, 0o000); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--path.procfs", "--path.sysfs"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // one that starts serving is killed
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--web.listen-address=127.0.0.1:0", flag+"="+closed)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		code := -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		want := flag + ` "` + closed + `" is a directory this process cannot read: permission denied`
		if code != 2 || !strings.Contains(string(out), want) || strings.Contains(string(out), "<nil>") {
			t.Errorf("%s on a mode-000 directory as uid 65534: exit %d (%v), output %q; want 2 and %q", flag, code, err, out, want)
		}
	}
}

// TestReloadDiscloses nothing of the file: /-/reload's 500 and the log
// name the problem and the line, never the content. Before, a config file
// pointing at a shadow file echoed a line of it.
func TestReloadDisclosesNothing(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "probes.yml")
	if err := os.WriteFile(cfg, []byte("modules:\n  small:\n    mode: mlock\n    size: 8KiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := startExporter(t, bin, -1, "--probe.enable", "--probe.interval=0", "--probe.config.file="+cfg)
	const secret = "Xq9sEcReT7hash"
	files := map[string]string{
		"shadow":         "root:$6$" + secret + "$abc:19000:0:99999:7:::\nbin:*:19000:0:99999:7:::\n",
		"secret yaml":    "apiVersion: v1\nkind: Secret\ndata:\n  password: " + secret + "\n",
		"bad size":       "modules:\n  m:\n    mode: mlock\n    size: " + secret + strings.Repeat("x", 200) + "\n",
		"syntax":         "modules: [\n  " + secret + ": {\n",
		"tab":            "modules:\n\t" + secret + ": 1\n",
		"duplicate keys": "modules:\n  " + secret + ":\n    mode: mlock\n  " + secret + ":\n    mode: mlock\n",
	}
	for name, content := range files {
		if err := os.WriteFile(cfg, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		code, body := probePost(t, "http://"+e.addr+"/-/reload")
		if code != http.StatusInternalServerError {
			t.Errorf("%s: reload %d, want 500", name, code)
		}
		if strings.Contains(body, secret) || strings.Contains(body, "root:") || strings.Contains(body, "password") {
			t.Errorf("%s: the answer quotes the file: %q", name, body)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(body))
	}
	// Too large and not a regular file.
	if err := os.WriteFile(cfg, []byte("#"+strings.Repeat(secret, 100000)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := probePost(t, "http://"+e.addr+"/-/reload"); code != 500 || !strings.Contains(body, "larger than") {
		t.Errorf("a 1.4 MB file: %d %q", code, body)
	}
	os.Remove(cfg)
	if err := os.Symlink("/dev/zero", cfg); err != nil {
		t.Fatal(err)
	}
	if code, body := probePost(t, "http://"+e.addr+"/-/reload"); code != 500 || !strings.Contains(body, "not a regular file") {
		t.Errorf("/dev/zero: %d %q", code, body)
	}
	if strings.Contains(e.logs.String(), secret) {
		t.Errorf("the log quotes the file:\n%s", e.logs)
	}
	checkLogLines(t, e.logs.String())
}

// addrRe matches what a user-space virtual address looks like in a log.
var addrRe = regexp.MustCompile(`0x[0-9a-f]{8,}|\b7f[0-9a-f]{10}\b`)

// TestProbeDebugShowsNoAddress: debug=true printed the region's virtual
// address (addr=0x7f...), which helps defeat ASLR.
func TestProbeDebugShowsNoAddress(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1, "--probe.enable", "--probe.interval=0", "--probe.size=16KiB")
	for _, m := range []string{"mlock", "onfault", "populate"} {
		code, body := probeGet(t, "http://"+e.addr+"/probe?module="+m+"&debug=true")
		if code != 200 || !strings.Contains(body, "msg=mapped") {
			t.Fatalf("%s debug: %d\n%s", m, code, body)
		}
		if a := addrRe.FindString(body); a != "" {
			t.Errorf("%s debug output shows an address %s:\n%s", m, a, body)
		}
	}
}

// TestServerErrorsAreJSON: with --log.format=json, net/http's own messages
// (a TLS handshake error here) used to be plain "http: ..." lines.
func TestServerErrorsAreJSON(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	pki := newTestPKI(t)
	cfg := filepath.Join(pki.dir, "web.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\n", pki.certFile, pki.keyF)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startExporterWith(t, bin, func(addr string) (*http.Response, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.caPool}}}
		return c.Get("https://" + addr + "/-/ready")
	}, "--web.config.file="+cfg, "--log.format=json")
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "NOT A TLS CLIENT HELLO\r\n\r\n")
	buf := make([]byte, 512)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.Read(buf)
	c.Close()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.String(), "TLS handshake error"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no TLS handshake error logged:\n%s", e.logs)
		}
	}
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("not a JSON log line: %q", l)
		}
	}
	t.Logf("%s", lastLogLine(e.logs.String(), "TLS handshake error"))
}

// TestConcurrentScrapeMemory measures the most memory unauthenticated
// clients can make the exporter use by scraping: five rounds of 100
// concurrent scrapes against the default --web.max-requests (40), each
// reporting every process, with a one-day timeout header. The rise of the
// exporter's VmHWM (peak RSS, from the kernel) is logged (docs/security.md
// quotes it) and bounded by 64 MiB.
func TestConcurrentScrapeMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (500 scrapes of every process against the built exporter): make test runs it")
	}
	t.Parallel()
	requireLinuxProc(t)
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1, "--collector.process.include=.*")
	pid := e.cmd.Process.Pid
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	url := "http://" + e.addr + "/metrics"
	if _, _, err := fetch(client, url, "", ""); err != nil {
		t.Fatal(err)
	}
	before := atoiKB(procStatusField(t, pid, "VmHWM"))
	var ok, busy atomic.Int64
	for range 5 {
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("GET", url, nil)
				req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "86400")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("scrape: %v", err)
					return
				}
				bufio.NewReader(resp.Body).WriteTo(discard{})
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					busy.Add(1)
				}
			}()
		}
		wg.Wait()
	}
	after := atoiKB(procStatusField(t, pid, "VmHWM"))
	t.Logf("500 scrapes, 100 at a time (%d served, %d refused): VmHWM %d kB -> %d kB (+%d kB)", ok.Load(), busy.Load(), before, after, after-before)
	if after-before > 64<<10 {
		t.Errorf("VmHWM rose by %d kB (bound 65536 kB)", after-before)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestWebConfigBrokenAfterStart: exporter-toolkit rereads --web.config.file
// on every request and logs its parse error; after the file is replaced by
// another (a secret), the request gets 500 and the log names the problem
// without quoting the file.
func TestWebConfigBrokenAfterStart(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "web.yml")
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  u: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := startExporterWith(t, bin, func(addr string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/-/ready", nil)
		req.SetBasicAuth("u", "pw")
		return http.DefaultClient.Do(req)
	}, "--web.config.file="+cfg)
	const secret = "Xq9sEcReT7hash"
	if err := os.WriteFile(cfg, []byte("root:$6$"+secret+":19000:0:99999:7:::\n"+secret+": 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, body, err := fetch(&http.Client{Timeout: 10 * time.Second}, "http://"+e.addr+"/metrics", "u", "pw")
	if err != nil || code != http.StatusInternalServerError || strings.Contains(body, secret) {
		t.Errorf("broken web config: %d %v %q, want 500 without the file", code, err, body)
	}
	// The log reaches the test through a pipe: wait for the line.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.logs.String(), "Unable to parse configuration"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no parse error logged:\n%s", e.logs)
		}
	}
	logs := e.logs.String()
	if strings.Contains(logs, secret) || strings.Contains(logs, "root:") {
		t.Errorf("the log quotes the web config:\n%s", logs)
	}
	t.Logf("%s", lastLogLine(logs, "Unable to parse configuration"))
}
