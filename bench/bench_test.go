//go:build bench

package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortHarness is the short form of `make bench` that `make test` (and
// so CI) runs through the build tag bench (go test -tags bench; a plain
// go test ./... leaves it out, and -short skips it): 1,000 real processes, a
// few scrapes of the built exporter over HTTP, then churn at 100 processes
// a second. It asserts nothing about time; it fails if a scrape errors, a
// collector reports memlock_scrape_collector_success 0, a dead process's
// series survives a scrape, or the exporter logs an error or a warning.
func TestShortHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 1,000 processes and the built exporter: make test runs it")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("the harness builds its child processes with gcc, which is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "memlock_exporter")
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the harness builds the exporter with the go command, which is not on PATH")
	}
	build := exec.Command(goTool, "build", "-o", bin, "../cmd/memlock_exporter")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var log strings.Builder
	cfg := Config{Ns: []int{1000}, Rounds: 3, Exporter: bin, WorkDir: dir,
		ChurnN: 1000, ChurnRate: 100, ChurnFor: 5 * time.Second, Log: &log}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg)
	t.Log("\n" + log.String())
	if rep != nil {
		var b strings.Builder
		rep.Table(&b)
		rep.Details(&b)
		t.Log("\n" + b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Churn == nil {
		t.Fatalf("want one measurement and a churn phase, got %d and %v", len(rep.Results), rep.Churn)
	}
	r := rep.Results[0]
	if r.Gzip.Scanned < 1000 || r.Gzip.Reported < 40 {
		t.Errorf("exporter scanned %.0f processes and reported %.0f; want at least 1000 and the ~50 lockers",
			r.Gzip.Scanned, r.Gzip.Reported)
	}
	if !rep.Churn.Ok() || rep.Churn.Exits == 0 {
		t.Errorf("churn: %+v", rep.Churn)
	}
}
