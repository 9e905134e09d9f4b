package kernels

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/authprobe/authprobe/test/kernels/guest"
)

// Package is one Debian kernel image package, resolved to a version.
type Package struct {
	Name    string // linux-image-6.1.0-57-amd64
	Version string // 6.1.192-3
	Arch    string // amd64, arm64
}

// Key names the package's cache directory.
func (p Package) Key() string {
	return strings.NewReplacer("/", "_", ":", "_", "~", "_").Replace(p.Name + "_" + p.Version + "_" + p.Arch)
}

// Image is a kernel ready to boot: its files in the cache.
type Image struct {
	Package Package
	Release string // uname -r: 6.1.0-57-amd64
	Dir     string // cache directory of this package version
	Vmlinuz string
	// Kernel is what qemu boots: for amd64 the uncompressed vmlinux (PVH
	// entry), else the package's image.
	Kernel  string
	Config  string // /boot/config-* of the package
	Modules string // newc archive of the modules, dependencies first
	// Stages says what Prepare did and how long each part took ("cached"
	// when nothing).
	Stages []string
}

func run(name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Resolve finds the image package that the metapackage meta (for example
// linux-image-amd64, or linux-image-6.12-arm64 from bookworm-backports)
// currently depends on, and its candidate version, from apt's lists.
func Resolve(meta, arch string) (Package, error) {
	q := meta + ":" + arch
	out, err := run("apt-cache", "depends", q)
	if err != nil {
		return Package{}, fmt.Errorf("resolve %s (apt sources and `dpkg --add-architecture %s` set up? see test/kernels/README.md): %w", q, arch, err)
	}
	var name string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			name, _, _ = strings.Cut(dep, ":")
			break
		}
	}
	if name == "" {
		return Package{}, fmt.Errorf("resolve %s: no linux-image dependency in:\n%s", q, out)
	}
	out, err = run("apt-cache", "show", "--no-all-versions", name+":"+arch)
	if err != nil {
		return Package{}, fmt.Errorf("resolve %s: %w", name, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Version: "); ok {
			return Package{Name: name, Version: strings.TrimSpace(v), Arch: arch}, nil
		}
	}
	return Package{}, fmt.Errorf("resolve %s: no Version in apt-cache show", name)
}

// Prepare makes pkg bootable under cacheDir: downloads the .deb (kept, so
// a changed module list needs no network), extracts the kernel, its config
// and the modules wanted (with their dependencies) into a newc archive.
// Everything is keyed by package version and module list, so a second run
// does nothing.
func Prepare(cacheDir string, pkg Package, modules []string) (*Image, error) {
	dir := filepath.Join(cacheDir, pkg.Key())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	img := &Image{Package: pkg, Dir: dir,
		Vmlinuz: filepath.Join(dir, "vmlinuz"),
		Config:  filepath.Join(dir, "config"),
		Modules: filepath.Join(dir, "modules-"+listHash(modules)+".cpio"),
	}
	img.Kernel = img.Vmlinuz
	if pkg.Arch == "amd64" {
		img.Kernel = filepath.Join(dir, "vmlinux")
	}
	relFile := filepath.Join(dir, "release")
	if rel, err := os.ReadFile(relFile); err == nil && exists(img.Vmlinuz) && exists(img.Kernel) && exists(img.Config) && exists(img.Modules) {
		img.Release = strings.TrimSpace(string(rel))
		img.Stages = []string{"cached"}
		return img, nil
	}
	t0 := time.Now()
	stage := func(name string) {
		img.Stages = append(img.Stages, fmt.Sprintf("%s %.1fs", name, time.Since(t0).Seconds()))
		t0 = time.Now()
	}
	deb, fetched, err := download(dir, pkg)
	if err != nil {
		return nil, err
	}
	if fetched {
		stage("download")
	}
	tree, err := os.MkdirTemp(dir, "extract-")
	if err != nil {
		return nil, fmt.Errorf("extract dir: %w", err)
	}
	defer os.RemoveAll(tree)
	if _, err := run("dpkg-deb", "-x", deb, tree); err != nil {
		return nil, fmt.Errorf("extract %s: %w", deb, err)
	}
	stage("extract")
	vmlinuz, err := glob1(tree, "boot/vmlinuz-*")
	if err != nil {
		return nil, err
	}
	img.Release = strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
	config, err := glob1(tree, "boot/config-*")
	if err != nil {
		return nil, err
	}
	mods, err := resolveModules(filepath.Join(tree, "lib", "modules", img.Release), modules)
	if err != nil {
		return nil, err
	}
	stage(fmt.Sprintf("%d modules", len(mods)))
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.Dir(strings.TrimPrefix(guest.ModulesDir, "/"))
	for i, m := range mods {
		c.File(fmt.Sprintf("%s/%02d-%s.ko", guest.ModulesDir, i, m.name), 0o644, m.data)
	}
	if err := c.Close(); err != nil {
		return nil, fmt.Errorf("modules archive: %w", err)
	}
	for _, f := range []struct {
		src, dst string
	}{{vmlinuz, img.Vmlinuz}, {config, img.Config}} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.src, err)
		}
		if err := writeAtomic(f.dst, data); err != nil {
			return nil, err
		}
	}
	if img.Kernel != img.Vmlinuz {
		if err := writeVmlinux(img.Vmlinuz, img.Kernel); err != nil {
			return nil, err
		}
		stage("vmlinux")
	}
	if err := writeAtomic(img.Modules, buf.Bytes()); err != nil {
		return nil, err
	}
	if err := writeAtomic(relFile, []byte(img.Release+"\n")); err != nil {
		return nil, err
	}
	return img, nil
}

