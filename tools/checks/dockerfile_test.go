package checks

import (
	"bufio"
	"bytes"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// TestDockerfile parses the Dockerfile with BuildKit's own parser and
// checks what the image promises: a multi-stage build of a static binary,
// file capabilities on a second copy only, a non-root numeric user,
// port 9947 and an exec-form ENTRYPOINT. BuildKit's lint warnings fail it.
func TestDockerfile(t *testing.T) {
	res, err := parser.Parse(bytes.NewReader(readFile(t, "Dockerfile")))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range res.Warnings {
		t.Errorf("parser warning: %s", w.Short)
	}
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, _ []parser.Range) {
		t.Errorf("lint %s: %s", rule, msg)
	}})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	builder, final := stages[0], stages[len(stages)-1]
	// The builder is an exact Go patch release (not the moving golang:1.26)
	// of go.mod's minor version.
	goMinor := ""
	for _, l := range strings.Split(string(readFile(t, "go.mod")), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			parts := strings.Split(strings.TrimSpace(v), ".")
			goMinor = strings.Join(parts[:min(2, len(parts))], ".")
		}
	}
	if !regexp.MustCompile(`^golang:` + regexp.QuoteMeta(goMinor) + `\.[0-9]+(-[a-z0-9]+)?(@sha256:[0-9a-f]{64})?$`).MatchString(builder.BaseName) {
		t.Errorf("builder stage from %q, want an exact patch release golang:%s.N of go.mod's Go", builder.BaseName, goMinor)
	}
	if !strings.HasPrefix(final.BaseName, "gcr.io/distroless/static") && !strings.HasPrefix(final.BaseName, "busybox") {
		t.Errorf("final stage from %q, want distroless static or busybox", final.BaseName)
	}
	// Every base named with a tag or a well-formed digest, never implicitly.
	for _, st := range stages {
		ref := st.BaseName
		if name, digest, ok := strings.Cut(ref, "@"); ok {
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(digest) {
				t.Errorf("stage %q: digest %q is malformed", name, digest)
			}
			continue
		}
		if !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
			t.Errorf("stage from %q names no tag", ref)
		}
	}

	var runs []string
	cgoOff := false
	for _, c := range builder.Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			runs = append(runs, strings.Join(c.CmdLine, " "))
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				if kv.Key == "CGO_ENABLED" && kv.Value == "0" {
					cgoOff = true
				}
			}
		}
	}
	script := strings.Join(runs, "\n")
	if !cgoOff && !strings.Contains(script, "CGO_ENABLED=0") {
		t.Error("the build must be static: CGO_ENABLED=0")
	}
	if !strings.Contains(script, "make build") && !strings.Contains(script, "go build") {
		t.Error("the builder must run make build or go build")
	}
	if !strings.Contains(script, "libcap2-bin") {
		t.Error("the builder must install libcap2-bin for setcap")
	}
	if !strings.Contains(script, "setcap cap_ipc_lock,cap_sys_ptrace+ep memlock_exporter-caps") {
		t.Error("setcap cap_ipc_lock,cap_sys_ptrace+ep must be set on memlock_exporter-caps")
	}
	// The BPF overlay's binary: CAP_BPF and CAP_PERFMON only.
	if !strings.Contains(script, "setcap cap_bpf,cap_perfmon+ep memlock_exporter-bpf") {
		t.Error("setcap cap_bpf,cap_perfmon+ep must be set on memlock_exporter-bpf")
	}
	if strings.Contains(script, "setcap cap_ipc_lock,cap_sys_ptrace+ep memlock_exporter ") ||
		strings.HasSuffix(script, "setcap cap_ipc_lock,cap_sys_ptrace+ep memlock_exporter") {
		t.Error("the ENTRYPOINT binary must carry no file capabilities: with the e bit, exec fails with EPERM in a container without them")
	}

	var user, entrypoint string
	var ports []string
	var copied []string
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				t.Error("ENTRYPOINT must be in exec form (no shell in distroless)")
			}
			entrypoint = strings.Join(c.CmdLine, " ")
		case *instructions.CopyCommand:
			if c.From != builder.Name {
				t.Errorf("final stage copies from %q, want the builder stage", c.From)
			}
			copied = append(copied, c.DestPath)
		case *instructions.RunCommand:
			t.Error("the final stage runs nothing: it has no shell")
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root uid (runAsNonRoot can only verify numbers)", user)
	}
	if !slices.Contains(ports, "9947") {
		t.Errorf("EXPOSE %v, want 9947", ports)
	}
	if entrypoint != "/bin/memlock_exporter" {
		t.Errorf("ENTRYPOINT %q, want /bin/memlock_exporter", entrypoint)
	}
	for _, want := range []string{"/bin/memlock_exporter", "/bin/memlock_exporter-caps", "/bin/memlock_exporter-bpf"} {
		if !slices.Contains(copied, want) {
			t.Errorf("the final stage lacks %s (copied: %v)", want, copied)
		}
	}
}

// TestDockerignore keeps the build context small and the binary out of it.
func TestDockerignore(t *testing.T) {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, ".dockerignore")))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	for _, want := range []string{".git", "tools", "/memlock_exporter"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	for _, src := range []string{"cmd", "collector", "probe", "internal", "go.mod", "go.sum", "Makefile"} {
		if slices.Contains(lines, src) {
			t.Errorf(".dockerignore excludes %s, which the build needs", src)
		}
	}
}
