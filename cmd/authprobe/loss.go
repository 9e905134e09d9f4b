package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/authprobe/authprobe/decoder"
	"github.com/authprobe/authprobe/export"
)

// authprobe_auth_attempts_lost_total{stage, reason} counts auth attempts the agent
// saw (or would have seen) and did not export, in attempt units: one lost
// login is 1, however many events or spans it was. Every loss has exactly
// one cause, and every cause belongs to exactly one stage, which counts it
// at the point it happens: the kernel for what never reached user space,
// the decoder for exchanges it could not complete, the exporter for spans
// it could not deliver. A stage must not count a loss a stage before it
// already counted (a lost kernel event is the kernel's, not also the
// decoder's sequence gap): that is what makes the sum the loss.
//
// A stage joins by giving newLossMetric a lossSource with the reasons it
// reports; a reason claimed by two sources is refused at start. The stage
// label lets a ratio tell losses before a span was built (kernel, decoder)
// from those after (export, already in authprobe_spans_total).

// lossSource is one stage's lost attempts by cause.
type lossSource struct {
	stage   string   // the stage label: kernel, decoder, export
	reasons []string // fixed label values
	// read returns the counts, in the order of reasons.
	read func() []uint64
}

type lossMetric struct {
	desc    *prometheus.Desc
	sources []lossSource
}

func newLossMetric(sources ...lossSource) (*lossMetric, error) {
	owner := map[string]string{}
	for _, s := range sources {
		for _, r := range s.reasons {
			if o, dup := owner[r]; dup {
				return nil, fmt.Errorf("lost-attempt reason %q counted by both %s and %s", r, o, s.stage)
			}
			owner[r] = s.stage
		}
	}
	return &lossMetric{
		desc: prometheus.NewDesc("authprobe_auth_attempts_lost_total",
			"Auth attempts lost before export, by the stage that lost them and the cause; each lost attempt is counted once.",
			[]string{"stage", "reason"}, nil),
		sources: sources,
	}, nil
}

func (m *lossMetric) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

func (m *lossMetric) Collect(ch chan<- prometheus.Metric) {
	for _, s := range m.sources {
		counts := s.read()
		for i, r := range s.reasons {
			var v uint64
			if i < len(counts) {
				v = counts[i]
			}
			ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(v), s.stage, r)
		}
	}
}

// exportLoss is the exporter's share: a span is an attempt, so every
// dropped span is a lost attempt, by the reasons of
// authprobe_spans_dropped_total.
func exportLoss(e *export.Exporter) lossSource {
	return lossSource{
		stage:   "export",
		reasons: []string{"buffer_full", "export_failed", "shutdown", "spill_corrupt"},
		read: func() []uint64 {
			st := e.Stats()
			return []uint64{st.DroppedBufferFull, st.ExportFailed, st.DroppedShutdown, st.DroppedCorrupt}
		},
	}
}

// captureLoss is the capture's share, counted by the decoder in attempts
// (at least one per hole where a request could have been, exactly one per
// parsed request it could not keep) and labelled with the stage whose
// limit caused it: the kernel's (events lost in the ring buffer, seen as
// sequence gaps; the episode budget; unreadable I/O; a cut capture) or the
// decoder's own (eviction, queue bounds, parse errors, desyncs). The
// kernel's drop_ringbuf_full counts the same losses in events, so it is
// not added here.
func captureLoss(p *pipeline, stage string, losses ...decoder.Loss) lossSource {
	reasons := make([]string, len(losses))
	for i, l := range losses {
		reasons[i] = l.String()
		if l == decoder.LossSeqGap {
			reasons[i] = "ringbuf_full"
		}
	}
	return lossSource{
		stage:   stage,
		reasons: reasons,
		read: func() []uint64 {
			st := p.stats().Decoder
			out := make([]uint64, len(losses))
			for i, l := range losses {
				out[i] = st.LostAttempts[l]
			}
			return out
		},
	}
}
