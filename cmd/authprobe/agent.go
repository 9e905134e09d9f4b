package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/bpf/tlsprobe"
	"github.com/authprobe/authprobe/bpf/uprobe"
	"github.com/authprobe/authprobe/cmd/authprobe/internal/targets"
	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/detect"
	"github.com/authprobe/authprobe/export"
	"github.com/authprobe/authprobe/k8smeta"
	"github.com/authprobe/authprobe/spanbuilder"
)

// runAgent is `authprobe run`: load, attach, watch, export until a signal.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, err := parseRunFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	base, err := newLogger(stderr, flags.logLevel)
	if err != nil {
		return err
	}
	// Every line names its component; stages get their own.
	log := base.With("component", "agent")
	exportLog := base.With("component", "export")
	cfg, src, err := loadRunConfig(flags)
	if err != nil {
		return err
	}
	log.Info("config", "from", src.name)
	if src.defaultTargets {
		log.Info("no targets configured: watching the built-in default targets (common interpreters and ports; `authprobe defaults` lists them)")
	}
	mem := tuneMemory(log, cfg)
	required, optional, err := missingCapabilities()
	if err != nil {
		return err
	}
	if len(required) > 0 {
		return fmt.Errorf("missing %s: loading eBPF programs needs CAP_BPF and CAP_PERFMON (see `authprobe check`)", strings.Join(required, ", "))
	}
	if len(optional) > 0 {
		log.Warn("missing capability: executables of other users' processes cannot be resolved, exe targets may not match", "missing", strings.Join(optional, ", "))
	}
	if err := ensureTracefs(); err != nil {
		return err
	}

	// The OTel SDK reports partial export failures through a global
	// handler; send them to our log rather than its default stderr print.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		exportLog.Warn("opentelemetry", "error", err)
	}))

	clock, err := bpf.NewKernelClock()
	if err != nil {
		return fmt.Errorf("read kernel clock: %w", err)
	}
	builder, err := spanbuilder.New(spanbuilder.Config{
		Routes:      cfg.Routes,
		Security:    cfg.Security,
		ServiceName: cfg.ServiceName,
		ToWall:      clock.Wall,
	})
	if err != nil {
		return fmt.Errorf("span builder: %w", err)
	}
	if builder.RandomKeyInUse() {
		log.Warn("username hashes use a random per-run key: they will not correlate across restarts or nodes (set security.username.key_file or key_env)")
	}

	host, _ := os.Hostname()
	kube, err := startKube(ctx, base.With("component", "k8s"), os.Getenv, cfg)
	if err != nil {
		return err
	}
	defer kube.close()
	exp, err := export.New(ctx, export.Config{
		Kind:          cfg.Exporter.Kind,
		Endpoint:      cfg.Exporter.Endpoint,
		Insecure:      cfg.Exporter.Insecure != nil && *cfg.Exporter.Insecure,
		Stdout:        stdout,
		HostName:      host,
		ExtraResource: k8smeta.Node(os.Getenv),
		// k8s.* and container.* of processes in pods; nothing elsewhere.
		ProcessResource: kube.resource,
		BufferBytes:     int64(cfg.Exporter.BufferSize),
		SpillDir:        cfg.Exporter.SpillDir,
		SpillBytes:      int64(cfg.Exporter.SpillSize),
		OnExportError: func(err error, spans int, retrying bool) {
			if retrying {
				exportLog.Warn("span export failed; the batch stays buffered and is retried", "spans", spans, "error", err)
				return
			}
			exportLog.Warn("span export failed; the batch is dropped", "spans", spans, "error", err)
		},
	})
	if err != nil {
		return fmt.Errorf("exporter: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := exp.Shutdown(sctx); err != nil {
			exportLog.Warn("flush spans", "error", err)
		}
		st := exp.Stats()
		exportLog.Info("spans flushed", "exported", st.Exported, "dropped", st.Dropped(), "spilled_for_next_run", st.Pending)
	}()

	det, err := detect.New(detect.Config{})
	if err != nil {
		return fmt.Errorf("detector: %w", err)
	}
	if cfg.Exporter.Kind == config.ExporterOTLP {
		shutdown, err := startOTLPMetrics(ctx, cfg, det)
		if err != nil {
			return err
		}
		defer shutdown()
	}

	probe, err := bpf.Load(bpf.Config{
		Backend:    flags.captureBackend,
		BurstBytes: uint32(cfg.BurstBytes),
		// 0 keeps the probe's default.
		RingBufferBytes: uint32(flags.ringBufferMiB) << 20,
		PromptWake:      flags.promptWake,
		ResponseBytes:   uint32(cfg.ResponseBytes),
		Routes:          routePrefixes(cfg.Routes),
		TLS:             flags.tls,
		Logger:          base,
	})
	if err != nil {
		return fmt.Errorf("load eBPF programs: %w", err)
	}
	logBackend(log, probe.Backend())
	defer func() {
		if err := probe.Close(); err != nil {
			base.Warn("detach", "component", "bpf", "error", err)
		}
	}()
	if flags.tls && probe.TLSErr() == nil {
		stop, err := startTLSProbes(ctx, probe, mem, base)
		if err != nil {
			return err
		}
		defer stop()
	}

	dec := decoder.New(decoder.Config{
		MaxRequestBody:  cfg.CaptureBytes,
		MaxResponseBody: cfg.ResponseBytes,
		ResponseTimeout: uint64(time.Duration(cfg.ResponseTimeout).Nanoseconds()),
		// Requests on no route keep no body and make no exchange; the
		// kernel is told to stop copying their bodies.
		Interesting: builder.Interesting,
		// An auth connection stays captured for a quarter of the kernel's
		// episode budget: no resume syscall per login of a stuffing run.
		HoldBytes: uint64(cfg.BurstBytes) / 4,
	})
	matcher := targets.NewMatcher(cfg.Targets, cfg.ServiceName, "/proc").WithPods(kube.meta)
	pipe := newPipeline(base.With("component", "pipeline"), probe, dec, builder, clock, matcher,
		lostEvents(probe), exp.Emit, det.Observe)
	pipe.goSpawns = flags.goSpawns

	// Named PIDs must exist: a typo should not look like a quiet service.
	for _, pid := range flags.pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return fmt.Errorf("--pid %d: no such process", pid)
		}
	}
	pipe.scan(matcher.HasPortTargets())

	var srv *http.Server
	if cfg.Metrics.Addr != "off" {
		reg, err := newMetrics(probe, pipe, exp, det)
		if err != nil {
			return err
		}
		reg.MustRegister(kube, backendInfo(probe.Backend()))
		srv, err = serveMetrics(cfg.Metrics.Addr, reg, pipe, base.With("component", "metrics"), flags.pprof, kube.readyDetail)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	pipe.ready.Store(true)
	mem.settle()
	log.Info("authprobe running", "routes", len(cfg.Routes), "watched", pipe.stats().Watched,
		"exporter", cfg.Exporter.Kind, "metrics", cfg.Metrics.Addr)

	if err := probe.Run(ctx, pipe, 100*time.Millisecond, pipe.tick); err != nil {
		return err
	}
	log.Info("shutting down")
	return nil
}

