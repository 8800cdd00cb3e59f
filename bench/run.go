// Package bench is memlock_exporter's benchmark harness: it starts N real
// processes (a few percent holding locked, on-fault locked, shared locked or
// io_uring-pinned memory), measures the least CPU a program can spend
// reading what the exporter needs from /proc (the floor), then the
// exporter's full scrapes through its HTTP endpoint, and compares the two.
// A churn phase kills and replaces hundreds of processes a second while
// scraping, and checks every scrape succeeds and no dead process's series
// survives. cmd/memlock-bench runs it (`make bench`); bench_test.go runs a
// short form in `go test ./...`.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is one harness run.
type Config struct {
	Ns       []int  // process counts to measure, e.g. 1000 and 10000
	Rounds   int    // measured scrapes (and floor passes) per N and encoding
	Exporter string // memlock_exporter binary
	// ExporterArgs are added to the exporter's command line.
	ExporterArgs []string
	ChurnN       int           // processes during churn (0: no churn phase)
	ChurnRate    float64       // children killed and replaced per second
	ChurnFor     time.Duration // how long to scrape under churn
	WorkDir      string        // helper binary and exporter logs
	Log          io.Writer     // progress
	// BPF also measures, at each count, a second exporter with
	// --collector.bpf=on (the first has --collector.bpf=off: /proc).
	BPF bool
	// HoldBPF makes Hold start the BPF path's exporter (--collector.bpf=on).
	HoldBPF bool
}

// ScrapeStats summarises the scrapes of one encoding.
type ScrapeStats struct {
	Scrapes          int
	CPU              time.Duration // per scrape, all threads (schedstat)
	User, Sys        time.Duration // per scrape (from /proc/<pid>/stat ticks)
	WallP50, WallMax time.Duration
	AllocPerScrape   float64 // bytes
	WireBytes        int
	Series           int
	Scanned          float64
	Reported         float64
	// RatioMedian is the median over rounds of one scrape's CPU (the
	// exporter's threads' run time across that request) over the floor
	// pass just before it: less swayed by a noisy neighbour than the mean.
	RatioMedian float64
	Lockers     int // reported processes with VmLck > 0
	Resident    int // processes whose smaps_rollup was read
}

// NResult is the measurement at one process count.
type NResult struct {
	N              int
	Processes      int // /proc entries read by the floor
	Roles          map[string]int
	HelperFailures map[string]string
	Floor          FloorResult // mean of every pass
	FloorPasses    int
	Gzip, Identity ScrapeStats
	HWM, RSS       uint64 // exporter's peak and final resident set, bytes
	HelperRSS      uint64 // one plain child's VmRSS, bytes
	Errors         []string
	// BPF is the exporter with --collector.bpf=on (gzip scrapes; nil when
	// not measured), beside the same floor passes; BPFLoad the program's
	// load time from its start-up line.
	BPF            *ScrapeStats
	BPFHWM, BPFRSS uint64
	// BPFHWMStart is its VmHWM once it listens, before any scrape: the
	// peak of loading (the kernel's BTF parsed) alone.
	BPFHWMStart uint64
	BPFLoad     time.Duration
}

// BPFRatio is the BPF path's CPU per scrape over the floor's.
func (r *NResult) BPFRatio() float64 {
	if r.BPF == nil || r.Floor.CPU == 0 {
		return 0
	}
	return float64(r.BPF.CPU) / float64(r.Floor.CPU)
}

// Ratio is the exporter's CPU per scrape (as Prometheus scrapes, gzip) over
// the floor's.
func (r *NResult) Ratio() float64 {
	if r.Floor.CPU == 0 {
		return 0
	}
	return float64(r.Gzip.CPU) / float64(r.Floor.CPU)
}

// ChurnResult is the churn phase.
type ChurnResult struct {
	N              int
	Rate           float64
	Duration       time.Duration
	Exits          int
	Scrapes        int
	FailedScrapes  []string
	StaleSeries    []string
	LogProblems    []string
	ReadFailures   []string
	WallMax        time.Duration
	ChildSeriesMin int
	ChildSeriesMax int
}

// Ok reports whether churn met its three conditions.
func (c *ChurnResult) Ok() bool {
	return c.Scrapes > 0 && len(c.FailedScrapes) == 0 && len(c.StaleSeries) == 0 && len(c.LogProblems) == 0
}

// Report is a whole run.
type Report struct {
	Machine Machine
	Results []*NResult
	Churn   *ChurnResult
	Started time.Time
	Took    time.Duration
}

func (cfg *Config) logf(format string, args ...any) {
	if cfg.Log != nil {
		fmt.Fprintf(cfg.Log, format+"\n", args...)
	}
}

