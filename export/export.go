// Package export takes spanbuilder.Span values and gives exported spans:
// OTLP/gRPC to a collector, or JSON lines on a writer (stdout in the CLI).
//
// Emit encodes a span on the caller's goroutine, straight into the open
// batch: the JSON line, or the OTLP protobuf Span under its process's
// resource (encoded once per process). There is no SDK span and no
// goroutine hand-off per span. A full batch, or one whose oldest span has
// waited BatchTimeout, is sealed into a bounded buffer of encoded batches
// that one sender delivers in order: written to the writer, or uploaded
// with otlptracegrpc's client. A batch that fails with a retryable error
// stays in the buffer and is retried with exponential backoff until it is
// delivered, however long the collector is away; batches behind it wait in
// memory (at most BufferBytes) and, with a SpillDir, on disk (at most
// SpillBytes, surviving restarts). Emit never waits for any of it: a span
// that does not fit is dropped and counted. Every span is accounted for in
// Stats. The package never logs.
package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"

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
	DefaultMaxExportBatchSize = 512
	DefaultMaxProcesses       = 256
	DefaultBufferBytes        = 16 << 20
	DefaultSpillBytes         = 1 << 30
	DefaultRetryInitial       = time.Second
	DefaultRetryMax           = 15 * time.Second
	// MaxBatchBytes seals a batch early: the collector's gRPC server takes
	// messages of up to 4 MiB by default.
	MaxBatchBytes = 1 << 20
)

// Config says where spans go and how they are buffered.
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
	// inside Emit, so it must answer quickly.
	ProcessResource func(spanbuilder.Process) []attribute.KeyValue

	// BatchTimeout is the longest a span waits before its batch is sealed
	// for delivery. Default 200ms for stdout, 1s for OTLP.
	BatchTimeout time.Duration
	// MaxExportBatchSize bounds the spans of one batch. Default 512.
	MaxExportBatchSize int
	// ExportTimeout bounds one delivery attempt, the client's own short
	// retries included. Zero leaves it to otlptracegrpc (10s or
	// OTEL_EXPORTER_OTLP_TIMEOUT).
	ExportTimeout time.Duration
	// MaxProcesses bounds the cached per-process resources. Default 256.
	MaxProcesses int

	// BufferBytes bounds the encoded spans held in memory: the open batch
	// and sealed batches not yet delivered. Emit drops (and counts) spans
	// beyond it. Default 16 MiB.
	BufferBytes int64
	// SpillDir, when set (OTLP only), holds batches beyond half of
	// BufferBytes in files, delivered in order, after a restart too; see
	// spill.go for the format. It is created if missing and locked.
	SpillDir string
	// SpillBytes bounds the spill files, headers included. Default 1 GiB.
	SpillBytes int64
	// RetryInitial and RetryMax are the first and the longest wait between
	// attempts to deliver a batch that failed with a retryable error.
	// Defaults 1s and 15s.
	RetryInitial, RetryMax time.Duration

	// OnExportError, when set, is told of every failed delivery attempt
	// (from the sender goroutine; it must not block), so the caller can log
	// it; retrying says whether the batch stays buffered.
	OnExportError func(err error, spans int, retrying bool)
}

// Stats counts what happened to emitted spans. Once Shutdown returned (and
// no Emit is in flight), Emitted + Recovered == Exported + Dropped() +
// Pending, where Pending is what the spill directory keeps for the next run.
type Stats struct {
	Emitted   uint64 // spans handed to Emit
	Recovered uint64 // spans found in the spill directory at start
	Exported  uint64 // spans delivered (the collector accepted their batch)

	DroppedBufferFull uint64 // did not fit in the buffer
	DroppedShutdown   uint64 // emitted after Shutdown began, or undelivered at its end and not spilled
	ExportFailed      uint64 // in batches the collector rejected for good, or stdout failed to take
	DroppedCorrupt    uint64 // in spill files that could not be read back

	ExportErrors uint64 // failed delivery attempts, retried or not
	SpillErrors  uint64 // failed spill file writes (the batch stayed in memory)

	Pending      uint64 // spans buffered now: open batch, memory, disk
	MemoryBytes  int64  // encoded bytes buffered in memory now
	SpilledBytes int64  // bytes in spill files now
}

// Dropped is every span that was not exported, whatever the reason.
func (s Stats) Dropped() uint64 {
	return s.DroppedBufferFull + s.DroppedShutdown + s.ExportFailed + s.DroppedCorrupt
}

