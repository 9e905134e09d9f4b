package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Capture backends (docs/capture.md, "Where the bytes come from").
const (
	// BackendAuto picks the cheapest backend this kernel loads.
	BackendAuto = "auto"
	// BackendSock takes bytes at the socket layer's tracepoints (6.3+):
	// nothing but socket I/O pays for it.
	BackendSock = "sock"
	// BackendFentry takes bytes at the exits of TCP's send and receive
	// functions through BPF trampolines (kernels before 6.3 that allow
	// fentry): only TCP socket I/O pays for it.
	BackendFentry = "fentry"
	// BackendSyscalls takes bytes at the exits of the read and write
	// syscalls: every kernel, but every syscall of every task pays for
	// it.
	BackendSyscalls = "syscalls"
)

// backend is one way to capture: the programs of one object.
type backend struct {
	name string
	spec func() (*ebpf.CollectionSpec, error)
	// optional programs are left out on a kernel that lacks their hook.
	optional []string
}

// backends lists every capture backend, cheapest first.
func backends() []backend {
	return []backend{
		{name: BackendSock, spec: loadCaptureSock},
		// tcp_sendpage is gone in 6.5 (sendfile reaches tcp_sendmsg).
		{name: BackendFentry, spec: loadCaptureFentry, optional: []string{"authprobe_fexit_tcp_sendpage"}},
		{name: BackendSyscalls, spec: loadCaptureSyscalls},
	}
}

// Backends names the capture backends, cheapest first.
func Backends() []string {
	var names []string
	for _, b := range backends() {
		names = append(names, b.name)
	}
	return names
}

func backendsFor(name string) ([]backend, error) {
	all := backends()
	if name == BackendAuto {
		return all, nil
	}
	for _, b := range all {
		if b.name == name {
			return []backend{b}, nil
		}
	}
	return nil, fmt.Errorf("capture backend %q: want %s or one of %s", name, BackendAuto, strings.Join(Backends(), ", "))
}

// BackendInfo says which capture backend a Probe runs and why the cheaper
// ones were refused.
type BackendInfo struct {
	Name string
	// Refused lists the backends tried before Name, in order, with the
	// reason each did not load or attach.
	Refused []BackendRefusal
}

// BackendRefusal is a backend that could not be used, and why.
type BackendRefusal struct {
	Backend string
	Err     error
}

func (b BackendInfo) refusals() error {
	var errs []error
	for _, r := range b.Refused {
		errs = append(errs, fmt.Errorf("%s: %w", r.Backend, r.Err))
	}
	return errors.Join(errs...)
}

// BackendCheck is whether one capture backend loads and attaches here.
type BackendCheck struct {
	Backend string
	Err     error // nil: it works
}

// CheckBackends loads and attaches each capture backend in turn, with the
// lifecycle programs, and releases it again: for `authprobe check`.
// Nothing is watched meanwhile, so nothing is captured.
func CheckBackends(cfg Config) []BackendCheck {
	var out []BackendCheck
	for _, name := range Backends() {
		c := cfg
		c.Backend = name
		p, err := Load(c)
		if err == nil {
			err = p.Close()
		}
		out = append(out, BackendCheck{Backend: name, Err: err})
	}
	return out
}

// attach attaches prog where its ELF section says.
func attach(section string, prog *ebpf.Program) (link.Link, error) {
	kind, target, _ := strings.Cut(section, "/")
	switch kind {
	case "raw_tp", "raw_tracepoint":
		l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: target, Program: prog})
		if err != nil {
			return nil, fmt.Errorf("raw tracepoint %s: %w", target, err)
		}
		return l, nil
	case "fentry", "fexit":
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", kind, target, err)
		}
		return l, nil
	case "tracepoint", "tp":
		group, name, ok := strings.Cut(target, "/")
		if !ok {
			return nil, fmt.Errorf("tracepoint section %q: want tracepoint/GROUP/NAME", section)
		}
		l, err := link.Tracepoint(group, name, prog, nil)
		if err != nil {
			return nil, fmt.Errorf("tracepoint %s/%s: %w", group, name, err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("section %q: no attach rule", section)
}