// Run runs the harness. Every process it starts is gone when it returns,
// also on error and when ctx is cancelled.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 5
	}
	rep := &Report{Machine: describeMachine(), Started: time.Now()}
	if err := checkPidRoom(slices.Max(append(slices.Clone(cfg.Ns), cfg.ChurnN)), cfg.logf); err != nil {
		return nil, err
	}
	helper, err := CompileHelper(cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	floor, err := newFloorReader()
	if err != nil {
		return nil, err
	}
	defer floor.Close()

	for _, n := range cfg.Ns {
		res, err := runN(ctx, cfg, helper, floor, n, n == cfg.ChurnN, rep)
		if res != nil {
			rep.Results = append(rep.Results, res)
		}
		if err != nil {
			return rep, err
		}
	}
	if cfg.ChurnN > 0 && rep.Churn == nil {
		if _, err := runN(ctx, cfg, helper, floor, cfg.ChurnN, true, rep); err != nil {
			return rep, err
		}
	}
	rep.Took = time.Since(rep.Started)
	return rep, nil
}

// exporterArgs are the /proc path's: --collector.bpf=off, so that a
// harness run as root measures /proc and not the BPF path auto would pick.
func exporterArgs(cfg Config) []string {
	return append([]string{"--collector.process.max-processes=100000", "--collector.bpf=off"}, cfg.ExporterArgs...)
}

// bpfExporterArgs are the BPF path's: the task iterator, without the
// lock-call tracepoints, which would put every syscall of the host (the
// floor's passes too) on the kernel's tracing path and are not part of the
// scan measured here (their own cost: docs/bpf.md, BenchmarkSyscallOverhead).
func bpfExporterArgs(cfg Config) []string {
	return append([]string{"--collector.process.max-processes=100000", "--collector.bpf=on", "--no-collector.lockcalls"}, cfg.ExporterArgs...)
}

// runN starts n children and an exporter, measures (unless churnOnly),
// then runs the churn phase when churn is set. It stops both before it
// returns.
func runN(ctx context.Context, cfg Config, helper string, floor *floorReader, n int, churn bool, rep *Report) (*NResult, error) {
	measure := slices.Contains(cfg.Ns, n)
	cfg.logf("== %d processes: starting children", n)
	t0 := time.Now()
	kids, err := StartChildren(helper, n, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	defer kids.Stop()
	alive, roles := kids.Alive()
	cfg.logf("   %d children ready in %s: %v", alive, time.Since(t0).Round(time.Millisecond), roles)
	if f := kids.Failures(); len(f) > 0 {
		cfg.logf("   roles the kernel refused: %v", f)
	}
	exp, err := StartExporter(cfg.Exporter, cfg.WorkDir, exporterArgs(cfg)...)
	if err != nil {
		return nil, err
	}
	defer exp.Stop()

	var res *NResult
	if measure {
		res = &NResult{N: n, Roles: roles, HelperFailures: kids.Failures()}
		if pid := kids.AnyPid("plain"); pid > 0 {
			res.HelperRSS = statusKB(pid, "VmRSS")
		}
		if err := measureN(ctx, cfg, exp, floor, res); err != nil {
			return res, err
		}
		res.HWM = statusKB(exp.Pid(), "VmHWM")
		res.RSS = statusKB(exp.Pid(), "VmRSS")
		cfg.logf("   floor %s/pass, exporter %s/scrape (gzip), ratio %.2f, alloc %.0f KiB/scrape, HWM %.1f MiB",
			res.Floor.CPU.Round(time.Microsecond), res.Gzip.CPU.Round(time.Microsecond), res.Ratio(),
			res.Gzip.AllocPerScrape/1024, float64(res.HWM)/(1<<20))
		if cfg.BPF {
			if err := measureBPF(ctx, cfg, floor, res); err != nil {
				return res, err
			}
		}
	}
	if churn && cfg.ChurnN == n {
		c, err := runChurn(ctx, cfg, kids, exp)
		rep.Churn = c
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// measureN scrapes the exporter over n processes, with gzip and without,
// beside floor passes over the same /proc, into res.
func measureN(ctx context.Context, cfg Config, exp *Exporter, floor *floorReader, res *NResult) error {
	if err := warmUp(ctx, exp, floor); err != nil {
		return err
	}
	var fs floorSum
	if err := measureEncoding(ctx, cfg, exp, floor, &fs, true, &res.Gzip, res); err != nil {
		return err
	}
	if err := measureEncoding(ctx, cfg, exp, floor, &fs, false, &res.Identity, res); err != nil {
		return err
	}
	res.FloorPasses = fs.passes
	res.Floor = fs.mean()
	res.Processes = res.Floor.Pids
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d scrapes failed: %s", len(res.Errors), res.Errors[0])
	}
	return nil
}

// measureBPF starts a second exporter with --collector.bpf=on over the same
// children and measures its gzip scrapes beside floor passes, into res.BPF.
func measureBPF(ctx context.Context, cfg Config, floor *floorReader, res *NResult) error {
	exp, err := StartExporter(cfg.Exporter, cfg.WorkDir, bpfExporterArgs(cfg)...)
	if err != nil {
		return fmt.Errorf("exporter with --collector.bpf=on: %w", err)
	}
	defer exp.Stop()
	res.BPFLoad = loadSeconds(exp.Stderr)
	res.BPFHWMStart = statusKB(exp.Pid(), "VmHWM")
	if err := warmUp(ctx, exp, floor); err != nil {
		return err
	}
	var fs floorSum
	res.BPF = &ScrapeStats{}
	if err := measureEncoding(ctx, cfg, exp, floor, &fs, true, res.BPF, res); err != nil {
		return err
	}
	res.BPFHWM = statusKB(exp.Pid(), "VmHWM")
	res.BPFRSS = statusKB(exp.Pid(), "VmRSS")
	cfg.logf("   BPF exporter %s/scrape (gzip), ratio to the floor %.3f, HWM %.1f MiB, program loaded in %s",
		res.BPF.CPU.Round(time.Microsecond), res.BPFRatio(), float64(res.BPFHWM)/(1<<20), res.BPFLoad.Round(time.Millisecond))
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d scrapes failed: %s", len(res.Errors), res.Errors[0])
	}
	return nil
}

// loadSeconds reads load_seconds from the exporter's start-up line
// ("per-process numbers from the BPF task iterator"), or 0.
func loadSeconds(logPath string) time.Duration {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), "load_seconds=")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(strings.Trim(f[0], `"`), 64)
	if err != nil {
		return 0
	}
	return time.Duration(v * float64(time.Second))
}

