package bpf

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
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
}

// missing returns an ErrNoHook error naming the first hook of spec's
// programs this kernel does not have, or nil. Hooks it cannot judge
// (no BTF, no tracefs) are left to loading and attaching to refuse.
func (k *kernelHooks) missing(spec *ebpf.CollectionSpec) error {
	for _, name := range sortedPrograms(spec) {
		section := spec.Programs[name].SectionName
		kind, target, _ := strings.Cut(section, "/")
		switch kind {
		case "raw_tp", "raw_tracepoint":
			// Every raw tracepoint has a btf_trace_NAME typedef in the
			// kernel's BTF.
			s, err := k.btf()
			if err != nil {
				continue
			}
			var td *btf.Typedef
			if err := s.TypeByName("btf_trace_"+target, &td); err != nil {
				return hookErr("raw tracepoint", target)
			}
		case "tracepoint", "tp":
			dir := k.eventsDir()
			if dir == "" {
				continue
			}
			if _, err := os.Stat(dir + "/" + target); err != nil {
				return hookErr("tracepoint", target)
			}
		}
	}
	return nil
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
	spec, err := bs[0].spec()
	if err != nil {
		return fmt.Errorf("capture backend %s: load spec: %w", name, err)
	}
	var k kernelHooks
	return k.missing(spec)
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
