package kernels

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/authprobe/authprobe/test/kernels/guest"
)

// Machine is the emulated machine of one architecture.
type Machine struct {
	Qemu string   // qemu-system-x86_64
	Args []string // machine, CPU and console devices
	// Console is the kernel's console device.
	Console string
	// Append is added to the kernel command line.
	Append []string
	// Modules the init loads for a host root: the virtio, 9p and overlay
	// drivers (whichever of them the kernel has as modules).
	Modules []string
}

// MachineFor is the machine of arch: software emulation (TCG), no network
// device (the guest has loopback only), serial console on stdio.
// AUTHPROBE_QEMU_CPU replaces the CPU model, for trying others.
func MachineFor(arch string) (Machine, error) {
	m, err := machineFor(arch)
	if cpu := os.Getenv("AUTHPROBE_QEMU_CPU"); cpu != "" && err == nil {
		for i := range m.Args {
			if m.Args[i] == "-cpu" && i+1 < len(m.Args) {
				m.Args[i+1] = cpu
			}
		}
	}
	return m, err
}

func machineFor(arch string) (Machine, error) {
	// mitigations=off: the emulated CPU has no side channels to defend and
	// page-table isolation costs a TLB flush per syscall under TCG. It
	// does not change the verifier for root (spectre bypasses are
	// privileged either way).
	common := []string{"panic=-1", "mitigations=off"}
	switch arch {
	case "amd64":
		return Machine{
			Qemu: "qemu-system-x86_64",
			Args: []string{"-M", "pc", "-cpu", "max"},
			// The emulated TSC is the host's clock; without these the
			// kernel may fall back to a slow, emulated clocksource, which
			// every clock_gettime would then pay.
			Console: "ttyS0",
			Append:  append(common, "tsc=reliable", "clocksource=tsc"),
			Modules: []string{"virtio_pci", "9pnet_virtio", "9p", "overlay"},
		}, nil
	case "arm64":
		return Machine{
			Qemu: "qemu-system-aarch64",
			// "max" (every feature QEMU emulates, as on Graviton3/4-class
			// cores) with QEMU's cheap pointer-authentication algorithm:
			// a syscall costs 5 us here, against 35-57 us with the
			// cortex-a72 or neoverse-n1 models.
			Args:    []string{"-M", "virt", "-cpu", "max,pauth-impdef=on"},
			Console: "ttyAMA0",
			Append:  common,
			Modules: []string{"virtio_pci", "9pnet_virtio", "9p", "overlay"},
		}, nil
	}
	return Machine{}, fmt.Errorf("no machine for arch %q", arch)
}

// PayloadFile is a host file copied into the guest's initramfs.
type PayloadFile struct {
	Guest string // absolute path in the guest
	Host  string
	Mode  uint32
}

// BootConfig is one boot.
type BootConfig struct {
	Image    *Image
	Machine  Machine
	Init     string // the guest init binary (guest/init) for this arch
	Job      guest.Job
	Payload  []PayloadFile
	CPUs     int
	MemoryMB int
	// SingleThreadTCG: all vCPUs on one host thread. Multi-threaded TCG
	// can let a vCPU run a stale translation of kernel text another vCPU
	// is live-patching (static keys, text_poke_bp's int3), which the
	// guest kernel reports as an Oops on int3.
	SingleThreadTCG bool
	// Timeout bounds the whole boot; qemu is killed after it.
	Timeout time.Duration
	// ShareHost shares the host's / read-only over virtio-9p.
	ShareHost bool
	// Console, when set, is a file the console transcript is written to
	// as it arrives (kept even when the harness dies).
	Console string
	// Output, when set, also receives the console transcript live.
	Output io.Writer
	// WorkDir holds the per-boot initramfs.
	WorkDir string
}

// StepResult is one step as the guest reported it.
type StepResult struct {
	Name  string
	Exit  int
	Error string
	// Seconds is the step's duration in guest time.
	Seconds float64
	// Output is the console between the step's start and end markers.
	Output string
}

// OK says whether the step exited 0.
func (s StepResult) OK() bool { return s.Exit == 0 && s.Error == "" }

// Result is what a boot gave.
type Result struct {
	Console string
	Steps   []StepResult
	// Boot is host time from starting qemu to the init's ready marker
	// (firmware, kernel, modules, mounts); Total to qemu's exit.
	Boot, Total time.Duration
	// GuestBoot is the guest's uptime at the ready marker.
	GuestBoot float64
	// Done says the init ran every step and powered off cleanly.
	Done bool
	// Fatal is the init's setup error, if any.
	Fatal string
	// QemuErr is qemu's own failure (killed at the timeout, bad args).
	QemuErr error
}

// Err summarises why a boot did not run to the end, or nil.
func (r *Result) Err() error {
	switch {
	case r.Fatal != "":
		return fmt.Errorf("guest init: %s", r.Fatal)
	case r.QemuErr != nil:
		return fmt.Errorf("qemu: %w", r.QemuErr)
	case !r.Done:
		return fmt.Errorf("guest did not finish its steps (no %q marker)", guest.EventDone)
	}
	return nil
}

