package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/bpf/tlsprobe"
	"github.com/authprobe/authprobe/bpf/uprobe"
)

// funcNames lists the functions of a probe set, sorted.
func funcNames(funcs map[string]uint64) string {
	names := make([]string, 0, len(funcs))
	for n := range funcs {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

// runCheck is `authprobe check`: the config, then the kernel, then a real
// load of the programs. It reports in plain words and says whether `run`
// can work here; ok is false when it cannot.
func runCheck(ctx context.Context, args []string, w, stderr io.Writer) (bool, error) {
	flags, err := parseCheckFlags(args, w, stderr)
	if err != nil {
		return false, err
	}
	ok := true

	cfg, src, err := loadConfig(flags.config, nil)
	fmt.Fprintf(w, "config %s:\n", src.name)
	if err != nil {
		ok = false
		fmt.Fprintf(w, "  INVALID\n%s\n", indent(err.Error()))
	} else {
		targets := fmt.Sprintf("%d targets", len(cfg.Targets))
		if src.defaultTargets {
			targets += " (the built-in defaults)"
		}
		fmt.Fprintf(w, "  valid: %d routes, %s, exporter %s\n", len(cfg.Routes), targets, cfg.Exporter.Kind)
	}

	fmt.Fprintln(w, "kernel:")
	kernelOK := true
	for _, f := range kernelFeatures() {
		mark := "yes"
		if !f.ok {
			mark = "no "
			if f.required {
				kernelOK = false
			}
		}
		fmt.Fprintf(w, "  %-24s %s  %s\n", f.name, mark, f.detail)
	}

	if kernelOK {
		routes := []string{"/login"}
		if cfg != nil && len(cfg.Routes) > 0 {
			routes = routePrefixes(cfg.Routes)
		}
		// Every backend is loaded, attached and released in turn; the
		// first that works is the one `run` picks.
		chosen := ""
		for _, c := range bpf.CheckBackends(bpf.Config{Routes: routes}) {
			name := "capture backend " + c.Backend
			switch {
			case c.Err != nil:
				fmt.Fprintf(w, "  %-24s no   %v\n", name, c.Err)
			case chosen == "":
				chosen = c.Backend
				fmt.Fprintf(w, "  %-24s yes  verified and attached, then detached: run uses it (%s)\n", name, backendWhy(c.Backend))
			default:
				fmt.Fprintf(w, "  %-24s yes  works too (force it with --capture-backend %s)\n", name, c.Backend)
			}
		}
		if chosen == "" {
			kernelOK = false
		}
	}
	ok = ok && kernelOK

	res := uprobe.NewResolver(uprobe.Config{})
	for _, pid := range flags.pids {
		fmt.Fprintf(w, "TLS libraries of process %d:\n", pid)
		targets, err := res.Process(pid)
		if err != nil {
			fmt.Fprintf(w, "  cannot read: %v\n", err)
			continue
		}
		if len(targets) == 0 {
			fmt.Fprintln(w, "  none: its HTTPS, if any, is not visible (only plaintext HTTP is)")
		}
		for _, t := range targets {
			fmt.Fprintf(w, "  %s: %s\n", t.File.Path, tlsprobe.Describe(t))
			switch {
			case t.Err != nil:
				fmt.Fprintf(w, "    probed: no  %v\n", t.Err)
			case t.OpenSSL != nil:
				fmt.Fprintf(w, "    probed: yes  %d functions (%s)\n", len(t.OpenSSL.Funcs), funcNames(t.OpenSSL.Funcs))
			default:
				g := t.Go
				fmt.Fprintf(w, "    probed: yes  (*tls.Conn).Read at %d RETs, Write at %d RETs; socket offsets from %s\n",
					len(g.Read.Returns), len(g.Write.Returns), g.Offsets.Source)
			}
		}
	}

	if ok {
		fmt.Fprintln(w, "verdict: authprobe run can work here.")
	} else if !kernelOK {
		fmt.Fprintln(w, "verdict: authprobe run cannot work on this machine as it is (see the \"no\" lines above).")
	} else {
		fmt.Fprintln(w, "verdict: fix the config; the kernel can run authprobe.")
	}
	return ok, nil
}

func indent(s string) string {
	out := "    "
	for _, c := range s {
		out += string(c)
		if c == '\n' {
			out += "    "
		}
	}
	return out
}

// backendWhy says in a few words what a backend costs the node.
func backendWhy(name string) string {
	switch name {
	case bpf.BackendSock:
		return "socket-layer tracepoints: only socket I/O pays, no syscall tracepoint attached"
	case bpf.BackendSyscalls:
		return "syscall tracepoints: every syscall on the node takes the slower traced path"
	}
	return name
}
