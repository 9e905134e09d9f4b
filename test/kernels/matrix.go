package kernels

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Kernel is one entry of the matrix: a Debian kernel package and what
// runs on it.
type Kernel struct {
	Name string // 6.1, 6.12, arm64-6.12: what AUTHPROBE_KERNELS selects
	Arch string // amd64, arm64
	// Meta is the metapackage whose dependency is the image package:
	// the newest kernel of that series on the mirror.
	Meta string
	// Root is guest.RootHost (the host's / over 9p: host-built binaries,
	// python3, node, java and curl run as they are) or guest.RootInitramfs
	// (only the binaries built for the guest's arch).
	Root   string
	Suites []Suite
	// CPUs and MemoryMB of the guest.
	CPUs, MemoryMB int
	// SingleThreadTCG runs the guest's vCPUs on one host thread
	// (-accel tcg,thread=single): see BootConfig.SingleThreadTCG.
	SingleThreadTCG bool
	// Timeout bounds the whole boot.
	Timeout time.Duration
}

// Suite is one step in the guest: a test binary of a package run with a
// -run pattern, or a command.
type Suite struct {
	Name string
	// Test is the package whose test binary (go test -c, built once on the
	// host for the kernel's arch) runs, e.g. "./bpf/".
	Test string
	Run  string // -test.run
	Skip string // -test.skip
	// Cmd runs instead of a test binary; Cmd[0] names a binary of
	// Binaries ("authprobe", "goserver") or one on the guest's PATH.
	Cmd []string
	// Bins are the commands of Binaries the suite needs built for the
	// guest (Cmd[0] is added by itself).
	Bins []string
	// Files are repository files (values, relative to the root) copied
	// into an initramfs root at the keys (absolute guest paths), such as
	// an agent config; a host root sees the repository as it is.
	Files map[string]string
	// Dir is the working directory relative to the repository root
	// (host root only); default: the package's directory, or the root.
	Dir string
	Env []string
	// AgentArgs are added to every `authprobe run` the e2e harness
	// starts, e.g. {"--capture-backend", "syscalls"} to force a backend.
	AgentArgs []string
	Timeout   time.Duration
	// Express: the suite starts test/servers/express, whose node_modules
	// the harness installs on the host before the boot (the guest has no
	// network) and names in $AUTHPROBE_EXPRESS_MODULES.
	Express bool
	// SkipUnbuilt makes the suite skip, saying why, instead of fail when
	// a binary it needs does not build for the arch: for a suite that
	// waits on a port (the agent on arm64 waits for arm64 objects).
	SkipUnbuilt bool
	// Want are regular expressions the suite's output must match, each
	// on one line (`authprobe check` naming the backend it picked).
	Want []string
}

// Binaries are the commands built once per arch for the guests, by name.
func Binaries() map[string]string {
	return map[string]string{
		"authprobe": "./cmd/authprobe",
		"goserver":  "./test/servers/goserver",
	}
}

// SmokePackage is the guest-side smoke test (BPF load, tracepoint,
// counter, syscall registers, features, a static Go server).
const SmokePackage = "./test/kernels/guest/smoke/"

