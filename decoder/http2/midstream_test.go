package http2

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// frameBoundaries returns the offsets of every frame start in one
// direction's bytes (after the preface on Ingress).
func frameBoundaries(b []byte) []int {
	var out []int
	for i := 0; i+frameHeaderLen <= len(b); {
		out = append(out, i)
		i += frameHeaderLen + int(parseFrameHeader(b[i:]).Length)
	}
	return out
}

func concat(recs []record, dir Direction) []byte {
	var b []byte
	for _, r := range recs {
		if r.Dir == dir {
			b = append(b, r.Data...)
		}
	}
	return b
}

// TestMidStream joins a real Go client connection after its first
// exchange, and at every byte after it: whatever is decoded must be what
// the full decode saw (no field invented), what cannot be is counted, and
// the later exchanges are found.
func TestMidStream(t *testing.T) {
	recs := mustGoClientTraffic(t)[0]
	full, _ := feed(Config{}, recs, 0)
	byID := byStream(full)
	in, eg := concat(recs, Ingress)[len(Preface):], concat(recs, Egress)
	// Join both directions at the HEADERS frame of the second stream.
	inAt, egAt := -1, -1
	for _, off := range frameBoundaries(in) {
		if fh := parseFrameHeader(in[off:]); fh.Type == frameHeaders && fh.StreamID == 3 && inAt < 0 {
			inAt = off
		}
	}
	for _, off := range frameBoundaries(eg) {
		if fh := parseFrameHeader(eg[off:]); fh.Type == frameHeaders && fh.StreamID == 3 && egAt < 0 {
			egAt = off
		}
	}
	if inAt < 0 || egAt < 0 {
		t.Fatal("no second stream in the traffic")
	}
	for skew := 0; skew < 40; skew++ {
		// Start a few bytes early too: the decoder must hunt to the frame.
		from := max(inAt-skew, 0)
		c := NewConn(Config{MidStream: true})
		var got []*Exchange
		got = append(got, c.Feed(Ingress, in[from:], 1)...)
		got = append(got, c.Feed(Egress, eg[max(egAt-skew, 0):], 2)...)
		got = append(got, c.Close()...)
		st := c.Stats()
		if skew == 0 && (st.ResyncBytes != 0 || len(got) < 2) {
			t.Fatalf("joined at a boundary: %d exchanges, stats %+v", len(got), st)
		}
		for _, e := range got {
			ref := byID[e.StreamID]
			if ref == nil {
				t.Fatalf("skew %d: stream %d was never in the traffic", skew, e.StreamID)
			}
			if e.Request != nil {
				mustSubset(t, e.Request.Header, ref.Request.Header)
				mustSubset(t, e.Request.Trailer, ref.Request.Trailer)
				for _, p := range [][2]string{{e.Request.Method, ref.Request.Method}, {e.Request.Path, ref.Request.Path}, {e.Request.Authority, ref.Request.Authority}} {
					if p[0] != "" && p[0] != p[1] {
						t.Fatalf("skew %d stream %d: pseudo-header %q, really %q", skew, e.StreamID, p[0], p[1])
					}
				}
				if e.Request.Method != "" && !bytes.HasPrefix(ref.Request.Body, e.Request.Body) {
					t.Fatalf("skew %d: body %q not a prefix of %q", skew, e.Request.Body, ref.Request.Body)
				}
			}
			if e.Response != nil {
				mustSubset(t, e.Response.Header, ref.Response.Header)
				if e.Response.StatusCode != 0 && e.Response.StatusCode != ref.Response.StatusCode {
					t.Fatalf("skew %d: status %d, really %d", skew, e.Response.StatusCode, ref.Response.StatusCode)
				}
			}
		}
		if skew == 0 {
			t.Logf("joined mid-stream: %d exchanges, stats %+v", len(got), st)
			if st.FieldsUndecodable == 0 {
				t.Error("no field was undecodable: the traffic does not exercise the dynamic table")
			}
			e := byStream(got)[3]
			if e == nil || e.Request == nil || !e.Request.Partial || e.Request.Method != "POST" {
				t.Errorf("stream 3: %+v", e)
			}
		}
	}
}

