package collector

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/bpf"
	"github.com/memlock-exporter/memlock_exporter/internal/bpf/bpftest"
)

// TestLockCallsLint: the lockcalls collector on the real failure counter,
// after an unprivileged child's mlock failed, passes the linter and serves
// the child's failure with its errno and bytes.
func TestLockCallsLint(t *testing.T) {
	bpftest.RequireRoot(t)
	m, err := bpf.Open()
	if err != nil {
		t.Skipf("cannot load BPF here: %v", err)
	}
	defer m.Close()
	if err := bpftest.WithTracefs(func() error { return m.AttachFailures("") }); err != nil {
		t.Skipf("cannot attach the lock-call tracepoints here: %v", err)
	}
	c := bpftest.Start(t, bpftest.Opts{UID: bpftest.FreshUID(t), Memlock: &[2]uint64{64 << 10, 64 << 10}}, "mlock", 1<<20)
	if _, err := c.Stdin.Write([]byte("\n")); err != nil {
		t.Fatal(err)
	}
	c.Expect("error 12")
	cfg := DefaultConfig()
	cfg.LockCalls.Source = m
	e := newExporter(t, cfg, "lockcalls")
	problems, err := testutil.CollectAndLint(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	out, err := testutil.CollectAndFormat(e, expfmt.TypeTextPlain, "memlock_lock_call_failures_total", "memlock_lock_call_failed_bytes_total")
	if err != nil {
		t.Fatal(err)
	}
	pid := `pid="` + strconv.Itoa(c.Pid) + `"`
	for name, want := range map[string]string{"memlock_lock_call_failures_total": "1", "memlock_lock_call_failed_bytes_total": "1.048576e+06"} {
		found := false
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, name+"{") && strings.Contains(line, pid) {
				found = true
				if !strings.Contains(line, `errno="enomem"`) || !strings.Contains(line, `syscall="mlock"`) || !strings.HasSuffix(line, " "+want) {
					t.Errorf("%s: want mlock enomem %s", line, want)
				}
			}
		}
		if !found {
			t.Errorf("no %s{%s} in\n%s", name, pid, out)
		}
	}
}

// scripted is a FailureSource whose reads are given in turn: it tests
// the collector's own bookkeeping (what the kernel's map can do between
// scrapes: an entry forgotten and created again, a process gone), not the
// kernel.
type scripted struct {
	reads     [][]bpf.Failure
	n         int
	forgotten []bpf.Failure
}

func (s *scripted) Failures(dst *bpf.FailureCounts) error {
	dst.Failures = append(dst.Failures[:0], s.reads[min(s.n, len(s.reads)-1)]...)
	s.n++
	return nil
}

func (s *scripted) ForgetFailures(fs []bpf.Failure) error {
	s.forgotten = append(s.forgotten, fs...)
	return nil
}

// TestLockCallsTotals: a series' counter never goes backwards when the
// map entry behind it restarts (5, then an entry of 2 for the same labels:
// 7), and a process that has exited is shown by one scrape, forgotten in
// the map, and gone from the next.
func TestLockCallsTotals(t *testing.T) {
	self := int32(os.Getpid())
	const gone = 1 << 30 // above pid_max: no such process
	f := func(pid int32, count uint64) bpf.Failure {
		return bpf.Failure{PID: pid, Syscall: bpf.SyscallMlock, Errno: unix.ENOMEM, Count: count, Bytes: count << 20, LastBootNS: 1}
	}
	src := &scripted{reads: [][]bpf.Failure{
		{f(self, 5)},
		{f(self, 2)},
		{f(self, 2), f(gone, 1)},
		{f(self, 3)},
	}}
	cfg := DefaultConfig()
	cfg.LockCalls.Source = src
	e := newExporter(t, cfg, "lockcalls")
	selfLabel := `pid="` + strconv.Itoa(int(self)) + `"`
	goneLabel := `pid="` + strconv.Itoa(gone) + `"`
	for i, want := range []struct{ self, gone string }{{"5", ""}, {"7", ""}, {"7", "1"}, {"8", ""}} {
		// One Collect per step: CollectAndFormat collects once.
		out, err := testutil.CollectAndFormat(e, expfmt.TypeTextPlain, "memlock_lock_call_failures_total")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, line := range strings.Split(string(out), "\n") {
			for _, l := range []string{selfLabel, goneLabel} {
				if strings.Contains(line, l) {
					got[l] = line[strings.LastIndexByte(line, ' ')+1:]
				}
			}
		}
		if got[selfLabel] != want.self || got[goneLabel] != want.gone {
			t.Errorf("scrape %d: self %q, exited %q; want %q, %q", i+1, got[selfLabel], got[goneLabel], want.self, want.gone)
		}
	}
	if len(src.forgotten) != 1 || src.forgotten[0].PID != gone {
		t.Errorf("forgotten %+v, want the exited process's entry once", src.forgotten)
	}
}

// TestLockCallsUnavailable: without a source the collector serves only
// memlock_lock_call_tracing_enabled 0 with the reason, and does not fail.
func TestLockCallsUnavailable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LockCalls.Unavailable = "no_tracefs"
	e := newExporter(t, cfg, "lockcalls")
	out, err := testutil.CollectAndFormat(e, expfmt.TypeTextPlain, "memlock_lock_call_tracing_enabled", "memlock_scrape_collector_success", "memlock_lock_call_failures_dropped_total")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`memlock_lock_call_tracing_enabled{reason="no_tracefs"} 0`, `memlock_scrape_collector_success{collector="lockcalls"} 1`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %s in\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "dropped") {
		t.Errorf("dropped served without the tracepoints:\n%s", out)
	}
	if on, reason, ok := e.LockCallTracing(); on || reason != "no_tracefs" || !ok {
		t.Errorf("LockCallTracing() = %v, %q, %v", on, reason, ok)
	}
}
