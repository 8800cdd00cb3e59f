package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The hardening tests run in parallel, so they cannot use buildExporter,
// which sets the package's lockerBin and removes its directory when its
// test ends. They share one build instead, kept while any of them runs.
var shared struct {
	sync.Mutex
	users       int
	dir         string
	bin, locker string
}

// sharedBuild returns the built exporter and a world-executable copy of
// this test binary (the locker), both in a directory any user can read.
func sharedBuild(t *testing.T) (bin, locker string) {
	t.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.users == 0 {
		dir, err := os.MkdirTemp("", "memlock-hardening-")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(dir, 0o755)
		bin := filepath.Join(dir, "memlock_exporter")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("go build: %v\n%s", err, out)
		}
		self, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		locker := filepath.Join(dir, "locker")
		if err := os.WriteFile(locker, self, 0o755); err != nil {
			t.Fatal(err)
		}
		shared.dir, shared.bin, shared.locker = dir, bin, locker
	}
	shared.users++
	t.Cleanup(func() {
		shared.Lock()
		defer shared.Unlock()
		if shared.users--; shared.users == 0 {
			os.RemoveAll(shared.dir)
		}
	})
	return shared.bin, shared.locker
}