// mustSubset: every decoded field is one the full decode has.
func mustSubset(t *testing.T, got, ref []HeaderField) {
	t.Helper()
	have := map[HeaderField]int{}
	for _, f := range ref {
		have[f]++
	}
	for _, f := range got {
		if have[f] == 0 {
			t.Fatalf("invented field %q: %q (really %v)", f.Name, f.Value, ref)
		}
		have[f]--
	}
}

// TestPartialDecoder: indexed references to entries from before the
// decoder joined are counted, never resolved; entries inserted since are.
func TestPartialDecoder(t *testing.T) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.WriteField(hpack.HeaderField{Name: "x-old", Value: "before"})
	buf.Reset() // the decoder never sees the first block
	enc.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
	enc.WriteField(hpack.HeaderField{Name: "x-old", Value: "before"}) // a reference into the unseen table
	enc.WriteField(hpack.HeaderField{Name: "x-new", Value: "fresh"})
	first := append([]byte(nil), buf.Bytes()...)
	buf.Reset()
	enc.WriteField(hpack.HeaderField{Name: "x-new", Value: "fresh"}) // now a reference to a seen entry
	enc.WriteField(hpack.HeaderField{Name: "x-old", Value: "before"})
	second := append([]byte(nil), buf.Bytes()...)

	var d partialDecoder
	var got []HeaderField
	emit := func(f HeaderField) { got = append(got, f) }
	unknown, err := d.decode(first, emit)
	if err != nil || unknown != 1 {
		t.Fatalf("first block: %d unknown, %v", unknown, err)
	}
	unknown, err = d.decode(second, emit)
	if err != nil || unknown != 1 {
		t.Fatalf("second block: %d unknown, %v", unknown, err)
	}
	want := []HeaderField{{":method", "POST"}, {"x-new", "fresh"}, {"x-new", "fresh"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// TestBounds: streams beyond MaxStreams, fields beyond MaxHeaderBytes and
// bodies beyond MaxBodyBytes are dropped and counted, and HPACK stays in
// sync through them.
func TestBounds(t *testing.T) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	var b []byte
	b = append(b, Preface...)
	frame := func(typ, flags uint8, id uint32, p []byte) {
		b = append(b, byte(len(p)>>16), byte(len(p)>>8), byte(len(p)), typ, flags)
		b = binary.BigEndian.AppendUint32(b, id)
		b = append(b, p...)
	}
	for i := uint32(0); i < 5; i++ {
		hb.Reset()
		enc.WriteField(hpack.HeaderField{Name: ":method", Value: "POST"})
		enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/login"})
		enc.WriteField(hpack.HeaderField{Name: "x-big", Value: strings.Repeat("v", 300)})
		enc.WriteField(hpack.HeaderField{Name: "x-after", Value: "kept?"})
		frame(frameHeaders, flagEndHeaders, 2*i+1, hb.Bytes())
		frame(frameData, flagEndStream, 2*i+1, []byte(strings.Repeat("d", 100)))
	}
	c := NewConn(Config{MaxStreams: 3, MaxHeaderBytes: 200, MaxBodyBytes: 10})
	c.Feed(Ingress, b, 1)
	exs := c.Close()
	st := c.Stats()
	if len(exs) != 3 || st.StreamsDropped != 2 || st.TruncatedBodies != 3 || st.FieldsDropped != 3 || st.BlocksUndecodable != 0 {
		t.Fatalf("%d exchanges, stats %+v", len(exs), st)
	}
	for _, e := range exs {
		q := e.Request
		if q.Method != "POST" || q.Path != "/login" || len(q.Body) != 10 || !q.BodyTruncated || !q.Partial || header(q.Header, "x-after") != "kept?" {
			t.Errorf("stream %d: %+v", e.StreamID, q)
		}
	}
}

// TestNotHTTP2: the preface decides.
func TestNotHTTP2(t *testing.T) {
	if Detect([]byte("PRI * HT")) != NeedMore || Detect([]byte(Preface+"x")) != IsHTTP2 || Detect([]byte("POST /login HTTP/1.1\r\n")) != NotHTTP2 {
		t.Fatal("Detect")
	}
	c := NewConn(Config{})
	if got := c.Feed(Ingress, []byte("GET / HTTP/1.1\r\n\r\n"), 1); got != nil || c.Stats().NotHTTP2 != 1 {
		t.Fatalf("%v %+v", got, c.Stats())
	}
}
