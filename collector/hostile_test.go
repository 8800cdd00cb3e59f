package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/memlock-exporter/memlock_exporter/internal/linux"
)

// Hostile procfs: the fixture tree with files a broken, exotic or hostile
// host could show in their place. Whatever is there, a scrape returns
// within its deadline, the collector that reads the file reports success 0
// (or, for one process's file, counts a read failure and reports the other
// processes), and memory stays bounded.

var hostileCollectors = []string{"system", "process", "user", "sysvipc"}

// hostileConfig is a private copy of both fixture trees.
func hostileConfig(t *testing.T) Config {
	t.Helper()
	cfg := fixtureConfig()
	cfg.ProcPath = copyTree(t, cfg.ProcPath)
	cfg.SysPath = copyTree(t, cfg.SysPath)
	return cfg
}

// hostileScrapeTimeout bounds every scrape here: far above what a fixture
// scrape takes (milliseconds), so only a hang reaches it.
const hostileScrapeTimeout = 10 * time.Second

// scrapeWithin runs one scrape as the HTTP handler does (Scrape with a
// deadline, a fresh registry) and fails the test if it does not return.
func scrapeWithin(t *testing.T, e *Exporter) string {
	t.Helper()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := scrapeOnce(e, hostileScrapeTimeout/2)
		done <- result{out, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("gather: %v", r.err)
		}
		return r.out
	case <-time.After(hostileScrapeTimeout):
		t.Fatalf("scrape did not return within %s: a read blocks", hostileScrapeTimeout)
		return ""
	}
}

// scrapeOnce renders one scrape in the text format without the durations.
func scrapeOnce(e *Exporter, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := e.Scrape(ctx, nil)
	if err != nil {
		return "", err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return "", err
	}
	b, err := renderText(reg, func(string) bool { return true })
	return string(b), err
}

func success(out, collector string) string {
	prefix := `memlock_scrape_collector_success{collector="` + collector + `"} `
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	return "absent"
}

// A mangling replaces the file at path with something hostile.
type mangling struct {
	name string
	// pidReason is the read failure a process's file mangled so counts:
	// "malformed" (which also fails the process collector) for content
	// that is not the kernel's, "error" for what cannot be opened or read
	// as a file (ELOOP for a link, EISDIR), which does not.
	pidReason string
	apply     func(t *testing.T, path string)
}

func replaceWith(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// enormous repeats b past twice linux.MaxFileSize: valid lines, too many.
func enormous(b []byte, size int) []byte {
	out := make([]byte, 0, size+len(b))
	for len(out) < size {
		out = append(out, b...)
	}
	return out
}

// unblockFIFO releases any open(2) still waiting on the FIFO at path, so
// a failing test leaves no goroutine blocked behind it.
func unblockFIFO(path string) {
	if fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK, 0); err == nil {
		unix.Close(fd)
	}
}

var manglings = []mangling{
	{"truncated", "malformed", func(t *testing.T, p string) {
		b := readFixture(t, p)
		// Cut inside a line past the middle, as a reader racing a writer sees.
		cut := len(b) / 2
		if i := bytes.IndexByte(b[cut:], '\n'); i > 3 {
			cut += i - 3
		}
		replaceWith(t, p, b[:cut])
	}},
	{"empty", "malformed", func(t *testing.T, p string) { replaceWith(t, p, nil) }},
	{"binary", "malformed", func(t *testing.T, p string) {
		r := rand.New(rand.NewPCG(6, 6))
		b := make([]byte, 4096)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		replaceWith(t, p, b)
	}},
	{"enormous", "malformed", func(t *testing.T, p string) { replaceWith(t, p, enormous(readFixture(t, p), 2*linux.MaxFileSize+1)) }},
	{"directory", "error", func(t *testing.T, p string) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}},
	{"symlink-dev-zero", "error", func(t *testing.T, p string) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/dev/zero", p); err != nil {
			t.Fatal(err)
		}
	}},
	{"fifo", "malformed", func(t *testing.T, p string) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(p, 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		t.Cleanup(func() { unblockFIFO(p) })
	}},
	{"char-device-zero", "malformed", func(t *testing.T, p string) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		// /dev/zero itself, not a link to it: endless, and O_NOFOLLOW
		// does not stop it.
		if err := unix.Mknod(p, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
			t.Skipf("mknod /dev/zero (needs CAP_MKNOD and a filesystem that allows devices): %v", err)
		}
	}},
}

