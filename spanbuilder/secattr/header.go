package secattr

import (
	"mime"
	"strings"

	"github.com/authprobe/authprobe/decoder"
)

// headerGet returns the first value of the named header ("" when absent).
func headerGet(h decoder.Header, name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// headerCount counts the lines of the named header.
func headerCount(h decoder.Header, name string) int {
	n := 0
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			n++
		}
	}
	return n
}

// headerJoin joins all lines of the named header with commas, in wire order,
// as RFC 9110 §5.3 allows for list-valued fields.
func headerJoin(h decoder.Header, name string) string {
	var b strings.Builder
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(f.Value)
		}
	}
	return b.String()
}

// mediaType returns the lowercase media type of a Content-Type value and,
// for multipart, its boundary; "" when absent or unparseable. The usual
// values ("application/json", "...; charset=utf-8") are read without
// allocating; anything else goes to mime.ParseMediaType.
func mediaType(h decoder.Header) (mt, boundary string) {
	ct := headerGet(h, "Content-Type")
	if ct == "" {
		return "", ""
	}
	if mt, ok := simpleMediaType(ct); ok {
		return mt, ""
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", ""
	}
	return mt, params["boundary"]
}

// trimOWS cuts the spaces and tabs around s (strings.Trim with a cutset
// builds its set on every call).
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// simpleMediaType reads "type/subtype", optionally followed by
// "; charset=utf-8", in lower case ASCII with token characters only: what
// mime.ParseMediaType gives for it is the type itself. Anything else is
// not simple.
func simpleMediaType(ct string) (string, bool) {
	base, param, hasParam := strings.Cut(ct, ";")
	if hasParam && !strings.EqualFold(trimOWS(param), "charset=utf-8") {
		return "", false
	}
	base = trimOWS(base)
	slash := -1
	for i := 0; i < len(base); i++ {
		c := base[i]
		switch {
		case c == '/' && slash < 0:
			slash = i
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '+', c == '_':
		default:
			return "", false
		}
	}
	if slash <= 0 || slash == len(base)-1 || strings.HasPrefix(base, "multipart/") {
		return "", false
	}
	return base, true
}

// cookieNames calls fn with the name of every cookie in the request's Cookie
// headers; fn returns true to stop. Values are never looked at.
func cookieNames(h decoder.Header, fn func(name string) bool) {
	for _, f := range h {
		if !strings.EqualFold(f.Name, "Cookie") {
			continue
		}
		for pair := range strings.SplitSeq(f.Value, ";") {
			name, _, _ := strings.Cut(pair, "=")
			if fn(strings.TrimSpace(name)) {
				return
			}
		}
	}
}

// containsFold reports whether list holds s, ignoring ASCII case.
func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}