// amd64Suites run on every amd64 kernel: what of the capture's
// end-to-end tests runs without a network or a Collector. natural is the
// capture backend the agent must pick there by itself (bpf.Backends);
// the bpf suite runs every backend whose hooks the kernel has, or those
// of bpfBackends when it is not empty. Want lines make a suite fail when
// a server it is there to prove skipped.
func amd64Suites(natural string, bpfBackends ...string) []Suite {
	bpfEnv := []string{"AUTHPROBE_WANT_BACKEND=" + natural}
	if len(bpfBackends) > 0 {
		bpfEnv = append(bpfEnv, "AUTHPROBE_TEST_BACKENDS="+strings.Join(bpfBackends, ","))
	}
	return []Suite{
		smokeSuite(5 * time.Minute),
		{Name: "check", Cmd: []string{"authprobe", "check", "--config", "deploy/authprobe.yaml"}, Timeout: 5 * time.Minute,
			Want: []string{`^capture backend: ` + natural + ` \(`}},
		// TestTLSGo builds its Go servers (two toolchains, stripped and
		// not) in the guest, which under software emulation outlasts the
		// boot's budget; e2e-tls runs its default build (prebuilt), the
		// stripped and go1.27 builds run on the host (make test-host).
		// The fd-reuse, dup2, passed-fd, fork and two-writer tests and
		// the OpenSSL and Node TLS tests run here.
		{Name: "bpf", Test: "./bpf/", Skip: "^TestTLSGo$", Env: bpfEnv, Timeout: 15 * time.Minute},
		{Name: "e2e-login-python", Test: "./test/e2e/", Run: "^TestLoginSpans$/^python$", Bins: e2eBins(), Timeout: 10 * time.Minute},
		{Name: "e2e-login-node", Test: "./test/e2e/", Run: "^TestLoginSpans$/^node$", Bins: e2eBins(), Timeout: 10 * time.Minute,
			Want: []string{`^\s*--- PASS: TestLoginSpans/node `}},
		{Name: "e2e-login-go", Test: "./test/e2e/", Run: "^TestEveryServerLanguage$/^go$", Bins: e2eBins(), Timeout: 10 * time.Minute},
		// Every class of the evasion matrix against Go net/http, Express,
		// Python http.server and the JDK HttpServer.
		{Name: "e2e-evasion", Test: "./test/e2e/", Run: "^TestEvasionMatrix$", Bins: e2eBins(), Express: true, Timeout: 15 * time.Minute,
			Want: []string{`^\s*--- PASS: TestEvasionMatrix/go `, `^\s*--- PASS: TestEvasionMatrix/express `,
				`^\s*--- PASS: TestEvasionMatrix/python `, `^\s*--- PASS: TestEvasionMatrix/java `}},
		// TLS logins through Python's ssl (shared libssl), Node's https
		// (static OpenSSL) and Go's crypto/tls (HTTP/1.1 and HTTP/2).
		{Name: "e2e-tls", Test: "./test/e2e/", Run: "^(TestTLSPython|TestTLSNode|TestTLSGo)$", Skip: "^TestTLSGo$/stripped",
			Bins: e2eBins(), Timeout: 10 * time.Minute,
			Want: []string{`^--- PASS: TestTLSPython `, `^--- PASS: TestTLSNode `, `^\s*--- PASS: TestTLSGo/go1.26 `}},
	}
}

// forcedSuites run the e2e logins with the agent forced onto backend
// (--capture-backend), on a kernel where it is not the natural choice.
func forcedSuites(backend string) []Suite {
	args := []string{"--capture-backend", backend}
	return []Suite{
		{Name: "check-" + backend, Cmd: []string{"authprobe", "check", "--config", "deploy/authprobe.yaml", "--capture-backend", backend},
			Timeout: 5 * time.Minute, Want: []string{`^capture backend: ` + backend + ` \(forced`}},
		{Name: "e2e-login-python-" + backend, Test: "./test/e2e/", Run: "^TestLoginSpans$/^python$", Bins: e2eBins(),
			AgentArgs: args, Timeout: 10 * time.Minute},
		{Name: "e2e-login-go-" + backend, Test: "./test/e2e/", Run: "^TestEveryServerLanguage$/^go$", Bins: e2eBins(),
			AgentArgs: args, Timeout: 10 * time.Minute},
	}
}

// smokeSuite is the guest smoke test; its Go server login needs goserver.
func smokeSuite(timeout time.Duration) Suite {
	return Suite{Name: "smoke", Test: SmokePackage, Bins: []string{"goserver"}, Timeout: timeout}
}

// e2eBins are what test/e2e builds for itself on a host.
func e2eBins() []string { return []string{"authprobe", "goserver"} }

