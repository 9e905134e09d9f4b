// Package export takes spanbuilder.Span values and gives exported spans:
// OTLP/gRPC to a collector, or JSON lines on a writer (stdout in the CLI).
//
// Emit never blocks: spans go into one bounded queue and a single worker
// turns them into SDK spans (one TracerProvider per distinct process, so each
// process has its own resource), batches them and hands the batches to one
// shared sdktrace.SpanExporter. Every span is accounted for in Stats:
// exported, dropped on a full queue, emitted after Shutdown, or lost in a
// failed export. The package never logs.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

// Exporter kinds, as in config.Exporter.Kind.
const (
	KindStdout = "stdout"
	KindOTLP   = "otlp"
)

// Defaults for the zero values of Config.
const (
	DefaultStdoutBatchTimeout = 200 * time.Millisecond
	DefaultOTLPBatchTimeout   = time.Second
	DefaultMaxQueueSize       = 8192
	DefaultMaxExportBatchSize = 512
	DefaultMaxProcesses       = 256
)

// Config says where spans go and how they are queued.
type Config struct {
	// Kind is KindStdout or KindOTLP.
	Kind string
	// Endpoint is the OTLP/gRPC collector as host:port, or a URL
	// (http://host:port is insecure). Empty: the otlptracegrpc default
	// (localhost:4317) and OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT apply.
	// Other OTEL_EXPORTER_OTLP_* variables (headers, TLS, compression,
	// timeout) apply unless a field here overrides them.
	Endpoint string
	// Insecure uses plaintext gRPC. When false nothing is forced, so
	// OTEL_EXPORTER_OTLP_INSECURE still applies.
	Insecure bool
	// Stdout receives the JSON lines for KindStdout; required for it.
	Stdout io.Writer
	// HostName is the host.name resource attribute; omitted when empty.
	HostName string
	// ExtraResource is added to every process's resource (e.g. k8s.node.name).
	ExtraResource []attribute.KeyValue
	// ProcessResource, when set, adds attributes for one process (e.g. its
	// k8s.pod.*). It is called once per process when its resource is first
	// built (and again only after that process was evicted from the cache),
	// on the export worker, so it must answer quickly.
	ProcessResource func(spanbuilder.Process) []attribute.KeyValue

	// BatchTimeout is the longest a span waits before it is exported.
	// Default 200ms for stdout, 1s for OTLP.
	BatchTimeout time.Duration
	// MaxQueueSize bounds the spans waiting for export; Emit drops (and
	// counts) beyond it. Default 2048.
	MaxQueueSize int
	// MaxExportBatchSize bounds one export call. Default 512.
	MaxExportBatchSize int
	// ExportTimeout bounds one export call, retries included. Zero leaves it
	// to the exporter (otlptracegrpc: 10s or OTEL_EXPORTER_OTLP_TIMEOUT).
	ExportTimeout time.Duration
	// MaxProcesses bounds the cached per-process resources. Default 256.
	MaxProcesses int
	// OnExportError, when set, is told of every failed export call (from
	// the worker goroutine; it must not block), so the caller can log it.
	OnExportError func(err error, spans int)
}

// Stats counts what happened to emitted spans. Once Shutdown returned (and
// no Emit is in flight), Emitted == Exported + Dropped().
type Stats struct {
	Emitted          uint64 // spans handed to Emit
	Exported         uint64 // spans the exporter accepted
	DroppedQueueFull uint64 // spans dropped because the queue was full
	DroppedClosed    uint64 // spans emitted after Shutdown began
	ExportFailed     uint64 // spans in export calls that failed
	ExportErrors     uint64 // export calls that failed
}

// Dropped is every span that was not exported, whatever the reason.
func (s Stats) Dropped() uint64 {
	return s.DroppedQueueFull + s.DroppedClosed + s.ExportFailed
}

// Exporter exports spans; create it with New and end it with Shutdown.
type Exporter struct {
	cfg      Config
	exporter sdktrace.SpanExporter
	procs    *processCache // owned by the worker goroutine

	// mu guards closed and the send on queue against close(queue).
	mu     sync.RWMutex
	closed bool
	queue  chan spanbuilder.Span

	// stop cancels in-flight exports when Shutdown's context ends first.
	stopCtx context.Context
	stop    context.CancelFunc
	done    chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error

	emitted, exported, droppedFull, droppedClosed, failed, exportErrors atomic.Uint64
}

// New builds the exporter cfg.Kind names and starts the export worker.
func New(ctx context.Context, cfg Config) (*Exporter, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch cfg.Kind {
	case KindStdout:
		exp = NewJSONExporter(cfg.Stdout)
	case KindOTLP:
		exp, err = otlptracegrpc.New(ctx, otlpOptions(cfg)...)
		if err != nil {
			return nil, fmt.Errorf("create otlp exporter: %w", err)
		}
	}
	return start(cfg, exp), nil
}

