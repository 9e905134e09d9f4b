package export

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/test/otlpsink"
)

// mustSinkAt starts an OTLP receiver on addr ("" for a fresh port) and
// stops it at cleanup; Close stops it earlier, to play an outage.
func mustSinkAt(tb testing.TB, addr string) *otlpsink.Sink {
	tb.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var s *otlpsink.Sink
	var err error
	// The port of a receiver just closed can take a moment to be free.
	for range 50 {
		if s, err = otlpsink.Listen(addr, false); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("otlp receiver on %s: %v", addr, err)
	}
	tb.Cleanup(s.Close)
	return s
}

// spanIDsOf returns the hex span ids received, and how many arrived twice.
func spanIDsOf(sinks ...*otlpsink.Sink) (map[string]bool, int) {
	seen := map[string]bool{}
	dups := 0
	for _, s := range sinks {
		for _, sp := range s.Spans() {
			id := hex.EncodeToString(sp.Span.GetSpanId())
			if seen[id] {
				dups++
			}
			seen[id] = true
		}
	}
	return seen, dups
}

// fastRetry keeps tests short: attempts every 20-50 ms.
func fastRetry(cfg Config) Config {
	cfg.Kind, cfg.Insecure = KindOTLP, true
	cfg.BatchTimeout = 10 * time.Millisecond
	cfg.ExportTimeout = 500 * time.Millisecond
	cfg.RetryInitial, cfg.RetryMax = 20*time.Millisecond, 50*time.Millisecond
	return cfg
}

func emitN(e *Exporter, n int) {
	for range n {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
	}
}

// TestOutageInMemory: spans emitted while the receiver is down are held
// and delivered when it is back, each once.
func TestOutageInMemory(t *testing.T) {
	first := mustSinkAt(t, "")
	addr := first.Addr()
	e := mustExporter(t, fastRetry(Config{Endpoint: addr, MaxExportBatchSize: 50}))

	emitN(e, 100)
	first.WaitForSpans(t, 100, 10*time.Second)
	// The answer to the last batch must be in too: an abrupt stop before
	// it arrives makes the exporter send that batch again (at least once).
	waitFor(t, func() bool { return e.Stats().Exported == 100 })
	first.Close()

	emitN(e, 300)
	waitFor(t, func() bool { return e.Stats().ExportErrors >= 2 })
	if st := e.Stats(); st.Pending != 300 || st.Exported != 100 {
		t.Fatalf("during the outage Stats = %+v, want 300 pending, 100 exported", st)
	}

	second := mustSinkAt(t, addr)
	second.WaitForSpans(t, 300, 20*time.Second)
	mustShutdown(t, e)

	ids, dups := spanIDsOf(first, second)
	if len(ids) != 400 || dups != 0 {
		t.Fatalf("received %d distinct spans with %d duplicates, want 400 and 0", len(ids), dups)
	}
	if st := e.Stats(); st.Exported != 400 || st.Pending != 0 || st.Dropped() != 0 {
		t.Fatalf("Stats = %+v, want all 400 exported", st)
	}
}

// TestWaitingBatchesCompact: a batch that joins a backlog (an eighth of
// BufferBytes waiting) is held at its size, not at the capacity of a
// full one, so the memory the waiting spans take is what BufferBytes
// counts.
func TestWaitingBatchesCompact(t *testing.T) {
	sink := mustSinkAt(t, "")
	addr := sink.Addr()
	sink.Close() // the collector is away: batches wait
	const bound = 512 << 10
	e := mustExporter(t, fastRetry(Config{Endpoint: addr, MaxExportBatchSize: 100, BufferBytes: bound}))
	emitN(e, 1000)
	waitFor(t, func() bool { return e.q.len() == 10 })
	e.q.mu.Lock()
	var held, size int
	for i, r := range e.q.recs {
		if size >= bound/8 && cap(r.data) > len(r.data)+len(r.data)/4 {
			t.Errorf("batch %d, behind %d bytes: %d bytes held in %d", i, size, len(r.data), cap(r.data))
		}
		held += cap(r.data)
		size += len(r.data)
	}
	e.q.mu.Unlock()
	t.Logf("%d batches: %d bytes of spans held in %d", len(e.q.recs), size, held)
	second := mustSinkAt(t, addr)
	second.WaitForSpans(t, 1000, 20*time.Second)
	mustShutdown(t, e)
}

func batchFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*"+spillSuffix))
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

