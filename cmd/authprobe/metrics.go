package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/authprobe/authprobe/bpf"
	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/detect"
	"github.com/authprobe/authprobe/export"
)

// counterSource is the kernel side's counters.
type counterSource interface {
	Counters() (map[string]uint64, error)
}

// selfMetrics reads every stage's counters at scrape time, so the hot
// path pays nothing for them.
type selfMetrics struct {
	kernel counterSource
	pipe   *pipeline
	exp    *export.Exporter

	events, drops, truncated, requests, spans, spansExported, spansDropped,
	exportErrors, watched, traceparent, decoderExchanges, unknownPID, eventsRead,
	verdicts, kernelCounters, calls, linked, clientConns,
	exportPending, exportBuffer, spillErrors, spansRecovered *prometheus.Desc
}

func newMetrics(k counterSource, p *pipeline, e *export.Exporter, d *detect.Detector) (*prometheus.Registry, error) {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("authprobe_"+name, help, labels, nil)
	}
	m := &selfMetrics{
		kernel:           k,
		pipe:             p,
		exp:              e,
		events:           desc("events_total", "Events the kernel side sent, by type.", "type"),
		drops:            desc("drops_total", "Captured data lost, by reason.", "reason"),
		truncated:        desc("truncated_total", "Messages cut at the capture limits.", "what"),
		requests:         desc("requests_total", "Request heads the in-kernel route filter saw.", "filter"),
		spans:            desc("spans_total", "Auth spans built."),
		spansExported:    desc("spans_exported_total", "Spans the exporter accepted."),
		spansDropped:     desc("spans_dropped_total", "Spans not exported, by reason.", "reason"),
		exportErrors:     desc("export_errors_total", "Failed delivery attempts (retried or not)."),
		watched:          desc("watched_processes", "Processes watched now."),
		traceparent:      desc("traceparent_malformed_total", "Malformed traceparent headers ignored."),
		calls:            desc("calls_total", "Calls (HTTP requests, database operations) watched processes made while serving a captured request, by attribution: attributed (a CLIENT span under its auth span) or why not (outside, non_auth, ambiguous, busy, full).", "attribution"),
		linked:           desc("linked_hops_total", "Auth spans made children of the watched caller's call on the same node (both ends of the connection watched)."),
		clientConns:      desc("client_connections_total", "Connections watched processes opened, by the protocol their first write showed (http, postgresql, unknown: not followed).", "protocol"),
		decoderExchanges: desc("exchanges_total", "HTTP exchanges decoded."),
		unknownPID:       desc("unknown_process_exchanges_total", "Exchanges of processes the agent had no record of."),
		eventsRead:       desc("events_read_total", "Connection events user space read from the ring buffer."),
		verdicts:         desc("verdicts_total", "Decisions user space sent the kernel about connections, by outcome.", "outcome"),
		kernelCounters:   desc("kernel_total", "Other kernel-side counters (episodes, proofs, verdicts applied), by name.", "name"),
		exportPending:    desc("export_pending_spans", "Spans waiting for delivery (memory and spill files)."),
		exportBuffer:     desc("export_buffer_bytes", "Encoded spans waiting for delivery, by where they wait.", "where"),
		spillErrors:      desc("export_spill_errors_total", "Failed writes of spill files (the batch stayed in memory)."),
		spansRecovered:   desc("spans_recovered_total", "Spans an earlier run left in the spill directory, found at start."),
	}
	loss, err := newLossMetric(
		exportLoss(e),
		captureLoss(p, "kernel", decoder.LossSeqGap, decoder.LossBudget, decoder.LossUnreadable, decoder.LossTruncated),
		captureLoss(p, "decoder", decoder.LossEvicted, decoder.LossQueueFull, decoder.LossParseError, decoder.LossDesync),
	)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m, d, loss, newResidentMetric(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg, nil
}

func (m *selfMetrics) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(m, ch)
}

