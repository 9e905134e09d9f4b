package decoder

import (
	"os"
	"path/filepath"
	"testing"
)

// headSeeds returns the messages of the exchange fixtures, as seeds for the
// head parsers.
func headSeeds(tb testing.TB, dir Direction) [][]byte {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "exchanges", "*.txt"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no fixtures: %v", err)
	}
	var seeds [][]byte
	for _, p := range paths {
		for _, st := range mustLoadScript(tb, p) {
			if st.chunk.Dir == dir && len(st.chunk.Data) > 0 {
				seeds = append(seeds, st.chunk.Data)
			}
		}
	}
	return seeds
}

func FuzzParseRequestHead(f *testing.F) {
	for _, s := range headSeeds(f, Ingress) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := headEnd(b, 0); n >= 0 && (n > len(b) || b[n-1] != '\n') {
			t.Fatalf("headEnd = %d for %d bytes", n, len(b))
		}
		var r Request
		if err := parseRequestHead(b, &r); err != nil {
			return
		}
		if r.Method == "" || !isToken(r.Method) || !validTarget(r.Target) ||
			(r.Proto != proto10 && r.Proto != proto11) {
			t.Fatalf("accepted a bad request line: %q %q %q", r.Method, r.Target, r.Proto)
		}
		checkHeader(t, r.Header)
		if r.ContentLength < -1 || (r.Chunked && r.ContentLength != -1) {
			t.Fatalf("framing: length %d chunked %v", r.ContentLength, r.Chunked)
		}
	})
}

func FuzzParseResponseHead(f *testing.F) {
	for _, s := range headSeeds(f, Egress) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Response
		if err := parseResponseHead(b, &r); err != nil {
			return
		}
		if r.StatusCode < 100 || r.StatusCode > 999 || (r.Proto != proto10 && r.Proto != proto11) ||
			!validFieldValue(r.Reason) {
			t.Fatalf("accepted a bad status line: %q %d %q", r.Proto, r.StatusCode, r.Reason)
		}
		checkHeader(t, r.Header)
		if r.ContentLength < -1 || (r.Chunked && r.ContentLength != -1) {
			t.Fatalf("framing: length %d chunked %v", r.ContentLength, r.Chunked)
		}
	})
}

func checkHeader(t *testing.T, h Header) {
	for _, f := range h {
		if f.Name == "" || !isToken(f.Name) || !validFieldValue(f.Value) || f.Value != trimOWS(f.Value) {
			t.Fatalf("accepted a bad field %q", f.Name)
		}
	}
}

// fuzzConfig is small so that the fuzzer reaches every limit.
func fuzzConfig() Config {
	return Config{
		MaxRequestBody:  64,
		MaxResponseBody: 32,
		MaxConnections:  3,
		MaxHeadBytes:    512,
		ResponseTimeout: 1000,
	}
}

// FuzzDecoder plays an arbitrary program of chunks, closes, expiries and
// fd reuse over four fds. Each operation is one byte, op, then:
//
//	op%16 < 12: a chunk; direction op&1, fd op>>6, a sequence gap when
//	            op&0x10, then a length byte n and n data bytes; for
//	            op%16 >= 8, Len exceeds the data by 7*n
//	op%16 == 12: Close(fd op>>6)
//	op%16 == 13: Expire far enough to time requests out
//	op%16 == 14: ForgetPID
//	op%16 == 15: the fd op>>6 is reused (new Gen)
//
// The decoder must not panic and must stay within its memory bounds.
func FuzzDecoder(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "exchanges", "*.txt"))
	for _, p := range paths {
		f.Add(encodeProgram(mustLoadScript(f, p), 0))
		f.Add(encodeProgram(mustLoadScript(f, p), 7))
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		d := New(fuzzConfig())
		var (
			seqs [4]uint32
			gens = [4]uint64{1, 1, 1, 1}
			now  uint64
		)
		key := func(fd int) ConnKey { return ConnKey{PID: 9, FD: int32(fd), Gen: gens[fd]} }
		for len(prog) > 0 {
			op := prog[0]
			prog = prog[1:]
			fd := int(op >> 6)
			now += 7
			var out []Exchange
			switch op % 16 {
			case 12:
				out = d.Close(key(fd), now)
			case 13:
				now += 3000
				out = d.Expire(now)
			case 14:
				out = d.ForgetPID(9)
			case 15:
				gens[fd]++
				seqs[fd] = 0
			default:
				if len(prog) == 0 {
					return
				}
				n := min(int(prog[0]), len(prog)-1)
				// A copy, wiped after Feed: the decoder must not keep
				// references to chunk data.
				data := append([]byte(nil), prog[1:1+n]...)
				prog = prog[1+n:]
				seqs[fd]++
				if op&0x10 != 0 {
					seqs[fd]++
				}
				dir := Ingress
				if op&1 != 0 {
					dir = Egress
				}
				l := uint32(n)
				if op%16 >= 8 {
					l += 7 * uint32(n)
				}
				out = d.Feed(Chunk{Conn: ConnInfo{Key: key(fd)}, Dir: dir, Seq: seqs[fd], Time: now, Len: l, Data: data})
				clear(data)
			}
			checkExchanges(t, out)
			checkBounds(t, d)
		}
		for fd := range 4 {
			checkExchanges(t, d.Close(key(fd), now))
		}
		if len(d.conns) != 0 || len(d.pids) != 0 {
			t.Fatalf("%d connections left after closing all", len(d.conns))
		}
	})
}