// Exporter exports spans; create it with New and end it with Shutdown.
type Exporter struct {
	cfg     Config
	deliver deliverer
	spill   *spillDir // nil without SpillDir
	q       *queue

	// mu guards the open batch and what encodes into it.
	mu        sync.Mutex
	closed    bool
	open      *openBatch
	openedAt  time.Time
	timer     *time.Timer
	layouts   *layouts
	resources *resourceCache

	free chan []byte // recycled batch buffers

	// stop ends the sender's attempts and waits when Shutdown's context
	// ends first.
	stopCtx     context.Context
	stop        context.CancelFunc
	senderDone  chan struct{}
	spillerDone chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error

	emitted, recovered, exported, droppedFull, droppedShutdown, failed, corrupt,
	exportErrors, spillErrors, pending atomic.Uint64
}

// New builds the exporter cfg.Kind names and starts its sender. With a
// SpillDir, batches an earlier run left there are queued first.
func New(ctx context.Context, cfg Config) (*Exporter, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	e := &Exporter{
		cfg:         cfg,
		q:           newQueue(),
		open:        newOpenBatch(cfg.Kind == KindOTLP),
		layouts:     newLayouts(),
		resources:   newResourceCache(cfg),
		free:        make(chan []byte, 2),
		senderDone:  make(chan struct{}),
		spillerDone: make(chan struct{}),
	}
	if cfg.SpillDir != "" {
		if e.spill, err = openSpillDir(cfg.SpillDir); err != nil {
			return nil, err
		}
		if err := e.recover(); err != nil {
			e.spill.close()
			return nil, err
		}
	}
	switch cfg.Kind {
	case KindStdout:
		e.deliver = stdoutDeliverer{cfg.Stdout}
	case KindOTLP:
		d, err := newOTLPDeliverer(ctx, cfg)
		if err != nil {
			if e.spill != nil {
				e.spill.close()
			}
			return nil, err
		}
		e.deliver = d
	}
	e.stopCtx, e.stop = context.WithCancel(context.Background())
	e.timer = time.AfterFunc(time.Hour, e.onTimer)
	e.timer.Stop()
	go e.sendLoop()
	if e.spill != nil {
		go e.spillLoop()
	} else {
		close(e.spillerDone)
	}
	return e, nil
}

func withDefaults(cfg Config) (Config, error) {
	switch cfg.Kind {
	case KindStdout:
		if cfg.Stdout == nil {
			return cfg, errors.New("stdout exporter needs a writer")
		}
		if cfg.SpillDir != "" {
			return cfg, errors.New("a spill directory is for the otlp exporter only")
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
	if cfg.MaxExportBatchSize <= 0 {
		cfg.MaxExportBatchSize = DefaultMaxExportBatchSize
	}
	if cfg.MaxProcesses <= 0 {
		cfg.MaxProcesses = DefaultMaxProcesses
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = DefaultBufferBytes
	}
	if cfg.SpillBytes <= 0 {
		cfg.SpillBytes = DefaultSpillBytes
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = DefaultRetryInitial
	}
	if cfg.RetryMax < cfg.RetryInitial {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryInitial)
	}
	return cfg, nil
}

// recover queues the batches an earlier run spilled.
func (e *Exporter) recover() error {
	batches, corrupt, err := e.spill.scan()
	if err != nil {
		return err
	}
	for _, b := range corrupt {
		e.corrupt.Add(uint64(b.spans))
		e.recovered.Add(uint64(b.spans))
	}
	for _, b := range batches {
		e.q.pushSpilled(b)
		e.recovered.Add(uint64(b.spans))
		e.pending.Add(uint64(b.spans))
	}
	return nil
}

// batchBytes is the size at which a batch is sealed early.
func (e *Exporter) batchBytes() int {
	return int(min(MaxBatchBytes, e.cfg.BufferBytes/4))
}

// Emit encodes s into the open batch. It never waits for delivery: when the
// buffer is full or Shutdown has begun, s is dropped and counted. s is not
// kept: its attribute slice may be reused once Emit returns.
func (e *Exporter) Emit(s spanbuilder.Span) {
	e.emitted.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		e.droppedShutdown.Add(1)
		return
	}
	if e.q.memBytes.Load()+int64(e.open.bytes) >= e.cfg.BufferBytes {
		e.droppedFull.Add(1)
		return
	}
	if s.Start.IsZero() || s.End.IsZero() {
		// As the SDK: a missing time is now.
		now := time.Now()
		if s.Start.IsZero() {
			s.Start = now
		}
		if s.End.IsZero() {
			s.End = now
		}
	}
	ids := newIDs(&s)
	var traceState string
	if s.Parent.IsValid() {
		traceState = s.Parent.TraceState().String()
	}
	lay := e.layouts.get(s.Attributes)
	res := e.resources.get(s.Process)
	if e.open.otlp {
		e.open.addOTLP(&s, &ids, lay, traceState, res)
	} else {
		e.open.addJSON(&s, &ids, lay, traceState, res)
	}
	e.pending.Add(1)
	if e.open.n == 1 {
		e.openedAt = time.Now()
		e.timer.Reset(e.cfg.BatchTimeout)
	}
	if e.open.n >= e.cfg.MaxExportBatchSize || e.open.bytes >= e.batchBytes() {
		e.sealLocked()
	}
}

