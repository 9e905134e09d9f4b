package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/config"
)

// pidList is a repeatable --pid flag.
type pidList []int

func (p *pidList) String() string {
	s := make([]string, len(*p))
	for i, v := range *p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *pidList) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a process id", v)
	}
	*p = append(*p, n)
	return nil
}

// runFlags are the flags of `authprobe run`.
type runFlags struct {
	config       string
	pids         pidList
	exporter     string
	otlpEndpoint string
	metricsAddr  string
	logLevel     string
	pprof        bool
	// captureBackend forces a capture backend ("auto" picks the cheapest
	// one this kernel loads).
	captureBackend string
	// tls: probe the TLS libraries of watched processes.
	tls bool
	// goSpawns adds the goroutine-creation probes to watched Go
	// processes: off by default, they cost every goroutine a watched Go
	// process creates two uprobe traps (README, "Client capture").
	goSpawns bool
	// ringBufferMiB sizes the kernel's event ring buffer (0: the
	// probe's default). Its pages are mapped into the agent and count
	// in its resident memory.
	ringBufferMiB uint
	// promptWake: the least time between two wakeups a CPU forces for a
	// response that may end a capture episode (0 or negative: none).
	promptWake time.Duration
}

// errHelp: --help was asked for and printed; exit 0.
var errHelp = flag.ErrHelp

func parseRunFlags(args []string, stdout, stderr io.Writer) (runFlags, error) {
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "config file (YAML); default "+config.DefaultPath+" if it exists, else the built-in default (authprobe defaults)")
	fs.Var(&f.pids, "pid", "also watch this process id (repeatable)")
	fs.StringVar(&f.exporter, "exporter", "", "stdout or otlp (overrides the config)")
	fs.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "OTLP/gRPC collector HOST:PORT (implies --exporter otlp)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "self-metrics and health address (default 127.0.0.1:9464; \"off\" disables)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.pprof, "pprof", false, "serve Go profiles at /debug/pprof/ on the metrics address")
	fs.StringVar(&f.captureBackend, "capture-backend", "auto",
		"capture backend: auto (the cheapest this kernel loads), or one of "+strings.Join(bpf.Backends(), ", "))
	fs.BoolVar(&f.tls, "tls", true, "read HTTPS plaintext at the TLS libraries of watched processes (OpenSSL uprobes); --tls=false turns it off")
	fs.BoolVar(&f.goSpawns, "go-spawns", false,
		"follow the goroutines a Go service's handlers spawn (uprobes on runtime.newproc1), so their calls are captured; costs two uprobe traps per goroutine a watched Go process creates")
	fs.UintVar(&f.ringBufferMiB, "ring-buffer-mib", 0,
		"kernel event ring buffer in MiB, a power of two (default 8); it counts once in the agent's resident memory")
	fs.DurationVar(&f.promptWake, "prompt-wake", 0,
		"least time between two wakeups of the agent one CPU forces for a response that may end a capture episode (e.g. 200µs; default 0: only the batch wakes it)")
	if err := parse(fs, args, stdout); err != nil {
		return f, err
	}
	if n := f.ringBufferMiB; n != 0 && (n&(n-1) != 0 || n > 1024) {
		return f, fmt.Errorf("%w: --ring-buffer-mib %d: want a power of two up to 1024", errUsage, n)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := validBackend(f.captureBackend); err != nil {
		return f, err
	}
	switch f.exporter {
	case "", "stdout", "otlp":
	default:
		return f, fmt.Errorf("%w: --exporter %q: want stdout or otlp", errUsage, f.exporter)
	}
	return f, nil
}

// checkFlags are the flags of `authprobe check`.
type checkFlags struct {
	config string
	// pids: list the TLS libraries of these processes and whether each
	// can be probed.
	pids pidList
	// captureBackend is the backend `run --capture-backend` would be
	// given: auto, or one to force.
	captureBackend string
}

func parseCheckFlags(args []string, stdout, stderr io.Writer) (checkFlags, error) {
	var f checkFlags
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "config file (YAML); default "+config.DefaultPath+" if it exists, else the built-in default")
	fs.Var(&f.pids, "pid", "list the TLS libraries of this process and whether each can be probed (repeatable)")
	fs.StringVar(&f.captureBackend, "capture-backend", "auto",
		"the capture backend run would be given: auto (the cheapest this kernel loads), or one of "+strings.Join(bpf.Backends(), ", "))
	if err := parse(fs, args, stdout); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := validBackend(f.captureBackend); err != nil {
		return f, err
	}
	return f, nil
}

// validBackend checks a --capture-backend value.
func validBackend(name string) error {
	if name != bpf.BackendAuto && !slices.Contains(bpf.Backends(), name) {
		return fmt.Errorf("%w: --capture-backend %q: want auto or one of %s", errUsage, name, strings.Join(bpf.Backends(), ", "))
	}
	return nil
}

// parse parses flags; --help prints the flags on stdout (it was asked for)
// and returns errHelp.
func parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.Usage = func() {} // errors are one line; --help is printed below
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage of authprobe %s:\n", fs.Name())
		fs.PrintDefaults()
		return errHelp
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}
