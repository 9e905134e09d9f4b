// Package kubetest runs a real Kubernetes control plane for tests: etcd
// from the distribution and kube-apiserver built from its module (see
// test/k8s/tools), on loopback, with certificates made per run. It creates
// the objects a node's pods come from (no controller-manager, scheduler or
// kubelet runs: the tests create ReplicaSets, Jobs and pods themselves and
// patch pod status as a kubelet would) and places real processes into a
// cgroup v2 hierarchy laid out as the kubelet and the container runtimes
// lay it out. Only tests import it.
package kubetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// ToolsDirEnv overrides where kube-apiserver and helm are found.
const ToolsDirEnv = "AUTHPROBE_K8S_TOOLS"

// CacheEnv overrides the cache root (default ~/.cache/authprobe).
const CacheEnv = "AUTHPROBE_CACHE"

// ToolsDir is where `make k8s-tools` puts kube-apiserver and helm: a
// directory of the cache named by the tools module's go.mod and go.sum,
// so a version change builds anew and an unchanged module never does.
func ToolsDir() (string, error) {
	if d := os.Getenv(ToolsDirEnv); d != "" {
		return d, nil
	}
	key, err := ToolsKey(toolsModule())
	if err != nil {
		return "", err
	}
	root := os.Getenv(CacheEnv)
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cache dir: %w", err)
		}
		root = filepath.Join(home, ".cache", "authprobe")
	}
	return filepath.Join(root, "k8s-tools", key), nil
}

// ToolsKey hashes a tools module's go.mod and go.sum (the Makefile's
// `sha256sum go.mod go.sum` gives the same: see k8s-tools-dir).
func ToolsKey(dir string) (string, error) {
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", fmt.Errorf("tools module: %w", err)
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Tool returns the path of a built tool ("kube-apiserver", "helm") or
// skips tb, saying how to build it.
func Tool(tb testing.TB, name string) string {
	tb.Helper()
	dir, err := ToolsDir()
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("%s not built (%v): run `make k8s-tools` (about 5 minutes and 3 GB of RAM cold)", name, err)
	}
	return p
}

// Etcd returns the etcd binary or skips.
func Etcd(tb testing.TB) string {
	tb.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		tb.Skip("etcd not installed (apt-get install etcd-server)")
	}
	return p
}

// toolsModule is test/k8s/tools, found from this file.
func toolsModule() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "tools")
}

// RepoRoot is the main module's root.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}