// warmUp makes one floor pass and two scrapes: the first pass over /proc
// builds its dentries and inodes.
func warmUp(ctx context.Context, exp *Exporter, floor *floorReader) error {
	floor.Run()
	for range 2 {
		if _, err := exp.Scrape(ctx, true); err != nil {
			return fmt.Errorf("warm-up scrape: %w", err)
		}
	}
	return nil
}

// floorSum adds up floor passes; mean averages them.
type floorSum struct {
	sum    FloorResult
	passes int
}

// run makes one floor pass, adds it and returns its CPU time.
func (fs *floorSum) run(floor *floorReader) time.Duration {
	f := floor.Run()
	fs.sum.Pids += f.Pids
	fs.sum.Reported += f.Reported
	fs.sum.Lockers += f.Lockers
	fs.sum.CPU += f.CPU
	fs.sum.User += f.User
	fs.sum.Sys += f.Sys
	fs.sum.Wall += f.Wall
	fs.sum.StatusCPU += f.StatusCPU
	fs.sum.SmapsCPU += f.SmapsCPU
	fs.passes++
	return f.CPU
}

func (fs *floorSum) mean() FloorResult {
	n, p := fs.passes, time.Duration(fs.passes)
	return FloorResult{Pids: fs.sum.Pids / n, Reported: fs.sum.Reported / n, Lockers: fs.sum.Lockers / n,
		CPU: fs.sum.CPU / p, User: fs.sum.User / p, Sys: fs.sum.Sys / p, Wall: fs.sum.Wall / p, StatusCPU: fs.sum.StatusCPU / p, SmapsCPU: fs.sum.SmapsCPU / p}
}

// measureEncoding makes cfg.Rounds scrapes with or without gzip into st,
// each after a floor pass, so that both see the same machine (other work,
// caches) over the run; failed scrapes' reasons go to res.Errors.
func measureEncoding(ctx context.Context, cfg Config, exp *Exporter, floor *floorReader, fs *floorSum, gz bool, st *ScrapeStats, res *NResult) error {
	var walls []time.Duration
	var allocs, ratios []float64
	var prevAlloc float64
	c0, err := readProcCPU(exp.Pid())
	if err != nil {
		return err
	}
	for i := range cfg.Rounds {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fcpu := fs.run(floor)
		b0, err := readProcCPU(exp.Pid())
		if err != nil {
			return err
		}
		s, err := exp.Scrape(ctx, gz)
		if err != nil {
			return fmt.Errorf("scrape %d: %w", i, err)
		}
		b1, err := readProcCPU(exp.Pid())
		if err != nil {
			return err
		}
		if fcpu > 0 {
			ratios = append(ratios, float64(b1.Sched-b0.Sched)/float64(fcpu))
		}
		if why := s.Failed(); why != "" {
			res.Errors = append(res.Errors, why)
		}
		walls = append(walls, s.Wall)
		if i > 0 {
			allocs = append(allocs, s.AllocTotal-prevAlloc)
		}
		prevAlloc = s.AllocTotal
		st.WireBytes, st.Series, st.Scanned, st.Reported = s.Bytes, s.Series, s.Scanned, s.Reported
		st.Lockers, st.Resident = s.Lockers, s.Resident
	}
	c1, err := readProcCPU(exp.Pid())
	if err != nil {
		return err
	}
	k := time.Duration(cfg.Rounds)
	st.Scrapes = cfg.Rounds
	st.CPU = (c1.Sched - c0.Sched) / k
	st.User, st.Sys = (c1.User-c0.User)/k, (c1.Sys-c0.Sys)/k
	slices.Sort(walls)
	st.WallP50, st.WallMax = walls[len(walls)/2], walls[len(walls)-1]
	if len(ratios) > 0 {
		slices.Sort(ratios)
		st.RatioMedian = ratios[len(ratios)/2]
	}
	for _, a := range allocs {
		st.AllocPerScrape += a / float64(len(allocs))
	}
	return nil
}