// newIDs gives s its ids: its own when it has them (chosen when its
// request began, spanbuilder.Chain), else a fresh span id in the caller's
// trace or a new one.
func newIDs(s *spanbuilder.Span) spanIDs {
	var ids spanIDs
	if s.Parent.IsValid() {
		ids.trace = s.Parent.TraceID()
		ids.parent = s.Parent.SpanID()
	}
	if s.TraceID.IsValid() {
		ids.trace = s.TraceID
	}
	for ids.trace == [16]byte{} {
		putUint64(ids.trace[:8], rand.Uint64())
		putUint64(ids.trace[8:], rand.Uint64())
	}
	ids.span = s.SpanID
	for ids.span == [8]byte{} {
		putUint64(ids.span[:], rand.Uint64())
	}
	return ids
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	b[0], b[1], b[2], b[3] = byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32)
	b[4], b[5], b[6], b[7] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

// onTimer seals the open batch once its first span has waited BatchTimeout.
func (e *Exporter) onTimer() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.open.n == 0 {
		return
	}
	if wait := e.cfg.BatchTimeout - time.Since(e.openedAt); wait > time.Millisecond {
		e.timer.Reset(wait) // this batch opened after the timer was set
		return
	}
	e.sealLocked()
}

func (e *Exporter) sealLocked() {
	e.timer.Stop()
	n := e.open.n
	data := e.open.seal(e.buffer())
	if e.q.memBytes.Load() >= e.cfg.BufferBytes/8 && cap(data)-len(data) > len(data)/4 {
		// A backlog (an eighth of the bound waiting already): this one
		// is held at its size, not at the capacity of a full batch (a
		// batch of 512 login spans fills a third of it), so BufferBytes
		// bounds what memory holds, give or take the few batches before
		// it. A stream the sender keeps up with, whose queue holds a
		// batch or two, keeps its buffers and copies nothing.
		data = e.compact(data)
	}
	e.q.push(data, n)
	if e.spill != nil && e.q.memBytes.Load() > e.spillThreshold() {
		signal(e.q.wakeSpiller)
	}
}

// spillThreshold: past half the memory bound, batches go to disk, so that
// the other half absorbs bursts while the spiller writes.
func (e *Exporter) spillThreshold() int64 { return e.cfg.BufferBytes / 2 }

func (e *Exporter) buffer() []byte {
	select {
	case b := <-e.free:
		return b[:0]
	default:
		return make([]byte, 0, e.batchBytes()+e.batchBytes()/4)
	}
}

// compact copies b to a buffer of its size and recycles b.
func (e *Exporter) compact(b []byte) []byte {
	out := make([]byte, len(b))
	copy(out, b)
	e.recycle(b)
	return out
}

func (e *Exporter) recycle(b []byte) {
	if b == nil || cap(b) > maxRetainedBuffer || cap(b) < e.batchBytes() {
		return
	}
	select {
	case e.free <- b:
	default:
	}
}

// sendLoop is the one sender: it delivers the oldest batch, retrying it
// with backoff while the failure is retryable, until the queue is closed
// and empty or stop is called.
func (e *Exporter) sendLoop() {
	defer close(e.senderDone)
	wait := e.cfg.RetryInitial
	var readBuf []byte
	for {
		r, data, ok, empty := e.q.front()
		if !ok {
			return
		}
		if empty {
			select {
			case <-e.q.wakeSender:
				continue
			case <-e.stopCtx.Done():
				return
			}
		}
		if data == nil {
			var err error
			if data, err = e.spill.read(r.seq, readBuf); err != nil {
				e.finish(r, nil)
				e.corrupt.Add(uint64(r.spans))
				e.report(err, r.spans, false)
				continue
			}
			readBuf = data
		}
		err := e.attempt(data)
		var partial *partialError
		switch {
		case err == nil || errors.As(err, &partial):
			e.finish(r, data)
			e.exported.Add(uint64(r.spans))
			wait = e.cfg.RetryInitial
			if err != nil {
				e.report(err, r.spans, false)
			}
		case e.stopCtx.Err() != nil:
			// Shutdown gave up on this attempt: the batch stays, to be
			// spilled or counted by Shutdown.
			e.q.release(r)
			return
		case e.deliver.retryable(err):
			e.exportErrors.Add(1)
			e.q.release(r)
			e.report(err, r.spans, true)
			select {
			case <-time.After(jitter(wait)):
			case <-e.stopCtx.Done():
				return
			}
			wait = min(2*wait, e.cfg.RetryMax)
		default:
			e.exportErrors.Add(1)
			e.finish(r, data)
			e.failed.Add(uint64(r.spans))
			e.report(err, r.spans, false)
		}
	}
}

