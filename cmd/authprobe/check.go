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
		if !reportBackends(w, bpf.CheckBackends(bpf.Config{Routes: routes}), flags.captureBackend) {
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

// reportBackends prints what each capture backend did when it was loaded,
// attached and released, and which one run would use: the forced one, or
// the first that worked (the cheapest), with why the cheaper ones were
// refused. It returns whether run has a backend.
func reportBackends(w io.Writer, checks []bpf.BackendCheck, forced string) bool {
	fmt.Fprintln(w, "capture backends (cheapest first; each loaded, verified, attached and released):")
	errs := map[string]error{}
	chosen := ""
	var refused []string
	for _, c := range checks {
		errs[c.Backend] = c.Err
		if c.Err != nil {
			why := refusal(c.Backend, c.Err)
			fmt.Fprintf(w, "  %-9s no   %s\n", c.Backend, indentRest(why, "                 "))
			if chosen == "" {
				refused = append(refused, c.Backend+": "+firstLine(why))
			}
			continue
		}
		fmt.Fprintf(w, "  %-9s yes  %s\n", c.Backend, backendWhy(c.Backend))
		if chosen == "" {
			chosen = c.Backend
		}
	}
	if forced != "" && forced != bpf.BackendAuto {
		if err, ok := errs[forced]; !ok || err != nil {
			fmt.Fprintf(w, "capture backend: none (%s is forced with --capture-backend and refused here)\n", forced)
			return false
		}
		fmt.Fprintf(w, "capture backend: %s (forced with --capture-backend)\n", forced)
		return true
	}
	if chosen == "" {
		fmt.Fprintln(w, "capture backend: none (every backend was refused)")
		return false
	}
	line := fmt.Sprintf("capture backend: %s (the cheapest that works here)", chosen)
	if len(refused) > 0 {
		line += "; refused before it: " + strings.Join(refused, "; ")
	}
	fmt.Fprintln(w, line)
	return true
}

// refusal is why a backend was refused, without the "capture backend
// NAME:" its error starts with.
func refusal(name string, err error) string {
	return strings.TrimPrefix(err.Error(), "capture backend "+name+": ")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// indentRest indents every line of s but the first with pad.
func indentRest(s, pad string) string {
	return strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
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
		return "socket-layer tracepoints (6.3+): only socket I/O pays, no syscall tracepoint attached"
	case bpf.BackendFentry:
		return "fexit on tcp_sendmsg/tcp_recvmsg (BPF trampolines): only TCP socket I/O pays, no syscall tracepoint attached"
	case bpf.BackendSyscalls:
		return "syscall tracepoints: every syscall on the node takes the slower traced path (the last resort)"
	}
	return name
}