// DefaultMatrix is what `make test-kernels` boots.
func DefaultMatrix() []Kernel {
	return []Kernel{
		// No socket tracepoints before 6.3: the agent must fall back by
		// itself to fentry, and the bpf suite runs on fentry alone (the
		// syscalls backend's takes 10 minutes more here under emulation;
		// it runs on the host, and is forced on 6.12).
		{Name: "6.1", Arch: "amd64", Meta: "linux-image-amd64", Root: "host", Suites: amd64Suites("fentry", "fentry"),
			CPUs: 2, MemoryMB: 2048, Timeout: 25 * time.Minute},
		// The socket tracepoints' kernel: the bpf suite on them alone
		// (the syscalls backend's is 6.1's), then the logins again with
		// the syscalls backend forced.
		{Name: "6.12", Arch: "amd64", Meta: "linux-image-6.12-amd64", Root: "host",
			Suites: append(amd64Suites("sock", "sock"), forcedSuites("syscalls")...),
			CPUs:   2, MemoryMB: 2048, Timeout: 30 * time.Minute,
			// Forcing the syscalls backend turns the syscall tracepoints'
			// static keys on while the guest runs; with a host thread per
			// vCPU, emulated 6.12 twice ran into a half-patched
			// instruction (Oops: int3 in syscall_exit_to_user_mode_prepare,
			// 2 of 6 runs), which single-threaded TCG does not race on.
			SingleThreadTCG: true},
		{Name: "arm64-6.12", Arch: "arm64", Meta: "linux-image-6.12-arm64", Root: "initramfs",
			Suites: []Suite{
				smokeSuite(10 * time.Minute),
				// A plaintext login, and Go crypto/tls logins over
				// HTTP/1.1 and HTTP/2, to the static Go server.
				{Name: "agent-login", Test: "./test/kernels/guest/agent/", Bins: e2eBins(), Timeout: 10 * time.Minute,
					Want: []string{`^--- PASS: TestLoginSpans `, `^--- PASS: TestTLSLoginSpans `}},
			},
			CPUs: 2, MemoryMB: 1024, Timeout: 10 * time.Minute},
	}
}

// Select returns the kernels of m named in sel ("all", or names separated
// by commas or spaces).
func Select(m []Kernel, sel string) ([]Kernel, error) {
	sel = strings.TrimSpace(sel)
	if sel == "all" || sel == "1" {
		return m, nil
	}
	var out []Kernel
	for _, name := range strings.FieldsFunc(sel, func(r rune) bool { return r == ',' || r == ' ' }) {
		found := false
		for _, k := range m {
			if k.Name == name {
				out = append(out, k)
				found = true
			}
		}
		if !found {
			var names []string
			for _, k := range m {
				names = append(names, k.Name)
			}
			return nil, fmt.Errorf("no kernel %q in the matrix (have %s)", name, strings.Join(names, ", "))
		}
	}
	return out, nil
}

// Dirs are where the harness keeps its cache and its artifacts.
type Dirs struct {
	// Cache holds downloaded packages, kernels and module archives, keyed
	// by package version ($AUTHPROBE_KERNEL_CACHE, else
	// $AUTHPROBE_CACHE/kernels, else ~/.cache/authprobe/kernels).
	Cache string
	// Artifacts receives the console of every boot that failed
	// ($AUTHPROBE_ARTIFACTS, default test/kernels/artifacts).
	Artifacts string
}

// DirsFromEnv reads Dirs from the environment; repoRoot anchors the
// default artifacts directory.
func DirsFromEnv(repoRoot string) (Dirs, error) {
	d := Dirs{Cache: os.Getenv("AUTHPROBE_KERNEL_CACHE"), Artifacts: os.Getenv("AUTHPROBE_ARTIFACTS")}
	if d.Cache == "" && os.Getenv("AUTHPROBE_CACHE") != "" {
		// The cache of the other test tools (collector, k8s tools).
		d.Cache = filepath.Join(os.Getenv("AUTHPROBE_CACHE"), "kernels")
	}
	if d.Cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return Dirs{}, fmt.Errorf("cache dir: %w", err)
		}
		d.Cache = filepath.Join(base, "authprobe", "kernels")
	}
	if d.Artifacts == "" {
		d.Artifacts = filepath.Join(repoRoot, "test", "kernels", "artifacts")
	}
	for _, dir := range []string{d.Cache, d.Artifacts} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return Dirs{}, fmt.Errorf("mkdir %s: %w", dir, err)
		}
	}
	return d, nil
}
