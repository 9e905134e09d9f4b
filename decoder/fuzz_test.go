package decoder

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzConfig is small so that the fuzzer reaches every limit.
func fuzzConfig() Config {
	return Config{
		MaxRequestBody:       64,
		MaxResponseBody:      32,
		MaxConnections:       3,
		MaxHeadBytes:         512,
		ResponseTimeout:      1000,
		MaxPending:           4,
		MaxPendingBytes:      16 << 10,
		MaxTotalPendingBytes: 40 << 10,
		ReorderWindow:        2,
		ReorderBytes:         600,
		HoldBytes:            300,
		HoldIdle:             500,
		// Targets under /x are not interesting: placeholders only.
		Interesting: func(method, target string) bool { return !strings.HasPrefix(target, "/x") },
	}
}

// FuzzDecoder plays an arbitrary program of chunks, closes and expiries
// over four sockets. Each operation is one byte, op; the socket is op>>6.
// Socket 3 is a client connection (egress requests: HTTP/1 or PostgreSQL,
// told by its first write).
//
//	op%16 < 10: a chunk of direction op&1, then a length byte n and n
//	            data bytes (none for budget). op&0x10 skips one sequence
//	            number and 3n stream bytes first (lost events).
//	            op%16/2 == 0: plain; 1: Len exceeds the data by 7n;
//	            2: a budget chunk of 7n+1 bytes; 3: held back and sent after
//	            the next chunk of its direction (reordered); 4: the kernel
//	            skipped n%3 requests of 5n bytes first (boundary, episode).
//	op%16 == 10: Close
//	op%16 == 11: Expire far enough to time requests out
//	op%16 == 12: Expire just after (flushes the reorder window)
//	op%16 == 13: the socket is reused (new Gen)
//	op%16 == 14: drain and check the verdicts
//	op%16 == 15: an unreadable chunk of 13 bytes of direction op>>5&1
//
// The decoder must not panic, must stay within its memory bounds and must
// hold nothing once every connection is closed.
func FuzzDecoder(f *testing.F) {
	for _, p := range fixturePaths(f) {
		sc := mustLoadScript(f, p)
		f.Add(encodeProgram(sc.steps, 0))
		f.Add(encodeProgram(sc.steps, 7))
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		playProgram(t, New(fuzzConfig()), prog, func([]Exchange) {})
	})
}

// playProgram plays a FuzzDecoder program on d, checking every result and
// the bounds after every operation; took sees what every call returned,
// before the next call.
func playProgram(t *testing.T, d *Decoder, prog []byte, took func([]Exchange)) {
	got := func(out []Exchange) {
		t.Helper()
		checkExchanges(t, out)
		took(out)
	}
	type dirState struct {
		seq  uint32
		off  uint64
		held *Chunk
	}
	var (
		dirs [4][2]dirState
		gens = [4]uint64{1, 1, 1, 1}
		now  uint64
	)
	key := func(s int) ConnKey { return ConnKey{Sock: uint64(s + 1), Gen: gens[s]} }
	info := func(s int) ConnInfo {
		if s == 3 {
			return ConnInfo{Key: key(s), Role: RoleClient}
		}
		return ConnInfo{Key: key(s)}
	}
	feed := func(ch Chunk) []Exchange {
		data := ch.Data
		out := d.Feed(ch)
		clear(data) // the decoder must not keep chunk data
		return out
	}
	for len(prog) > 0 {
		op := prog[0]
		prog = prog[1:]
		s := int(op >> 6)
		now += 7
		var out []Exchange
		switch k := op % 16; {
		case k == 10:
			out = d.Close(key(s), now)
			dirs[s] = [2]dirState{}
			gens[s]++
		case k == 11:
			now += 3000
			out = d.Expire(now)
		case k == 12:
			now++
			out = d.Expire(now)
		case k == 13:
			gens[s]++
			dirs[s] = [2]dirState{}
		case k == 14:
			checkVerdicts(t, d.Verdicts())
		case k == 15:
			di := int(op>>5) & 1
			ds := &dirs[s][di]
			out = feed(Chunk{Conn: info(s), Dir: Direction(di + 1), Seq: ds.seq,
				Offset: ds.off, Time: now, Len: 13, Flags: Unreadable})
			ds.seq++
			ds.off += 13
		default:
			if len(prog) == 0 {
				return
			}
			n := int(prog[0])
			prog = prog[1:]
			kind := k / 2
			if kind != 2 {
				n = min(n, len(prog))
			}
			di := int(op & 1)
			ds := &dirs[s][di]
			if op&0x10 != 0 {
				ds.seq++
				ds.off += 3 * uint64(n)
			}
			ch := Chunk{Conn: info(s), Dir: Direction(di + 1), Time: now, Other: dirs[s][1-di].off}
			switch kind {
			case 2:
				ch.Len, ch.Flags = 7*uint32(n)+1, Budget
			case 4:
				ch.Skipped = uint32(n % 3)
				if ch.Skipped > 0 {
					ds.off += 5 * uint64(n)
				}
				ch.Flags = Boundary | Episode
				fallthrough
			default:
				ch.Data = append([]byte(nil), prog[:n]...)
				prog = prog[n:]
				ch.Len = uint32(n)
				if kind == 1 {
					ch.Len += 7 * uint32(n)
				}
			}
			ch.Seq, ch.Offset = ds.seq, ds.off
			ds.seq++
			ds.off += uint64(ch.Len)
			switch {
			case kind == 3 && ds.held == nil:
				ds.held = &ch
			default:
				out = feed(ch)
				if h := ds.held; h != nil {
					ds.held = nil
					got(out)
					out = feed(*h)
				}
			}
		}
		got(out)
		checkBounds(t, d)
	}
	checkVerdicts(t, d.Verdicts())
	for s := range 4 {
		got(d.Close(key(s), now))
	}
	if len(d.conns) != 0 || d.sink.Bytes() != 0 {
		t.Fatalf("%d connections, %d pending bytes left after closing all", len(d.conns), d.sink.Bytes())
	}
}

