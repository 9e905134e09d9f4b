package bpf

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// proofMax mirrors PROOF_MAX in headers/types.h.
const proofMax = 4096

// proveRef is the proof of docs/capture.md written plainly, byte by byte:
// the reference the kernel's word-at-a-time scan is checked against. It
// folds header names the way the kernel does (byte | 0x20), which can
// only refuse more.
func proveRef(b []byte, routes []string) bool {
	if len(b) == 0 || len(b) > proofMax {
		return false
	}
	i := 0
	for i < len(b) && b[i] >= 'A' && b[i] <= 'Z' {
		i++
	}
	if i == 0 || i+1 >= len(b) || b[i] != ' ' || b[i+1] != '/' {
		return false
	}
	i++
	start := i
	for i < len(b) && b[i] != ' ' && b[i] != '?' {
		if !pathByte(b[i]) || (b[i-1] == '/' && i > start && (b[i] == '/' || b[i] == '.')) {
			return false
		}
		i++
	}
	if i >= len(b) {
		return false
	}
	path := b[start:i]
	if b[i] == '?' {
		for i++; i < len(b) && b[i] != ' '; i++ {
			if b[i] < '!' || b[i] > '~' {
				return false
			}
		}
		if i >= len(b) {
			return false
		}
	}
	i++ // the space
	if i+9 > len(b) || string(b[i:i+7]) != "HTTP/1." || b[i+7] < '0' || b[i+7] > '9' {
		return false
	}
	i += 8
	switch {
	case b[i] == '\n':
		i++
	case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
		i += 2
	default:
		return false
	}
	key := bytes.ToLower(path[:min(len(path), 64)])
	for _, r := range routes {
		r = strings.ToLower(r)
		if bytes.HasPrefix(key, []byte(r[:min(len(r), 64)])) {
			return false
		}
	}
	for {
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case '\n':
			return i+1 == len(b)
		case '\r':
			return i+2 == len(b) && b[i+1] == '\n'
		case ' ', '\t':
			return false
		}
		if foldedPrefix(b[i:], "content", "length", 7) || foldedPrefix(b[i:], "transfer", "encoding", 8) || folded(b[i:], "upgrade") {
			return false
		}
		for ; i < len(b) && b[i] != '\n'; i++ {
			if b[i] == '\r' && (i+1 >= len(b) || b[i+1] != '\n') {
				return false
			}
		}
		if i >= len(b) {
			return false
		}
		i++
	}
}

func pathByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		strings.IndexByte("-._~/", c) >= 0
}

// folded: b starts with word, every byte compared OR 0x20.
func folded(b []byte, word string) bool {
	if len(b) < len(word) {
		return false
	}
	for k := range len(word) {
		if b[k]|0x20 != word[k] {
			return false
		}
	}
	return true
}

// foldedPrefix: b starts with a, then '-' or '_', then z, every byte
// compared OR 0x20 as the kernel does.
func foldedPrefix(b []byte, a, z string, dash int) bool {
	want := a + "-" + z
	if len(b) < len(want) {
		return false
	}
	for k := range len(want) {
		c := b[k] | 0x20
		if k == dash {
			if c != '-' && c != 0x7f {
				return false
			}
		} else if c != want[k] {
			return false
		}
	}
	return true
}

