package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/testutil"
)

// npmInstallTimeout bounds one `npm ci` of the Express server.
const npmInstallTimeout = 5 * time.Minute

// expressModules is the Express server's node_modules, installed at most
// once per test binary.
var expressModules build

// errRegistryUnreachable: npm could not reach its registry; the Express
// server's tests skip.
var errRegistryUnreachable = errors.New("npm registry unreachable")

// npmNetworkError matches the error codes npm prints when it cannot reach
// the registry at all (as opposed to a package or lockfile problem).
var npmNetworkError = regexp.MustCompile(`\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)\b`)

// mustExpressModules returns a node_modules holding exactly what
// test/servers/express/package-lock.json pins. It is installed with
// `npm ci` into the user cache, keyed by the lockfile's hash, so later runs
// reuse it; the server's folder is never written. It skips when npm or
// its registry is not there.
func mustExpressModules(tb testing.TB) string {
	tb.Helper()
	expressModules.once.Do(func() {
		expressModules.path, expressModules.err = installExpress(testutil.RepoRoot(tb))
	})
	if errors.Is(expressModules.err, errRegistryUnreachable) {
		tb.Skipf("express server: %v", expressModules.err)
	}
	if expressModules.err != nil {
		tb.Fatalf("express server: %v", expressModules.err)
	}
	return expressModules.path
}

func installExpress(root string) (string, error) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("%w: npm not installed", errRegistryUnreachable)
	}
	src := filepath.Join(root, "test", "servers", "express")
	pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
	if err != nil {
		return "", fmt.Errorf("read package.json: %w", err)
	}
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		return "", fmt.Errorf("read package-lock.json: %w", err)
	}
	sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "authprobe-e2e", "express-"+hex.EncodeToString(sum[:8]))
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "installed")); err == nil {
		return modules, nil
	}

	// Install next to the cache entry and rename it into place, so a run
	// that dies half way leaves nothing a later run would take as done.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("make npm cache dir: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		return "", fmt.Errorf("make npm install dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	for name, data := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			return "", fmt.Errorf("copy %s: %w", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return "", fmt.Errorf("%w: npm ci did not finish within %v:\n%s", errRegistryUnreachable, npmInstallTimeout, testutil.Tail(string(out), 2000))
	}
	if err != nil {
		if npmNetworkError.Match(out) {
			return "", fmt.Errorf("%w: npm ci: %v:\n%s", errRegistryUnreachable, err, testutil.Tail(string(out), 2000))
		}
		return "", fmt.Errorf("npm ci: %w:\n%s", err, testutil.Tail(string(out), 4000))
	}
	if err := os.WriteFile(filepath.Join(tmp, "installed"), nil, 0o644); err != nil {
		return "", fmt.Errorf("mark npm install done: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another test binary installed it meanwhile: use that one.
		if _, serr := os.Stat(filepath.Join(dir, "installed")); serr == nil {
			return modules, nil
		}
		return "", fmt.Errorf("move npm install into the cache: %w", err)
	}
	return modules, nil
}
