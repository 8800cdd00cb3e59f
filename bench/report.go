package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
func mib(b uint64) string       { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b float64) string      { return fmt.Sprintf("%.0f KiB", b/1024) }

// smapsShare is the floor's smaps_rollup reads over its whole pass.
func (f FloorResult) smapsShare() float64 {
	if f.CPU == 0 {
		return 0
	}
	return float64(f.SmapsCPU) / float64(f.CPU)
}

// Table writes the comparison table as Markdown (readable as plain text).
func (r *Report) Table(w io.Writer) {
	fmt.Fprintln(w, "| processes | floor CPU/pass | exporter CPU/scrape (gzip) | ratio | exporter CPU/scrape (no gzip) | ratio | CPU per process (exporter) | scrape wall p50 / max | allocated/scrape | series | exporter peak RSS | BPF path CPU/scrape (gzip) | BPF / floor | BPF path peak RSS |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, x := range r.Results {
		idRatio := 0.0
		if x.Floor.CPU > 0 {
			idRatio = float64(x.Identity.CPU) / float64(x.Floor.CPU)
		}
		bpfCPU, bpfRatio, bpfRSS := "not measured", "", ""
		if x.BPF != nil {
			bpfCPU, bpfRatio, bpfRSS = ms(x.BPF.CPU), fmt.Sprintf("**%.3f**", x.BPFRatio()), mib(x.BPFHWM)
		}
		fmt.Fprintf(w, "| %d | %s | %s | **%.2f** | %s | %.2f | %s | %s / %s | %s | %d | %s | %s | %s | %s |\n",
			x.Processes, ms(x.Floor.CPU), ms(x.Gzip.CPU), x.Ratio(), ms(x.Identity.CPU), idRatio,
			us(x.Gzip.CPU/time.Duration(max(1, x.Processes))), ms(x.Gzip.WallP50), ms(x.Gzip.WallMax),
			kib(x.Gzip.AllocPerScrape), x.Gzip.Series, mib(x.HWM), bpfCPU, bpfRatio, bpfRSS)
	}
}

// Details writes what the table summarises.
func (r *Report) Details(w io.Writer) {
	for _, x := range r.Results {
		fmt.Fprintf(w, "- **%d processes** (%d children of the harness; roles %s", x.Processes, x.N, roleList(x.Roles))
		if len(x.HelperFailures) > 0 {
			fmt.Fprintf(w, "; refused by the kernel: %v", x.HelperFailures)
		}
		fmt.Fprintf(w, "; one plain child's VmRSS %s).\n", kib(float64(x.HelperRSS)))
		fmt.Fprintf(w, "  Floor, mean of %d passes: %s CPU (user %s, sys %s; getdents+status alone %s, %s per process), wall %s; "+
			"%d status files, limits and cgroup of %d processes, smaps_rollup of %d (those alone %s, %s each, %.3f of the floor).\n",
			x.FloorPasses, ms(x.Floor.CPU), ms(x.Floor.User), ms(x.Floor.Sys), ms(x.Floor.StatusCPU),
			us(x.Floor.StatusCPU/time.Duration(max(1, x.Floor.Pids))), ms(x.Floor.Wall), x.Floor.Pids, x.Floor.Reported, x.Floor.Lockers,
			ms(x.Floor.SmapsCPU), us(x.Floor.SmapsCPU/time.Duration(max(1, x.Floor.Lockers))), x.Floor.smapsShare())
		for _, s := range []struct {
			name string
			st   ScrapeStats
		}{{"gzip", x.Gzip}, {"no gzip", x.Identity}} {
			fmt.Fprintf(w, "  Exporter, %s, %d scrapes: %s CPU per scrape (user %s, sys %s; median of per-round ratios to the floor %.2f), wall p50 %s max %s, "+
				"%s allocated per scrape, %d series, %d bytes on the wire, %.0f processes scanned, %.0f reported, "+
				"%d with VmLck > 0, smaps_rollup read for %d.\n",
				s.name, s.st.Scrapes, ms(s.st.CPU), ms(s.st.User), ms(s.st.Sys), s.st.RatioMedian, ms(s.st.WallP50), ms(s.st.WallMax),
				kib(s.st.AllocPerScrape), s.st.Series, s.st.WireBytes, s.st.Scanned, s.st.Reported, s.st.Lockers, s.st.Resident)
		}
		fmt.Fprintf(w, "  Exporter resident set: peak (VmHWM) %s, at the end %s.\n", mib(x.HWM), mib(x.RSS))
		if b := x.BPF; b != nil {
			fmt.Fprintf(w, "  BPF path (--collector.bpf=on), gzip, %d scrapes: %s CPU per scrape (user %s, sys %s; median of per-round ratios to the floor %.3f), wall p50 %s max %s, "+
				"%s allocated per scrape, %d series, %.0f processes scanned, %.0f reported; program loaded in %s; resident set peak %s (%s after the load, before the first scrape), at the end %s.\n",
				b.Scrapes, ms(b.CPU), ms(b.User), ms(b.Sys), b.RatioMedian, ms(b.WallP50), ms(b.WallMax),
				kib(b.AllocPerScrape), b.Series, b.Scanned, b.Reported, x.BPFLoad.Round(time.Millisecond), mib(x.BPFHWM), mib(x.BPFHWMStart), mib(x.BPFRSS))
		}
	}
	if c := r.Churn; c != nil {
		verdict := "PASS"
		if !c.Ok() {
			verdict = "FAIL"
		}
		fmt.Fprintf(w, "- **Churn** (%s): %d processes, %g asked to be killed and replaced per second for %s (%d replaced, %.0f/s): "+
			"%d scrapes, %d failed; %d series of a process dead before the scrape began; "+
			"%d error or warning lines in the exporter's log; distinct read-failure series %d; "+
			"children with series per scrape %d to %d; slowest scrape %s.\n",
			verdict, c.N, c.Rate, c.Duration.Round(time.Second), c.Exits, float64(c.Exits)/max(c.Duration.Seconds(), 1e-9), c.Scrapes, len(c.FailedScrapes),
			len(c.StaleSeries), len(c.LogProblems), len(c.ReadFailures), c.ChildSeriesMin, c.ChildSeriesMax, ms(c.WallMax))
		for _, l := range [][]string{c.FailedScrapes, c.StaleSeries, c.LogProblems, c.ReadFailures} {
			for i, s := range l {
				if i == 3 {
					fmt.Fprintf(w, "  - ... and %d more\n", len(l)-3)
					break
				}
				fmt.Fprintf(w, "  - `%s`\n", s)
			}
		}
	}
}

