package export

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// The collector outage test: the real OpenTelemetry Collector of
// test/collector (`make -C test/collector build`) receives the exporter's
// OTLP under a steady load of spans, is stopped for a while and started
// again; every span must arrive, none twice. By default the outage lasts
// seconds; AUTHPROBE_OUTAGE=2m (any Go duration) runs the long one.

// collectorConfig receives OTLP/gRPC and writes every span to a file.
const collectorConfig = `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:OUTAGE_OTLP_ENDPOINT}
exporters:
  file:
    path: ${env:OUTAGE_FILE}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`

func mustCollectorBinary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("AUTHPROBE_OTELCOL")
	if bin == "" {
		bin, _ = filepath.Abs("../test/collector/bin/otelcol-authprobe")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Skipf("test collector not built (%v): run `make -C test/collector build`", err)
	}
	return bin
}

// collector is one run of the test collector.
type collector struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// mustStartCollector runs the collector on addr writing spans to file, and
// waits until it accepts connections.
func mustStartCollector(tb testing.TB, bin, cfg, addr, file string) *collector {
	tb.Helper()
	logPath := file + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"OUTAGE_OTLP_ENDPOINT=" + addr, "OUTAGE_FILE=" + file}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start collector: %v", err)
	}
	c := &collector{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); logf.Close(); close(c.done) }()
	tb.Cleanup(func() {
		c.stop(tb)
		if tb.Failed() {
			b, _ := os.ReadFile(logPath)
			tb.Logf("collector log %s:\n%s", logPath, b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return c
		}
		select {
		case <-c.done:
			b, _ := os.ReadFile(logPath)
			tb.Fatalf("collector exited:\n%s", b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("collector not listening on %s after 30s", addr)
		}
	}
}

// stop is SIGTERM (the collector flushes and exits), then SIGKILL.
func (c *collector) stop(tb testing.TB) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		tb.Errorf("collector did not stop 20s after SIGTERM")
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// receivedSeqs reads the collector's span files: test.seq of every span,
// how often each span id came, and the number of spans.
func receivedSeqs(tb testing.TB, files ...string) (seqs map[int64]bool, dupIDs, total int) {
	tb.Helper()
	seqs = map[int64]bool{}
	ids := map[string]bool{}
	for _, f := range files {
		fh, err := os.Open(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
		for sc.Scan() {
			var req struct {
				ResourceSpans []struct {
					ScopeSpans []struct {
						Spans []struct {
							SpanID     string `json:"spanId"`
							Attributes []struct {
								Key   string `json:"key"`
								Value struct {
									IntValue string `json:"intValue"`
								} `json:"value"`
							} `json:"attributes"`
						} `json:"spans"`
					} `json:"scopeSpans"`
				} `json:"resourceSpans"`
			}
			if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
				tb.Fatalf("%s: %v", f, err)
			}
			for _, rs := range req.ResourceSpans {
				for _, ss := range rs.ScopeSpans {
					for _, sp := range ss.Spans {
						total++
						if ids[sp.SpanID] {
							dupIDs++
						}
						ids[sp.SpanID] = true
						for _, a := range sp.Attributes {
							if a.Key == "test.seq" {
								n, _ := strconv.ParseInt(a.Value.IntValue, 10, 64)
								seqs[n] = true
							}
						}
					}
				}
			}
		}
		if err := sc.Err(); err != nil {
			tb.Fatal(err)
		}
		fh.Close()
	}
	return seqs, dupIDs, total
}

func TestCollectorOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the collector for several seconds")
	}
	bin := mustCollectorBinary(t)
	outage := 5 * time.Second
	if v := os.Getenv("AUTHPROBE_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("AUTHPROBE_OUTAGE=%q: %v", v, err)
		}
		outage = d
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		// The default memory bound holds seconds of spans at 1000/s.
		{"memory", Config{}},
		// A small memory bound, the rest on disk.
		{"spill", Config{BufferBytes: 2 << 20}},
	}
	if outage > 30*time.Second {
		// Minutes at 1000 spans/s do not fit in memory: the default
		// bound with a spill directory, as a deployment would run it.
		tests = tests[1:]
		tests[0].cfg.BufferBytes = 0
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "collector.yaml")
			if err := os.WriteFile(cfgPath, []byte(collectorConfig), 0o600); err != nil {
				t.Fatal(err)
			}
			addr := closedAddr(t)
			files := []string{filepath.Join(dir, "before.jsonl"), filepath.Join(dir, "after.jsonl")}
			col := mustStartCollector(t, bin, cfgPath, addr, files[0])

			cfg := tt.cfg
			cfg.Kind, cfg.Endpoint, cfg.Insecure = KindOTLP, addr, true
			// Attempts of 2s, so that the buffer's retries (not only the
			// client's within one attempt) are exercised.
			cfg.ExportTimeout = 2 * time.Second
			if tt.name == "spill" {
				cfg.SpillDir = filepath.Join(dir, "spill")
			}
			var mu sync.Mutex
			var (
				retried int
				lastErr error
			)
			cfg.OnExportError = func(err error, _ int, retrying bool) {
				mu.Lock()
				defer mu.Unlock()
				if retrying {
					retried++
				}
				lastErr = err
			}
			e := mustExporter(t, cfg)

			// 1000 spans/s: 10 every 10ms, each numbered.
			stopLoad := make(chan struct{})
			loadDone := make(chan int64)
			go func() {
				var seq int64
				tick := time.NewTicker(10 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stopLoad:
						loadDone <- seq
						return
					case <-tick.C:
					}
					for range 10 {
						s := testSpan("auth.login", trace.SpanContext{}, procLogin)
						s.Attributes = append(s.Attributes, attribute.Int64("test.seq", seq))
						e.Emit(s)
						seq++
					}
				}
			}()
			phase := min(5*time.Second, outage)
			time.Sleep(phase)
			col.stop(t)
			t.Logf("collector stopped after %d spans exported", e.Stats().Exported)
			var peakMem, peakDisk int64
			end := time.Now().Add(outage)
			for time.Now().Before(end) {
				st := e.Stats()
				peakMem, peakDisk = max(peakMem, st.MemoryBytes), max(peakDisk, st.SpilledBytes)
				time.Sleep(100 * time.Millisecond)
			}
			restarted := time.Now()
			st := e.Stats()
			t.Logf("collector down %s: %d spans pending, %d B in memory (peak %d), %d B on disk (peak %d)",
				outage, st.Pending, st.MemoryBytes, peakMem, st.SpilledBytes, max(peakDisk, st.SpilledBytes))
			mustStartCollector(t, bin, cfgPath, addr, files[1])
			backlog := st.Exported + st.Pending // what was sent by the restart
			var caughtUp time.Duration
			for end := time.Now().Add(phase); time.Now().Before(end) || caughtUp == 0; {
				if caughtUp == 0 && e.Stats().Exported >= backlog {
					caughtUp = time.Since(restarted)
				}
				if time.Since(restarted) > 2*time.Minute+outage {
					t.Fatalf("backlog of %d not delivered %s after the restart: %+v", backlog, time.Since(restarted), e.Stats())
				}
				time.Sleep(50 * time.Millisecond)
			}
			close(stopLoad)
			sent := <-loadDone

			deadline := time.Now().Add(2*time.Minute + outage/2)
			for e.Stats().Pending > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("still pending %s after the restart: %+v", time.Since(restarted), e.Stats())
				}
				time.Sleep(100 * time.Millisecond)
			}
			mustShutdown(t, e)
			st = e.Stats()
			mu.Lock()
			t.Logf("the outage's backlog was delivered %s after the restart; %d attempts failed and were retried (last: %v)",
				caughtUp.Round(50*time.Millisecond), retried, lastErr)
			mu.Unlock()
			t.Logf("Stats: %+v", st)

			time.Sleep(500 * time.Millisecond) // the file exporter's flush
			seqs, dups, total := receivedSeqs(t, files...)
			t.Logf("sent %d spans; the collector wrote %d, %d distinct, %d with a span id seen before", sent, total, len(seqs), dups)
			if st.Emitted != uint64(sent) || st.Dropped() != 0 || st.Exported != uint64(sent) {
				t.Fatalf("Stats = %+v for %d spans sent, want every one exported", st, sent)
			}
			if dups != 0 || total != int(sent) {
				t.Errorf("collector wrote %d spans with %d repeated ids, want %d once each", total, dups, sent)
			}
			var missing []int64
			for i := range sent {
				if !seqs[i] {
					missing = append(missing, i)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%d spans never arrived, first %v", len(missing), missing[:min(10, len(missing))])
			}
			mu.Lock()
			if retried == 0 {
				t.Errorf("no delivery failed during the outage: was the collector stopped?")
			}
			mu.Unlock()
			if tt.name == "spill" && peakDisk == 0 {
				t.Errorf("nothing was spilled")
			}
		})
	}
}
