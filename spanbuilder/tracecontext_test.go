package spanbuilder

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/decoder"
)

const (
	validTP  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceHex = "4bf92f3577b34da6a3ce929d0e0e4736"
	spanHex  = "00f067aa0ba902b7"
)

func TestParseTraceparent(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		ok      bool
		sampled bool
		flags   trace.TraceFlags
	}{
		{"valid sampled", validTP, true, true, 0x01},
		{"valid not sampled", "00-" + traceHex + "-" + spanHex + "-00", true, false, 0x00},
		{"random flag kept", "00-" + traceHex + "-" + spanHex + "-03", true, true, 0x03},
		{"unknown flags dropped", "00-" + traceHex + "-" + spanHex + "-ff", true, true, 0x03},
		{"future version exact", "01-" + traceHex + "-" + spanHex + "-01", true, true, 0x01},
		{"future version longer", "cc-" + traceHex + "-" + spanHex + "-03-what-the-future-holds", true, true, 0x01},
		{"future version no dash", "cc-" + traceHex + "-" + spanHex + "-01x", false, false, 0},
		{"version 00 longer", validTP + "-00", false, false, 0},
		{"version ff", "ff-" + traceHex + "-" + spanHex + "-01", false, false, 0},
		{"uppercase version", "0A-" + traceHex + "-" + spanHex + "-01", false, false, 0},
		{"uppercase trace id", "00-" + strings.ToUpper(traceHex) + "-" + spanHex + "-01", false, false, 0},
		{"uppercase span id", "00-" + traceHex + "-00F067AA0BA902B7-01", false, false, 0},
		{"uppercase flags", "00-" + traceHex + "-" + spanHex + "-0A", false, false, 0},
		{"zero trace id", "00-00000000000000000000000000000000-" + spanHex + "-01", false, false, 0},
		{"zero span id", "00-" + traceHex + "-0000000000000000-01", false, false, 0},
		{"short", validTP[:54], false, false, 0},
		{"empty", "", false, false, 0},
		{"bad delimiter", "00_" + traceHex + "-" + spanHex + "-01", false, false, 0},
		{"short trace id", "00-" + traceHex[:31] + "-" + spanHex + "-01x", false, false, 0},
		{"non hex", "00-" + traceHex[:31] + "g-" + spanHex + "-01", false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := parseTraceparent(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if sc.TraceID().String() != traceHex || sc.SpanID().String() != spanHex {
				t.Errorf("ids %s %s", sc.TraceID(), sc.SpanID())
			}
			if !sc.IsRemote() || !sc.IsValid() {
				t.Errorf("remote %v valid %v", sc.IsRemote(), sc.IsValid())
			}
			if sc.IsSampled() != tt.sampled || sc.TraceFlags() != tt.flags {
				t.Errorf("flags %02x sampled %v, want %02x %v", byte(sc.TraceFlags()), sc.IsSampled(), byte(tt.flags), tt.sampled)
			}
		})
	}
}

func hdr(kv ...string) decoder.Header {
	var h decoder.Header
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, decoder.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func TestExtractTraceContext(t *testing.T) {
	tooMany := make([]string, 33)
	for i := range tooMany {
		tooMany[i] = "k" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "=v"
	}
	tests := []struct {
		name       string
		h          decoder.Header
		valid      bool
		malformed  bool
		dropped    bool
		tracestate string
	}{
		{"none", hdr("Host", "x"), false, false, false, ""},
		{"valid", hdr("Traceparent", validTP), true, false, false, ""},
		{"valid with spaces", hdr("traceparent", " "+validTP+"\t"), true, false, false, ""},
		{"tracestate", hdr("traceparent", validTP, "tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"), true, false, false, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"tracestate split", hdr("traceparent", validTP, "tracestate", "rojo=1", "TraceState", "congo=2"), true, false, false, "rojo=1,congo=2"},
		{"tracestate invalid", hdr("traceparent", validTP, "tracestate", "Bad Key=1"), true, false, true, ""},
		{"tracestate duplicate key", hdr("traceparent", validTP, "tracestate", "a=1,a=2"), true, false, true, ""},
		{"tracestate 33 members", hdr("traceparent", validTP, "tracestate", strings.Join(tooMany, ",")), true, false, true, ""},
		{"tracestate 32 members", hdr("traceparent", validTP, "tracestate", strings.Join(tooMany[:32], ",")), true, false, false, strings.Join(tooMany[:32], ",")},
		{"tracestate too long", hdr("traceparent", validTP, "tracestate", strings.Repeat("a=b,", maxTracestate/4+1)), true, false, true, ""},
		{"tracestate without traceparent", hdr("tracestate", "a=1"), false, false, false, ""},
		{"malformed", hdr("traceparent", "00-xyz"), false, true, false, ""},
		{"malformed ignores tracestate", hdr("traceparent", "00-xyz", "tracestate", "a=1"), false, true, false, ""},
		{"repeated", hdr("traceparent", validTP, "traceparent", validTP), false, true, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := extractTraceContext(tt.h)
			if tc.parent.IsValid() != tt.valid || tc.malformed != tt.malformed || tc.tracestateDropped != tt.dropped {
				t.Errorf("valid %v malformed %v dropped %v, want %v %v %v",
					tc.parent.IsValid(), tc.malformed, tc.tracestateDropped, tt.valid, tt.malformed, tt.dropped)
			}
			if got := tc.parent.TraceState().String(); got != tt.tracestate {
				t.Errorf("tracestate %q, want %q", got, tt.tracestate)
			}
		})
	}
}

// FuzzTraceparent checks that parsing never panics and that whatever is
// accepted is a valid remote context that round-trips for version 00.
func FuzzTraceparent(f *testing.F) {
	for _, s := range []string{
		validTP, "ff-" + traceHex + "-" + spanHex + "-01",
		"cc-" + traceHex + "-" + spanHex + "-01-extra", "", "00--",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := parseTraceparent(s)
		if err != nil {
			return
		}
		if !sc.IsValid() || !sc.IsRemote() {
			t.Fatalf("accepted %q as invalid context", s)
		}
		if s[:2] == "00" {
			want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + s[53:55]
			if want != s {
				// flags may lose unknown bits; ids and shape must not change
				if want[:53] != s[:53] {
					t.Fatalf("round trip %q -> %q", s, want)
				}
			}
		}
	})
}
