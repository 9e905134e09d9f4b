package decoder

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the want and stats sections of the exchange fixtures")

// A script is a fixture in testdata/exchanges: blocks headed by
//
//	-- config [key=value ...] [split] --
//	-- in|out [sock=N] [gen=N] [seq=N] [off=N|gap=N] [t=N] [pid=N] [tid=N]
//	          [len=N|extra=N] [flags=boundary,episode,unreadable,budget]
//	          [skipped=N] [unanswered=N] --
//	-- close [sock=N] [gen=N] [t=N] --
//	-- expire now=N --
//	-- want --
//	-- stats --
//
// The lines of an in/out block are the chunk's bytes, each ended with CRLF
// except a line ending in a backslash, which gets no line end. Escapes
// \xHH, \r, \n, \t and \\ stand for those bytes. Lines before the first
// block are comments. Unless given, sock is 5 and gen 1; seq counts up
// per connection and direction from 0; off continues where the previous
// chunk of the direction ended (from 0), or that plus gap bytes; t goes up by 1000 per block; pid
// is 100 and tid is pid. len (or extra, added to the data length) sets
// Chunk.Len.
//
// want lists what the run gives, in order: one line per exchange (see
// summary) and per verdict; stats the non-zero counters other than
// Chunks (see formatStats). config sets Config fields by their snake-case
// names (interesting=/a,/b makes Interesting a prefix match on the
// target); split marks scripts whose exchanges must not change when any
// chunk is cut in two at any byte.
type script struct {
	path  string
	cfg   Config
	split bool
	steps []step
	want  []string
	stats string
	// prefix is the file up to the want section, kept by -update.
	prefix string
}

type step struct {
	op    string
	chunk Chunk
	t     uint64
}

type dirKey struct {
	key ConnKey
	dir Direction
}

func mustLoadScript(tb testing.TB, path string) *script {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	sc := &script{path: path}
	var (
		cur     *step
		lines   []string
		section string // "", "want", "stats"
		t       uint64
		seqs    = map[dirKey]uint32{}
		offs    = map[dirKey]uint64{}
	)
	flush := func() {
		if cur == nil {
			return
		}
		if cur.op == "in" || cur.op == "out" {
			data := mustUnescape(tb, lines)
			ch := &cur.chunk
			ch.Data = data
			switch {
			case ch.Len == 0:
				ch.Len = uint32(len(data))
			case ch.Len&(1<<31) != 0: // extra=
				ch.Len = uint32(len(data)) + ch.Len&^(1<<31)
			}
			if ch.Flags&(Budget|Unreadable) != 0 && len(data) == 0 && ch.Len == 0 {
				tb.Fatalf("%s: a budget or unreadable chunk needs len=", path)
			}
			offs[dirKey{ch.Conn.Key, ch.Dir}] = ch.Offset + uint64(ch.Len)
		}
		sc.steps = append(sc.steps, *cur)
		cur, lines = nil, nil
	}
	text := string(raw)
	all := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, line := range all {
		isHeader := strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --")
		if section != "" && !isHeader {
			if line = strings.TrimSpace(line); line != "" {
				if section == "want" {
					sc.want = append(sc.want, line)
				} else {
					sc.stats = strings.TrimSpace(sc.stats + " " + line)
				}
			}
			continue
		}
		if !isHeader {
			if cur != nil {
				lines = append(lines, line)
			}
			continue
		}
		flush()
		f := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --"))
		switch f[0] {
		case "want", "stats":
			if section == "" {
				sc.prefix = strings.Join(all[:i], "\n") + "\n"
			}
			section = f[0]
			continue
		case "config":
			sc.cfg, sc.split = mustParseConfig(tb, path, f[1:])
			continue
		}
		if section != "" {
			tb.Fatalf("%s: block %q after the want section", path, f[0])
		}
		st := step{op: f[0]}
		key := ConnKey{Sock: 5, Gen: 1}
		var (
			seq, off, gap       uint64
			hasSeq, hasOff      bool
			pid, tid            uint32 = 100, 0
			flags               ChunkFlags
			skipped, unanswered uint32
		)
		t += 1000
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			if k == "flags" {
				for _, name := range strings.Split(v, ",") {
					switch name {
					case "boundary":
						flags |= Boundary
					case "episode":
						flags |= Episode
					case "unreadable":
						flags |= Unreadable
					case "budget":
						flags |= Budget
					default:
						tb.Fatalf("%s: unknown flag %q", path, name)
					}
				}
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				tb.Fatalf("%s: bad attribute %q", path, kv)
			}
			switch k {
			case "seq":
				seq, hasSeq = n, true
			case "off":
				off, hasOff = n, true
			case "gap":
				gap = n
			case "t", "now":
				t = n
			case "pid":
				pid = uint32(n)
			case "tid":
				tid = uint32(n)
			case "sock":
				key.Sock = n
			case "gen":
				key.Gen = n
			case "len":
				st.chunk.Len = uint32(n)
			case "extra":
				st.chunk.Len = uint32(n) | 1<<31
			case "skipped":
				skipped = uint32(n)
			case "unanswered":
				unanswered = uint32(n)
			default:
				tb.Fatalf("%s: unknown attribute %q", path, kv)
			}
		}
		if tid == 0 {
			tid = pid
		}
		st.t = t
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
			dk := dirKey{key, st.chunk.Dir}
			if !hasSeq {
				seq = uint64(seqs[dk])
			}
			seqs[dk] = uint32(seq) + 1
			if !hasOff {
				off = offs[dk] + gap
			}
			ch := &st.chunk
			ch.Seq, ch.Offset, ch.PID, ch.TID = uint32(seq), off, pid, tid
			ch.Flags, ch.Skipped, ch.Unanswered = flags, skipped, unanswered
		case "close", "expire":
		default:
			tb.Fatalf("%s: unknown block %q", path, st.op)
		}
		cur = &st
	}
	flush()
	if sc.prefix == "" {
		sc.prefix = text
		if !strings.HasSuffix(sc.prefix, "\n") {
			sc.prefix += "\n"
		}
	}
	return sc
}

