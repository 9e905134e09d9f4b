package http2

import (
	"bytes"
	"io"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// countingReader counts what the Framer consumed, so the comparison
// stops at the last frame it accepted.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzFramerDifferential decodes the same client bytes with
// golang.org/x/net/http2's Framer (with its hpack decoder) and with Conn:
// for every frame the Framer accepts, Conn must see the same requests —
// pseudo-headers, regular headers in order, trailers, body.
func FuzzFramerDifferential(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		fr := http2.NewFramer(io.Discard, cr)
		fr.SetMaxReadFrameSize(1 << 20)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		fr.MaxHeaderListSize = 1 << 20
		type want struct {
			blocks [][]HeaderField
			body   []byte
		}
		ref := map[uint32]*want{}
		accepted := 0
		for {
			frame, err := fr.ReadFrame()
			if err != nil {
				break
			}
			accepted = cr.n
			switch fm := frame.(type) {
			case *http2.MetaHeadersFrame:
				w := ref[fm.StreamID]
				if w == nil {
					w = &want{}
					ref[fm.StreamID] = w
				}
				var fs []HeaderField
				for _, hf := range fm.Fields {
					fs = append(fs, HeaderField{hf.Name, hf.Value})
				}
				// Conn reads an ending block without pseudo-headers, where
				// a head is due, as trailers (a head always has them).
				if _, r := splitPseudo(fs); len(w.blocks) == 0 && len(r) == len(fs) && fm.StreamEnded() {
					w.blocks = append(w.blocks, nil)
				}
				w.blocks = append(w.blocks, fs)
			case *http2.DataFrame:
				if w := ref[fm.StreamID]; w != nil {
					w.body = append(w.body, fm.Data()...)
				}
			}
		}
		c := NewConn(Config{MaxHeaderBytes: 1 << 20, MaxBodyBytes: 1 << 20, MaxFrameBuffer: 1 << 20, MaxStreams: 1 << 20})
		var got []*Exchange
		got = append(got, c.Feed(Ingress, []byte(Preface), 0)...)
		got = append(got, c.Feed(Ingress, data[:accepted], 0)...)
		got = append(got, c.Close()...)
		gotBy := byStream(got)
		for id, w := range ref {
			e := gotBy[id]
			if e == nil || e.Request == nil {
				t.Fatalf("stream %d: Framer saw %d header blocks, Conn no request", id, len(w.blocks))
			}
			pseudo, regular := splitPseudo(w.blocks[0])
			if !sameFields(regular, e.Request.Header) {
				t.Fatalf("stream %d: headers %v, Framer %v", id, e.Request.Header, regular)
			}
			for _, p := range pseudo {
				var v string
				switch p.Name {
				case ":method":
					v = e.Request.Method
				case ":path":
					v = e.Request.Path
				case ":authority":
					v = e.Request.Authority
				case ":scheme":
					v = e.Request.Scheme
				default:
					continue
				}
				if v != p.Value {
					t.Fatalf("stream %d: %s %q, Framer %q", id, p.Name, v, p.Value)
				}
			}
			var trailers []HeaderField
			for _, b := range w.blocks[1:] {
				_, r := splitPseudo(b)
				trailers = append(trailers, r...)
			}
			if !sameFields(trailers, e.Request.Trailer) {
				t.Fatalf("stream %d: trailers %v, Framer %v", id, e.Request.Trailer, trailers)
			}
			if !bytes.Equal(w.body, e.Request.Body) {
				t.Fatalf("stream %d: body %q, Framer %q", id, e.Request.Body, w.body)
			}
		}
	})
}

func sameFields(a, b []HeaderField) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzConn feeds arbitrary bytes to both directions, split anywhere, from
// the start and joined mid-stream: no panic, and every bound holds.
func FuzzConn(f *testing.F) {
	f.Fuzz(func(t *testing.T, in, eg []byte, split uint16, mid bool) {
		cfg := Config{MaxStreams: 4, MaxHeaderBytes: 256, MaxBodyBytes: 64, MaxFrameBuffer: 1024, MidStream: mid}
		c := NewConn(cfg)
		if !mid {
			in = append([]byte(Preface), in...)
		}
		k := int(split) % (len(in) + 1)
		var got []*Exchange
		got = append(got, c.Feed(Ingress, in[:k], 1)...)
		got = append(got, c.Feed(Egress, eg, 2)...)
		c.Gap(Egress)
		got = append(got, c.Feed(Ingress, in[k:], 3)...)
		got = append(got, c.Feed(Egress, eg, 4)...)
		if len(c.streams) > cfg.MaxStreams {
			t.Fatalf("%d streams tracked", len(c.streams))
		}
		got = append(got, c.Close()...)
		for _, e := range got {
			if q := e.Request; q != nil && len(q.Body) > cfg.MaxBodyBytes {
				t.Fatalf("request body %d bytes", len(q.Body))
			}
			if r := e.Response; r != nil && len(r.Body) > cfg.MaxBodyBytes {
				t.Fatalf("response body %d bytes", len(r.Body))
			}
		}
	})
}
