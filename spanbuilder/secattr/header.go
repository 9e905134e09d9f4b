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

// mediaType returns the lowercase media type and its parameters of a
// Content-Type value; "" when absent or unparseable.
func mediaType(h decoder.Header) (string, map[string]string) {
	ct := headerGet(h, "Content-Type")
	if ct == "" {
		return "", nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", nil
	}
	return mt, params
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