func (e *Exporter) attempt(data []byte) error {
	ctx := e.stopCtx
	if e.cfg.ExportTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.ExportTimeout)
		defer cancel()
	}
	return e.deliver.deliver(ctx, data)
}

// finish removes a batch that is done with (delivered or given up).
func (e *Exporter) finish(r *record, data []byte) {
	spans := r.spans
	fileGone, reuse := e.q.remove(r)
	if fileGone {
		e.spill.remove(r.seq)
	}
	if reuse && data != nil && !r.file {
		e.recycle(data)
	}
	e.pending.Add(^uint64(spans - 1))
}

func (e *Exporter) report(err error, spans int, retrying bool) {
	if e.cfg.OnExportError != nil {
		e.cfg.OnExportError(err, spans, retrying)
	}
}

// jitter spreads retries of agents that lost the same collector.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// spillLoop moves batches from memory to disk while memory is over the
// spill threshold.
func (e *Exporter) spillLoop() {
	defer close(e.spillerDone)
	for {
		select {
		case <-e.q.wakeSpiller:
		case <-e.stopCtx.Done():
			return
		}
		for {
			r := e.q.toSpill(e.spillThreshold(), e.cfg.SpillBytes)
			if r == nil {
				break
			}
			err := e.spill.write(r.seq, r.spans, r.data)
			if e.q.spilled(r, err == nil) {
				e.spill.remove(r.seq)
			}
			if err != nil {
				e.spillErrors.Add(1)
				e.report(err, r.spans, true)
				select {
				case <-time.After(time.Second): // a full disk does not empty at once
				case <-e.stopCtx.Done():
					return
				}
			}
		}
	}
}

// Stats returns the counters so far.
func (e *Exporter) Stats() Stats {
	_, disk := e.q.usage()
	return Stats{
		Emitted:           e.emitted.Load(),
		Recovered:         e.recovered.Load(),
		Exported:          e.exported.Load(),
		DroppedBufferFull: e.droppedFull.Load(),
		DroppedShutdown:   e.droppedShutdown.Load(),
		ExportFailed:      e.failed.Load(),
		DroppedCorrupt:    e.corrupt.Load(),
		ExportErrors:      e.exportErrors.Load(),
		SpillErrors:       e.spillErrors.Load(),
		Pending:           e.pending.Load(),
		MemoryBytes:       e.q.memBytes.Load(),
		SpilledBytes:      disk,
	}
}

// Shutdown stops accepting spans and delivers everything buffered. When ctx
// ends first, the attempt in flight is cancelled and what is left is
// written to the spill directory (delivered by the next run) or, without
// one, counted as dropped. Later calls return the first call's result.
func (e *Exporter) Shutdown(ctx context.Context) error {
	e.shutdownOnce.Do(func() { e.shutdownErr = e.shutdown(ctx) })
	return e.shutdownErr
}

func (e *Exporter) shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.timer.Stop()
	if e.open.n > 0 {
		e.sealLocked()
	}
	e.mu.Unlock()
	e.q.close()

	var flushErr error
	select {
	case <-e.senderDone:
	case <-ctx.Done():
		flushErr = fmt.Errorf("flush spans: %w", ctx.Err())
	}
	e.stop()
	<-e.senderDone
	<-e.spillerDone

	for _, r := range e.q.drain() {
		switch {
		case r.file:
			// Already on disk: the next run delivers it.
		case e.spill != nil && e.keepOnDisk(r):
		default:
			e.droppedShutdown.Add(uint64(r.spans))
			e.pending.Add(^uint64(r.spans - 1))
		}
	}
	var errs []error
	if flushErr != nil {
		errs = append(errs, flushErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := e.deliver.shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("shut down exporter: %w", err))
	}
	if e.spill != nil {
		if err := e.spill.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// keepOnDisk spills an undelivered batch at shutdown, within the disk
// bound.
func (e *Exporter) keepOnDisk(r *record) bool {
	_, disk := e.q.usage()
	if disk+int64(spillHeader+r.size) > e.cfg.SpillBytes {
		return false
	}
	if err := e.spill.write(r.seq, r.spans, r.data); err != nil {
		e.spillErrors.Add(1)
		return false
	}
	e.q.mu.Lock()
	e.q.diskBytes += int64(spillHeader + r.size)
	e.q.mu.Unlock()
	return true
}
