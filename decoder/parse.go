package decoder

import (
	"bytes"
	"errors"
	"strings"
)

// Parse errors name what was wrong, never the bytes: heads carry secrets.
var (
	errStartLine     = errors.New("malformed start line")
	errMethod        = errors.New("invalid method")
	errTarget        = errors.New("invalid request target")
	errProto         = errors.New("unsupported protocol version")
	errStatus        = errors.New("invalid status code")
	errHeaderLine    = errors.New("malformed header line")
	errHeaderName    = errors.New("invalid header field name")
	errHeaderValue   = errors.New("invalid header field value")
	errContentLength = errors.New("invalid content-length")
	errTransferCode  = errors.New("unsupported transfer-encoding")
	errChunkSize     = errors.New("invalid chunk size")
	errChunkFraming  = errors.New("invalid chunk framing")
	errChunkMetaSize = errors.New("chunk extension or trailer too long")
)

const (
	proto10 = "HTTP/1.0"
	proto11 = "HTTP/1.1"
	// maxContentLength keeps length arithmetic far from overflow.
	maxContentLength = 1 << 60
)

// headEnd returns the length of the head at the start of b, through the
// empty line that ends it, or -1 when b holds no complete head yet. It
// searches for the empty line from offset from. Bare LF line ends are
// accepted as RFC 9112 §2.2 allows.
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

// parseRequestHead parses a request line and header block. b may end with
// the empty line or, for a head cut short by the capture budget, anywhere
// after the request line: an unterminated last line is ignored. Framing
// (ContentLength, Chunked) is derived from the headers.
func parseRequestHead(b []byte, r *Request) error {
	s := string(b) // one copy; every field below is a substring of it
	line, rest, ok := nextLine(s)
	if !ok {
		return errStartLine
	}
	method, rest1, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest1, " ")
	if !ok1 || !ok2 {
		return errStartLine
	}
	if method == "" || !isToken(method) {
		return errMethod
	}
	if !validTarget(target) {
		return errTarget
	}
	if proto != proto11 && proto != proto10 {
		return errProto
	}
	h, err := parseHeaderLines(rest)
	if err != nil {
		return err
	}
	cl, chunked, err := framing(h, true)
	if err != nil {
		return err
	}
	r.Method, r.Target, r.Proto, r.Header = method, target, proto, h
	r.ContentLength, r.Chunked = cl, chunked
	return nil
}

// parseResponseHead parses a status line and header block, with the same
// tolerance for a head cut short as parseRequestHead.
func parseResponseHead(b []byte, r *Response) error {
	s := string(b)
	line, rest, ok := nextLine(s)
	if !ok || len(line) < len("HTTP/1.1 200") {
		return errStartLine
	}
	proto := line[:8]
	if proto != proto11 && proto != proto10 {
		return errProto
	}
	if line[8] != ' ' {
		return errStartLine
	}
	code := 0
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return errStatus
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return errStatus
	}
	reason := ""
	if len(line) > 12 {
		if line[12] != ' ' {
			return errStatus
		}
		reason = line[13:]
		if !validFieldValue(reason) {
			return errStartLine
		}
	}
	h, err := parseHeaderLines(rest)
	if err != nil {
		return err
	}
	cl, chunked, err := framing(h, false)
	if err != nil {
		return err
	}
	r.Proto, r.StatusCode, r.Reason, r.Header = proto, code, reason, h
	r.ContentLength, r.Chunked = cl, chunked
	return nil
}

// nextLine splits off the first line of s without its CRLF or LF; ok is
// false when s holds no complete line.
func nextLine(s string) (line, rest string, ok bool) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, "", false
	}
	line = s[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, s[i+1:], true
}

// parseHeaderLines parses header lines up to the empty line or the end of
// the complete lines in s. Duplicates are kept in wire order; obsolete line
// folding is replaced by a space (RFC 9112 §5.2).
func parseHeaderLines(s string) (Header, error) {
	var h Header
	if n := strings.Count(s, "\n"); n > 1 {
		h = make(Header, 0, n-1)
	}
	for {
		line, rest, ok := nextLine(s)
		if !ok || line == "" {
			return h, nil
		}
		s = rest
		if line[0] == ' ' || line[0] == '\t' {
			if len(h) == 0 {
				return nil, errHeaderLine
			}
			v := trimOWS(line)
			if !validFieldValue(v) {
				return nil, errHeaderValue
			}
			if v != "" {
				last := &h[len(h)-1]
				if last.Value == "" {
					last.Value = v
				} else {
					last.Value = last.Value + " " + v
				}
			}
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, errHeaderLine
		}
		if name == "" || !isToken(name) {
			return nil, errHeaderName
		}
		value = trimOWS(value)
		if !validFieldValue(value) {
			return nil, errHeaderValue
		}
		h = append(h, HeaderField{Name: name, Value: value})
	}
}