func roleList(m map[string]int) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// MachineLine describes the machine in one line.
func (r *Report) MachineLine() string {
	m := r.Machine
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s RAM, pid_max %d, %s, exporter at %s",
		m.CPUs, m.CPUModel, m.Kernel, mib(m.MemTotal), m.PidMax, m.Go, m.Revision)
}

// Target is one of the harness's performance targets (docs/benchmarks.md)
// and whether this run met it.
type Target struct {
	Name, Measured string
	Met            bool
}

// Targets checks the run against the targets, at the largest process count.
func (r *Report) Targets() []Target {
	if len(r.Results) == 0 {
		return nil
	}
	big := r.Results[len(r.Results)-1]
	small := r.Results[0]
	var t []Target
	t = append(t, Target{"exporter CPU per scrape at most 1.25 times the floor's",
		fmt.Sprintf("%.2f at %d processes (%s against %s; median of per-round ratios %.2f)",
			big.Ratio(), big.Processes, ms(big.Gzip.CPU), ms(big.Floor.CPU), big.Gzip.RatioMedian),
		big.Ratio() > 0 && big.Ratio() <= 1.25})
	t = append(t, Target{"exporter RSS under 30 MiB", fmt.Sprintf("peak %s at %d processes", mib(big.HWM), big.Processes),
		big.HWM > 0 && big.HWM < 30<<20})
	if len(r.Results) > 1 {
		perSeriesS := small.Gzip.AllocPerScrape / float64(max(1, small.Gzip.Series))
		perSeriesB := big.Gzip.AllocPerScrape / float64(max(1, big.Gzip.Series))
		procGrowth := float64(big.Processes) / float64(max(1, small.Processes))
		allocGrowth := big.Gzip.AllocPerScrape / max(1, small.Gzip.AllocPerScrape)
		seriesGrowth := float64(big.Gzip.Series) / float64(max(1, small.Gzip.Series))
		t = append(t, Target{"memory allocated per scrape proportional to series reported, not processes scanned",
			fmt.Sprintf("%.0f B per series at %d processes, %.0f B at %d; processes x%.1f, series x%.1f, allocation x%.1f",
				perSeriesS, small.Processes, perSeriesB, big.Processes, procGrowth, seriesGrowth, allocGrowth),
			allocGrowth <= seriesGrowth*1.25})
		perProcS := float64(small.Gzip.CPU) / float64(max(1, small.Processes))
		perProcB := float64(big.Gzip.CPU) / float64(max(1, big.Processes))
		t = append(t, Target{"cost grows linearly with the process count",
			fmt.Sprintf("%.1f µs per process at %d, %.1f µs at %d", perProcS/1e3, small.Processes, perProcB/1e3, big.Processes),
			perProcB <= perProcS*1.25})
	}
	if b := big.BPF; b != nil {
		t = append(t, Target{"BPF path CPU per scrape at most a tenth of the floor's",
			fmt.Sprintf("%.3f at %d processes (%s against %s; median of per-round ratios %.3f; the floor's own smaps_rollup reads of the %d lockers, which both paths must make, are %.3f of it); program loaded in %s",
				big.BPFRatio(), big.Processes, ms(b.CPU), ms(big.Floor.CPU), b.RatioMedian, big.Floor.Lockers, big.Floor.smapsShare(), big.BPFLoad.Round(time.Millisecond)),
			big.BPFRatio() > 0 && big.BPFRatio() <= 0.1})
		t = append(t, Target{"BPF path RSS under 30 MiB", fmt.Sprintf("peak %s at %d processes (%s after the program's load, before the first scrape)", mib(big.BPFHWM), big.Processes, mib(big.BPFHWMStart)),
			big.BPFHWM > 0 && big.BPFHWM < 30<<20})
	}
	t = append(t, Target{"smaps_rollup read only for processes with locked memory",
		fmt.Sprintf("%d smaps_rollup reads (resident series) for %d processes with VmLck > 0 of %.0f scanned",
			big.Gzip.Resident, big.Gzip.Lockers, big.Gzip.Scanned),
		big.Gzip.Resident <= big.Gzip.Lockers})
	if c := r.Churn; c != nil {
		t = append(t, Target{"churn: every scrape succeeds, nothing logged, no series of a dead process",
			fmt.Sprintf("%d scrapes, %d failed, %d stale series, %d log lines, %d processes replaced (%.0f/s) among %d",
				c.Scrapes, len(c.FailedScrapes), len(c.StaleSeries), len(c.LogProblems), c.Exits,
				float64(c.Exits)/max(c.Duration.Seconds(), 1e-9), c.N), c.Ok()})
	}
	return t
}

// TargetTable writes Targets as Markdown.
func (r *Report) TargetTable(w io.Writer) {
	fmt.Fprintln(w, "| target | measured | met |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, t := range r.Targets() {
		met := "**no**"
		if t.Met {
			met = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", t.Name, t.Measured, met)
	}
}