// proofCases: what the kernel must skip, and what it must send. Every
// "send" case is something a server may route to a login handler, or
// frame differently than it looks.
var proofCases = []struct {
	name string
	req  string
	skip bool
}{
	{"plain GET", healthReq, true},
	{"many headers", "GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.5\r\nAccept: */*\r\nX-Request-Id: 1234567890abcdef\r\n\r\n", true},
	{"query", "GET /health?x=1&next=/login%2F HTTP/1.1\r\nHost: x\r\n\r\n", true},
	{"root HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", true},
	{"LF only", "HEAD /index.html HTTP/1.1\nHost: x\n\n", true},
	{"other api", "GET /api/users HTTP/1.1\r\n\r\n", true},
	{"path bytes", "DELETE /a-b_c.d~e/F9 HTTP/1.1\r\nX-Long: " + strings.Repeat("v", 200) + "\r\n\r\n", true},
	{"HTTP/1.2", "GET /health HTTP/1.2\r\n\r\n", true},
	{"content-type", "GET /health HTTP/1.1\r\nContent-Type: text/plain\r\n\r\n", true},
	{"shorter than a route", "GET /logi HTTP/1.1\r\n\r\n", true},
	{"header value with CR LF inside words", "GET /health HTTP/1.1\r\nA: content-length\r\n\r\n", true},

	{"login", loginReq, false},
	{"login without body", "GET /login HTTP/1.1\r\n\r\n", false},
	{"longer than a route", "GET /loginpage HTTP/1.1\r\n\r\n", false},
	{"percent-encoded", "POST /%6cogin HTTP/1.1\r\n\r\n", false},
	{"percent-encoded other", "GET /h%65alth HTTP/1.1\r\n\r\n", false},
	{"absolute-form", "POST http://x/login HTTP/1.1\r\n\r\n", false},
	{"asterisk-form", "OPTIONS * HTTP/1.1\r\n\r\n", false},
	{"pipelined", healthReq + loginReq, false},
	{"pipelined behind", healthReq + "X", false},
	{"upper-case route", "POST /LOGIN HTTP/1.1\r\n\r\n", false},
	{"mixed-case route", "POST /LoGiN HTTP/1.1\r\n\r\n", false},
	{"mixed-case prefix route", "GET /API/Auth/x HTTP/1.1\r\n\r\n", false},
	{"leading empty line", "\r\nPOST /login HTTP/1.1\r\n\r\n", false},
	{"leading empty line, other path", "\r\n" + healthReq, false},
	{"semicolon", "GET /health;x HTTP/1.1\r\n\r\n", false},
	{"double slash", "GET //login HTTP/1.1\r\n\r\n", false},
	{"double slash inside", "GET /a//b HTTP/1.1\r\n\r\n", false},
	{"dot segment", "GET /./login HTTP/1.1\r\n\r\n", false},
	{"dot-dot segment", "GET /x/../login HTTP/1.1\r\n\r\n", false},
	{"trailing dot-dot", "GET /x/.. HTTP/1.1\r\n\r\n", false},
	{"dotfile", "GET /.well-known/x HTTP/1.1\r\n\r\n", false},
	{"backslash", "GET /x\\..\\login HTTP/1.1\r\n\r\n", false},
	{"fragment", "GET /health#/../login HTTP/1.1\r\n\r\n", false},
	{"non-ASCII path", "GET /h\xc3\xa9 HTTP/1.1\r\n\r\n", false},
	{"Content-Length", "GET /health HTTP/1.1\r\nContent-Length: 0\r\n\r\n", false},
	{"content-length", "GET /health HTTP/1.1\r\ncontent-length: 0\r\n\r\n", false},
	{"CONTENT_LENGTH", "GET /health HTTP/1.1\r\nCONTENT_LENGTH: 0\r\n\r\n", false},
	{"Transfer-Encoding", "GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false},
	{"transfer-encoding no body", "GET /health HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n", false},
	{"h2c upgrade", "GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", false},
	{"UPGRADE websocket", "GET /health HTTP/1.1\r\nUPGRADE: websocket\r\n\r\n", false},
	{"obs-fold", "GET /health HTTP/1.1\r\nX: a\r\n b\r\n\r\n", false},
	{"obs-fold tab", "GET /health HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", false},
	{"first header folded", "GET /health HTTP/1.1\r\n Host: x\r\n\r\n", false},
	{"bare CR in request line", "GET /health HTTP/1.1\rHost: x\r\n\r\n", false},
	{"bare CR in header", "GET /health HTTP/1.1\r\nHost: x\ry\r\n\r\n", false},
	{"no version", "GET /health\r\n\r\n", false},
	{"HTTP/2.0", "GET /health HTTP/2.0\r\n\r\n", false},
	{"space after version", "GET /health HTTP/1.1 \r\n\r\n", false},
	{"lower-case method", "get /health HTTP/1.1\r\n\r\n", false},
	{"two spaces", "GET  /health HTTP/1.1\r\n\r\n", false},
	{"tab separator", "GET\t/health HTTP/1.1\r\n\r\n", false},
	{"head longer than PROOF_MAX", "GET /health HTTP/1.1\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", false},
	{"incomplete head", "GET /health HTTP/1.1\r\nHost: x\r\n", false},
	{"request line only", "GET /health HTTP/1.1\r\n", false},
	{"split request line", "GET /hea", false},
}

// runProofCase sends req as one read on a fresh connection and says
// whether the kernel skipped it: a login follows, whose episode event
// counts the skipped requests before it.
func runProofCase(t *testing.T, rec *recorder, h *helper, lfd, port int, req string) bool {
	t.Helper()
	mark := rec.mark()
	c := dial(t, port)
	fd := h.int("accept", lfd)
	mustWrite(t, c, []byte(req))
	require.Equal(t, len(req), len(h.read(fd)), "one read takes the whole case")
	h.do("write", fd, []byte(resp200))
	mustWrite(t, c, []byte(loginReq))
	h.read(fd)
	// A client port may be reused: only events after the connect count.
	first := rec.waitEventsSince(t, mark, 1, dirOf(Ingress, fromClient(c)))[0]
	h.do("close", fd)
	c.Close()
	if first.Skipped == 1 && string(first.Data) == loginReq {
		require.Equal(t, uint64(len(req)), first.Off)
		return true
	}
	require.Equal(t, uint32(0), first.Skipped)
	require.Equal(t, FlagEpisode|FlagBoundary, first.Flags)
	require.Equal(t, uint64(0), first.Off)
	if len(req) <= carryMax {
		// Too short to prove: carried to the next read and sent with it.
		require.Equal(t, req+loginReq, string(first.Data))
		return false
	}
	require.Equal(t, req, string(first.Data), "sent whole")
	return false
}

// carryMax mirrors CARRY_MAX in headers/types.h.
const carryMax = 8

// Go's net/http reads one byte in the background while a handler runs,
// so the next request arrives as "G" and "ET /...": the short read is
// carried and proven with the next one; if that fails, the episode starts
// at the carried byte.
func TestCarriedShortRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		for range 3 {
			mustWrite(t, c, []byte(healthReq))
			h.do("read", fd, 1)
			h.read(fd)
			h.do("write", fd, []byte(resp200))
		}
		mustWrite(t, c, []byte(loginReq))
		h.do("read", fd, 1)
		h.do("read", fd, 3)
		h.read(fd)
		ev := rec.waitEvents(t, 1, fromClient(c))[0]
		require.Equal(t, uint32(3), ev.Skipped)
		require.Equal(t, FlagEpisode|FlagBoundary, ev.Flags)
		require.Equal(t, uint64(3*len(healthReq)), ev.Off)
		// "P" and "OST" were carried (4 bytes), the rest ended the carry.
		require.Equal(t, loginReq, string(ev.Data))
		require.Equal(t, uint32(len(loginReq)), ev.Len)
		require.Equal(t, uint64(3), delta("requests_skipped"))
	})
}

