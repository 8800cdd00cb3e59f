// Command memlock-bench runs memlock_exporter's benchmark harness (package
// bench): N real processes, the floor reader, the exporter's scrapes through
// HTTP, a churn phase; it prints the table and writes docs/benchmarks.md.
//
//	make bench    # go run ./bench/cmd/memlock-bench -exporter ./memlock_exporter -out docs/benchmarks.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/memlock-exporter/memlock_exporter/bench"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var (
		ns        = flag.String("n", "1000,10000", "comma-separated process counts")
		rounds    = flag.Int("rounds", 15, "measured scrapes and floor passes per count and encoding")
		exporter  = flag.String("exporter", "./memlock_exporter", "memlock_exporter binary")
		churnN    = flag.Int("churn-n", 10000, "processes during the churn phase (0: none)")
		churnRate = flag.Float64("churn-rate", 300, "processes killed and replaced per second during churn")
		churnFor  = flag.Duration("churn-for", 20*time.Second, "how long to scrape under churn")
		out       = flag.String("out", "", "write the report here as Markdown (e.g. docs/benchmarks.md)")
		command   = flag.String("command", "make bench", "command named in the report as the one that reproduces it")
		keep      = flag.Bool("keep", false, "keep the work directory (helper binary, exporter logs)")
		bpfPath   = flag.Bool("bpf", true, "also measure the BPF path (--collector.bpf=on) at each count; needs CAP_BPF and CAP_PERFMON")
		hold      = flag.Duration("hold", 0, "instead of measuring, start the first -n children and an exporter, print its URL and keep both for this long (or until Ctrl-C), e.g. to profile with --web.enable-pprof")
		holdBPF   = flag.Bool("hold-bpf", false, "with -hold, start the exporter with --collector.bpf=on instead of off")
		expArgs   listFlag
	)
	flag.Var(&expArgs, "exporter-arg", "extra exporter flag (repeatable), e.g. --web.enable-pprof")
	flag.Parse()
	cfg := bench.Config{Rounds: *rounds, Exporter: *exporter, ExporterArgs: expArgs, ChurnN: *churnN,
		ChurnRate: *churnRate, ChurnFor: *churnFor, Log: os.Stderr, BPF: *bpfPath, HoldBPF: *holdBPF}
	for _, s := range strings.Split(*ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "memlock-bench: bad -n %q\n", *ns)
			os.Exit(2)
		}
		cfg.Ns = append(cfg.Ns, n)
	}
	if *hold > 0 {
		os.Exit(holdOpen(cfg, *hold))
	}
	os.Exit(run(cfg, *out, *command, *keep))
}

func run(cfg bench.Config, out, command string, keep bool) int {
	dir, err := os.MkdirTemp("", "memlock-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "memlock-bench:", err)
		return 1
	}
	if keep {
		fmt.Fprintln(os.Stderr, "work directory:", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	cfg.WorkDir = dir
	// Ctrl-C or SIGTERM cancels the run; Run stops every process it started
	// before it returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		fmt.Println()
		fmt.Println(rep.MachineLine())
		fmt.Println()
		rep.Table(os.Stdout)
		fmt.Println()
		rep.TargetTable(os.Stdout)
		fmt.Println()
		rep.Details(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "memlock-bench:", err)
		return 1
	}
	if out != "" {
		if err := writeMarkdown(out, rep, cfg, command); err != nil {
			fmt.Fprintln(os.Stderr, "memlock-bench:", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "wrote", out)
	}
	return 0
}

// holdOpen starts the children and an exporter and keeps them for d.
func holdOpen(cfg bench.Config, d time.Duration) int {
	dir, err := os.MkdirTemp("", "memlock-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "memlock-bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := bench.Hold(ctx, cfg, dir, cfg.Ns[0]); err != nil {
		fmt.Fprintln(os.Stderr, "memlock-bench:", err)
		return 1
	}
	return 0
}