func (m *selfMetrics) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if kc, err := m.kernel.Counters(); err == nil {
		for name, v := range kc {
			switch {
			case strings.HasPrefix(name, "events_"):
				counter(m.events, v, strings.TrimPrefix(name, "events_"))
			case strings.HasPrefix(name, "drop_"):
				counter(m.drops, v, strings.TrimPrefix(name, "drop_"))
			case strings.HasPrefix(name, "truncated_"):
				counter(m.truncated, v, strings.TrimPrefix(name, "truncated_"))
			case strings.HasPrefix(name, "requests_"):
				counter(m.requests, v, strings.TrimPrefix(name, "requests_"))
			default:
				counter(m.kernelCounters, v, name)
			}
		}
	}
	ps := m.pipe.stats()
	// Decoder.SeqGaps are the kernel's drop_ringbuf_full seen from the
	// other side: not counted twice.
	counter(m.drops, ps.Decoder.ParseErrors, "parse_error")
	counter(m.drops, ps.Decoder.Evicted, "conn_evicted")
	counter(m.drops, ps.Decoder.Orphans, "orphan_response")
	counter(m.drops, ps.WatchFailures, "watch_failed")
	counter(m.verdicts, ps.VerdictsSent, "sent")
	counter(m.verdicts, ps.VerdictsFailed, "failed")
	counter(m.verdicts, ps.VerdictsMerged, "merged")
	counter(m.verdicts, ps.Decoder.ResumesHeld, "held")
	counter(m.drops, ps.Panics, "internal_error")
	counter(m.decoderExchanges, ps.Decoder.Exchanges)
	counter(m.eventsRead, ps.EventsRead)
	counter(m.spans, ps.Builder.Matched) // every matched exchange is a span
	counter(m.traceparent, ps.Builder.MalformedTraceparent)
	counter(m.unknownPID, ps.UnknownPID)
	for attribution, n := range map[string]uint64{
		"attributed": ps.Chain.Attributed, "outside": ps.Chain.Outside, "non_auth": ps.Chain.NonAuth,
		"ambiguous": ps.Chain.Ambiguous, "busy": ps.Chain.Busy, "full": ps.Chain.Full,
	} {
		counter(m.calls, n, attribution)
	}
	counter(m.linked, ps.Chain.Linked)
	counter(m.clientConns, ps.Decoder.ClientHTTP, "http")
	counter(m.clientConns, ps.Decoder.ClientPostgres, "postgresql")
	counter(m.clientConns, ps.Decoder.ClientUnknown, "unknown")
	ch <- prometheus.MustNewConstMetric(m.watched, prometheus.GaugeValue, float64(ps.Watched))

	es := m.exp.Stats()
	counter(m.spansExported, es.Exported)
	counter(m.spansDropped, es.DroppedBufferFull, "buffer_full")
	counter(m.spansDropped, es.DroppedShutdown, "shutdown")
	counter(m.spansDropped, es.ExportFailed, "export_failed")
	counter(m.spansDropped, es.DroppedCorrupt, "spill_corrupt")
	counter(m.exportErrors, es.ExportErrors)
	counter(m.spillErrors, es.SpillErrors)
	counter(m.spansRecovered, es.Recovered)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(m.exportPending, float64(es.Pending))
	gauge(m.exportBuffer, float64(es.MemoryBytes), "memory")
	gauge(m.exportBuffer, float64(es.SpilledBytes), "disk")
}

// serveMetrics serves /metrics, /healthz (the event loop is alive) and
// /readyz (attached and watching; details adds lines of state that do not
// decide readiness) on addr.
func serveMetrics(addr string, reg *prometheus.Registry, p *pipeline, log *slog.Logger, withPprof bool, details ...func() string) (*http.Server, error) {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		last := p.stats().LastTick
		if p.ready.Load() && time.Since(last) > 10*time.Second {
			http.Error(w, "event loop stalled", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !p.ready.Load() {
			http.Error(w, "not attached yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
		for _, d := range details {
			fmt.Fprintln(w, d())
		}
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "error", err)
		}
	}()
	return srv, nil
}

// startOTLPMetrics exports the detection metrics as OTLP metrics to the
// traces' collector.
func startOTLPMetrics(ctx context.Context, cfg *config.Config, d *detect.Detector) (func(), error) {
	insecure := cfg.Exporter.Insecure != nil && *cfg.Exporter.Insecure
	mp, err := detect.NewOTLPMeterProvider(ctx, cfg.Exporter.Endpoint, insecure, 15*time.Second)
	if err != nil {
		return nil, fmt.Errorf("otlp metrics: %w", err)
	}
	if err := d.RegisterOTel(mp.Meter("github.com/authprobe/authprobe/detect")); err != nil {
		return nil, fmt.Errorf("otlp metrics: %w", err)
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mp.Shutdown(sctx)
	}, nil
}

// backendInfo is authprobe_capture_backend_info{backend}: which capture
// backend this node's agent runs (1), so a fleet's mix shows in one query
// and the bench can name the backend its kernel figures are for.
func backendInfo(b bpf.BackendInfo) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "authprobe_capture_backend_info",
		Help: "The capture backend the agent runs (value 1), the cheapest this kernel loads unless forced.",
	}, []string{"backend"})
	g.WithLabelValues(b.Name).Set(1)
	return g
}