func TestProofTable(t *testing.T) {
	for _, tc := range proofCases {
		require.Equal(t, tc.skip, proveRef([]byte(tc.req), testRoutes), "reference disagrees on %s", tc.name)
	}
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		for _, tc := range proofCases {
			t.Run(tc.name, func(t *testing.T) {
				require.Equal(t, tc.skip, runProofCase(t, rec, h, lfd, port, tc.req))
			})
		}
	})
}

// A TLS handshake on the plaintext path turns the connection off.
func TestTLSRecordOff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, c, []byte("\x16\x03\x01\x00\x05hello"))
		h.read(fd)
		mustWrite(t, c, []byte(loginReq))
		h.read(fd)
		c2 := dial(t, port)
		fd2 := h.int("accept", lfd)
		mustWrite(t, c2, []byte(loginReq))
		h.read(fd2)
		rec.waitEvents(t, 1, fromClient(c2))
		require.Empty(t, rec.events(fromClient(c)))
		require.Equal(t, uint64(1), delta("tls_skipped"))
	})
}

// An h2c upgrade cannot pass unseen: the upgrade request starts an
// episode (whatever its path), and after the 101 every byte of both
// directions goes to user space, the HTTP/2 preface and frames included.
func TestH2CUpgradeSeen(t *testing.T) {
	const (
		upgrade  = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
		switched = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
		settings = "\x00\x00\x00\x04\x00\x00\x00\x00\x00"
		preface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	)
	forEachBackend(t, func(t *testing.T, backend string) {
		p := mustLoad(t, backend, Config{})
		rec := mustRun(t, p)
		h, lfd, port := serve(t, p)
		delta := counterDelta(t, p)
		c := dial(t, port)
		fd := h.int("accept", lfd)
		mustWrite(t, c, []byte(upgrade))
		h.read(fd)
		h.do("write", fd, []byte(switched))
		h.do("write", fd, []byte(settings))
		// A login as the client's first HTTP/2 bytes, for the test only
		// its preface and a marker matter.
		mustWrite(t, c, []byte(preface+"login-marker"))
		h.read(fd)
		for range 3 { // long after the upgrade, still every write
			h.do("write", fd, []byte(settings))
		}
		in := rec.waitEvents(t, 2, dirOf(Ingress, fromClient(c)))
		require.Equal(t, upgrade, string(in[0].Data))
		require.Equal(t, uint32(0), in[0].Skipped)
		require.Equal(t, preface+"login-marker", string(in[1].Data))
		out := rec.waitEvents(t, 5, dirOf(Egress, fromClient(c)))
		require.Equal(t, switched, string(out[0].Data))
		for _, ev := range out[1:] {
			require.Equal(t, settings, string(ev.Data))
		}
		require.Equal(t, uint64(0), delta("requests_skipped"))
	})
}

