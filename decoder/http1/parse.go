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
		if t, p, ok := bytes.Cut(rest, []byte{' '}); ok && isToken(m) && validGoTarget(t) && validVersion(p) {
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

// validGoTarget: net/http's URL parser refuses control bytes in a target.
func validGoTarget(t []byte) bool {
	for _, c := range t {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return len(t) > 0
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
	proto, rest := line, []byte(nil)
	if i := bytes.IndexAny(line, " \t"); i >= 0 {
		proto, rest = line[:i], line[i+1:]
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

// lineKind is how servers take a header line.
type lineKind uint8

const (
	fieldOK     lineKind = iota
	fieldGoOnly          // a space in the name: Go keeps it (never as framing) and reads on; Python stops at it
	fieldStop            // no colon, or a byte outside \x21-\x7e in the name: Python stops, Go and Node reject
)

// splitField finds the colon of a header line and its value's bounds
// (optional whitespace trimmed).
func splitField(line []byte) (colon, vs, ve int, kind lineKind) {
	colon = -1
	for i, c := range line {
		if c == ':' {
			colon = i
			break
		}
		switch {
		case c == ' ':
			kind = fieldGoOnly
		case c < 0x21 || c > 0x7e:
			return 0, 0, 0, fieldStop
		}
	}
	if colon < 0 {
		return 0, 0, 0, fieldStop
	}
	vs, ve = colon+1, len(line)
	for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
		vs++
	}
	for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
		ve--
	}
	return colon, vs, ve, kind
}

// fieldLine splits a header line into name and value.
func fieldLine(line []byte) (name, value []byte, kind lineKind) {
	colon, vs, ve, kind := splitField(line)
	if kind == fieldStop {
		return nil, nil, kind
	}
	return line[:colon], line[vs:ve], kind
}

func isContinuation(line []byte) bool { return len(line) > 0 && (line[0] == ' ' || line[0] == '\t') }

// span is where bytes sit in a head.
type span struct{ off, n uint32 }

func (s span) of(head []byte) []byte { return head[s.off : s.off+s.n] }

// fieldSpan is one header field of a head; a folded value runs through
// its continuation lines.
type fieldSpan struct {
	name, value span
	folded      bool
}

// line takes one header line into account (the overflow reader's path)
// and reports a line the fields stop at.
func (f *framing) line(line []byte) (stop bool) {
	if isContinuation(line) {
		if f.fields == 0 {
			f.broken = true // a continuation first: Python skips it, Go rejects
		} else {
			f.folded()
		}
		return false
	}
	name, value, kind := fieldLine(line)
	switch kind {
	case fieldStop:
		f.broken = true
		return true
	case fieldGoOnly:
		f.broken, f.pyDone = true, true
	}
	f.fields++
	f.field(name, value)
	return false
}

// readFields walks the header lines of head from offset at (through the
// empty line, or up to the last complete line of a head cut short) once:
// it takes each into account for framing and appends the fields a
// message keeps to spans. It stops at a line the fields end at.
func readFields(head []byte, at int, f *framing, spans []fieldSpan) []fieldSpan {
	for at < len(head) {
		j := bytes.IndexByte(head[at:], '\n')
		if j < 0 {
			return spans
		}
		end := at + j
		if end > at && head[end-1] == '\r' {
			end--
		}
		line := head[at:end]
		if len(line) == 0 {
			return spans
		}
		if isContinuation(line) {
			if f.fields == 0 {
				f.broken = true // a continuation first: Python skips it, Go rejects
			} else {
				f.folded()
				last := &spans[len(spans)-1]
				last.folded = true
				last.value.n = uint32(end) - last.value.off
			}
		} else {
			colon, vs, ve, kind := splitField(line)
			switch kind {
			case fieldStop:
				f.broken = true
				return spans
			case fieldGoOnly:
				f.broken, f.pyDone = true, true
			}
			f.fields++
			f.field(line[:colon], line[vs:ve])
			spans = append(spans, fieldSpan{
				name:  span{uint32(at), uint32(colon)},
				value: span{uint32(at + vs), uint32(ve - vs)},
			})
		}
		at += j + 1
	}
	return spans
}

// fillFields makes the header of spans read from head (strings alias
// head, which must never change afterwards) into h.
func fillFields(head []byte, spans []fieldSpan, h exchange.Header) exchange.Header {
	for _, s := range spans {
		v := str(s.value.of(head))
		if s.folded {
			v = joinFolded(s.value.of(head))
		}
		h = append(h, exchange.HeaderField{Name: str(s.name.of(head)), Value: v})
	}
	return h
}

// joinFolded joins a value's continuation lines with single spaces (RFC
// 9112 §5.2).
func joinFolded(b []byte) string {
	var out []byte
	for part := range bytes.SplitSeq(b, []byte{'\n'}) {
		part = trimOWS(bytes.TrimSuffix(trimOWS(part), []byte{'\r'}))
		if len(part) == 0 {
			continue
		}
		if len(out) > 0 {
			out = append(out, ' ')
		}
		out = append(out, part...)
	}
	return string(out)
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
	fields  int   // fields seen
	// broken: a line servers disagree on (AmbiguousHeader); pyDone: Python
	// stopped reading fields there, Go reads on; early: framing fields
	// before that, which Python reads too.
	broken, pyDone bool
	early          int
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
		f.countEarly()
		f.clN++
		n, odd := contentLength(value)
		f.clOdd = f.clOdd || odd
		if f.cl < 0 || n < f.cl {
			f.cl = n
		}
	case len(name) == len("transfer-encoding") && equalFold(name, "transfer-encoding"):
		f.last = lastTE
		f.countEarly()
		f.teN++
		last, only := lastCoding(value)
		f.chunked = equalFold(last, "chunked")
		f.teOdd = f.teOdd || !only || !f.chunked
	}
}

func (f *framing) countEarly() {
	if !f.pyDone {
		f.early++
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
	if f.broken {
		amb |= exchange.AmbiguousHeader
	}
	switch {
	case f.pyDone && f.early == 0:
		// Python read no framing field (it stopped before them): no body,
		// the earliest end.
		return bodyNone, 0, amb
	case f.teN > 0 && f.chunked && http10 && f.clN == 0:
		// Go ignores Transfer-Encoding on HTTP/1.0 and reads no body; what
		// follows is its next request.
		return bodyNone, 0, amb
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
			n = addDigit(n, c)
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
		n = addDigit(n, c)
	}
	return n, true
}

// addDigit appends a decimal digit to n, saturating at maxContentLength.
func addDigit(n int64, c byte) int64 {
	if n >= maxContentLength/10 {
		return maxContentLength
	}
	return min(n*10+int64(c-'0'), maxContentLength)
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

// requestHead is what a request head says; its slices alias the head.
type requestHead struct {
	line   requestLine
	fields []fieldSpan
	f      framing
}

// readRequestHead reads a request head for its line, fields and framing
// (the fields go to spans' spare room); with truncated, head is the start
// of a longer one.
func readRequestHead(head []byte, truncated bool, spans []fieldSpan) (requestHead, bool) {
	rl, rest, ok := parseLine(head, truncated)
	if !ok {
		return requestHead{}, false
	}
	h := requestHead{line: rl, f: newFraming()}
	h.fields = readFields(head, len(head)-len(rest), &h.f, spans[:0])
	return h, true
}

func (h *requestHead) http10() bool { return string(h.line.proto) == "HTTP/1.0" || h.line.simple }

// kind is what the response to the request needs from it.
func (h *requestHead) kind() exchange.Kind {
	switch rl := &h.line; {
	case rl.simple || string(rl.proto) == "HTTP/0.9":
		return exchange.KindSimple
	case string(rl.method) == "HEAD":
		return exchange.KindHead
	case string(rl.method) == "CONNECT":
		return exchange.KindConnect
	}
	return exchange.KindOther
}

func parseLine(head []byte, truncated bool) (requestLine, []byte, bool) {
	line, rest, complete := cutLine(head)
	if complete {
		rl, ok := parseRequestLine(line)
		return rl, rest, ok
	}
	if !truncated {
		return requestLine{}, nil, false
	}
	rl, ok := truncatedLine(line)
	return rl, nil, ok
}

// truncatedLine reads the request line of a head cut before the line's
// end: the method and the start of the target.
func truncatedLine(line []byte) (requestLine, bool) {
	i := bytes.IndexAny(line, " \t")
	if i <= 0 || !isToken(line[:i]) {
		return requestLine{}, false
	}
	target := bytes.TrimLeft(line[i:], " \t")
	if j := bytes.IndexAny(target, " \t"); j >= 0 {
		target = target[:j]
	}
	if len(target) == 0 {
		return requestLine{}, false
	}
	return requestLine{method: line[:i], target: target}, true
}

// fillRequest sets r's line and header from head, a copy of the head
// readRequestHead read into h: its strings alias head, which must never
// change afterwards.
func fillRequest(r *exchange.Request, head []byte, truncated bool, h *requestHead, fields exchange.Header) {
	rl, _, _ := parseLine(head, truncated)
	r.Method, r.Target, r.Proto = str(rl.method), str(rl.target), str(rl.proto)
	if rl.simple {
		r.Proto = "HTTP/0.9"
	}
	r.Header = fillFields(head, h.fields, fields)
	r.HeadTruncated = truncated
}

// setRequestFraming records how a request's body was framed.
func setRequestFraming(r *exchange.Request, f *framing, mode bodyMode, amb exchange.Ambiguity) {
	r.Ambiguous = amb
	r.Chunked = mode == bodyChunked
	r.ContentLength = -1
	if f.clN > 0 && !r.Chunked {
		r.ContentLength = max(f.cl, 0)
	}
}

// fillResponse sets r's status line and header from head, as fillRequest.
func fillResponse(r *exchange.Response, head []byte, truncated bool, spans []fieldSpan, fields exchange.Header) {
	line, _, _ := cutLine(head)
	sl, _ := parseStatusLine(line)
	r.Proto, r.StatusCode, r.Reason = str(sl.proto), sl.code, str(sl.reason)
	r.Header = fillFields(head, spans, fields)
	r.HeadTruncated = truncated
}

// setResponseFraming records how a response's body was framed.
func setResponseFraming(r *exchange.Response, f *framing, mode bodyMode) {
	r.Chunked = mode == bodyChunked
	r.ContentLength = -1
	if f.clN > 0 && !r.Chunked {
		r.ContentLength = max(f.cl, 0)
	}
}