// mustParseConfig reads the attributes of a config block.
func mustParseConfig(tb testing.TB, path string, attrs []string) (Config, bool) {
	tb.Helper()
	var cfg Config
	split := false
	for _, kv := range attrs {
		k, v, _ := strings.Cut(kv, "=")
		if k == "split" {
			split = true
			continue
		}
		if k == "interesting" {
			prefixes := strings.Split(v, ",")
			cfg.Interesting = func(method, target string) bool {
				for _, p := range prefixes {
					if strings.HasPrefix(target, p) {
						return true
					}
				}
				return false
			}
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			tb.Fatalf("%s: bad config %q", path, kv)
		}
		switch k {
		case "max_request_body":
			cfg.MaxRequestBody = int(n)
		case "max_response_body":
			cfg.MaxResponseBody = int(n)
		case "max_connections":
			cfg.MaxConnections = int(n)
		case "max_head_bytes":
			cfg.MaxHeadBytes = int(n)
		case "response_timeout":
			cfg.ResponseTimeout = uint64(n)
		case "max_pending":
			cfg.MaxPending = int(n)
		case "max_pending_bytes":
			cfg.MaxPendingBytes = int(n)
		case "reorder_window":
			cfg.ReorderWindow = int(n)
		case "hold_bytes":
			cfg.HoldBytes = uint64(n)
		case "hold_idle":
			cfg.HoldIdle = uint64(n)
		case "hold_skipped":
			cfg.HoldSkipped = uint32(n)
		default:
			tb.Fatalf("%s: unknown config %q", path, k)
		}
	}
	return cfg, split
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

// run plays steps against d and returns what it gave, in order: exchange
// summaries and verdicts.
func run(d *Decoder, steps []step) []string {
	var out []string
	for _, st := range steps {
		var exs []Exchange
		switch st.op {
		case "in", "out":
			exs = d.Feed(st.chunk)
		case "close":
			exs = d.Close(st.chunk.Conn.Key, st.t)
		case "expire":
			exs = d.Expire(st.t)
		}
		for _, ex := range exs {
			out = append(out, summary(ex))
		}
		for _, v := range d.Verdicts() {
			out = append(out, verdictLine(v))
		}
	}
	return out
}

// summary renders an exchange on one line for comparison with a fixture.
func summary(ex Exchange) string {
	var b strings.Builder
	r := ex.Request
	fmt.Fprintf(&b, "sock=%d gen=%d", ex.Conn.Key.Sock, ex.Conn.Key.Gen)
	if ex.PID != 100 || ex.TID != 100 {
		fmt.Fprintf(&b, " pid=%d tid=%d", ex.PID, ex.TID)
	}
	fmt.Fprintf(&b, " %s %s %s", r.Method, r.Target, r.Proto)
	if r.HeadTruncated {
		b.WriteString(" headcut")
	}
	if r.Ambiguous != 0 {
		fmt.Fprintf(&b, " amb=%s", ambiguity(r.Ambiguous))
	}
	writeBody(&b, r.Body, r.BodyTruncated)
	b.WriteString(" -> ")
	if resp := ex.Response; resp == nil {
		b.WriteString("none")
	} else {
		fmt.Fprintf(&b, "%d", resp.StatusCode)
		if resp.HeadTruncated {
			b.WriteString(" headcut")
		}
		writeBody(&b, resp.Body, resp.BodyTruncated)
	}
	fmt.Fprintf(&b, " end=%s", ex.End)
	if ex.Lost {
		b.WriteString(" lost")
	}
	fmt.Fprintf(&b, " t=%d-%d/%d-%d", ex.RequestStart, ex.RequestEnd, ex.ResponseStart, ex.ResponseEnd)
	return b.String()
}

func ambiguity(a Ambiguity) string {
	var names []string
	for _, f := range []struct {
		a    Ambiguity
		name string
	}{{AmbiguousCLTE, "clte"}, {AmbiguousCL, "cl"}, {AmbiguousTE, "te"}, {AmbiguousCLValue, "clvalue"}, {AmbiguousHeader, "header"}} {
		if a&f.a != 0 {
			names = append(names, f.name)
		}
	}
	return strings.Join(names, ",")
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

func verdictLine(v Verdict) string {
	k := fmt.Sprintf("sock=%d gen=%d", v.Key.Sock, v.Key.Gen)
	switch v.Kind {
	case VerdictResume:
		return fmt.Sprintf("verdict resume %s in=%d out=%d", k, v.InOff, v.OutOff)
	case VerdictSkip:
		return fmt.Sprintf("verdict skip %s to=%d", k, v.SkipTo)
	case VerdictOff:
		return fmt.Sprintf("verdict off %s", k)
	}
	return fmt.Sprintf("verdict %d %s", v.Kind, k)
}

// formatStats renders the non-zero counters other than Chunks as
// snake_case=value, lost attempts as lost.reason=value.
func formatStats(s Stats) string {
	var parts []string
	v := reflect.ValueOf(s)
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if name == "Chunks" {
			continue
		}
		if name == "LostAttempts" {
			for r := range NumLoss {
				if n := s.LostAttempts[r]; n != 0 {
					parts = append(parts, fmt.Sprintf("lost.%s=%d", r, n))
				}
			}
			continue
		}
		if n := v.Field(i).Uint(); n != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", snake(name), n))
		}
	}
	return strings.Join(parts, " ")
}

// snake turns a field name into snake_case (NotHTTP: not_http).
func snake(s string) string {
	var b strings.Builder
	upper := func(i int) bool { return i < len(s) && 'A' <= s[i] && s[i] <= 'Z' }
	for i := range len(s) {
		c := s[i]
		if upper(i) {
			if i > 0 && (!upper(i-1) || (i+1 < len(s) && !upper(i+1))) {
				b.WriteByte('_')
			}
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// rewrite puts what a run gave into the fixture's want and stats sections.
func (sc *script) rewrite(tb testing.TB, got []string, stats string) {
	tb.Helper()
	var b strings.Builder
	b.WriteString(sc.prefix)
	b.WriteString("-- want --\n")
	for _, l := range got {
		b.WriteString(l + "\n")
	}
	b.WriteString("-- stats --\n" + stats + "\n")
	if err := os.WriteFile(sc.path, []byte(b.String()), 0o644); err != nil {
		tb.Fatalf("rewrite %s: %v", sc.path, err)
	}
}
