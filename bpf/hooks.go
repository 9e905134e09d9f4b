package bpf

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// hookSince names the kernel release that added a hook a backend needs,
// for the words of a refusal.
var hookSince = map[string]string{
	"sock_recv_length": "6.3",
	"sock_send_length": "6.3",
}

// ErrNoHook marks a backend refused because this kernel does not have a
// hook it attaches to: it was not loaded at all.
var ErrNoHook = errors.New("kernel lacks the hook")

// kernelHooks says whether the running kernel has the hooks programs
// attach to. The zero value reads the kernel's BTF and tracefs.
type kernelHooks struct {
	// spec is the kernel's BTF; nil: loaded on first use.
	spec *btf.Spec
	// tracefs is where tracepoint events are listed; "": the usual
	// mounts.
	tracefs string
	// tried says trampErr is known: whether fentry programs attach.
	tried    bool
	trampErr error
}

// missing returns an ErrNoHook error naming the first hook of spec's
// programs this kernel does not have, or nil. Hooks it cannot judge
// (no BTF, no tracefs) are left to loading and attaching to refuse.
func (k *kernelHooks) missing(spec *ebpf.CollectionSpec) error {
	for _, name := range sortedPrograms(spec) {
		if err := k.missingProgram(spec, name); err != nil {
			return err
		}
	}
	return nil
}

// missingProgram is missing for one program of spec.
func (k *kernelHooks) missingProgram(spec *ebpf.CollectionSpec, name string) error {
	section := spec.Programs[name].SectionName
	kind, target, _ := strings.Cut(section, "/")
	switch kind {
	case "raw_tp", "raw_tracepoint":
		// Every raw tracepoint has a btf_trace_NAME typedef in the
		// kernel's BTF.
		s, err := k.btf()
		if err != nil {
			return nil
		}
		var td *btf.Typedef
		if err := s.TypeByName("btf_trace_"+target, &td); err != nil {
			return hookErr("raw tracepoint", target)
		}
	case "fentry", "fexit":
		s, err := k.btf()
		if err != nil {
			return nil
		}
		var fn *btf.Func
		if err := s.TypeByName(target, &fn); err != nil {
			return hookErr("function", target)
		}
		if err := k.trampolines(); err != nil {
			return fmt.Errorf("%w: %s programs are refused here: %v", ErrNoHook, kind, err)
		}
	case "tracepoint", "tp":
		dir := k.eventsDir()
		if dir == "" {
			return nil
		}
		if _, err := os.Stat(dir + "/" + target); err != nil {
			return hookErr("tracepoint", target)
		}
	}
	return nil
}

// trampolines says whether this kernel attaches fentry programs (BPF
// trampolines: CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS, a JIT, no
// lockdown against them), found once by attaching an empty one to
// tcp_sendmsg and detaching it.
func (k *kernelHooks) trampolines() error {
	if !k.tried {
		k.tried = true
		k.trampErr = tryFentry("tcp_sendmsg")
	}
	return k.trampErr
}

func tryFentry(fn string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: fn, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if errors.Is(err, unix.EPERM) {
		// Not the memory lock cilium/ebpf's message suspects: the
		// limit is lifted before this.
		return fmt.Errorf("loading an empty fentry program on %s: operation not permitted", fn)
	}
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTracing(link.TracingOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return l.Close()
}

func hookErr(kind, name string) error {
	if v, ok := hookSince[name]; ok {
		return fmt.Errorf("%w: no %s %s (kernel %s+)", ErrNoHook, kind, name, v)
	}
	return fmt.Errorf("%w: no %s %s", ErrNoHook, kind, name)
}

func (k *kernelHooks) btf() (*btf.Spec, error) {
	if k.spec != nil {
		return k.spec, nil
	}
	s, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, err
	}
	k.spec = s
	return s, nil
}

// eventsDir is tracefs's events directory, "" when tracefs is not
// mounted where it usually is.
func (k *kernelHooks) eventsDir() string {
	dirs := []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"}
	if k.tracefs != "" {
		dirs = []string{k.tracefs + "/events"}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d + "/syscalls"); err == nil {
			return d
		}
		if _, err := os.Stat(d + "/sched"); err == nil {
			return d
		}
	}
	return ""
}

// BackendAvailable says whether this kernel has every hook a capture
// backend attaches to (without loading anything): nil, or an ErrNoHook
// error naming what is missing. A backend it passes may still be refused
// by the verifier or at attach time.
func BackendAvailable(name string) error {
	bs, err := backendsFor(name)
	if err != nil {
		return err
	}
	if len(bs) != 1 {
		return fmt.Errorf("capture backend %q: name one backend", name)
	}
	// Probing fentry loads a program: kernels before 5.11 charge that to
	// RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("remove memlock limit: %w", err)
	}
	var k kernelHooks
	_, err = bs[0].specHere(&k)
	return err
}

// specHere is b's spec for this kernel: without the optional programs
// whose hooks it lacks, or an ErrNoHook error naming a required hook it
// lacks.
func (b backend) specHere(hooks *kernelHooks) (*ebpf.CollectionSpec, error) {
	spec, err := b.spec()
	if err != nil {
		return nil, fmt.Errorf("load spec: %w", err)
	}
	for _, name := range b.optional {
		if _, ok := spec.Programs[name]; ok && hooks.missingProgram(spec, name) != nil {
			delete(spec.Programs, name)
		}
	}
	if err := hooks.missing(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// sortedPrograms are the names of spec's programs, sorted.
func sortedPrograms(spec *ebpf.CollectionSpec) []string {
	names := make([]string, 0, len(spec.Programs))
	for name := range spec.Programs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}
