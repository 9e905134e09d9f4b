// Command init is PID 1 of the kernel-matrix guests (test/kernels): it
// loads the kernel modules shipped in the initramfs, mounts what an eBPF
// agent needs (proc, sys, tracefs, bpffs, cgroup2, debugfs), optionally
// makes the host's root filesystem (virtio-9p, read-only) the guest's
// root, runs the job's steps one after another with their output on the
// console, reports each exit status as a marker line and powers off.
//
// Built static (CGO_ENABLED=0) for the guest's architecture.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/authprobe/authprobe/test/kernels/guest"
)

func main() {
	emit(guest.Marker{Event: guest.EventInit})
	if err := run(); err != nil {
		emit(guest.Marker{Event: guest.EventFatal, Error: err.Error()})
	}
	poweroff()
}

func run() error {
	if err := mountEarly(); err != nil {
		return err
	}
	data, err := os.ReadFile(guest.JobPath)
	if err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	var job guest.Job
	if err := json.Unmarshal(data, &job); err != nil {
		return fmt.Errorf("parse job: %w", err)
	}
	if err := loadModules(guest.ModulesDir); err != nil {
		return err
	}
	switch job.Root {
	case guest.RootHost:
		if err := enterHostRoot(job.Writable); err != nil {
			return err
		}
	case guest.RootInitramfs, "":
		if err := mountTmpfs(job.Writable); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown root %q", job.Root)
	}
	if err := mountLate(); err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	emit(guest.Marker{Event: guest.EventReady})
	for _, st := range job.Steps {
		runStep(job.Env, st)
	}
	emit(guest.Marker{Event: guest.EventDone})
	return nil
}

// mount is one mount(2) that creates its target first.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func (m mount) do() error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", m.target, err)
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

func mountAll(ms []mount) error {
	for _, m := range ms {
		if err := m.do(); err != nil {
			return err
		}
	}
	return nil
}

// mountEarly gives the initramfs /dev, /proc and /sys (module loading and
// the 9p mount need them).
func mountEarly() error {
	return mountAll([]mount{
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	})
}

// mountLate mounts, in the final root, what an eBPF agent and its tests
// expect from a node.
func mountLate() error {
	const nosuid = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	return mountAll([]mount{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "ptmxmode=0666"},
		{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, ""},
		{"securityfs", "/sys/kernel/security", "securityfs", nosuid, ""},
		{"tracefs", "/sys/kernel/tracing", "tracefs", nosuid, ""},
		{"debugfs", "/sys/kernel/debug", "debugfs", nosuid, ""},
		{"bpf", "/sys/fs/bpf", "bpf", nosuid, "mode=0700"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", nosuid, ""},
	})
}

// loadModules loads every module file of dir in name order (the harness
// names them so that dependencies come first). Already loaded is fine.
func loadModules(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read modules: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("open module %s: %w", name, err)
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return nil
}

// enterHostRoot makes the host's / (read-only 9p) the guest's root under
// a tmpfs overlay, so that everything of the host is where it is there
// (the repository may live anywhere, /tmp included) and every directory
// is writable without touching the host. It gives the root its own /dev,
// /proc, /sys, fresh tmpfs on the writable directories, and chroots into
// it. The initramfs stays mounted underneath; a VM this short-lived does
// not need the memory back.
func enterHostRoot(writable []string) error {
	const lower, rw, root = "/lower", "/rw", "/host"
	for _, d := range []string{lower, rw, root} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	// The virtio device may still be probing right after its driver loaded.
	opts := "trans=virtio,version=9p2000.L,msize=512000,cache=loose"
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		err = unix.Mount(guest.HostTag, lower, "9p", unix.MS_RDONLY, opts)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("mount host root (9p %s): %w", guest.HostTag, err)
	}
	if err := (mount{"tmpfs", rw, "tmpfs", 0, "mode=0755"}).do(); err != nil {
		return err
	}
	for _, d := range []string{rw + "/upper", rw + "/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	ms := []mount{
		{"overlay", root, "overlay", 0, "lowerdir=" + lower + ",upperdir=" + rw + "/upper,workdir=" + rw + "/work"},
		{"devtmpfs", root + "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		{"proc", root + "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", root + "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	}
	for _, dir := range writable {
		ms = append(ms, mount{"tmpfs", root + dir, "tmpfs", unix.MS_NODEV, "mode=1777"})
	}
	if err := mountAll(ms); err != nil {
		return err
	}
	if err := unix.Chroot(root); err != nil {
		return fmt.Errorf("chroot %s: %w", root, err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

func mountTmpfs(dirs []string) error {
	for _, dir := range dirs {
		if err := (mount{"tmpfs", dir, "tmpfs", unix.MS_NODEV, "mode=1777"}).do(); err != nil {
			return err
		}
	}
	return nil
}

// loopbackUp sets lo up; the kernel then gives it 127.0.0.1/8 and ::1, so
// every address of 127.0.0.0/8 works as a client source.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	req, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("ifreq lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, req); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	req.SetUint16(req.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, req); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// runStep runs one step in its own process group, reaping every process
// that ends meanwhile (PID 1 inherits orphans), and kills what the step
// left behind.
func runStep(baseEnv []string, st guest.Step) {
	emit(guest.Marker{Event: guest.EventStepStart, Step: st.Name})
	end := guest.Marker{Event: guest.EventStepEnd, Step: st.Name, Exit: -1}
	defer func() { emit(end) }()
	if len(st.Argv) == 0 {
		end.Error = "empty argv"
		return
	}
	argv0 := st.Argv[0]
	env := append(append([]string{}, baseEnv...), st.Env...)
	if !strings.Contains(argv0, "/") {
		path, err := lookPath(argv0, env)
		if err != nil {
			end.Error = err.Error()
			return
		}
		argv0 = path
	}
	dir := st.Dir
	if dir == "" {
		dir = "/"
	}
	pid, err := syscall.ForkExec(argv0, st.Argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		end.Error = fmt.Sprintf("start %s: %v", argv0, err)
		return
	}
	timeout := time.Duration(st.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	timedOut := make(chan struct{})
	timer := time.AfterFunc(timeout, func() {
		close(timedOut)
		_ = unix.Kill(-pid, unix.SIGKILL)
	})
	var ws unix.WaitStatus
	for {
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			end.Error = fmt.Sprintf("wait: %v", err)
			break
		}
		if wpid == pid {
			break
		}
	}
	timer.Stop()
	_ = unix.Kill(-pid, unix.SIGKILL)
	reapAll()
	select {
	case <-timedOut:
		end.Error = fmt.Sprintf("timeout after %v", timeout)
		return
	default:
	}
	switch {
	case ws.Exited():
		end.Exit = ws.ExitStatus()
	case ws.Signaled():
		end.Error = "killed by " + ws.Signal().String()
	}
}

// reapAll collects the zombies a step left, without blocking.
func reapAll() {
	time.Sleep(50 * time.Millisecond)
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func lookPath(name string, env []string) (string, error) {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH %s", name, path)
}

func uptime() float64 {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return -1
	}
	f, _, _ := strings.Cut(string(data), " ")
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return -1
	}
	return v
}

func emit(m guest.Marker) {
	m.Uptime = uptime()
	os.Stdout.WriteString(m.Line())
}

// poweroff ends the VM: sync, then power off (qemu exits). If that fails,
// exiting PID 1 panics the kernel, which panic=-1 turns into a reboot that
// -no-reboot turns into a qemu exit.
func poweroff() {
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	fmt.Fprintf(os.Stderr, "poweroff: %v\n", err)
	os.Exit(1)
}