// The files mangled, and which collector reads each. A system-wide file
// fails its collector; one process's file fails that process only.
var hostileFiles = []struct {
	rel       string // below ProcPath, or SysPath when sys is set
	sys       bool
	collector string
	pidFile   string // "status", "limits", "smaps_rollup" of pid 100
}{
	{rel: "meminfo", collector: "system"},
	{rel: "vmstat", collector: "system"},
	{rel: "devices/system/node/node0/meminfo", sys: true, collector: "system"},
	{rel: "sysvipc/shm", collector: "sysvipc"},
	{rel: "100/status", collector: "process", pidFile: "status"},
	{rel: "100/limits", collector: "process", pidFile: "limits"},
	{rel: "100/smaps_rollup", collector: "process", pidFile: "smaps_rollup"},
}

// java (pid 100, 1 GiB locked) is the process whose files are mangled;
// fio (pid 200) must be reported whatever happens to java.

// hasSeries reports whether out has a series of metric for pid.
func hasSeries(out, metric, pid string) bool {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, metric+"{") && strings.Contains(line, `pid="`+pid+`"`) {
			return true
		}
	}
	return false
}

func TestHostileProcfs(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: scrapes every hostile procfs layout")
	}
	for _, f := range hostileFiles {
		for _, m := range manglings {
			t.Run(strings.ReplaceAll(f.rel, "/", "_")+"/"+m.name, func(t *testing.T) {
				cfg := hostileConfig(t)
				root := cfg.ProcPath
				if f.sys {
					root = cfg.SysPath
				}
				m.apply(t, filepath.Join(root, f.rel))
				e := newExporter(t, cfg, hostileCollectors...)
				out := scrapeWithin(t, e)
				checkHostile(t, out, f.collector, f.pidFile, m)
			})
		}
	}
}

func checkHostile(t *testing.T, out, collector, pidFile string, m mangling) {
	t.Helper()
	for _, c := range hostileCollectors {
		want := "1"
		switch {
		case c == collector && pidFile == "":
			want = "0"
		case c == "process" && pidFile != "" && m.pidReason == "malformed":
			want = "0"
		case c == "user" && pidFile == "status" && m.pidReason == "malformed":
			want = "0" // java's 1 GiB is missing from uid 1000's sums
		}
		if got := success(out, c); got != want {
			t.Errorf("collector %s success %s, want %s\n%s", c, got, want, out)
		}
	}
	if pidFile == "" {
		return
	}
	if !hasSeries(out, "memlock_process_locked_bytes", "200") {
		t.Errorf("other processes not reported when java's %s is %s:\n%s", pidFile, m.name, out)
	}
	if want := `memlock_process_read_failures{file="` + pidFile + `",reason="` + m.pidReason + `"} 1`; !strings.Contains(out, want) {
		t.Errorf("java's %s (%s) not counted as %s:\n%s", pidFile, m.name, want, out)
	}
	reported := hasSeries(out, "memlock_process_locked_bytes", "100")
	switch pidFile {
	case "status":
		if reported {
			t.Errorf("java reported from a %s status:\n%s", m.name, out)
		}
	case "limits":
		if !reported || hasSeries(out, "memlock_process_limit_soft_bytes", "100") {
			t.Errorf("java must be reported without limits when limits is %s:\n%s", m.name, out)
		}
	case "smaps_rollup":
		if !reported || hasSeries(out, "memlock_process_locked_resident_bytes", "100") {
			t.Errorf("java must be reported without resident bytes when smaps_rollup is %s:\n%s", m.name, out)
		}
	}
}