// framing derives the body framing of a message from its headers (RFC 9112
// §6.3): Transfer-Encoding overrides Content-Length, and differing
// Content-Length values are an error because peers could disagree on
// where the message ends.
func framing(h Header, request bool) (cl int64, chunked bool, err error) {
	cl = -1
	te := false
	for _, f := range h {
		switch {
		case len(f.Name) != len("Content-Length") && len(f.Name) != len("Transfer-Encoding"):
			continue
		case strings.EqualFold(f.Name, "Content-Length"):
			n, err := parseContentLength(f.Value)
			if err != nil {
				return -1, false, err
			}
			if cl >= 0 && n != cl {
				return -1, false, errContentLength
			}
			cl = n
		case strings.EqualFold(f.Name, "Transfer-Encoding"):
			if last, ok := lastCoding(f.Value); ok {
				te = true
				chunked = strings.EqualFold(last, "chunked")
			}
		}
	}
	if te {
		if request && !chunked {
			return -1, false, errTransferCode
		}
		cl = -1
	}
	return cl, chunked, nil
}

// parseContentLength accepts a decimal length or a list of equal ones.
func parseContentLength(v string) (int64, error) {
	n := int64(-1)
	for v != "" {
		var part string
		part, v, _ = strings.Cut(v, ",")
		part = trimOWS(part)
		if part == "" {
			continue
		}
		var x int64
		for i := 0; i < len(part); i++ {
			c := part[i]
			if c < '0' || c > '9' {
				return -1, errContentLength
			}
			x = x*10 + int64(c-'0')
			if x > maxContentLength {
				return -1, errContentLength
			}
		}
		if n >= 0 && x != n {
			return -1, errContentLength
		}
		n = x
	}
	if n < 0 {
		return -1, errContentLength
	}
	return n, nil
}

// lastCoding returns the last transfer coding listed in v.
func lastCoding(v string) (string, bool) {
	for v != "" {
		i := strings.LastIndexByte(v, ',')
		c := trimOWS(v[i+1:])
		if j := strings.IndexByte(c, ';'); j >= 0 {
			c = trimOWS(c[:j])
		}
		if c != "" {
			return c, true
		}
		if i < 0 {
			break
		}
		v = v[:i]
	}
	return "", false
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// tchar of RFC 9110 §5.6.2 as bit sets over bytes 0-63 and 64-127
// (!#$%&'*+-.^_`|~, digits and letters); TestTokenMasks checks them.
const (
	tcharLo = 0x03ff6cfa00000000
	tcharHi = 0x57ffffffc7fffffe
)

// isTokenChar reports whether c is a tchar.
func isTokenChar(c byte) bool {
	if c < 64 {
		return tcharLo&(1<<c) != 0
	}
	return c < 128 && tcharHi&(1<<(c-64)) != 0
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// validFieldValue rejects control characters other than HTAB; obs-text
// (bytes >= 0x80) is allowed. It tests eight bytes at a time: a word with
// no byte below 0x20 and none at or above 0x7f is fine as a whole, the rare
// others are checked byte by byte.
func validFieldValue(s string) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		if (x-lo*0x20)&^x&hi == 0 && (x+lo|x)&hi == 0 {
			continue
		}
		if !validFieldBytes(s[i : i+8]) {
			return false
		}
	}
	return validFieldBytes(s[i:])
}

func validFieldBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// plausibleStart reports whether b can still be the start of a request
// line (a method token then a space) or of a status line ("HTTP/"), so that
// binary garbage is rejected on its first bytes instead of being buffered.
func plausibleStart(b []byte, request bool) bool {
	if !request {
		const p = "HTTP/"
		n := min(len(b), len(p))
		return string(b[:n]) == p[:n]
	}
	const maxMethod = 32
	for i, c := range b {
		if c == ' ' {
			return i > 0
		}
		if !isTokenChar(c) || i >= maxMethod {
			return false
		}
	}
	return true
}

// startsMessage is the stricter test used to resynchronise after lost
// bytes: the chunk must begin with an upper-case method, a space and the
// start of a target, or with "HTTP/1.".
func startsMessage(b []byte, request bool) bool {
	if !request {
		return bytes.HasPrefix(b, []byte("HTTP/1."))
	}
	const maxMethod = 32
	for i, c := range b {
		if c == ' ' {
			if i == 0 || i+1 >= len(b) {
				return false
			}
			t := b[i+1]
			return t == '/' || t == '*' || ('a' <= t && t <= 'z') || ('A' <= t && t <= 'Z')
		}
		if i >= maxMethod || !(('A' <= c && c <= 'Z') || c == '-' || c == '_') {
			return false
		}
	}
	return false
}
