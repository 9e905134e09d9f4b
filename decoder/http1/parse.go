package http1

import (
	"bytes"
	"unsafe"

	"github.com/authprobe/authprobe/decoder/exchange"
)

// The syntax accepted here is the union of what real servers accept
// (README.md, "What the HTTP/1 parser accepts"): Go's net/http, Python's
// http.server and Node's llhttp. A request one of them would answer must
// not be invisible because this parser is stricter.

// maxContentLength keeps length arithmetic far from overflow.
const maxContentLength = 1 << 60

// headEnd returns the length of the head at the start of b, through the
// empty line that ends it, or -1 when b holds no complete head yet. It
// searches for the empty line from offset from. Lines end in LF, a CR
// before it is optional (RFC 9112 §2.2).
func headEnd(b []byte, from int) int {
	i := from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// cutLine splits off the first line of b without its line end (LF or
// CRLF, as headEnd reads them); ok is false when b holds no complete line.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil, false
	}
	line = b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, b[i+1:], true
}

// trimCR drops the CRs a start line may end with (Python strips them all).
func trimCR(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// requestLine is a parsed request line; its slices alias the head.
type requestLine struct {
	method, target, proto []byte
	// simple: an HTTP/0.9 request ("GET /path", no version), answered
	// with bare bytes by the servers that accept it (Python's).
	simple bool
}

// parseRequestLine reads a request line (without its line end) first as
// RFC 9112 and Go's net/http do (single spaces), then, failing that, as
// Python's http.server does (runs of whitespace, two or three words).
func parseRequestLine(line []byte) (requestLine, bool) {
	line = trimCR(line)
	if m, rest, ok := bytes.Cut(line, []byte{' '}); ok {
		if t, p, ok := bytes.Cut(rest, []byte{' '}); ok && isToken(m) && len(t) > 0 && validVersion(p) {
			return requestLine{method: m, target: t, proto: p}, true
		}
	}
	var words [3][]byte
	n := 0
	for i := 0; i < len(line); {
		for i < len(line) && isPySpace(line[i]) {
			i++
		}
		j := i
		for j < len(line) && !isPySpace(line[j]) {
			j++
		}
		if j == i {
			break
		}
		if n == len(words) {
			return requestLine{}, false
		}
		words[n] = line[i:j]
		n++
		i = j
	}
	switch {
	case n == 3 && isToken(words[0]) && validVersion(words[2]):
		return requestLine{method: words[0], target: words[1], proto: words[2]}, true
	case n == 2 && string(words[0]) == "GET":
		return requestLine{method: words[0], target: words[1], simple: true}, true
	}
	return requestLine{}, false
}

// isPySpace reports the bytes Python's str.split() separates words on in
// a latin-1 decoded line.
func isPySpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, 0x85, 0xa0:
		return true
	}
	return false
}

// validVersion accepts "HTTP/" major "." minor with up to ten decimal
// digits each (leading zeros allowed) and a version below 2.0, as
// Python's http.server does; Go's net/http accepts the single-digit 1.x
// part of it.
func validVersion(p []byte) bool {
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/"))
	if !ok {
		return false
	}
	major, minor, ok := bytes.Cut(rest, []byte{'.'})
	if !ok || !isDigits(major, 10) || !isDigits(minor, 10) {
		return false
	}
	major = bytes.TrimLeft(major, "0")
	return len(major) == 0 || string(major) == "1"
}

