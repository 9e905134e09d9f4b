// Command authprobe is the node agent: it watches the HTTP auth traffic of
// uninstrumented services with eBPF and emits one span per auth attempt.
//
//	authprobe run   [--config FILE] [--pid PID]... [--exporter stdout|otlp] [--otlp-endpoint HOST:PORT] [--metrics-addr ADDR]
//	authprobe check [--config FILE]
//	authprobe defaults
//
// cmd/authprobe owns the wiring, flags, config, logging and signals; the
// stages it connects (bpf, decoder, spanbuilder, export, detect) know
// nothing of each other.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/authprobe/authprobe/config"
)

const usage = `authprobe: zero-code auth spans from eBPF

Usage:
  authprobe run   [--config FILE] [--pid PID]... [--exporter stdout|otlp]
                  [--otlp-endpoint HOST:PORT] [--metrics-addr ADDR] [--log-level LEVEL]
  authprobe check [--config FILE]
  authprobe defaults
  authprobe version

run       watches the configured targets and emits one span per auth attempt
          (JSON lines on stdout unless an OTLP endpoint is configured).
check     validates the config and tells whether this kernel can run the agent.
defaults  prints the built-in config, used when there is no --config and no
          /etc/authprobe/authprobe.yaml.

Without --config, /etc/authprobe/authprobe.yaml is read if it exists, else the
built-in config: common login, token, authorize and logout routes on common
interpreters (python, node, java, ruby, php, ...) and ports (8080, 8000, 3000,
5000). A config without targets watches those same defaults.
`

// errUsage marks command-line mistakes: exit code 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var err error
	switch args[0] {
	case "run":
		err = runAgent(ctx, args[1:], stdout, stderr)
	case "check":
		var ok bool
		ok, err = runCheck(ctx, args[1:], stdout, stderr)
		if err == nil && !ok {
			return 1
		}
	case "defaults":
		_, err = stdout.Write(config.DefaultYAML())
	case "version":
		fmt.Fprintln(stdout, "authprobe", version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "authprobe: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "authprobe: %v\n", err)
		return 2
	default:
		// One clear line (config errors may list several problems).
		fmt.Fprintf(stderr, "authprobe: %v\n", err)
		return 1
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
