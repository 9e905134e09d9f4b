package uprobe

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// goBuild is one way of building the test TLS server.
type goBuild struct {
	Toolchain string // GOTOOLCHAIN value: "local" (this machine's go1.26) or "go1.27.3"
	Arch      string
	Stripped  bool
	PIE       bool
}

func (b goBuild) String() string {
	s := b.Toolchain + "-" + b.Arch
	if b.Stripped {
		s += "-stripped"
	}
	if b.PIE {
		s += "-pie"
	}
	return s
}

// testBuilds are the binaries every Go resolution test runs on.
func testBuilds() []goBuild {
	var bs []goBuild
	for _, tc := range []string{"local", "go1.27.3"} {
		for _, arch := range []string{"amd64", "arm64"} {
			for _, s := range []bool{false, true} {
				bs = append(bs, goBuild{Toolchain: tc, Arch: arch, Stripped: s})
			}
		}
	}
	return bs
}

// buildCache builds each test binary once per test process.
type buildCache struct {
	mu   sync.Mutex
	dir  string
	done map[goBuild]string
	errs map[goBuild]string
}

var builds = &buildCache{done: map[goBuild]string{}, errs: map[goBuild]string{}}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "uprobe-test-")
	if err != nil {
		panic(err)
	}
	builds.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mustGoBinary returns the path of the test TLS server built as b. A
// toolchain that cannot be fetched skips the test (go1.27 comes from the
// module proxy); a failing build of an available toolchain fails it.
func mustGoBinary(tb testing.TB, b goBuild) string {
	tb.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		tb.Skip("go toolchain not on PATH")
	}
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if p, ok := builds.done[b]; ok {
		return p
	}
	if msg, ok := builds.errs[b]; ok {
		tb.Skip(msg)
	}
	src := filepath.Join(builds.dir, "src")
	if _, err := os.Stat(src); err != nil {
		mustWriteServerModule(tb, src)
	}
	out := filepath.Join(builds.dir, b.String())
	args := []string{"build", "-trimpath", "-o", out}
	if b.Stripped {
		args = append(args, "-ldflags=-s -w")
	}
	if b.PIE {
		args = append(args, "-buildmode=pie")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+b.Toolchain, "GOARCH="+b.Arch, "GOOS=linux", "CGO_ENABLED=0", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.String()
		if b.Toolchain != "local" && (strings.Contains(msg, "download") || strings.Contains(msg, "toolchain")) {
			builds.errs[b] = "toolchain " + b.Toolchain + " not available: " + strings.TrimSpace(msg)
			tb.Skip(builds.errs[b])
		}
		tb.Fatalf("go build %s: %v\n%s", b, err, msg)
	}
	builds.done[b] = out
	return out
}

func mustWriteServerModule(tb testing.TB, dir string) {
	tb.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "gotls", "main.go"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		tb.Fatal(err)
	}
	// go 1.26 so both toolchains build it without switching.
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module gotls\n\ngo 1.26\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
}