func isDigits(b []byte, most int) bool {
	if len(b) == 0 || len(b) > most {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// statusLine is a parsed status line; its slices alias the head.
type statusLine struct {
	proto  []byte
	code   int
	reason []byte
}

// parseStatusLine reads "HTTP/x.y SP ddd [SP reason]", tolerating runs of
// spaces and tabs as separators: responses come from the real server, so
// the point is to read them, not to judge them.
func parseStatusLine(line []byte) (statusLine, bool) {
	line = trimCR(line)
	proto, rest, _ := bytes.Cut(line, []byte{' '})
	if !bytes.HasPrefix(proto, []byte("HTTP/")) {
		if i := bytes.IndexByte(proto, '\t'); i >= 0 {
			proto, rest = line[:i], line[i+1:]
		}
	}
	r, ok := bytes.CutPrefix(proto, []byte("HTTP/"))
	major, minor, ok2 := bytes.Cut(r, []byte{'.'})
	if !ok || !ok2 || !isDigits(major, 10) || !isDigits(minor, 10) {
		return statusLine{}, false
	}
	rest = bytes.TrimLeft(rest, " \t")
	if len(rest) < 3 || !isDigits(rest[:3], 3) || (len(rest) > 3 && rest[3] != ' ' && rest[3] != '\t') {
		return statusLine{}, false
	}
	code := int(rest[0]-'0')*100 + int(rest[1]-'0')*10 + int(rest[2]-'0')
	if code < 100 {
		return statusLine{}, false
	}
	return statusLine{proto: proto, code: code, reason: trimOWS(rest[3:])}, true
}

// fieldLine splits a header line into name and value. ok is false for a
// line Python's http.server stops its headers at and Go and Node reject:
// no colon, or a name byte outside \x21-\x7e.
func fieldLine(line []byte) (name, value []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return nil, nil, false
	}
	for _, c := range line[:i] {
		if c < 0x21 || c > 0x7e {
			return nil, nil, false
		}
	}
	return line[:i], trimOWS(line[i+1:]), true
}

func isContinuation(line []byte) bool { return len(line) > 0 && (line[0] == ' ' || line[0] == '\t') }

// scanFields walks the header lines of head (the bytes after the start
// line, through the empty line or up to the last complete line) for
// framing, and counts the fields a full parse will keep. It stops where
// parseFields stops.
func scanFields(head []byte, f *framing) (fields int, broken bool) {
	first := true
	for {
		line, rest, ok := cutLine(head)
		if !ok || len(line) == 0 {
			return fields, broken
		}
		head = rest
		if isContinuation(line) {
			if first {
				broken = true // a continuation first: Python skips it, Go rejects
			} else {
				f.folded()
			}
			continue
		}
		first = false
		name, value, ok := fieldLine(line)
		if !ok {
			return fields, true
		}
		fields++
		f.field(name, value)
	}
}

// parseFields parses the header lines of head (as scanFields) into h,
// with strings aliasing head: head must never change afterwards.
// Continuation lines are joined with a space (RFC 9112 §5.2).
func parseFields(head []byte, h exchange.Header) exchange.Header {
	first := true
	for {
		line, rest, ok := cutLine(head)
		if !ok || len(line) == 0 {
			return h
		}
		head = rest
		if isContinuation(line) {
			if v := trimOWS(line); !first && len(v) > 0 {
				last := &h[len(h)-1]
				if last.Value == "" {
					last.Value = str(v)
				} else {
					last.Value = last.Value + " " + str(v)
				}
			}
			continue
		}
		first = false
		name, value, ok := fieldLine(line)
		if !ok {
			return h
		}
		h = append(h, exchange.HeaderField{Name: str(name), Value: str(value)})
	}
}

// str makes a string of bytes that never change again (a message's own
// copy of its head) without copying them once more.
func str(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// tchar of RFC 9110 §5.6.2 as bit sets over bytes 0-63 and 64-127
// (!#$%&'*+-.^_`|~, digits and letters); TestTokenMasks checks them.
const (
	tcharLo = 0x03ff6cfa00000000
	tcharHi = 0x57ffffffc7fffffe
)

func isTokenChar(c byte) bool {
	if c < 64 {
		return tcharLo&(1<<c) != 0
	}
	return c < 128 && tcharHi&(1<<(c-64)) != 0
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// framing collects what a head says about where its body ends.
type framing struct {
	cl      int64 // the smallest Content-Length any server reads, -1 when none
	clN     int   // Content-Length fields
	clOdd   bool  // a value not every server reads alike
	teN     int   // Transfer-Encoding fields
	chunked bool  // the last coding of the last Transfer-Encoding is chunked
	teOdd   bool  // a Transfer-Encoding other than exactly "chunked"
	last    int   // what the previous field was, for continuation lines
}

const (
	lastOther = iota
	lastCL
	lastTE
)

func newFraming() framing { return framing{cl: -1} }

// field takes one header field into account.
func (f *framing) field(name, value []byte) {
	f.last = lastOther
	switch {
	case len(name) == len("content-length") && equalFold(name, "content-length"):
		f.last = lastCL
		f.clN++
		n, odd := contentLength(value)
		f.clOdd = f.clOdd || odd
		if f.cl < 0 || n < f.cl {
			f.cl = n
		}
	case len(name) == len("transfer-encoding") && equalFold(name, "transfer-encoding"):
		f.last = lastTE
		f.teN++
		last, only := lastCoding(value)
		f.chunked = equalFold(last, "chunked")
		f.teOdd = f.teOdd || !only || !f.chunked
	}
}

// folded notes a continuation line: a folded framing field is read
// differently by every server.
func (f *framing) folded() {
	switch f.last {
	case lastCL:
		f.clOdd, f.cl = true, 0
	case lastTE:
		f.teOdd = true
	}
}

// requestBody decides a request's body framing. Where servers disagree,
// the body ends at the earliest point one of them ends it: a chunked body
// is cut at a Content-Length too, and the smallest of several lengths
// wins. For a chunked body n is that cut, -1 when there is none.
func (f *framing) requestBody(http10 bool) (mode bodyMode, n int64, amb exchange.Ambiguity) {
	if f.clN > 1 {
		amb |= exchange.AmbiguousCL
	}
	if f.clOdd {
		amb |= exchange.AmbiguousCLValue
	}
	if f.teN > 0 && f.clN > 0 {
		amb |= exchange.AmbiguousCLTE
	}
	if f.teN > 1 || f.teOdd || (f.teN > 0 && http10) {
		amb |= exchange.AmbiguousTE
	}
	switch {
	case f.teN > 0 && f.chunked:
		return bodyChunked, f.cl, amb
	case f.cl > 0:
		return bodyLength, f.cl, amb
	}
	return bodyNone, 0, amb
}

// responseBody decides a response's framing (RFC 9112 §6.3), given what
// the request was.
func (f *framing) responseBody(code int, k exchange.Kind) (bodyMode, int64) {
	switch {
	case code == 101 || (k == exchange.KindConnect && code/100 == 2):
		return bodyTunnel, 0
	case k == exchange.KindHead || code < 200 || code == 204 || code == 304:
		return bodyNone, 0
	case f.teN > 0 && f.chunked:
		return bodyChunked, -1
	case f.teN > 0:
		return bodyClose, 0
	case f.clN > 0 && (f.cl > 0 || !f.clOdd):
		if f.cl == 0 {
			return bodyNone, 0
		}
		return bodyLength, f.cl
	}
	return bodyClose, 0
}

// contentLength reads a Content-Length value as the most lenient server
// does: Python's int() (surrounding whitespace, a sign, underscores
// between digits) or RFC 9110's list of equal values. odd reports a form
// not every server accepts; a value no server reads as a length (not a
// number, negative, unequal list) is 0, the earliest end.
func contentLength(v []byte) (n int64, odd bool) {
	if n, ok := plainDigits(v); ok {
		return n, false
	}
	for len(v) > 0 && isPySpace(v[0]) {
		v = v[1:]
	}
	for len(v) > 0 && isPySpace(v[len(v)-1]) {
		v = v[:len(v)-1]
	}
	if bytes.IndexByte(v, ',') >= 0 {
		n = -1
		for part := range bytes.SplitSeq(v, []byte{','}) {
			x, ok := plainDigits(trimOWS(part))
			if !ok || (n >= 0 && x != n) {
				return 0, true
			}
			n = x
		}
		return n, true
	}
	neg := false
	if len(v) > 0 && (v[0] == '+' || v[0] == '-') {
		neg = v[0] == '-'
		v = v[1:]
	}
	prevDigit := false
	for i, c := range v {
		switch {
		case c >= '0' && c <= '9':
			n = min(n*10+int64(c-'0'), maxContentLength)
			prevDigit = true
		case c == '_' && prevDigit && i+1 < len(v):
			prevDigit = false
		default:
			return 0, true
		}
	}
	if !prevDigit || neg {
		return 0, true
	}
	return n, true
}

// plainDigits reads a length of decimal digits only (leading zeros allowed,
// as every server reads them).
func plainDigits(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int64(c-'0'), maxContentLength)
	}
	return n, true
}

// lastCoding returns the last transfer coding listed in v and whether it
// is the only one.
func lastCoding(v []byte) (last []byte, only bool) {
	n := 0
	for c := range bytes.SplitSeq(v, []byte{','}) {
		c = trimOWS(c)
		if i := bytes.IndexByte(c, ';'); i >= 0 {
			c = trimOWS(c[:i])
		}
		if len(c) > 0 {
			last = c
			n++
		}
	}
	return last, n == 1
}

// plausibleRequest reports whether b can still be the start of a request
// line (a method token, then a separator), so that binary bytes are
// judged on their first bytes instead of being buffered.
func plausibleRequest(b []byte) bool {
	for i, c := range b {
		if isPySpace(c) {
			return i > 0
		}
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

// plausibleResponse reports whether b can still be the start of "HTTP/".
func plausibleResponse(b []byte) bool {
	const p = "HTTP/"
	n := min(len(b), len(p))
	return string(b[:n]) == p[:n]
}

// isTLSRecord reports a TLS record header (handshake, alert or change
// cipher spec, any version): ciphertext on the plaintext path.
func isTLSRecord(b []byte) bool {
	return len(b) >= 3 && (b[0] == 0x14 || b[0] == 0x15 || b[0] == 0x16 || b[0] == 0x17) && b[1] == 3 && b[2] <= 4
}

// requestStart returns where the first line in b that looks like a request
// line starts (b's start, or after a line end; blank lines before it
// skipped), or -1. Resynchronising after lost bytes, it is stricter than
// the parser: an upper-case method, one space, a target start, and when
// the line is complete an HTTP version at its end.
func requestStart(b []byte) int {
	for i := 0; i < len(b); {
		j := i
		for j < len(b) && (b[j] == '\r' || b[j] == '\n') {
			j++
		}
		if looksLikeRequestLine(b[j:]) {
			return j
		}
		k := bytes.IndexByte(b[j:], '\n')
		if k < 0 {
			return -1
		}
		i = j + k + 1
	}
	return -1
}

func looksLikeRequestLine(b []byte) bool {
	i := 0
	for i < len(b) && (('A' <= b[i] && b[i] <= 'Z') || b[i] == '-' || b[i] == '_') {
		i++
	}
	if i == 0 || i+1 >= len(b) || b[i] != ' ' {
		return false
	}
	if t := b[i+1]; t != '/' && t != '*' && !('a' <= t && t <= 'z') && !('A' <= t && t <= 'Z') {
		return false
	}
	line, _, complete := cutLine(b)
	if !complete {
		return true
	}
	j := bytes.LastIndexByte(line, ' ')
	return j > i && validVersion(line[j+1:])
}

// responseStart reports whether b starts a status line (blank lines before
// it skipped), returning where.
func responseStart(b []byte) int {
	j := 0
	for j < len(b) && (b[j] == '\r' || b[j] == '\n') {
		j++
	}
	if rest, ok := bytes.CutPrefix(b[j:], []byte("HTTP/")); ok && len(rest) > 0 && '0' <= rest[0] && rest[0] <= '9' {
		return j
	}
	return -1
}
