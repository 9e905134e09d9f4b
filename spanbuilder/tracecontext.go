package spanbuilder

import (
	"encoding/hex"
	"errors"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/decoder"
)

// maxTracestate bounds the tracestate we parse: 32 members of at most
// 256-byte keys and values fit; anything longer is not a valid tracestate.
const maxTracestate = 32 * (256 + 1 + 256 + 1)

var (
	errTraceparentLen     = errors.New("traceparent: bad length")
	errTraceparentVersion = errors.New("traceparent: bad version")
	errTraceparentFormat  = errors.New("traceparent: bad format")
	errTraceparentZero    = errors.New("traceparent: all-zero id")
	errTraceparentMulti   = errors.New("traceparent: more than one header")
)

// parseTraceparent parses a W3C traceparent value strictly
// (https://www.w3.org/TR/trace-context/#traceparent-header): lower-case
// hex only; version ff is invalid; version 00 is exactly 55 characters; a
// later version may be longer, and then only its first four fields are read
// (the 56th character must be "-"). The returned span context is remote and
// has no tracestate yet.
func parseTraceparent(v string) (trace.SpanContext, error) {
	const n = 55 // 2 + 1 + 32 + 1 + 16 + 1 + 2
	if len(v) < n {
		return trace.SpanContext{}, errTraceparentLen
	}
	if !isLowerHex(v[0:2]) || v[0:2] == "ff" {
		return trace.SpanContext{}, errTraceparentVersion
	}
	version00 := v[0:2] == "00"
	if version00 && len(v) != n || !version00 && len(v) > n && v[n] != '-' {
		return trace.SpanContext{}, errTraceparentLen
	}
	if v[2] != '-' || v[35] != '-' || v[52] != '-' ||
		!isLowerHex(v[3:35]) || !isLowerHex(v[36:52]) || !isLowerHex(v[53:55]) {
		return trace.SpanContext{}, errTraceparentFormat
	}
	var cfg trace.SpanContextConfig
	hex.Decode(cfg.TraceID[:], []byte(v[3:35]))
	hex.Decode(cfg.SpanID[:], []byte(v[36:52]))
	if !cfg.TraceID.IsValid() || !cfg.SpanID.IsValid() {
		return trace.SpanContext{}, errTraceparentZero
	}
	var flags [1]byte
	hex.Decode(flags[:], []byte(v[53:55]))
	// Version 00 defines sampled and (Level 2) random; a later version's
	// other bits mean nothing we know, so only sampled is kept.
	mask := trace.FlagsSampled
	if version00 {
		mask |= trace.FlagsRandom
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0]) & mask
	cfg.Remote = true
	return trace.NewSpanContext(cfg), nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// traceContext is what the headers of a request say about its caller.
type traceContext struct {
	parent            trace.SpanContext // invalid when none or malformed
	malformed         bool              // a traceparent was there but invalid
	tracestateDropped bool              // a tracestate was there but dropped
}

// extractTraceContext reads traceparent and tracestate. A malformed or
// repeated traceparent is ignored (the span starts a new trace); tracestate
// is only read after a valid traceparent, may be split over several header
// lines (joined with ","), and is dropped whole when invalid or too long.
func extractTraceContext(h decoder.Header) traceContext {
	var tc traceContext
	tp, n := headerFirst(h, "traceparent")
	if n == 0 {
		return tc
	}
	if n > 1 {
		tc.malformed = true
		return tc
	}
	sc, err := parseTraceparent(strings.Trim(tp, " \t"))
	if err != nil {
		tc.malformed = true
		return tc
	}
	tc.parent = sc
	ts, ok := joinedTracestate(h)
	if !ok {
		tc.tracestateDropped = true
		return tc
	}
	if ts == "" {
		return tc
	}
	// The members are cut from the string parsed, and the span context
	// outlives the exchange's memory (Chain keeps it for the request's
	// calls): parse a copy.
	state, err := trace.ParseTraceState(strings.Clone(ts))
	if err != nil {
		tc.tracestateDropped = true
		return tc
	}
	tc.parent = sc.WithTraceState(state)
	return tc
}

// joinedTracestate joins every tracestate header line; false when too long.
func joinedTracestate(h decoder.Header) (string, bool) {
	var out string
	for _, f := range h {
		if !strings.EqualFold(f.Name, "tracestate") {
			continue
		}
		v := strings.Trim(f.Value, " \t")
		if v == "" {
			continue
		}
		if out != "" {
			out += ","
		}
		out += v
		if len(out) > maxTracestate {
			return "", false
		}
	}
	return out, true
}