// genRequest builds a request that is mostly provable, then maybe breaks
// it in one of the ways servers disagree on, at any byte alignment.
func genRequest(r *rand.Rand) string {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	eol := pick("\r\n", "\n")
	var b strings.Builder
	b.WriteString(pick("GET", "GET", "GET", "POST", "HEAD", "DELETE", "PROPFIND", "G", "get"))
	b.WriteString(" /")
	segs := r.IntN(4)
	for s := range segs {
		if s > 0 {
			b.WriteByte('/')
		}
		b.WriteString(pick("health", "a", "status-check", "v1", "x_y", "Z~9", "api", "metrics", "users", "login", "LOGIN"))
		if r.IntN(16) == 0 {
			b.WriteString(pick("/", ".", "%41", ";x", "\\", ".."))
		}
	}
	if r.IntN(3) == 0 {
		b.WriteString("?" + pick("a=1", "x=%2F..", "q=/login", "b=\x7f", "c= d"))
	}
	b.WriteString(" " + pick("HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.9", "HTTP/2.0", "HTTP/1.") + eol)
	for range r.IntN(6) {
		name := pick("Host", "User-Agent", "Accept", "X-Pad", "Cookie", "Content-Type", "Contents",
			"Content-Lengthy", "Transfer", "X-Content-Length")
		if r.IntN(12) == 0 {
			name = pick("Content-Length", "content_length", "Transfer-Encoding", "TRANSFER-ENCODING")
		}
		b.WriteString(name + ": " + strings.Repeat("v", r.IntN(20)))
		switch r.IntN(40) {
		case 0:
			b.WriteString("\r")
		case 1:
			b.WriteString(eol + " folded")
		}
		b.WriteString(eol)
	}
	b.WriteString(eol)
	if r.IntN(10) == 0 {
		b.WriteString(pick("X", healthReq, "\r\n"))
	}
	return b.String()
}

