package bench

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Exporter is a running memlock_exporter binary listening on loopback.
type Exporter struct {
	cmd    *exec.Cmd
	URL    string
	Stderr string // path of its log
	client *http.Client
	exited chan error
}

// StartExporter starts bin on a free loopback port and waits until it
// answers /-/ready.
func StartExporter(bin, dir string, args ...string) (*Exporter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(dir, fmt.Sprintf("exporter-%d.log", time.Now().UnixNano()))
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args = append([]string{"--web.listen-address=" + addr, "--log.level=info"}, args...)
	e := &Exporter{URL: "http://" + addr, Stderr: logPath, exited: make(chan error, 1),
		client: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableCompression: true}}}
	e.cmd = exec.Command(bin, args...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { e.exited <- e.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := e.client.Get(e.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return e, nil
			}
		}
		select {
		case err := <-e.exited:
			return nil, fmt.Errorf("exporter exited at start: %v; log %s", err, e.Stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.Stop()
			return nil, fmt.Errorf("exporter not ready after 15s; log %s", e.Stderr)
		}
	}
}

// Pid is the exporter's pid.
func (e *Exporter) Pid() int { return e.cmd.Process.Pid }

// Stop sends SIGTERM and waits; after 5 s it kills.
func (e *Exporter) Stop() {
	if e.cmd.ProcessState != nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
	case <-time.After(5 * time.Second):
		e.cmd.Process.Kill()
		<-e.exited
	}
}

// Exposition is one parsed /metrics answer.
type Exposition struct {
	Wall       time.Duration
	Bytes      int // on the wire
	Series     int
	Success    map[string]float64 // memlock_scrape_collector_success by collector
	AllocTotal float64            // go_memstats_alloc_bytes_total
	Scanned    float64            // memlock_processes_scanned
	Reported   float64            // memlock_processes_reported
	// ChildPids are the pids of the harness's children that have a
	// memlock_process_locked_bytes series.
	ChildPids []int
	Failures  []string // memlock_process_read_failures lines
	// Lockers counts memlock_process_locked_bytes series above 0, Resident
	// the memlock_process_locked_resident_bytes series: smaps_rollup was
	// read for exactly the processes with a resident series.
	Lockers, Resident int
}

// Failed returns why the scrape is not a success, or "".
func (s *Exposition) Failed() string {
	if len(s.Success) == 0 {
		return "no memlock_scrape_collector_success series"
	}
	for c, v := range s.Success {
		if v != 1 {
			return fmt.Sprintf("collector %s reported memlock_scrape_collector_success %g", c, v)
		}
	}
	return ""
}

// Scrape fetches /metrics once, asking for gzip as Prometheus does or not.
func (e *Exporter) Scrape(ctx context.Context, gz bool) (*Exposition, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	start := time.Now()
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	wall := time.Since(start)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, raw)
	}
	body := raw
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		if body, err = io.ReadAll(zr); err != nil {
			return nil, err
		}
	} else if gz {
		return nil, fmt.Errorf("asked for gzip, got Content-Encoding %q", resp.Header.Get("Content-Encoding"))
	}
	s := &Exposition{Wall: wall, Bytes: len(raw), Success: map[string]float64{}}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		s.Series++
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			return nil, fmt.Errorf("bad exposition line %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q", line)
		}
		name, labels := line[:sp], ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name, labels = name[:i], name[i:]
		}
		switch name {
		case "memlock_scrape_collector_success":
			s.Success[label(labels, "collector")] = v
		case "go_memstats_alloc_bytes_total":
			s.AllocTotal = v
		case "memlock_processes_scanned":
			s.Scanned = v
		case "memlock_processes_reported":
			s.Reported = v
		case "memlock_process_read_failures":
			s.Failures = append(s.Failures, line)
		case "memlock_process_locked_resident_bytes":
			s.Resident++
		case "memlock_process_locked_bytes":
			if v > 0 {
				s.Lockers++
			}
			if label(labels, "comm") == ChildComm {
				pid, _ := strconv.Atoi(label(labels, "pid"))
				s.ChildPids = append(s.ChildPids, pid)
			}
		}
	}
	return s, sc.Err()
}

// label returns the value of name in a {a="b",...} label set (values
// without escapes, which is all this harness looks for).
func label(labels, name string) string {
	i := strings.Index(labels, name+`="`)
	if i < 0 {
		return ""
	}
	rest := labels[i+len(name)+2:]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}

// ProcCPU is a process's CPU time so far, all threads, from /proc/<pid>/stat
// (user and system, in clock ticks) and from the sum of its threads'
// schedstat (nanoseconds, precise).
type ProcCPU struct {
	User, Sys time.Duration
	Sched     time.Duration
}

func readProcCPU(pid int) (ProcCPU, error) {
	var c ProcCPU
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, err
	}
	// Fields after the comm's closing parenthesis; utime and stime are
	// fields 14 and 15 of the whole line.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return c, fmt.Errorf("short stat %q", b)
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	c.User, c.Sys = time.Duration(ut)*tick, time.Duration(st)*tick
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return c, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			c.Sched += time.Duration(ns)
		}
	}
	return c, nil
}

// statusKB returns a "<key>: N kB" field of /proc/<pid>/status in bytes.
func statusKB(pid int, key string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key+":") {
			f := strings.Fields(line[len(key)+1:])
			if len(f) > 0 {
				v, _ := strconv.ParseUint(f[0], 10, 64)
				return v << 10
			}
		}
	}
	return 0
}