// encodeProgram turns a fixture script into a FuzzDecoder program, cutting
// chunks into pieces of at most 255 bytes (fewer when split is set).
func encodeProgram(steps []step, split int) []byte {
	var prog []byte
	for _, st := range steps {
		fd := byte(st.chunk.Conn.Key.FD&3) << 6
		switch st.op {
		case "in", "out":
			op := fd
			if st.op == "out" {
				op |= 1
			}
			data := st.chunk.Data
			for first := true; first || len(data) > 0; first = false {
				n := min(len(data), 255)
				if split > 0 {
					n = min(n, split)
				}
				prog = append(prog, op, byte(n))
				prog = append(prog, data[:n]...)
				data = data[n:]
			}
		case "close":
			prog = append(prog, fd|12)
		case "expire":
			prog = append(prog, 13)
		case "forget":
			prog = append(prog, 14)
		}
	}
	return prog
}

func checkExchanges(t *testing.T, exs []Exchange) {
	t.Helper()
	for _, ex := range exs {
		if ex.Request == nil {
			t.Fatal("exchange without request")
		}
		if (ex.End == EndResponse) != (ex.Response != nil) {
			t.Fatalf("end %v with response %v", ex.End, ex.Response != nil)
		}
		if len(ex.Request.Body) > fuzzConfig().MaxRequestBody {
			t.Fatalf("request body %d bytes", len(ex.Request.Body))
		}
		if ex.Response != nil && len(ex.Response.Body) > fuzzConfig().MaxResponseBody {
			t.Fatalf("response body %d bytes", len(ex.Response.Body))
		}
		if ex.RequestEnd < ex.RequestStart || ex.ResponseEnd < ex.ResponseStart {
			t.Fatalf("times out of order: %s", summary(ex))
		}
	}
}

// checkBounds verifies the decoder's memory bounds and the consistency of
// its connection table.
func checkBounds(t *testing.T, d *Decoder) {
	t.Helper()
	if len(d.conns) > d.cfg.MaxConnections {
		t.Fatalf("%d connections, max %d", len(d.conns), d.cfg.MaxConnections)
	}
	n := 0
	for c := d.lru.next; c != &d.lru; c = c.next {
		n++
		if d.conns[connID{c.info.Key.PID, c.info.Key.FD}] != c {
			t.Fatal("recency list and table disagree")
		}
		if len(c.in.head) > d.cfg.MaxHeadBytes || len(c.out.head) > d.cfg.MaxHeadBytes {
			t.Fatalf("head buffers %d/%d bytes", len(c.in.head), len(c.out.head))
		}
		if len(c.queue) > maxPending {
			t.Fatalf("%d requests queued", len(c.queue))
		}
		for _, p := range c.queue {
			if len(p.req.Body) > d.cfg.MaxRequestBody || len(p.resp.Body) > d.cfg.MaxResponseBody {
				t.Fatalf("bodies %d/%d bytes", len(p.req.Body), len(p.resp.Body))
			}
		}
	}
	if n != len(d.conns) {
		t.Fatalf("recency list has %d connections, table %d", n, len(d.conns))
	}
}

// TestFuzzCorpusFiles makes sure the committed corpus directories exist,
// so that a lost corpus is noticed rather than silently not run.
func TestFuzzCorpusFiles(t *testing.T) {
	for _, name := range []string{"FuzzParseRequestHead", "FuzzParseResponseHead", "FuzzDecoder"} {
		entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", name))
		if err != nil || len(entries) == 0 {
			t.Errorf("no committed corpus for %s: %v", name, err)
		}
	}
}