func runChurn(ctx context.Context, cfg Config, kids *Children, exp *Exporter) (*ChurnResult, error) {
	c := &ChurnResult{N: kids.N, Rate: cfg.ChurnRate, ChildSeriesMin: -1}
	cfg.logf("== churn: %d processes, %g replaced per second, scraping for %s", kids.N, cfg.ChurnRate, cfg.ChurnFor)
	exits0 := kids.Exits()
	if err := kids.Churn(cfg.ChurnRate); err != nil {
		return c, err
	}
	start := time.Now()
	for time.Since(start) < cfg.ChurnFor && ctx.Err() == nil {
		t0 := time.Now()
		s, err := exp.Scrape(ctx, true)
		c.Scrapes++
		if err != nil {
			c.FailedScrapes = append(c.FailedScrapes, err.Error())
			continue
		}
		if why := s.Failed(); why != "" {
			c.FailedScrapes = append(c.FailedScrapes, why)
		}
		c.WallMax = max(c.WallMax, s.Wall)
		for _, f := range s.Failures {
			if !slices.Contains(c.ReadFailures, f) {
				c.ReadFailures = append(c.ReadFailures, f)
			}
		}
		if c.ChildSeriesMin < 0 || len(s.ChildPids) < c.ChildSeriesMin {
			c.ChildSeriesMin = len(s.ChildPids)
		}
		c.ChildSeriesMax = max(c.ChildSeriesMax, len(s.ChildPids))
		// Let the helper's reports of starts catch up, so that a pid reused
		// by a new child is not taken for a dead one.
		time.Sleep(200 * time.Millisecond)
		for _, pid := range s.ChildPids {
			if kids.DeadSince(pid, t0) {
				c.StaleSeries = append(c.StaleSeries, fmt.Sprintf("pid %d reported dead before the scrape began", pid))
			}
		}
	}
	c.Duration = time.Since(start)
	if err := kids.Churn(0); err != nil {
		return c, err
	}
	c.Exits = kids.Exits() - exits0
	log, err := os.ReadFile(exp.Stderr)
	if err != nil {
		return c, err
	}
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			c.LogProblems = append(c.LogProblems, line)
		}
	}
	cfg.logf("   %d scrapes, %d failed, %d children replaced, %d stale series, %d error/warning log lines",
		c.Scrapes, len(c.FailedScrapes), c.Exits, len(c.StaleSeries), len(c.LogProblems))
	if !c.Ok() {
		return c, fmt.Errorf("churn: %d of %d scrapes failed, %d stale series, %d log problems (first: %v)",
			len(c.FailedScrapes), c.Scrapes, len(c.StaleSeries), len(c.LogProblems),
			firstOf(c.FailedScrapes, c.StaleSeries, c.LogProblems))
	}
	return c, nil
}

func firstOf(lists ...[]string) string {
	for _, l := range lists {
		if len(l) > 0 {
			return l[0]
		}
	}
	return ""
}

// Hold starts n children and an exporter, prints the exporter's URL and pid,
// and keeps both until ctx ends: for profiling by hand.
func Hold(ctx context.Context, cfg Config, dir string, n int) error {
	helper, err := CompileHelper(dir)
	if err != nil {
		return err
	}
	kids, err := StartChildren(helper, n, 2*time.Minute)
	if err != nil {
		return err
	}
	defer kids.Stop()
	args := exporterArgs(cfg)
	if cfg.HoldBPF {
		args = bpfExporterArgs(cfg)
	}
	exp, err := StartExporter(cfg.Exporter, dir, args...)
	if err != nil {
		return err
	}
	defer exp.Stop()
	fmt.Fprintf(os.Stdout, "%d children; exporter pid %d at %s (log %s)\n", kids.N, exp.Pid(), exp.URL, exp.Stderr)
	<-ctx.Done()
	return nil
}