// configSource says where the config came from.
type configSource struct {
	name           string // the file, or the built-in default's name
	defaultTargets bool   // it named no target and watches the defaults
}

// loadConfig reads the config: path, else config.DefaultPath when it
// exists, else the built-in default. The --pid targets are added; a config
// left without targets gets the built-in default's. It is validated.
func loadConfig(path string, pids []int) (*config.Config, configSource, error) {
	src := configSource{name: path}
	var cfg *config.Config
	var err error
	switch {
	case path != "":
		cfg, err = config.Load(path)
	case fileExists(config.DefaultPath):
		src.name = config.DefaultPath
		cfg, err = config.Load(config.DefaultPath)
	default:
		src.name = "built-in default (authprobe defaults)"
		cfg, err = config.Default(os.LookupEnv)
	}
	if err != nil {
		return nil, src, err
	}
	for _, pid := range pids {
		cfg.Targets = append(cfg.Targets, config.Target{PID: pid})
	}
	if src.defaultTargets, err = cfg.UseDefaultTargets(); err != nil {
		return nil, src, err
	}
	return cfg, src, cfg.Validate()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// loadRunConfig reads the config and applies the command line on top.
func loadRunConfig(f runFlags) (*config.Config, configSource, error) {
	cfg, src, err := loadConfig(f.config, f.pids)
	if err != nil {
		return nil, src, err
	}
	if f.otlpEndpoint != "" {
		cfg.Exporter.Kind = config.ExporterOTLP
		cfg.Exporter.Endpoint = f.otlpEndpoint
		if cfg.Exporter.Insecure == nil {
			insecure := config.IsLoopbackEndpoint(f.otlpEndpoint)
			cfg.Exporter.Insecure = &insecure
		}
	}
	if f.exporter != "" {
		cfg.Exporter.Kind = f.exporter
	}
	if f.metricsAddr != "" {
		cfg.Metrics.Addr = f.metricsAddr
	}
	if err := cfg.Validate(); err != nil {
		return nil, src, err
	}
	return cfg, src, nil
}

// routePrefixes are the literal path prefixes of the routes, for the
// kernel's proof that a request is on none of them.
func routePrefixes(routes []config.Route) []string {
	out := make([]string, 0, len(routes))
	for _, r := range routes {
		out = append(out, bpf.PrefixOf(r.Path))
	}
	return out
}

// lostEvents reads the kernel's count of events that did not fit in the
// ring buffer.
func lostEvents(p *bpf.Probe) func() uint64 {
	return func() uint64 {
		c, err := p.Counters()
		if err != nil {
			return 0
		}
		return c["drop_ringbuf_full"]
	}
}

// logBackend says which capture backend runs and why cheaper ones did not.
func logBackend(log *slog.Logger, b bpf.BackendInfo) {
	log.Info("capture backend", "backend", b.Name)
	for _, r := range b.Refused {
		log.Info("capture backend refused", "backend", r.Backend, "reason", r.Err)
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// tlsSyncEvery is how often the TLS probes are matched to the watched
// processes: a new process, or a library loaded later (dlopen), gets its
// probes within it.
const tlsSyncEvery = 500 * time.Millisecond

// startTLSProbes keeps the TLS library probes on the files the watched
// processes map until the returned stop is called.
func startTLSProbes(ctx context.Context, probe *bpf.Probe, mem *memory, log *slog.Logger) (stop func(), err error) {
	mgr, err := tlsprobe.New(tlsprobe.Config{
		Resolver: uprobe.NewResolver(uprobe.Config{Parse: mem.parse}),
		AttachOpenSSL: func(path string, funcs map[string]uint64) (io.Closer, error) {
			return probe.AttachOpenSSL(path, funcs)
		},
		AttachGo: func(path string, t *uprobe.GoTarget) (io.Closer, error) {
			return probe.AttachGoTLS(path, tlsprobe.GoTLS(t))
		},
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(tlsSyncEvery)
		defer t.Stop()
		for {
			if procs, err := probe.Watched(); err == nil {
				pids := make([]uint32, len(procs))
				for i, p := range procs {
					pids[i] = p.PID
				}
				mgr.Sync(pids)
				mem.afterParse()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
		if err := mgr.Close(); err != nil {
			log.Warn("detach TLS probes", "component", "tls", "error", err)
		}
	}, nil
}
