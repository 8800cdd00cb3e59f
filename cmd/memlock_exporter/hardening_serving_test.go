package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Serving hardening, against the real binary: TLS and basic auth from
// --web.config.file with a real client, --web.max-requests under 100
// concurrent scrapes, clients that trickle headers or never read, and no
// command line or environment value in any label.

// testPKI is a CA and a server certificate it signed for 127.0.0.1.
type testPKI struct {
	dir            string
	caPool         *x509.CertPool
	certFile, keyF string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "memlock test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "memlock_exporter"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: dir, caPool: x509.NewCertPool(), certFile: filepath.Join(dir, "server.crt"), keyF: filepath.Join(dir, "server.key")}
	p.caPool.AddCert(ca)
	writePEM(t, p.certFile, "CERTIFICATE", srvDER)
	writePEM(t, p.keyF, "EC PRIVATE KEY", keyDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startExporterWith starts the binary and waits until ready answers 200;
// ready does the request, so TLS and authentication can be in it.
func startExporterWith(t *testing.T, bin string, ready func(addr string) (*http.Response, error), args ...string) *exporterProc {
	t.Helper()
	return startExporterCmd(t, func(addr string) *exec.Cmd {
		return exec.Command(bin, append([]string{"--web.listen-address=" + addr}, args...)...)
	}, ready)
}

func fetch(c *http.Client, url, user, pass string) (int, string, error) {
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestServingTLSAndBasicAuth(t *testing.T) {
	t.Parallel()
	bin, _ := sharedBuild(t)
	pki := newTestPKI(t)
	const user, pass = "prometheus", "correct horse battery staple"
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(pki.dir, "web.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  %s: %s\n",
		pki.certFile, pki.keyF, user, hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.caPool}}}
	e := startExporterWith(t, bin, func(addr string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+"/-/ready", nil)
		req.SetBasicAuth(user, pass)
		return trusting.Do(req)
	}, "--web.config.file="+cfg)
	base := "https://" + e.addr

	code, body, err := fetch(trusting, base+"/metrics", user, pass)
	if err != nil || code != 200 || !strings.Contains(body, "memlock_scrape_collector_success") {
		t.Fatalf("good credentials: %d %v\n%.300s", code, err, body)
	}
	for _, tc := range []struct{ name, path, user, pass string }{
		{"no credentials", "/metrics", "", ""},
		{"wrong password", "/metrics", user, "Tr0ub4dor&3"},
		{"unknown user", "/metrics", "admin", pass},
		{"empty password", "/metrics", user, ""},
		{"health without credentials", "/-/healthy", "", ""},
		{"landing page without credentials", "/", "", ""},
	} {
		code, body, err := fetch(trusting, base+tc.path, tc.user, tc.pass)
		if err != nil || code != http.StatusUnauthorized || strings.Contains(body, "memlock_") {
			t.Errorf("%s: %d %v, want 401 and no metrics\n%.200s", tc.name, code, err, body)
		}
	}

	// A client that does not trust the CA refuses the server.
	untrusting := &http.Client{Timeout: 10 * time.Second}
	if _, _, err := fetch(untrusting, base+"/metrics", user, pass); err == nil {
		t.Error("a client without the CA accepted the server's certificate")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted CA: %v, want a certificate error", err)
	}
	// Plain HTTP to the TLS port gets no metrics.
	code, body, err = fetch(&http.Client{Timeout: 10 * time.Second}, "http://"+e.addr+"/metrics", user, pass)
	if err == nil && (code == 200 || strings.Contains(body, "memlock_")) {
		t.Errorf("plain HTTP to the TLS port: %d\n%.200s", code, body)
	}
	t.Logf("plain HTTP to the TLS port: status %d, err %v, body %.80q", code, err, body)
	if strings.Contains(e.logs.String(), pass) {
		t.Error("the password appears in the exporter's logs")
	}
}

func TestServingMaxRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (saturates --web.max-requests of the built exporter): make test runs it")
	}
	t.Parallel()
	bin, _ := sharedBuild(t)
	const limit = 2
	e := startExporter(t, bin, -1, fmt.Sprintf("--web.max-requests=%d", limit))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	var ok, busy int
	for round := 0; round < 5 && busy == 0; round++ {
		start := make(chan struct{})
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				code, _, err := fetch(client, "http://"+e.addr+"/metrics", "", "")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("scrape: %v", err)
				case code == 200:
					ok++
				case code == http.StatusServiceUnavailable:
					busy++
				default:
					t.Errorf("status %d", code)
				}
			}()
		}
		close(start)
		wg.Wait()
		t.Logf("round %d: %d served, %d refused with 503", round, ok, busy)
	}
	if busy == 0 || ok < limit {
		t.Errorf("100 concurrent scrapes with --web.max-requests=%d: %d served, %d refused", limit, ok, busy)
	}
	// The limit passed, a scrape is served again.
	if code, _, err := fetch(client, "http://"+e.addr+"/metrics", "", ""); err != nil || code != 200 {
		t.Errorf("after the burst: %d %v", code, err)
	}
}

