package export

import (
	"context"
	"io"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/test/otlpsink"
	"github.com/authprobe/authprobe/test/testutil"
)

// Stage benchmarks: `go test -run '^$' -bench '^BenchmarkStage' -benchmem`
// in every stage's package, gathered by `make bench-stages`
// (test/bench/stages). Each stage's name says what it takes and gives.
// The sdk sub-benchmarks are the path the direct encoders replaced, for
// comparison.

// cpuMeter reports the process's CPU time per op (cpu-ns/op) beside the
// wall time: on a shared machine ns/op grows with other people's load,
// CPU time much less. It covers every goroutine, the sender's and the GC's
// included.
type cpuMeter struct{ start time.Duration }

func startCPU(b *testing.B) *cpuMeter {
	b.Helper()
	return &cpuMeter{start: testutil.ProcessCPU(b)}
}

func (m *cpuMeter) report(b *testing.B) {
	b.Helper()
	b.ReportMetric(float64(testutil.ProcessCPU(b)-m.start)/float64(b.N), "cpu-ns/op")
}

// benchParent is a caller's span context with tracestate, as a traced
// login carries it.
func benchParent(b *testing.B) trace.SpanContext {
	return mustParent(b, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "")
}

// BenchmarkStageSpanToJSONLine: one spanbuilder.Span to its JSON line.
func BenchmarkStageSpanToJSONLine(b *testing.B) {
	s := loginSpan(benchParent(b))
	b.Run("direct", func(b *testing.B) {
		e := &Exporter{layouts: newLayouts(), resources: newResourceCache(mustDefaults(b, Config{Kind: KindStdout, Stdout: io.Discard}))}
		var line []byte
		b.ReportAllocs()
		cpu := startCPU(b)
		for b.Loop() {
			ids := newIDs(&s)
			line = appendJSONSpan(line[:0], &s, &ids, e.layouts.get(s.Attributes), "", e.resources.get(s.Process).json)
		}
		cpu.report(b)
		b.SetBytes(int64(len(line)))
	})
	b.Run("sdk", func(b *testing.B) {
		p := newSDKPath(b, Config{Kind: KindStdout, Stdout: io.Discard})
		var line []byte
		b.ReportAllocs()
		cpu := startCPU(b)
		for b.Loop() {
			ids := newIDs(&s)
			line = appendSDKSpan(line[:0], p.record(&s, ids))
		}
		cpu.report(b)
		b.SetBytes(int64(len(line)))
	})
}

// BenchmarkStageSpanToOTLP: one spanbuilder.Span to its OTLP protobuf
// bytes, in batches of 512 as exported (sealing included).
func BenchmarkStageSpanToOTLP(b *testing.B) {
	s := loginSpan(benchParent(b))
	const batch = DefaultMaxExportBatchSize
	b.Run("direct", func(b *testing.B) {
		e := &Exporter{layouts: newLayouts(), resources: newResourceCache(mustDefaults(b, Config{Kind: KindOTLP})), open: newOpenBatch(true)}
		var out []byte
		n, size := 0, 0
		b.ReportAllocs()
		cpu := startCPU(b)
		for b.Loop() {
			ids := newIDs(&s)
			e.open.addOTLP(&s, &ids, e.layouts.get(s.Attributes), "", e.resources.get(s.Process))
			if n++; n == batch {
				out = e.open.seal(out)
				size = len(out) / batch
				n = 0
			}
		}
		cpu.report(b)
		b.ReportMetric(float64(size), "B/span")
	})
	b.Run("sdk", func(b *testing.B) {
		p := newSDKPath(b, Config{Kind: KindOTLP})
		ended := make([]sdktrace.ReadOnlySpan, 0, batch)
		size := 0
		b.ReportAllocs()
		cpu := startCPU(b)
		for b.Loop() {
			ids := newIDs(&s)
			ended = append(ended, p.record(&s, ids))
			if len(ended) == batch {
				size = len(p.otlp(b, ended)) / batch
				clear(ended)
				ended = ended[:0]
			}
		}
		cpu.report(b)
		b.ReportMetric(float64(size), "B/span")
	})
}

// BenchmarkStageExportQueue: Emit to bytes on the wire, the sender's work
// included (wall time per span; cpu-ns/op counts both goroutines): stdout
// to a discarding writer, OTLP over gRPC on loopback to a receiver that
// takes the request bytes without decoding them (a decoding receiver in
// this process would measure itself).
func BenchmarkStageExportQueue(b *testing.B) {
	s := loginSpan(benchParent(b))
	run := func(b *testing.B, cfg Config) {
		cfg.BufferBytes = 1 << 30 // measure delivery, not drops
		e, err := New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPU(b)
		for range b.N {
			e.Emit(s)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu.report(b)
		if st := e.Stats(); st.Exported != uint64(b.N) {
			b.Fatalf("exported %d of %d: %+v", st.Exported, b.N, st)
		}
	}
	b.Run("stdout", func(b *testing.B) { run(b, Config{Kind: KindStdout, Stdout: io.Discard}) })
	b.Run("otlp", func(b *testing.B) {
		run(b, Config{Kind: KindOTLP, Endpoint: startRawReceiver(b), Insecure: true})
	})
}

func startRawReceiver(tb testing.TB) string {
	tb.Helper()
	return otlpsink.StartRaw(tb)
}