// encodeProgram turns a fixture script into a FuzzDecoder program, cutting
// chunks into pieces of at most 255 bytes (fewer when split is set).
func encodeProgram(steps []step, split int) []byte {
	var prog []byte
	for _, st := range steps {
		s := byte(st.chunk.Conn.Key.Sock&3) << 6
		switch st.op {
		case "in", "out":
			op := s
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
			prog = append(prog, s|10)
		case "expire":
			prog = append(prog, 12)
		}
	}
	return prog
}

func checkExchanges(t *testing.T, exs []Exchange) {
	t.Helper()
	cfg := fuzzConfig()
	for _, ex := range exs {
		if ex.Database != nil {
			if ex.Request != nil || ex.Conn.Role != RoleClient {
				t.Fatalf("database operation on %+v with request %v", ex.Conn, ex.Request)
			}
			continue
		}
		if ex.Request == nil {
			t.Fatal("exchange without request")
		}
		if (ex.End == EndResponse) != (ex.Response != nil) {
			t.Fatalf("end %v with response %v", ex.End, ex.Response != nil)
		}
		if len(ex.Request.Body) > cfg.MaxRequestBody {
			t.Fatalf("request body %d bytes", len(ex.Request.Body))
		}
		if ex.Response != nil && len(ex.Response.Body) > cfg.MaxResponseBody {
			t.Fatalf("response body %d bytes", len(ex.Response.Body))
		}
		if ex.RequestEnd < ex.RequestStart || ex.ResponseEnd < ex.ResponseStart {
			t.Fatalf("times out of order: %s", summary(ex))
		}
		// Interesting filters server connections only: a process's own
		// calls are followed whatever their target.
		if strings.HasPrefix(ex.Request.Target, "/x") && ex.Conn.Role != RoleClient {
			t.Fatalf("an uninteresting request became an exchange: %s", summary(ex))
		}
	}
}

func checkVerdicts(t *testing.T, vs []Verdict) {
	t.Helper()
	for _, v := range vs {
		switch v.Kind {
		case VerdictResume, VerdictOff:
		case VerdictSkip:
			if v.SkipTo == 0 {
				t.Fatalf("skip to 0")
			}
		default:
			t.Fatalf("verdict kind %d", v.Kind)
		}
	}
}

// checkBounds verifies the decoder's memory bounds and the consistency of
// its connection table.
func checkBounds(t *testing.T, d *Decoder) {
	t.Helper()
	cfg := d.cfg
	if len(d.conns) > cfg.MaxConnections {
		t.Fatalf("%d connections, max %d", len(d.conns), cfg.MaxConnections)
	}
	if b := d.sink.Bytes(); b < 0 || b > cfg.MaxTotalPendingBytes {
		t.Fatalf("%d pending bytes, max %d", b, cfg.MaxTotalPendingBytes)
	}
	n := 0
	for c := d.lru.next; c != &d.lru; c = c.next {
		n++
		if d.conns[c.info.Key.Sock] != c {
			t.Fatal("recency list and table disagree")
		}
		if h := c.h1.HeldHead(); h > cfg.MaxHeadBytes {
			t.Fatalf("head buffers hold %d bytes", h)
		}
		if w := c.queue.Waiting(); w > cfg.MaxPending {
			t.Fatalf("%d requests waiting, max %d", w, cfg.MaxPending)
		}
		for i := range c.dirs {
			if o := &c.dirs[i]; len(o.held) > cfg.ReorderWindow || o.heldBytes > cfg.ReorderBytes {
				t.Fatalf("%d chunks (%d bytes) held for reordering", len(o.held), o.heldBytes)
			}
		}
	}
	if n != len(d.conns) {
		t.Fatalf("recency list has %d connections, table %d", n, len(d.conns))
	}
}

// TestFuzzCorpusFiles makes sure the committed corpus directory exists,
// so that a lost corpus is noticed rather than silently not run.
func TestFuzzCorpusFiles(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzDecoder"))
	if err != nil || len(entries) == 0 {
		t.Errorf("no committed corpus for FuzzDecoder: %v", err)
	}
}