// unreadableEnv hands the child of TestHostileUnreadable its fixture tree.
const unreadableEnv = "MEMLOCK_HOSTILE_UNREADABLE"

// TestHostileUnreadable makes files mode 000. Root reads them anyway, so as
// root the test re-runs itself as nobody (65534) over a tree it prepares.
func TestHostileUnreadable(t *testing.T) {
	if env := os.Getenv(unreadableEnv); env != "" {
		procPath, sysPath, _ := strings.Cut(env, ":")
		cfg := fixtureConfig()
		cfg.ProcPath, cfg.SysPath = procPath, sysPath
		checkUnreadable(t, scrapeWithin(t, newExporter(t, cfg, hostileCollectors...)))
		return
	}
	cfg := hostileConfig(t)
	for _, rel := range []string{"meminfo", "sysvipc/shm", "100/smaps_rollup", "200/status"} {
		if err := os.Chmod(filepath.Join(cfg.ProcPath, rel), 0); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() != 0 {
		checkUnreadable(t, scrapeWithin(t, newExporter(t, cfg, hostileCollectors...)))
		return
	}
	// The trees and this test binary must be reachable by nobody.
	for _, dir := range []string{cfg.ProcPath, cfg.SysPath, filepath.Dir(cfg.ProcPath), filepath.Dir(cfg.SysPath)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	binDir, err := os.MkdirTemp("", "memlock-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	os.Chmod(binDir, 0o755)
	self := readFixture(t, os.Args[0])
	bin := filepath.Join(binDir, "collector.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHostileUnreadable$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), unreadableEnv+"="+cfg.ProcPath+":"+cfg.SysPath)
	cmd.Dir = binDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestHostileUnreadable") {
		t.Fatalf("the unprivileged run did not pass:\n%s", out)
	}
}

func checkUnreadable(t *testing.T, out string) {
	t.Helper()
	for c, want := range map[string]string{"system": "0", "sysvipc": "0", "process": "1", "user": "1"} {
		if got := success(out, c); got != want {
			t.Errorf("collector %s success %s, want %s\n%s", c, got, want, out)
		}
	}
	for _, want := range []string{
		`memlock_process_read_failures{file="status",reason="permission"} 1`,
		`memlock_process_read_failures{file="smaps_rollup",reason="permission"} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s:\n%s", want, out)
		}
	}
	if !hasSeries(out, "memlock_process_locked_bytes", "100") || hasSeries(out, "memlock_process_locked_resident_bytes", "100") {
		t.Errorf("java must be reported without resident bytes:\n%s", out)
	}
	if hasSeries(out, "memlock_process_locked_bytes", "200") {
		t.Errorf("fio reported from an unreadable status:\n%s", out)
	}
}

// TestHostileReplacedMidScrape swaps files between valid, truncated,
// binary, enormous, FIFO and symlink while scrapes run: every scrape
// returns, every collector reports a success of 0 or 1, the untouched
// process is always reported and the user collector always succeeds.
func TestHostileReplacedMidScrape(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: races file replacement against scrapes")
	}
	cfg := hostileConfig(t)
	targets := []string{"meminfo", "vmstat", "sysvipc/shm", "100/status", "100/limits", "100/smaps_rollup"}
	valid := map[string][]byte{}
	for _, rel := range targets {
		valid[rel] = readFixture(t, filepath.Join(cfg.ProcPath, rel))
	}
	e := newExporter(t, cfg, hostileCollectors...)

	stop := make(chan struct{})
	var swaps atomic.Int64
	var swapper sync.WaitGroup
	swapper.Add(1)
	go func() {
		defer swapper.Done()
		r := rand.New(rand.NewPCG(1, 2))
		big := map[string][]byte{}
		for rel, b := range valid {
			big[rel] = enormous(b, linux.MaxFileSize+1)
		}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			rel := targets[r.IntN(len(targets))]
			p := filepath.Join(cfg.ProcPath, rel)
			tmp := p + ".tmp"
			os.RemoveAll(tmp)
			var err error
			kind := r.IntN(7)
			if st, serr := os.Lstat(p); kind == 0 && (serr != nil || !st.Mode().IsRegular()) {
				kind = 6 // writing into a FIFO would block the swapper itself
			}
			switch kind {
			case 0: // in place, so a reader may see it half written
				err = os.WriteFile(p, valid[rel], 0o644)
			case 1:
				err = os.WriteFile(tmp, valid[rel][:r.IntN(len(valid[rel]))], 0o644)
			case 2:
				b := make([]byte, 512)
				for j := range b {
					b[j] = byte(r.Uint32())
				}
				err = os.WriteFile(tmp, b, 0o644)
			case 3:
				err = os.WriteFile(tmp, big[rel], 0o644)
			case 4:
				err = unix.Mkfifo(tmp, 0o644)
			case 5:
				err = os.Symlink("/dev/zero", tmp)
			case 6:
				err = os.WriteFile(tmp, valid[rel], 0o644)
			}
			if err == nil {
				if _, serr := os.Lstat(tmp); serr == nil {
					unblockFIFO(p)
					os.RemoveAll(p)
					err = os.Rename(tmp, p)
				}
			}
			if err != nil {
				t.Errorf("swap %s: %v", rel, err)
				return
			}
			swaps.Add(1)
			time.Sleep(time.Duration(r.IntN(500)) * time.Microsecond)
		}
	}()

	// Scrape at least perScraper times each, and on until minSwaps swaps.
	const scrapers, perScraper, minSwaps = 4, 40, 300
	giveUp := make(chan struct{})
	var scrapes atomic.Int64
	var failedScrapes atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1<<16)
	for range scrapers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perScraper || swaps.Load() < minSwaps; i++ {
				select {
				case <-giveUp:
					return
				default:
				}
				out, err := scrapeOnce(e, hostileScrapeTimeout/2)
				scrapes.Add(1)
				if err != nil {
					errs <- err
					continue
				}
				for _, c := range hostileCollectors {
					switch success(out, c) {
					case "0":
						failedScrapes.Add(1)
					case "1":
					default:
						errs <- fmt.Errorf("collector %s has no success:\n%s", c, out)
					}
				}
				// The user sums fail only with java's status left out
				// as malformed, and then the process collector says so too.
				if success(out, "user") != "1" && !strings.Contains(out, `memlock_process_read_failures{file="status",reason="malformed"} 1`) {
					errs <- fmt.Errorf("the user collector failed with no status left out:\n%s", out)
				}
				if !hasSeries(out, "memlock_process_locked_bytes", "200") {
					errs <- fmt.Errorf("the untouched process 200 is missing:\n%s", out)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		close(giveUp)
		t.Fatalf("scrapes did not finish within 60 s while files were swapped (%d scrapes, %d swaps): a read blocks", scrapes.Load(), swaps.Load())
	}
	close(stop)
	swapper.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d scrapes over %d swaps; %d collector runs failed on what they read", scrapes.Load(), swaps.Load(), failedScrapes.Load())
}

// TestHostileMemoryBounded scrapes a tree whose every file is 32 MiB: what
// one scrape allocates, and the heap after it, must not grow with the
// files (os.ReadFile read them whole; /dev/zero without end).
func TestHostileMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: scrapes huge files to bound memory")
	}
	cfg := hostileConfig(t)
	const fileSize = 32 << 20
	for _, p := range []string{
		filepath.Join(cfg.ProcPath, "meminfo"), filepath.Join(cfg.ProcPath, "vmstat"),
		filepath.Join(cfg.ProcPath, "sysvipc/shm"), filepath.Join(cfg.SysPath, "devices/system/node/node0/meminfo"),
		filepath.Join(cfg.ProcPath, "100/status"), filepath.Join(cfg.ProcPath, "100/limits"),
		filepath.Join(cfg.ProcPath, "200/smaps_rollup"), filepath.Join(cfg.ProcPath, "300/status"),
	} {
		replaceWith(t, p, enormous(readFixture(t, p), fileSize))
	}
	e := newExporter(t, cfg, hostileCollectors...)
	for range 5 { // warm up the pooled readers
		scrapeWithin(t, e)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const scrapes = 30
	for range scrapes {
		out := scrapeWithin(t, e)
		if success(out, "system") != "0" || success(out, "sysvipc") != "0" {
			t.Fatalf("enormous system files accepted:\n%s", out)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perScrape := (after.TotalAlloc - before.TotalAlloc) / scrapes
	t.Logf("files of %d MiB: %.1f MiB allocated per scrape; heap in use %.1f MiB before, %.1f MiB after %d scrapes",
		fileSize>>20, float64(perScrape)/(1<<20), float64(before.HeapInuse)/(1<<20), float64(after.HeapInuse)/(1<<20), scrapes)
	// A scrape reads at most linux.MaxFileSize (1 MiB) of a process's file
	// and refuses a system file by its size: 8 files of 32 MiB read whole
	// would be 256 MiB per scrape, and /dev/zero has no end.
	if perScrape > 16<<20 {
		t.Errorf("%d bytes allocated per scrape over %d MiB files: reads are not bounded", perScrape, fileSize>>20)
	}
	if after.HeapInuse > before.HeapInuse+32<<20 {
		t.Errorf("heap grew from %d to %d bytes over %d scrapes", before.HeapInuse, after.HeapInuse, scrapes)
	}
}

// FuzzSystemMeminfo runs the whole system collector, file reading included,
// over fuzzed /proc/meminfo contents. It never panics (the collector
// framework would recover, but must not have to); a meminfo it refuses
// fails the collector with ErrMalformed or ErrTooLarge and sends none of
// the three meminfo series, and one it accepts sends each of them once:
// never a partial set from a half-read file.
func FuzzSystemMeminfo(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "proc", "meminfo"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(append(append([]byte{}, good...), "\nMlocked: 1 kB\n"...))
	f.Add([]byte("MemTotal: 1 kB\n\nMlocked: 0 kB\nUnevictable: 0 kB\n"))
	f.Add([]byte("MemTotal:\nMlocked: 0x10 kB\nUnevictable: 1 MB\n"))
	cfg := fixtureConfig()
	cfg.ProcPath = f.TempDir()
	for _, name := range []string{"vmstat"} {
		b, err := os.ReadFile(filepath.Join("testdata", "proc", name))
		if err != nil {
			f.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg.ProcPath, name), b, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	en := &env{cfg: cfg}
	c, err := newSystemCollector(en)
	if err != nil {
		f.Fatal(err)
	}
	sc := c.(*systemCollector)
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(filepath.Join(cfg.ProcPath, "meminfo"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		ch := make(chan prometheus.Metric, 1024)
		err := c.Update(context.Background(), &Scrape{}, ch)
		close(ch)
		meminfoSeries := map[*prometheus.Desc]int{}
		for m := range ch {
			switch d := m.Desc(); d {
			case nil:
				t.Fatal("metric without a descriptor")
			case sc.memTotal, sc.mlocked, sc.unevictable:
				meminfoSeries[d]++
			}
		}
		if err != nil {
			if !errors.Is(err, linux.ErrMalformed) && !errors.Is(err, linux.ErrTooLarge) {
				t.Fatalf("refused with %v, want ErrMalformed or ErrTooLarge", err)
			}
			if len(meminfoSeries) > 0 {
				t.Fatalf("meminfo series sent with the error %v", err)
			}
			return
		}
		for _, d := range []*prometheus.Desc{sc.memTotal, sc.mlocked, sc.unevictable} {
			if meminfoSeries[d] != 1 {
				t.Fatalf("%v sent %d times", d, meminfoSeries[d])
			}
		}
	})
}