func withDefaults(cfg Config) (Config, error) {
	switch cfg.Kind {
	case KindStdout:
		if cfg.Stdout == nil {
			return cfg, errors.New("stdout exporter needs a writer")
		}
		if cfg.BatchTimeout <= 0 {
			cfg.BatchTimeout = DefaultStdoutBatchTimeout
		}
	case KindOTLP:
		if cfg.BatchTimeout <= 0 {
			cfg.BatchTimeout = DefaultOTLPBatchTimeout
		}
	default:
		return cfg, fmt.Errorf("unknown exporter kind %q (want %s or %s)", cfg.Kind, KindStdout, KindOTLP)
	}
	if cfg.MaxQueueSize <= 0 {
		cfg.MaxQueueSize = DefaultMaxQueueSize
	}
	if cfg.MaxExportBatchSize <= 0 {
		cfg.MaxExportBatchSize = DefaultMaxExportBatchSize
	}
	if cfg.MaxProcesses <= 0 {
		cfg.MaxProcesses = DefaultMaxProcesses
	}
	return cfg, nil
}

func otlpOptions(cfg Config) []otlptracegrpc.Option {
	var opts []otlptracegrpc.Option
	switch {
	case strings.Contains(cfg.Endpoint, "://"):
		opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	case cfg.Endpoint != "":
		opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
	}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	if cfg.ExportTimeout > 0 {
		// The exporter's own timeout bounds its retries too.
		opts = append(opts, otlptracegrpc.WithTimeout(cfg.ExportTimeout))
	}
	return opts
}

func start(cfg Config, exp sdktrace.SpanExporter) *Exporter {
	stopCtx, stop := context.WithCancel(context.Background())
	e := &Exporter{
		cfg:      cfg,
		exporter: exp,
		procs:    newProcessCache(cfg),
		queue:    make(chan spanbuilder.Span, cfg.MaxQueueSize),
		stopCtx:  stopCtx,
		stop:     stop,
		done:     make(chan struct{}),
	}
	go e.run()
	return e
}

// Emit queues s for export. It never waits for the exporter: when the queue
// is full or Shutdown has begun, s is dropped and counted.
func (e *Exporter) Emit(s spanbuilder.Span) {
	e.emitted.Add(1)
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		e.droppedClosed.Add(1)
		return
	}
	select {
	case e.queue <- s:
	default:
		e.droppedFull.Add(1)
	}
}

// Stats returns the counters so far.
func (e *Exporter) Stats() Stats {
	return Stats{
		Emitted:          e.emitted.Load(),
		Exported:         e.exported.Load(),
		DroppedQueueFull: e.droppedFull.Load(),
		DroppedClosed:    e.droppedClosed.Load(),
		ExportFailed:     e.failed.Load(),
		ExportErrors:     e.exportErrors.Load(),
	}
}

// Shutdown stops accepting spans, exports everything queued, then shuts the
// exporter down. When ctx ends first, the remaining exports are cancelled
// (and counted as failed). Later calls return the first call's result.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.shutdownOnce.Do(func() { e.shutdownErr = e.shutdown(ctx) })
	return e.shutdownErr
}

func (e *Exporter) shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	close(e.queue)
	e.mu.Unlock()

	var flushErr error
	select {
	case <-e.done:
	case <-ctx.Done():
		e.stop()
		<-e.done
		flushErr = fmt.Errorf("flush spans: %w", ctx.Err())
	}
	e.stop()
	e.procs.close()
	if err := e.exporter.Shutdown(ctx); err != nil {
		return errors.Join(flushErr, fmt.Errorf("shut down exporter: %w", err))
	}
	return flushErr
}

// run is the single worker: it records queued spans into a batch and
// exports the batch when it is full, when its oldest span has waited
// BatchTimeout, or when the queue is closed.
func (e *Exporter) run() {
	defer close(e.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, e.cfg.MaxExportBatchSize)
	// The timer runs only while the batch holds spans, so an idle agent
	// does not wake up.
	timer := time.NewTimer(e.cfg.BatchTimeout)
	timer.Stop()
	var timeout <-chan time.Time
	flush := func() {
		timer.Stop()
		timeout = nil
		if len(batch) > 0 {
			e.export(batch)
			clear(batch) // let the exported spans be collected
			batch = batch[:0]
		}
	}
	for {
		select {
		case s, ok := <-e.queue:
			if !ok {
				flush()
				return
			}
			if len(batch) == 0 {
				timer.Reset(e.cfg.BatchTimeout)
				timeout = timer.C
			}
			rs, ok := e.procs.record(s)
			if !ok {
				// Unreachable with AlwaysSample; counted rather than lost.
				e.failed.Add(1)
				continue
			}
			batch = append(batch, rs)
			if len(batch) >= e.cfg.MaxExportBatchSize {
				flush()
			}
		case <-timeout:
			flush()
		}
	}
}

func (e *Exporter) export(batch []sdktrace.ReadOnlySpan) {
	ctx := e.stopCtx
	if e.cfg.ExportTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.ExportTimeout)
		defer cancel()
	}
	if err := e.exporter.ExportSpans(ctx, batch); err != nil {
		e.exportErrors.Add(1)
		e.failed.Add(uint64(len(batch)))
		if e.cfg.OnExportError != nil {
			e.cfg.OnExportError(err, len(batch))
		}
		return
	}
	e.exported.Add(uint64(len(batch)))
}
