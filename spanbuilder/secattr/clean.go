package secattr

import (
	"bytes"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxValueLen caps every string attribute value this package emits, in bytes.
const MaxValueLen = 256

// maxCleanScan bounds how much of a hostile value clean looks at.
const maxCleanScan = 64 << 10

// clean makes s safe for an attribute: it drops invalid UTF-8, control
// characters and invisible/bidi formatting runes (they enable log and
// terminal injection), trims spaces and caps the result at max bytes (at most
// MaxValueLen) on a rune boundary. The result is always a fresh string, so
// nothing derived from it keeps the captured request alive.
func clean(s string, max int) string {
	var buf [MaxValueLen]byte
	return string(bytes.TrimSpace(appendClean(buf[:0], s, max)))
}

// appendClean appends what clean makes of s to dst, but for the spaces
// trimmed at its end.
func appendClean(dst []byte, s string, max int) []byte {
	if max <= 0 || max > MaxValueLen {
		max = MaxValueLen
	}
	s = strings.TrimSpace(s)
	if len(s) > maxCleanScan {
		s = s[:maxCleanScan]
	}
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if (r == utf8.RuneError && size <= 1) || unwantedRune(r) {
			continue
		}
		if n+utf8.RuneLen(r) > max {
			break
		}
		dst = utf8.AppendRune(dst, r)
		n += utf8.RuneLen(r)
	}
	return dst
}

// unwantedRune reports control and invisible formatting runes.
func unwantedRune(r rune) bool {
	switch {
	case unicode.IsControl(r):
		return true
	case r >= 0x200B && r <= 0x200F, // zero-width, LRM, RLM
		r >= 0x202A && r <= 0x202E, // bidi embeddings and overrides
		r >= 0x2066 && r <= 0x2069, // bidi isolates
		r == 0x2028, r == 0x2029, r == 0xFEFF:
		return true
	}
	return false
}