// TestSpillAndRecover: beyond half the memory bound batches go to disk;
// what is left at shutdown is written there too, and the next run
// delivers all of it.
func TestSpillAndRecover(t *testing.T) {
	dir := t.TempDir()
	down := closedAddr(t)
	cfg := fastRetry(Config{Endpoint: down, SpillDir: dir, BufferBytes: 64 << 10, MaxExportBatchSize: 20})
	e := mustExporter(t, cfg)
	const n = 2000 // about 2 MB encoded: 30 times the memory bound
	for i := range n {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
		if i%100 == 0 {
			time.Sleep(5 * time.Millisecond) // a rate the spiller keeps up with
		}
	}
	waitFor(t, func() bool { return e.Stats().MemoryBytes <= cfg.BufferBytes/2+MaxBatchBytes })
	st := e.Stats()
	if st.SpilledBytes == 0 || len(batchFiles(t, dir)) == 0 {
		t.Fatalf("Stats = %+v, no spill files in %s", st, dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = e.Shutdown(ctx) // the endpoint is down: it gives up
	st = e.Stats()
	kept := st.Pending
	if st.DroppedShutdown != 0 || kept+st.DroppedBufferFull != n || kept == 0 {
		t.Fatalf("after shutdown Stats = %+v, want every span spilled or counted as buffer_full", st)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "*"+tmpSuffix)); len(leftovers) != 0 {
		t.Fatalf("unfinished spill files left: %v", leftovers)
	}

	sink := mustSinkAt(t, "")
	cfg.Endpoint = sink.Addr()
	next := mustExporter(t, cfg)
	if got := next.Stats().Recovered; got != kept {
		t.Fatalf("next run recovered %d spans, want %d", got, kept)
	}
	sink.WaitForSpans(t, int(kept), 20*time.Second)
	mustShutdown(t, next)
	ids, dups := spanIDsOf(sink)
	if uint64(len(ids)) != kept || dups != 0 {
		t.Fatalf("received %d distinct spans, %d twice, want %d once each", len(ids), dups, kept)
	}
	if files := batchFiles(t, dir); len(files) != 0 {
		t.Fatalf("delivered batches left on disk: %v", files)
	}
	if st := next.Stats(); st.Exported != kept || st.Pending != 0 || st.SpilledBytes != 0 {
		t.Fatalf("next run Stats = %+v", st)
	}
}

// TestSpillBound: the disk bound holds; what fits neither is counted.
func TestSpillBound(t *testing.T) {
	dir := t.TempDir()
	cfg := fastRetry(Config{Endpoint: closedAddr(t), SpillDir: dir, BufferBytes: 32 << 10, SpillBytes: 100 << 10, MaxExportBatchSize: 10})
	e := mustExporter(t, cfg)
	const n = 1000
	for i := range n {
		e.Emit(testSpan("auth.login", trace.SpanContext{}, procLogin))
		if i%50 == 0 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = e.Shutdown(ctx)
	st := e.Stats()
	if st.SpilledBytes > cfg.SpillBytes || st.DroppedBufferFull == 0 {
		t.Fatalf("Stats = %+v, want at most %d bytes on disk and buffer_full drops", st, cfg.SpillBytes)
	}
	if st.Emitted != st.Pending+st.Dropped() {
		t.Fatalf("Stats = %+v do not account for every span", st)
	}
	var size int64
	for _, f := range batchFiles(t, dir) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
	}
	if size != st.SpilledBytes {
		t.Fatalf("files hold %d bytes, Stats say %d", size, st.SpilledBytes)
	}
}

// TestSpillCorrupt: unreadable files are removed and their spans counted;
// good ones are delivered.
func TestSpillCorrupt(t *testing.T) {
	dir := t.TempDir()
	// A good batch from a run that could not deliver it.
	e := mustExporter(t, fastRetry(Config{Endpoint: closedAddr(t), SpillDir: dir, BatchTimeout: time.Hour}))
	emitN(e, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = e.Shutdown(ctx)
	good := batchFiles(t, dir)
	if len(good) != 1 {
		t.Fatalf("want one spilled batch, have %v", good)
	}
	data, err := os.ReadFile(good[0])
	if err != nil {
		t.Fatal(err)
	}
	// A copy whose payload is damaged (found when read back), one cut short
	// (found at start), garbage, and an unfinished write.
	bad := append([]byte(nil), data...)
	bad[len(bad)-1] ^= 0xff
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("0000000000000100.batch", bad)
	write("0000000000000101.batch", data[:len(data)-5])
	write("0000000000000102.batch", []byte("not a batch"))
	write("0000000000000103.batch.tmp", data)
	write("notes.txt", []byte("left alone"))

	sink := mustSinkAt(t, "")
	next := mustExporter(t, fastRetry(Config{Endpoint: sink.Addr(), SpillDir: dir}))
	sink.WaitForSpans(t, 3, 10*time.Second)
	waitFor(t, func() bool { return next.Stats().Pending == 0 })
	mustShutdown(t, next)
	st := next.Stats()
	// 3 good, 3 in the damaged copy, 3 claimed by the short one, 0 by garbage.
	if st.Recovered != 9 || st.Exported != 3 || st.DroppedCorrupt != 6 {
		t.Fatalf("Stats = %+v, want 9 recovered, 3 exported, 6 corrupt", st)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range left {
		if b := filepath.Base(f); b != "lock" && b != "notes.txt" {
			t.Errorf("left in the spill directory: %s", b)
		}
	}
}

func TestSpillDirLocked(t *testing.T) {
	dir := t.TempDir()
	mustExporter(t, fastRetry(Config{Endpoint: closedAddr(t), SpillDir: dir}))
	_, err := New(context.Background(), fastRetry(Config{Endpoint: closedAddr(t), SpillDir: dir}))
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second exporter on one spill directory: err = %v, want in use", err)
	}
}

func TestSpillDirOTLPOnly(t *testing.T) {
	_, err := New(context.Background(), Config{Kind: KindStdout, Stdout: os.Stdout, SpillDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "otlp exporter only") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzSpillFile: whatever a spill file holds, reading it back and handing
// it to the client fails cleanly or yields ResourceSpans.
func FuzzSpillFile(f *testing.F) {
	d, err := openSpillDir(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	if err := d.write(1, 2, []byte{0x0a, 0x02, 0x0a, 0x00}); err != nil {
		f.Fatal(err)
	}
	ok, _ := os.ReadFile(d.file(1))
	f.Add(ok)
	f.Add([]byte("APSPILL1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(d.file(7), data, 0o600); err != nil {
			t.Fatal(err)
		}
		hdr, whole := d.header(7)
		payload, err := d.read(7, nil)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("read: %v, want a corrupt-file error", err)
			}
			return
		}
		if !whole || hdr.size != len(payload) {
			t.Fatalf("read a payload of %d bytes from a file whose header says %+v (whole %v)", len(payload), hdr, whole)
		}
		_, _ = carriers(payload)
	})
}
