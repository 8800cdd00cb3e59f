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

// Table writes the comparison table as Markdown (readable as plain text).
func (r *Report) Table(w io.Writer) {
	fmt.Fprintln(w, "| processes | floor CPU/pass | exporter CPU/scrape (gzip) | ratio | exporter CPU/scrape (no gzip) | ratio | CPU per process (exporter) | scrape wall p50 / max | allocated/scrape | series | exporter peak RSS |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, x := range r.Results {
		idRatio := 0.0
		if x.Floor.CPU > 0 {
			idRatio = float64(x.Identity.CPU) / float64(x.Floor.CPU)
		}
		fmt.Fprintf(w, "| %d | %s | %s | **%.2f** | %s | %.2f | %s | %s / %s | %s | %d | %s |\n",
			x.Processes, ms(x.Floor.CPU), ms(x.Gzip.CPU), x.Ratio(), ms(x.Identity.CPU), idRatio,
			us(x.Gzip.CPU/time.Duration(max(1, x.Processes))), ms(x.Gzip.WallP50), ms(x.Gzip.WallMax),
			kib(x.Gzip.AllocPerScrape), x.Gzip.Series, mib(x.HWM))
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
			"%d status files, limits and cgroup of %d processes, smaps_rollup of %d.\n",
			x.FloorPasses, ms(x.Floor.CPU), ms(x.Floor.User), ms(x.Floor.Sys), ms(x.Floor.StatusCPU),
			us(x.Floor.StatusCPU/time.Duration(max(1, x.Floor.Pids))), ms(x.Floor.Wall), x.Floor.Pids, x.Floor.Reported, x.Floor.Lockers)
		for _, s := range []struct {
			name string
			st   ScrapeStats
		}{{"gzip", x.Gzip}, {"no gzip", x.Identity}} {
			fmt.Fprintf(w, "  Exporter, %s, %d scrapes: %s CPU per scrape (user %s, sys %s), wall p50 %s max %s, "+
				"%s allocated per scrape, %d series, %d bytes on the wire, %.0f processes scanned, %.0f reported.\n",
				s.name, s.st.Scrapes, ms(s.st.CPU), ms(s.st.User), ms(s.st.Sys), ms(s.st.WallP50), ms(s.st.WallMax),
				kib(s.st.AllocPerScrape), s.st.Series, s.st.WireBytes, s.st.Scanned, s.st.Reported)
		}
		fmt.Fprintf(w, "  Exporter resident set: peak (VmHWM) %s, at the end %s.\n", mib(x.HWM), mib(x.RSS))
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
