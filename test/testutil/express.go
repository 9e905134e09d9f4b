package testutil

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
	"time"
)

// ExpressModulesEnv names a node_modules prepared elsewhere (the kernel
// matrix installs it on the host before booting a guest, which has no
// network): ExpressModules returns it as is and never runs npm.
const ExpressModulesEnv = "AUTHPROBE_EXPRESS_MODULES"

// npmInstallTimeout bounds one `npm ci` of the Express server.
const npmInstallTimeout = 5 * time.Minute

// ErrRegistryUnreachable: npm could not reach its registry (or is not
// installed); tests of the Express server skip on it.
var ErrRegistryUnreachable = errors.New("npm registry unreachable")

// npmNetworkError matches the error codes npm prints when it cannot reach
// the registry at all (as opposed to a package or lockfile problem).
var npmNetworkError = regexp.MustCompile(`\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH)\b`)

// ExpressModules returns a node_modules holding exactly what
// test/servers/express/package-lock.json under root pins. It is installed
// with `npm ci` into the user cache, keyed by the lockfile's hash, so
// later runs reuse it; the server's folder is never written. With
// $AUTHPROBE_EXPRESS_MODULES set it is that directory, which must exist.
func ExpressModules(root string) (string, error) {
	if dir := os.Getenv(ExpressModulesEnv); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "express")); err != nil {
			return "", fmt.Errorf("$%s: %w", ExpressModulesEnv, err)
		}
		return dir, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("%w: npm not installed", ErrRegistryUnreachable)
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
		return "", fmt.Errorf("%w: npm ci did not finish within %v:\n%s", ErrRegistryUnreachable, npmInstallTimeout, Tail(string(out), 2000))
	}
	if err != nil {
		if npmNetworkError.Match(out) {
			return "", fmt.Errorf("%w: npm ci: %v:\n%s", ErrRegistryUnreachable, err, Tail(string(out), 2000))
		}
		return "", fmt.Errorf("npm ci: %w:\n%s", err, Tail(string(out), 4000))
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
