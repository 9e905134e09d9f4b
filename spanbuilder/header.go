package spanbuilder

import (
	"strings"
	"unicode/utf8"

	"github.com/authprobe/authprobe/decoder"
)

// headerGet returns the first value of a header, "" when absent. Names
// compare case-insensitively.
func headerGet(h decoder.Header, name string) string {
	v, _ := headerFirst(h, name)
	return v
}

// headerFirst returns the first value of a header and how many lines
// carry it.
func headerFirst(h decoder.Header, name string) (first string, n int) {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			if n == 0 {
				first = f.Value
			}
			n++
		}
	}
	return first, n
}

// maxAttrBytes caps every attribute value that came from the wire.
const maxAttrBytes = 256

// wireString makes a string that came from the wire fit for an attribute:
// valid UTF-8 (invalid bytes become U+FFFD), no control characters (they
// would forge log lines in some backends), at most maxAttrBytes bytes cut at
// a character boundary. Every such value goes through it.
func wireString(s string) string {
	if isPlainASCII(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), maxAttrBytes))
	for _, r := range s { // invalid UTF-8 ranges as utf8.RuneError
		if r < 0x20 || r >= 0x7f && r < 0xa0 {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > maxAttrBytes {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isPlainASCII reports whether s is short printable ASCII, the usual
// case, which needs no copy.
func isPlainASCII(s string) bool {
	if len(s) > maxAttrBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
