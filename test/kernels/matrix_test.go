package kernels

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authprobe/authprobe/test/kernels/guest"
	"github.com/authprobe/authprobe/test/testutil"
)

// TestMatrix boots every selected kernel of DefaultMatrix under qemu and
// runs its suites in the guest, one subtest per suite. It boots VMs only
// when asked: AUTHPROBE_KERNELS=all (or names: 6.1,6.12,arm64-6.12), as
// `make test-kernels` does. Needs root, qemu-system-x86 / qemu-system-arm
// and the apt setup of README.md.
func TestMatrix(t *testing.T) {
	sel := os.Getenv("AUTHPROBE_KERNELS")
	if sel == "" {
		t.Skip("boots kernels under qemu: set AUTHPROBE_KERNELS=all or a list (make test-kernels)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the guests load eBPF programs as root of the host's files")
	}
	ks, err := Select(DefaultMatrix(), sel)
	if err != nil {
		t.Fatal(err)
	}
	// AUTHPROBE_SUITES (a regexp of suite names) runs only some suites,
	// and AUTHPROBE_SUITE_COUNT runs each test that many times: for
	// chasing one suite's failure without booting through the others.
	if only := os.Getenv("AUTHPROBE_SUITES"); only != "" {
		re, err := regexp.Compile(only)
		if err != nil {
			t.Fatalf("AUTHPROBE_SUITES: %v", err)
		}
		for i := range ks {
			ks[i].Suites = slices.DeleteFunc(slices.Clone(ks[i].Suites), func(s Suite) bool { return !re.MatchString(s.Name) })
		}
	}
	root := ModuleRoot()
	dirs, err := DirsFromEnv(root)
	if err != nil {
		t.Fatal(err)
	}
	// Builds go where the guests see them: not under /tmp, which is a
	// tmpfs of the guest's own.
	buildDir, err := os.MkdirTemp(dirs.Cache, "build-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(buildDir) })
	builds := map[string]*archBuild{}
	// A failed suite's key lines are repeated once more at the very end,
	// where a CI log excerpt (its last lines) still shows them.
	var digest []string
	t.Cleanup(func() {
		if len(digest) > 0 {
			t.Logf("why the failed suites failed:\n%s", strings.Join(digest, "\n"))
		}
	})
	for _, k := range ks {
		t.Run(k.Name, func(t *testing.T) {
			b, ok := builds[k.Arch]
			if !ok {
				start := time.Now()
				b = mustBuildArch(t, buildDir, k.Arch, ks)
				builds[k.Arch] = b
				t.Logf("built %s binaries in %.1fs", k.Arch, time.Since(start).Seconds())
			}
			digest = append(digest, runKernel(t, dirs, k, b)...)
		})
	}
}

// archBuild is what was built on the host for one guest arch.
type archBuild struct {
	arch string
	dir  string
	init string
	// bins are commands and test binaries by name ("authprobe",
	// "bpf.test"); failed says why one did not build.
	bins   map[string]string
	failed map[string]error
}

func testBinName(pkg string) string {
	return filepath.Base(strings.TrimSuffix(pkg, "/")) + ".test"
}

// mustBuildArch builds, once per arch, the init and every command and
// test package the selected kernels' suites of that arch need. A
// command that does not build for the arch (the agent for arm64, until it
// has arm64 objects) only fails the suites that use it.
func mustBuildArch(t *testing.T, buildDir, arch string, ks []Kernel) *archBuild {
	t.Helper()
	b := &archBuild{arch: arch, dir: filepath.Join(buildDir, arch), bins: map[string]string{}, failed: map[string]error{}}
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b.init = filepath.Join(b.dir, "init")
	if err := GoBuild(arch, b.init, "./test/kernels/guest/init", false); err != nil {
		t.Fatal(err)
	}
	need := map[string]bool{}
	for _, k := range ks {
		if k.Arch != arch {
			continue
		}
		for _, s := range k.Suites {
			for _, name := range s.Bins {
				need[name] = true
			}
			if len(s.Cmd) > 0 {
				need[s.Cmd[0]] = true
			}
		}
	}
	names := make([]string, 0)
	for name := range Binaries() {
		if need[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		out := filepath.Join(b.dir, name)
		if err := GoBuild(arch, out, Binaries()[name], false); err != nil {
			b.failed[name] = err
			t.Logf("%s does not build for %s; the suites that need it fail (or skip: SkipUnbuilt): %v", name, arch, firstLine(err.Error()))
			continue
		}
		b.bins[name] = out
	}
	for _, k := range ks {
		if k.Arch != arch {
			continue
		}
		for _, s := range k.Suites {
			if s.Test == "" {
				continue
			}
			name := testBinName(s.Test)
			if _, ok := b.bins[name]; ok {
				continue
			}
			if _, ok := b.failed[name]; ok {
				continue
			}
			out := filepath.Join(b.dir, name)
			if err := GoBuild(arch, out, s.Test, true); err != nil {
				b.failed[name] = err
				continue
			}
			b.bins[name] = out
		}
	}
	return b
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// runKernel boots k once and reports each suite as a subtest. It returns
// the key lines of the suites that failed (failureDigest).
func runKernel(t *testing.T, dirs Dirs, k Kernel, b *archBuild) (digest []string) {
	m, err := MachineFor(k.Arch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath(m.Qemu); err != nil {
		t.Fatalf("%s not installed (apt-get install qemu-system-x86 qemu-system-arm): %v", m.Qemu, err)
	}
	start := time.Now()
	pkg, err := Resolve(k.Meta, k.Arch)
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	if k.Root == guest.RootHost {
		mods = m.Modules
	}
	img, err := Prepare(dirs.Cache, pkg, mods)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s: %s %s (%s), prepared in %.1fs (%s)", k.Name, pkg.Name, pkg.Version, img.Release, time.Since(start).Seconds(), strings.Join(img.Stages, ", "))
	logConfig(t, img)

	job, payload, pre, err := buildJob(k, b, img)
	if err != nil {
		t.Fatal(err)
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	console := filepath.Join(dirs.Artifacts, fmt.Sprintf("%s-%s.console", k.Name, stamp))
	cfg := BootConfig{
		Image: img, Machine: m, Init: b.init, Job: job, Payload: payload,
		CPUs: k.CPUs, MemoryMB: k.MemoryMB, SingleThreadTCG: k.SingleThreadTCG, Timeout: k.Timeout, ShareHost: k.Root == guest.RootHost,
		Console: console, WorkDir: b.dir,
	}
	if os.Getenv("AUTHPROBE_CONSOLE") != "" {
		cfg.Output = os.Stdout
	}
	res, err := Boot(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	failed := false
	defer func() {
		if failed || t.Failed() {
			t.Logf("console kept: %s", console)
			return
		}
		os.Remove(console)
	}()
	t.Logf("kernel %s: boot %.1fs (guest uptime %.1fs at ready), whole run %.1fs", k.Name, res.Boot.Seconds(), res.GuestBoot, res.Total.Seconds())
	logFeatures(t, res.Console)
	results := map[string]StepResult{}
	for _, st := range res.Steps {
		results[st.Name] = st
	}
	for _, s := range k.Suites {
		t.Run(s.Name, func(t *testing.T) {
			if err := pre[s.Name]; err != nil {
				if s.SkipUnbuilt {
					t.Skipf("not run: %s", firstLine(err.Error()))
				}
				failed = true
				t.Fatal(err)
			}
			st, ok := results[s.Name]
			if !ok {
				failed = true
				t.Fatalf("suite did not run (boot: %v)", res.Err())
			}
			t.Logf("%s: exit %d in %.1fs%s", s.Name, st.Exit, st.Seconds, testVerdicts(st.Output))
			defer func() {
				if t.Failed() {
					digest = append(digest, failureDigest(k.Name+"/"+s.Name, st.Output, 16)...)
				}
			}()
			if !st.OK() {
				failed = true
				t.Errorf("%s: exit %d %s; output:\n%s", s.Name, st.Exit, st.Error, tail(st.Output, 6000))
			}
			if missing := unmatched(s.Want, st.Output); len(missing) > 0 {
				failed = true
				t.Errorf("%s: no output line matches %q; output:\n%s", s.Name, missing, tail(st.Output, 6000))
			}
		})
	}
	if err := res.Err(); err != nil {
		failed = true
		t.Errorf("kernel %s: %v", k.Name, err)
		digest = append(digest, fmt.Sprintf("%s: %v", k.Name, err))
	}
	return digest
}

// buildJob turns k's suites into guest steps, and the payload an
// initramfs root needs.
// A suite whose binary did not build gets no step; its error is in pre.
func buildJob(k Kernel, b *archBuild, img *Image) (job guest.Job, payload []PayloadFile, pre map[string]error, err error) {
	job = NewJob(k.Root, os.Environ())
	if k.Root == guest.RootHost {
		job.Env = withPath(job.Env, guestPath(os.Getenv("PATH")))
	}
	pre = map[string]error{}
	// path is where binary name lies in the guest.
	path := func(name string) string {
		if k.Root == guest.RootHost {
			return b.bins[name]
		}
		return GuestBinDir + "/" + name
	}
	if k.Root != guest.RootHost {
		names := make([]string, 0, len(b.bins))
		for name := range b.bins {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			payload = append(payload, PayloadFile{Guest: GuestBinDir + "/" + name, Host: b.bins[name]})
		}
	}
	binDir := GuestBinDir
	if k.Root == guest.RootHost {
		binDir = b.dir
	}
	btfSum, err := btfSHA256(img)
	if err != nil {
		return guest.Job{}, nil, nil, err
	}
	common := []string{
		// testutil.GoBuild links these instead of building (no Go
		// toolchain work in the guest).
		"AUTHPROBE_PREBUILT_DIR=" + binDir,
		"AUTHPROBE_GOSERVER=" + path("goserver"),
		"AUTHPROBE_WANT_BTF_SHA256=" + btfSum,
	}
	root := ModuleRoot()
	for _, s := range k.Suites {
		st := guest.Step{Name: s.Name, Env: append(append([]string{}, common...), s.Env...), TimeoutSeconds: int(s.Timeout.Seconds())}
		if len(s.AgentArgs) > 0 {
			st.Env = append(st.Env, "AUTHPROBE_TEST_AGENT_ARGS="+strings.Join(s.AgentArgs, " "))
		}
		if s.Express {
			modules, err := testutil.ExpressModules(root)
			if err != nil {
				pre[s.Name] = fmt.Errorf("install the Express server's modules on the host: %w", err)
				continue
			}
			st.Env = append(st.Env, testutil.ExpressModulesEnv+"="+modules)
		}
		if k.Root != guest.RootHost {
			guestPaths := make([]string, 0, len(s.Files))
			for g := range s.Files {
				guestPaths = append(guestPaths, g)
			}
			sort.Strings(guestPaths)
			for _, g := range guestPaths {
				payload = append(payload, PayloadFile{Guest: g, Host: filepath.Join(root, s.Files[g]), Mode: 0o644})
			}
		}
		missing := ""
		for _, name := range s.Bins {
			if err := b.failed[name]; err != nil {
				missing = name
				pre[s.Name] = fmt.Errorf("%s does not build for %s: %w", name, k.Arch, err)
			}
		}
		if missing != "" {
			continue
		}
		switch {
		case s.Test != "":
			name := testBinName(s.Test)
			if err := b.failed[name]; err != nil {
				pre[s.Name] = fmt.Errorf("test binary does not build for %s: %w", k.Arch, err)
				continue
			}
			st.Argv = []string{path(name), "-test.v", "-test.count=" + suiteCount()}
			if s.Timeout > 0 {
				st.Argv = append(st.Argv, "-test.timeout="+s.Timeout.String())
			}
			if s.Run != "" {
				st.Argv = append(st.Argv, "-test.run="+s.Run)
			}
			if s.Skip != "" {
				st.Argv = append(st.Argv, "-test.skip="+s.Skip)
			}
			if k.Root == guest.RootHost {
				st.Dir = filepath.Join(root, s.Test)
			}
		case len(s.Cmd) > 0:
			st.Argv = append([]string{}, s.Cmd...)
			if _, ok := Binaries()[s.Cmd[0]]; ok {
				if err := b.failed[s.Cmd[0]]; err != nil {
					pre[s.Name] = fmt.Errorf("%s does not build for %s: %w", s.Cmd[0], k.Arch, err)
					continue
				}
				st.Argv[0] = path(s.Cmd[0])
			}
			if k.Root == guest.RootHost {
				st.Dir = root
			}
		default:
			return guest.Job{}, nil, nil, fmt.Errorf("suite %s: neither Test nor Cmd", s.Name)
		}
		if s.Dir != "" && k.Root == guest.RootHost {
			st.Dir = filepath.Join(root, s.Dir)
		}
		job.Steps = append(job.Steps, st)
	}
	return job, payload, pre, nil
}

func btfSHA256(img *Image) (string, error) {
	data, err := os.ReadFile(img.Kernel)
	if err != nil {
		return "", err
	}
	raw, err := ExtractBTF(data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", img.Package.Name, err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:]), nil
}

func withPath(env []string, path string) []string {
	out := []string{}
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PATH=") {
			out = append(out, kv)
		}
	}
	return append(out, "PATH="+path)
}

// guestPath is the host's PATH with a version manager's shims (pyenv)
// replaced by the directory of the interpreter they resolve to: a shim is
// a shell script that forks a dozen processes, seconds per python3 start
// under emulation.
func guestPath(hostPath string) string {
	var out []string
	for _, dir := range filepath.SplitList(hostPath) {
		if strings.HasSuffix(dir, "/shims") {
			if p, err := exec.Command("pyenv", "which", "python3").Output(); err == nil {
				out = append(out, filepath.Dir(strings.TrimSpace(string(p))))
				continue
			}
		}
		out = append(out, dir)
	}
	return strings.Join(out, ":")
}

func logConfig(t *testing.T, img *Image) {
	t.Helper()
	cfg, err := ReadConfig(img.Config)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, f := range ConfigFeatures() {
		v := cfg[f.Option]
		if v == "" {
			v = "n"
		}
		parts = append(parts, strings.TrimPrefix(f.Option, "CONFIG_")+"="+v)
	}
	t.Logf("config: %s", strings.Join(parts, " "))
}

// logFeatures repeats the smoke test's "feature ..." and "workload ..."
// lines.
func logFeatures(t *testing.T, console string) {
	t.Helper()
	var fs []string
	for _, line := range strings.Split(console, "\n") {
		line = strings.TrimRight(line, "\r")
		if f, ok := strings.CutPrefix(line, "feature "); ok {
			fs = append(fs, f)
		}
		if strings.HasPrefix(line, "workload ") {
			fs = append(fs, line)
		}
	}
	if len(fs) > 0 {
		t.Logf("probed in the guest:\n  %s", strings.Join(fs, "\n  "))
	}
}

// testVerdicts are the "--- PASS/FAIL/SKIP" lines of a test binary's
// output (with the skip reasons go test prints under them), so that a
// suite that passed by skipping everything shows it.
func testVerdicts(out string) string {
	var b strings.Builder
	lines := strings.Split(strings.ReplaceAll(out, "\r", ""), "\n")
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		if !strings.HasPrefix(trimmed, "--- ") {
			continue
		}
		b.WriteString("\n  " + line)
		if strings.HasPrefix(trimmed, "--- SKIP") && i+1 < len(lines) {
			b.WriteString("\n  " + lines[i+1])
		}
	}
	return b.String()
}

// suiteCount is each guest test's -test.count ($AUTHPROBE_SUITE_COUNT, 1).
func suiteCount() string {
	if n, err := strconv.Atoi(os.Getenv("AUTHPROBE_SUITE_COUNT")); err == nil && n > 1 {
		return strconv.Itoa(n)
	}
	return "1"
}

// failureDigest picks from a failed suite's output the lines that say
// why: first the verdicts (FAIL lines, panics, timeouts), then the
// tests' own messages, at most max in all, each cut to 240 bytes and
// prefixed with where.
func failureDigest(where, out string, max int) []string {
	verdict := regexp.MustCompile(`--- FAIL|^panic:|timed out|signal: `)
	message := regexp.MustCompile(`_test\.go:\d+: `)
	var verdicts, messages []string
	for _, line := range strings.Split(strings.ReplaceAll(out, "\r", ""), "\n") {
		line = strings.TrimSpace(line)
		if len(line) > 240 {
			line = line[:240] + "..."
		}
		switch {
		case verdict.MatchString(line):
			verdicts = append(verdicts, where+": "+line)
		case message.MatchString(line):
			messages = append(messages, where+": "+line)
		}
	}
	lines := append(verdicts, messages...)
	if len(lines) == 0 {
		return []string{where + ": no FAIL line in its output; its tail is above"}
	}
	if len(lines) > max {
		lines = append(lines[:max], where+": (more in the suite's output above)")
	}
	return lines
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// unmatched are the patterns of want that no line of out matches.
func unmatched(want []string, out string) []string {
	var missing []string
	lines := strings.Split(strings.ReplaceAll(out, "\r", ""), "\n")
	for _, w := range want {
		re := regexp.MustCompile(w)
		if !slices.ContainsFunc(lines, re.MatchString) {
			missing = append(missing, w)
		}
	}
	return missing
}
