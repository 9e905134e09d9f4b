package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/authprobe/authprobe/bpf"
)

const tracefsDir = "/sys/kernel/tracing"

// ensureTracefs mounts tracefs where the tracepoint IDs are read from,
// when nothing mounted it yet (minimal images and fresh VMs).
func ensureTracefs() error {
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[2] == "tracefs" {
				return nil
			}
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("tracefs is not mounted and only root can mount it (mount -t tracefs nodev %s)", tracefsDir)
	}
	if err := unix.Mount("tracefs", tracefsDir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w (mount -t tracefs nodev %s)",
			tracefsDir, err, tracefsDir)
	}
	return nil
}

// feature is one line of `authprobe check`'s kernel report.
type feature struct {
	name     string
	ok       bool
	detail   string
	required bool
}

// kernelFeatures probes what this kernel offers, in the words of the
// check report.
func kernelFeatures() []feature {
	var fs []feature
	add := func(name string, ok bool, required bool, detail string) {
		fs = append(fs, feature{name: name, ok: ok, required: required, detail: detail})
	}

	var uts unix.Utsname
	_ = unix.Uname(&uts)
	add("kernel", true, false, unix.ByteSliceToString(uts.Release[:]))

	// What every backend needs, probed by loading: a kernel without one
	// is refused by run too, naming it.
	fs = append(fs, requirementFeatures(bpf.CheckRequirements())...)

	tpErr := ensureTracefs()
	_, err := os.Stat(tracefsDir + "/events/syscalls/sys_enter_read")
	if err != nil {
		_, err = os.Stat("/sys/kernel/debug/tracing/events/syscalls/sys_enter_read")
	}
	tpOK := tpErr == nil && err == nil
	add("syscall tracepoints", tpOK, false, pick(tpOK,
		"syscalls/sys_exit_* available (the fallback capture backend)",
		fmt.Sprintf("not available (%v): needs CONFIG_FTRACE_SYSCALLS and tracefs", errors.Join(tpErr, err))))
	_, err = os.Stat(tracefsDir + "/events/sock/sock_recv_length")
	add("socket tracepoints", err == nil, false, pick(err == nil,
		"sock/sock_recv_length and sock_send_length available (kernel 6.3+): the cheapest capture backend",
		"sock/sock_recv_length missing (kernel before 6.3): a costlier backend is used"))

	err = features.HaveProgramType(ebpf.TracePoint)
	add("tracepoint programs", err == nil, true, errWords(err, "loadable"))
	err = features.HaveProgramType(ebpf.RawTracepoint)
	add("raw tracepoint programs", err == nil, true, errWords(err, "loadable (process fork discovery)"))
	_, err = os.Stat("/sys/bus/event_source/devices/uprobe")
	add("uprobes", err == nil, false, pick(err == nil,
		"available (TLS library hooks)", "not available: TLS library hooks cannot work"))
	_, err = os.Stat("/sys/bus/event_source/devices/kprobe")
	add("kprobes", err == nil, false, pick(err == nil,
		"available (not needed by authprobe)", "not available (CONFIG_KPROBES unset) — not needed: authprobe uses tracepoints"))

	lockdown := "none"
	if b, err := os.ReadFile("/sys/kernel/security/lockdown"); err == nil {
		s := string(b)
		if i, j := strings.Index(s, "["), strings.Index(s, "]"); i >= 0 && j > i {
			lockdown = s[i+1 : j]
		}
	}
	add("lockdown", lockdown != "confidentiality", true, pick(lockdown != "confidentiality",
		lockdown+" (reading process memory from BPF is allowed; authprobe never writes it)",
		"confidentiality: BPF may not read kernel or process memory"))

	privOK, privDetail := privileges()
	add("privileges", privOK, true, privDetail)
	return fs
}

// requirementFeatures are the check lines of the kernel features every
// backend needs.
func requirementFeatures(checks []bpf.RequirementCheck) []feature {
	var fs []feature
	for _, r := range checks {
		fs = append(fs, feature{name: r.Name, ok: r.Err == nil, required: true, detail: pick(r.Err == nil,
			fmt.Sprintf("available (kernel %s+): %s", r.Since, r.Why),
			fmt.Sprintf("%s: needs kernel %s+ (%s)", errWords(r.Err, ""), r.Since, r.Why))})
	}
	return fs
}

// missingCapabilities lists the capabilities loading needs that this
// process lacks (required), and those whose absence only weakens it
// (optional). It reads the effective set, so it is right for root in a
// restricted container too. CAP_SYS_ADMIN stands in for BPF and PERFMON.
func missingCapabilities() (required, optional []string, err error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil, nil, fmt.Errorf("read capabilities: %w", err)
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	admin := has(unix.CAP_SYS_ADMIN)
	if !has(unix.CAP_BPF) && !admin {
		required = append(required, "CAP_BPF")
	}
	if !has(unix.CAP_PERFMON) && !admin {
		required = append(required, "CAP_PERFMON")
	}
	if !has(unix.CAP_SYS_PTRACE) {
		// Without it /proc/<pid>/exe of other users' processes is
		// unreadable: exe targets and service names by executable fail.
		optional = append(optional, "CAP_SYS_PTRACE")
	}
	return required, optional, nil
}

// privileges reports whether this process has what loading needs.
func privileges() (bool, string) {
	required, optional, err := missingCapabilities()
	switch {
	case err != nil:
		return false, err.Error()
	case len(required) > 0:
		return false, "missing " + strings.Join(append(required, optional...), ", ") + " (run as root or grant them)"
	case len(optional) > 0:
		return true, "can load; missing " + strings.Join(optional, ", ") + ": executables of other users' processes cannot be resolved"
	case os.Geteuid() == 0:
		return true, "running as root with CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE"
	}
	return true, "CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE present"
}

func pick(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}

func errWords(err error, ok string) string {
	switch {
	case err == nil:
		return ok
	case errors.Is(err, ebpf.ErrNotSupported):
		return "not supported by this kernel"
	default:
		return err.Error()
	}
}