// Boot builds the per-boot initramfs (the cached modules archive, then
// init, job and payload), boots the kernel under qemu and collects the
// console until the guest powers off or the timeout ends it.
func Boot(ctx context.Context, cfg BootConfig) (*Result, error) {
	initrd, err := writeInitrd(cfg)
	if err != nil {
		return nil, err
	}
	defer os.Remove(initrd)
	args := append([]string{}, cfg.Machine.Args...)
	accel := "tcg"
	if cfg.SingleThreadTCG {
		accel = "tcg,thread=single"
	}
	args = append(args,
		"-accel", accel,
		"-smp", fmt.Sprint(cfg.CPUs), "-m", fmt.Sprint(cfg.MemoryMB),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-no-reboot",
		"-kernel", cfg.Image.Kernel, "-initrd", initrd,
		"-append", strings.Join(append([]string{"console=" + cfg.Machine.Console}, cfg.Machine.Append...), " "),
	)
	if cfg.ShareHost {
		args = append(args, "-virtfs", "local,path=/,mount_tag="+guest.HostTag+",security_model=none,readonly=on,multidevs=remap")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.Machine.Qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("qemu stdout: %w", err)
	}
	var sinks []io.Writer
	if cfg.Console != "" {
		f, err := os.Create(cfg.Console)
		if err != nil {
			return nil, fmt.Errorf("console file: %w", err)
		}
		defer f.Close()
		fmt.Fprintf(f, "# %s %s\n", cfg.Machine.Qemu, shellQuote(args))
		sinks = append(sinks, f)
	}
	if cfg.Output != nil {
		sinks = append(sinks, cfg.Output)
	}
	res := &Result{}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.Machine.Qemu, err)
	}
	var console strings.Builder
	rd := bufio.NewReader(stdout)
	for {
		line, err := rd.ReadString('\n')
		if line != "" {
			for _, w := range sinks {
				_, _ = io.WriteString(w, line)
			}
			console.WriteString(line)
			if m, ok := guest.ParseMarker(line); ok && m.Event == guest.EventReady {
				res.Boot = time.Since(start)
				res.GuestBoot = m.Uptime
			}
		}
		if err != nil {
			break
		}
	}
	waitErr := cmd.Wait()
	res.Total = time.Since(start)
	res.Console = console.String()
	if ctx.Err() != nil {
		res.QemuErr = fmt.Errorf("killed after %v: %w", cfg.Timeout, ctx.Err())
	} else if waitErr != nil {
		res.QemuErr = fmt.Errorf("%w: %s", waitErr, strings.TrimSpace(stderr.String()))
	}
	res.parse()
	return res, nil
}

// parse turns the console's markers into step results.
func (r *Result) parse() {
	lines := strings.SplitAfter(r.Console, "\n")
	var cur *StepResult
	var start float64
	var out strings.Builder
	for _, line := range lines {
		m, ok := guest.ParseMarker(line)
		if !ok {
			if cur != nil {
				out.WriteString(line)
			}
			continue
		}
		switch m.Event {
		case guest.EventStepStart:
			cur = &StepResult{Name: m.Step, Exit: -1, Error: "no end marker (guest died in this step)"}
			start = m.Uptime
			out.Reset()
		case guest.EventStepEnd:
			if cur == nil || cur.Name != m.Step {
				cur = &StepResult{Name: m.Step}
			}
			cur.Exit, cur.Error, cur.Seconds = m.Exit, m.Error, m.Uptime-start
			cur.Output = out.String()
			r.Steps = append(r.Steps, *cur)
			cur = nil
		case guest.EventFatal:
			r.Fatal = m.Error
		case guest.EventDone:
			r.Done = true
		}
	}
	if cur != nil {
		cur.Output = out.String()
		r.Steps = append(r.Steps, *cur)
	}
}

// writeInitrd joins the cached modules archive and a fresh archive of
// the init, the job and the payload into one initramfs.
func writeInitrd(cfg BootConfig) (string, error) {
	f, err := os.CreateTemp(cfg.WorkDir, "initrd-*.cpio")
	if err != nil {
		return "", fmt.Errorf("initrd: %w", err)
	}
	path := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("initrd: %w", err)
	}
	mods, err := os.Open(cfg.Image.Modules)
	if err != nil {
		return fail(err)
	}
	_, err = io.Copy(f, mods)
	mods.Close()
	if err != nil {
		return fail(err)
	}
	job, err := json.MarshalIndent(cfg.Job, "", "  ")
	if err != nil {
		return fail(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	c := newCPIO(w)
	// The kernel opens /dev/console for PID 1's stdin, stdout and stderr
	// before devtmpfs is mounted.
	c.CharDev("/dev/console", 0o600, 5, 1)
	c.Dir("/proc")
	c.Dir("/sys")
	c.Dir("/tmp")
	c.CopyFile("/init", 0o755, cfg.Init)
	c.File(guest.JobPath, 0o644, job)
	for _, p := range cfg.Payload {
		mode := p.Mode
		if mode == 0 {
			mode = 0o755
		}
		c.CopyFile(p.Guest, mode, p.Host)
	}
	if err := c.Close(); err != nil {
		return fail(err)
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("initrd: %w", err)
	}
	return path, nil
}

func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " '\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
