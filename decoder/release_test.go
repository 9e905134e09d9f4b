package decoder

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// FuzzDecoderRelease plays FuzzDecoder's programs on two decoders: one
// whose caller never gives anything back, and one whose caller releases
// every call's exchanges as soon as it has read them, as the agent's
// pipeline does. Both must hand out the same: a parser still writing to
// an exchange that was recycled, or a request read from a reused head,
// shows as a difference.
func FuzzDecoderRelease(f *testing.F) {
	for _, p := range fixturePaths(f) {
		sc := mustLoadScript(f, p)
		f.Add(encodeProgram(sc.steps, 0))
		f.Add(encodeProgram(sc.steps, 7))
	}
	f.Fuzz(func(t *testing.T, prog []byte) {
		kept, _ := recordProgram(t, prog, false)
		released, _ := recordProgram(t, prog, true)
		if i := firstDifference(kept, released); i >= 0 {
			t.Fatalf("call %d differs when exchanges are released:\n kept:     %s\n released: %s",
				i, at(kept, i), at(released, i))
		}
	})
}

// TestReleaseReuses: over the fixture scripts, releasing changes nothing
// that is handed out, and the memory of released exchanges is reused.
func TestReleaseReuses(t *testing.T) {
	reused := 0
	for _, p := range fixturePaths(t) {
		prog := encodeProgram(mustLoadScript(t, p).steps, 0)
		kept, _ := recordProgram(t, prog, false)
		released, n := recordProgram(t, prog, true)
		if i := firstDifference(kept, released); i >= 0 {
			t.Errorf("%s: call %d differs when exchanges are released:\n kept:     %s\n released: %s",
				p, i, at(kept, i), at(released, i))
		}
		reused += n
	}
	if reused == 0 {
		t.Fatal("no exchange's memory was reused: the differential compares nothing")
	}
}

// TestReleaseWipes: what a released exchange held is wiped (heads and
// bodies carry credentials), and the next exchange reuses its memory.
func TestReleaseWipes(t *testing.T) {
	d := New(Config{})
	info := ConnInfo{Key: ConnKey{Sock: 1, Gen: 1}}
	var inOff, outOff uint64
	var inSeq, outSeq uint32
	login := func(body string) []Exchange {
		t.Helper()
		req := "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body
		resp := "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
		d.Feed(Chunk{Conn: info, Dir: Ingress, Seq: inSeq, Offset: inOff, Len: uint32(len(req)), Data: []byte(req), Time: 1, Flags: Boundary})
		inSeq, inOff = inSeq+1, inOff+uint64(len(req))
		out := d.Feed(Chunk{Conn: info, Dir: Egress, Seq: outSeq, Offset: outOff, Len: uint32(len(resp)), Data: []byte(resp), Time: 2})
		outSeq, outOff = outSeq+1, outOff+uint64(len(resp))
		d.Opened()
		if len(out) != 1 {
			t.Fatalf("%d exchanges", len(out))
		}
		return out
	}
	ex := login("username=alice&password=hunter2")[0]
	req, body := ex.Request, ex.Request.Body
	if string(body) != "username=alice&password=hunter2" {
		t.Fatalf("body %q", body)
	}
	d.Release()
	if strings.Contains(string(body), "hunter2") || strings.Trim(string(body), "\x00") != "" {
		t.Errorf("a released body still holds %q", body)
	}
	next := login("username=bob&password=x")[0]
	if next.Request != req {
		t.Error("the next exchange did not reuse the released one's memory")
	}
	if next.Request.Method != "POST" || string(next.Request.Body) != "username=bob&password=x" {
		t.Errorf("reused: %s %q", next.Request.Method, next.Request.Body)
	}
}

// recordProgram plays prog and writes down everything every call handed
// out (exchanges, opened requests, closed ones), released after each call
// when release is set; it also returns how many Pendings were reused.
func recordProgram(t *testing.T, prog []byte, release bool) (log []string, reused int) {
	t.Helper()
	d := New(fuzzConfig())
	playProgram(t, d, slices.Clone(prog), func(out []Exchange) {
		var b strings.Builder
		for _, o := range d.Opened() {
			req := o.Request
			o.Request = nil
			fmt.Fprintf(&b, "opened %+v", o)
			if req != nil {
				fmt.Fprintf(&b, " %s %s", req.Method, req.Target)
			}
			b.WriteByte('\n')
		}
		for _, ex := range out {
			b.WriteString(dumpExchange(ex))
			b.WriteByte('\n')
		}
		for _, c := range d.Closed() {
			fmt.Fprintf(&b, "closed %+v\n", c)
		}
		log = append(log, b.String())
		if release {
			reused += len(d.lent)
			d.Release()
		}
	})
	return log, reused
}

// dumpExchange is everything an exchange holds, pointers followed.
func dumpExchange(ex Exchange) string {
	req, resp, db := ex.Request, ex.Response, ex.Database
	ex.Request, ex.Response, ex.Database = nil, nil, nil
	s := fmt.Sprintf("%+v", ex)
	if req != nil {
		s += fmt.Sprintf(" request=%+v", *req)
	}
	if resp != nil {
		s += fmt.Sprintf(" response=%+v", *resp)
	}
	if db != nil {
		op := *db
		op.Error = nil
		s += fmt.Sprintf(" db=%+v", op)
		if db.Error != nil {
			s += fmt.Sprintf(" error=%+v", *db.Error)
		}
	}
	return s
}

func firstDifference(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if at(a, i) != at(b, i) {
			return i
		}
	}
	return -1
}

func at(log []string, i int) string {
	if i < len(log) {
		return log[i]
	}
	return "(nothing)"
}
