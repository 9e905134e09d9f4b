package decoder

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A script is a fixture in testdata/exchanges: blocks headed by
//
//	-- in|out [seq=N] [t=N] [pid=N] [fd=N] [gen=N] [len=N|extra=N] --
//	-- close [t=N] [pid=N] [fd=N] [gen=N] --
//	-- expire now=N --
//	-- forget pid=N --
//
// The lines of an in/out block are the chunk's bytes, each ended with CRLF
// except a line ending in a backslash, which gets no line end. Escapes
// \xHH, \r, \n, \t and \\ stand for those bytes. Lines before the first
// block are comments. seq counts up per connection and t by 1000 unless
// given; len (or extra, added to the data length) sets Chunk.Len.
type step struct {
	op    string
	chunk Chunk
	t     uint64
	pid   uint32
}

func mustLoadScript(tb testing.TB, path string) []step {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	var (
		steps []step
		cur   *step
		lines []string
		t     uint64
		seqs  = map[ConnKey]uint32{}
	)
	flush := func() {
		if cur == nil {
			return
		}
		if cur.op == "in" || cur.op == "out" {
			data := mustUnescape(tb, lines)
			cur.chunk.Data = data
			if cur.chunk.Len == 0 {
				cur.chunk.Len = uint32(len(data))
			} else if cur.chunk.Len&(1<<31) != 0 { // extra=
				cur.chunk.Len = uint32(len(data)) + cur.chunk.Len&^(1<<31)
			}
		}
		steps = append(steps, *cur)
		cur, lines = nil, nil
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "-- ") || !strings.HasSuffix(line, " --") {
			if cur != nil {
				lines = append(lines, line)
			}
			continue
		}
		flush()
		f := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --"))
		st := step{op: f[0]}
		key := ConnKey{PID: 100, FD: 5, Gen: 1}
		seq, hasSeq := uint32(0), false
		t += 1000
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				tb.Fatalf("%s: bad attribute %q", path, kv)
			}
			switch k {
			case "seq":
				seq, hasSeq = uint32(n), true
			case "t", "now":
				t = n
			case "pid":
				key.PID = uint32(n)
			case "fd":
				key.FD = int32(n)
			case "gen":
				key.Gen = n
			case "len":
				st.chunk.Len = uint32(n)
			case "extra":
				st.chunk.Len = uint32(n) | 1<<31
			default:
				tb.Fatalf("%s: unknown attribute %q", path, kv)
			}
		}
		st.t, st.pid = t, key.PID
		st.chunk.Time = t
		st.chunk.Conn = ConnInfo{
			Key:   key,
			Peer:  netip.MustParseAddrPort("10.0.0.1:40000"),
			Local: netip.MustParseAddrPort("10.0.0.2:8080"),
		}
		switch st.op {
		case "in", "out":
			st.chunk.Dir = Ingress
			if st.op == "out" {
				st.chunk.Dir = Egress
			}
			if !hasSeq {
				seq = seqs[key] + 1
			}
			seqs[key] = seq
			st.chunk.Seq = seq
		case "close", "expire", "forget":
		default:
			tb.Fatalf("%s: unknown block %q", path, st.op)
		}
		cur = &st
	}
	flush()
	return steps
}

// mustUnescape joins block lines into chunk bytes.
func mustUnescape(tb testing.TB, lines []string) []byte {
	tb.Helper()
	var b []byte
	for _, line := range lines {
		end := true
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c != '\\' {
				b = append(b, c)
				continue
			}
			if i == len(line)-1 {
				end = false
				break
			}
			i++
			switch line[i] {
			case 'r':
				b = append(b, '\r')
			case 'n':
				b = append(b, '\n')
			case 't':
				b = append(b, '\t')
			case '\\':
				b = append(b, '\\')
			case 'x':
				if i+2 >= len(line) {
					tb.Fatalf("short \\x escape in %q", line)
				}
				v, err := strconv.ParseUint(line[i+1:i+3], 16, 8)
				if err != nil {
					tb.Fatalf("bad \\x escape in %q", line)
				}
				b = append(b, byte(v))
				i += 2
			default:
				tb.Fatalf("unknown escape in %q", line)
			}
		}
		if end {
			b = append(b, '\r', '\n')
		}
	}
	return b
}

// run plays a script against d and returns the exchanges in order.
func run(d *Decoder, steps []step) []Exchange {
	var out []Exchange
	for _, st := range steps {
		switch st.op {
		case "in", "out":
			out = append(out, d.Feed(st.chunk)...)
		case "close":
			out = append(out, d.Close(st.chunk.Conn.Key, st.t)...)
		case "expire":
			out = append(out, d.Expire(st.t)...)
		case "forget":
			// Connections of a process finish in no particular order.
			got := d.ForgetPID(st.pid)
			slices.SortStableFunc(got, func(a, b Exchange) int { return int(a.Conn.Key.FD - b.Conn.Key.FD) })
			out = append(out, got...)
		}
	}
	return out
}

// summary renders an exchange on one line for comparison with a table.
func summary(ex Exchange) string {
	var b strings.Builder
	r := ex.Request
	fmt.Fprintf(&b, "fd=%d gen=%d %s %s %s", ex.Conn.Key.FD, ex.Conn.Key.Gen, r.Method, r.Target, r.Proto)
	writeBody(&b, r.Body, r.BodyTruncated)
	b.WriteString(" -> ")
	if resp := ex.Response; resp == nil {
		b.WriteString("none")
	} else {
		fmt.Fprintf(&b, "%d", resp.StatusCode)
		writeBody(&b, resp.Body, resp.BodyTruncated)
	}
	fmt.Fprintf(&b, " end=%s", ex.End)
	if ex.Lost {
		b.WriteString(" lost")
	}
	fmt.Fprintf(&b, " t=%d-%d/%d-%d", ex.RequestStart, ex.RequestEnd, ex.ResponseStart, ex.ResponseEnd)
	return b.String()
}

func writeBody(b *strings.Builder, body []byte, trunc bool) {
	if len(body) > 0 {
		if len(body) > 24 {
			fmt.Fprintf(b, " body=%q...(%d)", body[:16], len(body))
		} else {
			fmt.Fprintf(b, " body=%q", body)
		}
	}
	if trunc {
		b.WriteString(" trunc")
	}
}