// TestServingSlowloris opens connections that trickle header bytes: they
// must not keep a scrape from being served, and the server must close them
// (ReadHeaderTimeout, 10 s).
func TestServingSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (trickles headers until the server times them out): make test runs it")
	}
	t.Parallel()
	bin, _ := sharedBuild(t)
	e := startExporter(t, bin, -1, "--web.max-requests=2")
	const conns = 50
	closed := make(chan time.Duration, conns)
	var trickled atomic.Int64 // header bytes sent after the request line
	start := time.Now()
	for i := range conns {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: %s\r\n", e.addr)
		go func() {
			// One header byte a second, never the blank line that ends them.
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			buf := make([]byte, 1)
			for range tick.C {
				if _, err := fmt.Fprintf(c, "X-%d: %c", i, 'a'); err != nil {
					closed <- time.Since(start)
					return
				}
				trickled.Add(1)
				c.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					closed <- time.Since(start)
					return
				}
				if time.Since(start) > 40*time.Second {
					return
				}
			}
		}()
	}
	// Scrape once every connection is trickling (two bytes each).
	for deadline := time.Now().Add(20 * time.Second); trickled.Load() < 2*conns; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d header bytes trickled in 20 s", trickled.Load())
		}
	}
	t0 := time.Now()
	if code, _, err := fetch(&http.Client{Timeout: 10 * time.Second}, "http://"+e.addr+"/metrics", "", ""); err != nil || code != 200 {
		t.Fatalf("scrape beside %d slowloris connections: %d %v", conns, code, err)
	}
	t.Logf("scrape beside %d trickling connections served in %v", conns, time.Since(t0).Round(time.Millisecond))
	var last time.Duration
	for range conns {
		select {
		case d := <-closed:
			last = max(last, d)
		case <-time.After(30 * time.Second):
			t.Fatalf("trickling connections still open 30 s on (ReadHeaderTimeout is 10 s)")
		}
	}
	t.Logf("the server closed all %d trickling connections within %v", conns, last.Round(100*time.Millisecond))
}

// TestServingClientNeverReads sends scrapes whose responses are never
// read, with --web.max-requests=1, until a write blocks: the stuck write
// must end (the write deadline) and free the slot, or the exporter answers
// 503 to every scrape for ever. The scrapes ask for a one-day deadline in
// X-Prometheus-Scrape-Timeout-Seconds: --scrape.max-timeout (2 s here) caps
// it, or the clients would hold the slot for a day.
func TestServingClientNeverReads(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (holds connections for the capped scrape timeout): make test runs it")
	}
	t.Parallel()
	bin, _ := sharedBuild(t)
	// Every process reported, and 400 more of them: a response of hundreds
	// of KiB, more than the socket buffers hold.
	sleeper, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1) to start processes with")
	}
	for range 400 {
		c := exec.Command(sleeper, "300")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	e := startExporter(t, bin, -1, "--web.max-requests=1", "--collector.process.include=.*", "--collector.process.max-processes=0",
		"--scrape.timeout=2s", "--scrape.max-timeout=2s")
	client := &http.Client{Timeout: 30 * time.Second}
	_, body, err := fetch(client, "http://"+e.addr+"/metrics", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(body) < 128<<10 {
		t.Skipf("response is %d bytes: too small to fill socket buffers on this host", len(body))
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	var sent sync.WaitGroup
	for range 2 {
		c, err := d.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// Pipelined requests, answered one after the other, until the
		// unread responses fill every buffer (tens of MiB in all) and a
		// write blocks. The client asks for a day; the cap gives 2 s.
		sent.Add(1)
		go func() {
			defer sent.Done()
			for range 64 {
				if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.1\r\nHost: %s\r\nX-Prometheus-Scrape-Timeout-Seconds: 86400\r\n\r\n", e.addr); err != nil {
					return
				}
			}
		}()
	}
	// The 64 requests (about 6 KiB) fit in the socket buffers: wait until
	// every one is written, so the server has them to answer.
	sent.Wait()
	start := time.Now()
	for {
		code, _, err := fetch(client, "http://"+e.addr+"/-/healthy", "", "")
		if err != nil || code != 200 {
			t.Fatalf("health while writes are stuck: %d %v", code, err)
		}
		code, _, err = fetch(client, "http://"+e.addr+"/metrics", "", "")
		if err == nil && code == 200 {
			t.Logf("response %d KiB; a scrape was served again %v after two clients stopped reading", len(body)>>10, time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("clients that never read pin the only scrape slot: still %d %v after 30 s", code, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNoSecretsInLabels starts a locking child with a secret in its
// command line and environment, names it for reporting, and checks that
// the secret appears nowhere in /metrics.
func TestNoSecretsInLabels(t *testing.T) {
	t.Parallel()
	requireLinuxProc(t)
	bin, lockerPath := sharedBuild(t)
	const secret = "s3cr3t-d0-n0t-exp0se-7f1c"
	cmd := exec.Command(lockerPath, "--password="+secret, "--api-key", secret)
	cmd.Env = append(os.Environ(), childEnv+"=1", "MEMLOCK_TEST_TOKEN="+secret, "AWS_SECRET_ACCESS_KEY="+secret)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &locker{cmd: cmd, stdin: stdin, pid: cmd.Process.Pid}
	t.Cleanup(l.stop)
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		t.Fatalf("locker: %q", line)
	}
	e := startExporter(t, bin, -1, "--collector.process.include=.*", "--collector.process.max-processes=0")
	mfs := e.scrape(t)
	if _, ok := value(mfs, "memlock_process_locked_bytes", map[string]string{"pid": fmt.Sprint(l.pid)}); !ok {
		t.Fatal("the child is not reported, so its labels were not checked")
	}
	labels := 0
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				labels++
				if strings.Contains(lp.GetValue(), secret) || strings.Contains(lp.GetValue(), "--password") {
					t.Errorf("%s has label %s=%q", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
	_, body, err := fetch(&http.Client{Timeout: 10 * time.Second}, "http://"+e.addr+"/metrics", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(body, secret) {
		t.Error("the secret appears in /metrics")
	}
	t.Logf("%d label values checked over %d families", labels, len(mfs))
}
