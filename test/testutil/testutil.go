// Package testutil holds the small helpers the end-to-end test packages
// (test/e2e, test/pipeline) share: process output capture and tokens of
// the shape the test servers issue. Only tests import it.
package testutil

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// SyncBuffer collects a process's output while a test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail keeps test logs readable when a process wrote a lot: the last n
// bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// ServerJWTKey is the HS256 key of the tokens test/servers issue (see
// test/servers/README.md); the servers do not verify signatures.
const ServerJWTKey = "authprobe-test-key"

// MakeJWT makes a token of the shape the test servers issue for sub with
// one role, valid for an hour.
func MakeJWT(sub, role string) string {
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT"})
	now := time.Now().Unix()
	payload, _ := json.Marshal(map[string]any{"sub": sub, "role": role, "roles": []string{role}, "iat": now, "exp": now + 3600})
	input := enc.EncodeToString(header) + "." + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, []byte(ServerJWTKey))
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// MustRoot skips tb unless it runs as root, as loading eBPF programs needs.
func MustRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: the agent loads eBPF programs")
	}
}

// RepoRoot is the module root, found from this file's location so it holds
// for every test package.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	root := moduleDir()
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		tb.Fatalf("repo root %s: %v", root, err)
	}
	return root
}

// GoBuild builds the module's package pkg ("./cmd/authprobe") into out.
// With AUTHPROBE_PREBUILT_DIR set (the kernel-matrix guests of
// test/kernels, which have no Go toolchain to spare), out links to the
// binary named after pkg's last element in that directory instead.
func GoBuild(out, pkg string) error {
	if dir := os.Getenv("AUTHPROBE_PREBUILT_DIR"); dir != "" {
		bin := filepath.Join(dir, filepath.Base(strings.TrimSuffix(pkg, "/")))
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("prebuilt %s: %w", pkg, err)
		}
		if err := os.Symlink(bin, out); err != nil {
			return fmt.Errorf("prebuilt %s: %w", pkg, err)
		}
		return nil
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = moduleDir()
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
	}
	return nil
}

// AgentArgs are extra `authprobe run` flags for every agent a test
// starts, from AUTHPROBE_TEST_AGENT_ARGS (space-separated): the kernel
// matrix forces a capture backend this way.
func AgentArgs() []string {
	return strings.Fields(os.Getenv("AUTHPROBE_TEST_AGENT_ARGS"))
}

// moduleDir is two levels above this file: test/testutil -> the module.
func moduleDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Patience stretches a bound on waiting (an agent loading its eBPF
// programs, a process stopping) in the kernel matrix's guests
// (AUTHPROBE_GUEST), whose emulated CPU is tens of times slower than the
// host's and verifies programs as slowly. A bound, never an assertion
// about speed.
func Patience(d time.Duration) time.Duration {
	if os.Getenv("AUTHPROBE_GUEST") != "" {
		return 10 * d
	}
	return d
}