// download fetches pkg's .deb into dir with apt-get (from the configured
// Debian mirror), unless it is there; fetched says it was not.
func download(dir string, pkg Package) (path string, fetched bool, err error) {
	matches, _ := filepath.Glob(filepath.Join(dir, pkg.Name+"_*.deb"))
	if len(matches) == 1 {
		return matches[0], false, nil
	}
	cmd := exec.Command("apt-get", "download", "-q", pkg.Name+":"+pkg.Arch+"="+pkg.Version)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("apt-get download %s=%s: %w\n%s", pkg.Name, pkg.Version, err, out)
	}
	matches, _ = filepath.Glob(filepath.Join(dir, pkg.Name+"_*.deb"))
	if len(matches) != 1 {
		return "", false, fmt.Errorf("apt-get download %s: want one .deb in %s, found %v", pkg.Name, dir, matches)
	}
	return matches[0], true, nil
}

func glob1(root, pattern string) (string, error) {
	m, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil || len(m) != 1 {
		return "", fmt.Errorf("want one %s in the package, found %v (%v)", pattern, m, err)
	}
	return m[0], nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func listHash(names []string) string {
	s := append([]string{}, names...)
	sort.Strings(s)
	sum := sha256.Sum256([]byte(strings.Join(s, ",")))
	return hex.EncodeToString(sum[:4])
}

// ConfigFeature is one kernel option that matters to authprobe.
type ConfigFeature struct {
	Option string // CONFIG_KPROBES
	What   string
}

// ConfigFeatures are the options read from each package's /boot/config.
// Socket-layer tracepoints (6.3+) have no option: the guest probes them.
func ConfigFeatures() []ConfigFeature {
	return []ConfigFeature{
		{"CONFIG_BPF_SYSCALL", "bpf(2)"},
		{"CONFIG_BPF_JIT", "JIT"},
		{"CONFIG_DEBUG_INFO_BTF", "kernel BTF (CO-RE)"},
		{"CONFIG_FTRACE_SYSCALLS", "syscall tracepoints"},
		{"CONFIG_BPF_EVENTS", "BPF on tracepoints/kprobes"},
		{"CONFIG_KPROBES", "kprobes"},
		{"CONFIG_KPROBE_EVENTS", "kprobe events"},
		{"CONFIG_FPROBE", "kprobe.multi (fprobe)"},
		{"CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS", "fentry/fexit trampolines"},
		{"CONFIG_UPROBE_EVENTS", "uprobes"},
		{"CONFIG_BPF_LSM", "BPF LSM"},
		{"CONFIG_SECURITY_LOCKDOWN_LSM", "lockdown LSM"},
		{"CONFIG_MODULE_DECOMPRESS", "in-kernel module decompression"},
	}
}

// ReadConfig returns the options set in a kernel config file ("y", "m" or
// a value); unset options are absent.
func ReadConfig(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("kernel config: %w", err)
		}
		return nil, fmt.Errorf("read kernel config: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out, nil
}
