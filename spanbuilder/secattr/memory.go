package secattr

import (
	"bytes"
	"strings"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
)

// Memory is where Extract puts what an Output is made of besides the
// exchange's own bytes: the attribute slice, the text of the bodies'
// fields (usernames, client ids and OAuth2 error codes are cut from it)
// and the username's hash. With Input.Memory set, Extract allocates none
// of it once the Memory has grown to what the exchanges need; the Output
// is then valid until Reset. A Memory is for one Extract at a time.
type Memory struct {
	attrs []attribute.KeyValue
	text  []byte
}

// Reset wipes what the Outputs made in m hold (body fields may carry
// credentials) and makes m ready for the next Extract: nothing of those
// Outputs may be read after it.
func (m *Memory) Reset() {
	clear(m.attrs)
	m.attrs = m.attrs[:0]
	clear(m.text)
	m.text = m.text[:0]
}

// Oversized reports that m grew past what ordinary exchanges need, so
// that a pool of them lets it go rather than pin a hostile body's memory.
func (m *Memory) Oversized() bool {
	return cap(m.text) > 2*maxBodyScan || cap(m.attrs) > 4*maxFields
}

// attributes is an empty attribute slice to append to: m's when there
// is one.
func (m *Memory) attributes() []attribute.KeyValue {
	if m == nil {
		return make([]attribute.KeyValue, 0, 16)
	}
	return m.attrs[:0]
}

// keepAttributes records what the slice from attributes grew to.
func (m *Memory) keepAttributes(attrs []attribute.KeyValue) {
	if m != nil {
		m.attrs = attrs
	}
}

// string returns b as a string: a copy in m, valid until Reset, or
// without m a string of its own.
func (m *Memory) string(b []byte) string {
	if m == nil {
		return string(b)
	}
	if len(b) == 0 {
		return ""
	}
	out := m.take(len(b))
	copy(out, b)
	return unsafe.String(&out[0], len(out))
}

// clean is clean(s, max) made in m (valid until Reset), or without m a
// string of its own.
func (m *Memory) clean(s string, max int) string {
	if m == nil {
		return clean(s, max)
	}
	var buf [MaxValueLen]byte
	return m.string(bytes.TrimSpace(appendClean(buf[:0], s, max)))
}

// lower is strings.ToLower(s); an ASCII one that changes is made in m
// (valid until Reset).
func (m *Memory) lower(s string) string {
	if m == nil {
		return strings.ToLower(s)
	}
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return strings.ToLower(s)
		}
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if !upper {
		return s
	}
	out := m.take(len(s))
	for i := range out {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return unsafe.String(&out[0], len(out))
}

// take returns n bytes of m's text for a string (n > 0).
func (m *Memory) take(n int) []byte {
	if cap(m.text)-len(m.text) < n {
		// The strings already cut from the old array keep it (until the
		// collector takes it): it is never written again.
		m.text = make([]byte, 0, max(2*cap(m.text), n, 512))
	}
	i := len(m.text)
	m.text = m.text[:i+n]
	return m.text[i : i+n : i+n]
}