// The kernel's proof decides exactly as the reference on generated
// requests: never skipping what the reference would send, and skipping
// what it proves.
func TestProofDifferential(t *testing.T) {
	p := mustLoad(t, naturalBackend(t), Config{})
	rec := mustRun(t, p)
	h, lfd, port := serve(t, p)
	r := rand.New(rand.NewPCG(7, 11))
	var skipped, sent int
	for i := range 400 {
		req := genRequest(r)
		want := proveRef([]byte(req), testRoutes)
		got := runProofCase(t, rec, h, lfd, port, req)
		require.Equal(t, want, got, "case %d: %q", i, req)
		if got {
			skipped++
		} else {
			sent++
		}
	}
	t.Logf("skipped %d, sent %d", skipped, sent)
	require.Greater(t, skipped, 50, "the generator makes provable requests")
	require.Greater(t, sent, 50, "and unprovable ones")
}

// Every feature of the proof at every position within an 8-byte word:
// the kernel scans a word at a time, so alignment is where it could slip.
func TestProofAlignment(t *testing.T) {
	p := mustLoad(t, naturalBackend(t), Config{})
	rec := mustRun(t, p)
	h, lfd, port := serve(t, p)
	features := []struct {
		name string
		make func(pad string) string
	}{
		{"plain", func(pad string) string { return "GET /" + pad + " HTTP/1.1\r\nHost: " + pad + "\r\n\r\n" }},
		{"LF only", func(pad string) string { return "GET /x" + pad + " HTTP/1.1\nA: " + pad + "\n\n" }},
		{"query", func(pad string) string { return "GET /x?" + pad + " HTTP/1.1\r\n\r\n" }},
		{"content-length", func(pad string) string { return "GET /x HTTP/1.1\r\nA: " + pad + "\r\ncOnTeNt-LeNgTh: 0\r\n\r\n" }},
		{"transfer-encoding", func(pad string) string { return "GET /x HTTP/1.1\r\nA: " + pad + "\r\ntransfer_encoding: x\r\n\r\n" }},
		{"double slash", func(pad string) string { return "GET /" + pad + "//x HTTP/1.1\r\n\r\n" }},
		{"slash dot", func(pad string) string { return "GET /" + pad + "/.x HTTP/1.1\r\n\r\n" }},
		{"bare CR", func(pad string) string { return "GET /x HTTP/1.1\r\nA: " + pad + "\rB\r\n\r\n" }},
		{"CR at the end", func(pad string) string { return "GET /x HTTP/1.1\r\nA: " + pad + "\r" }},
		{"fold", func(pad string) string { return "GET /x HTTP/1.1\r\nA: " + pad + "\r\n b\r\n\r\n" }},
		{"pipelined", func(pad string) string { return "GET /x HTTP/1.1\r\nA: " + pad + "\r\n\r\nG" }},
		{"route", func(pad string) string { return "GET /LOGIN" + pad + " HTTP/1.1\r\n\r\n" }},
		{"route after a query", func(pad string) string { return "GET /x?/login" + pad + " HTTP/1.1\r\n\r\n" }},
		{"bad path byte", func(pad string) string { return "GET /" + pad + "%2F HTTP/1.1\r\n\r\n" }},
		{"long method", func(pad string) string { return "M" + strings.ToUpper(pad) + " /x HTTP/1.1\r\n\r\n" }},
	}
	for _, f := range features {
		t.Run(f.name, func(t *testing.T) {
			for n := range 17 {
				req := f.make(strings.Repeat("a", n))
				want := proveRef([]byte(req), testRoutes)
				if f.name == "plain" || f.name == "LF only" || f.name == "query" {
					require.True(t, want, "the reference proves %q", req)
				}
				require.Equal(t, want, runProofCase(t, rec, h, lfd, port, req), "%q", req)
			}
		})
	}
}
