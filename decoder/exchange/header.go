package exchange

import "strings"

// Get returns the value of the first field named name (case-insensitive),
// or "" when there is none.
func (h Header) Get(name string) string {
	v, _ := h.First(name)
	return v
}

// First returns the value of the first field named name
// (case-insensitive) and how many fields carry that name.
func (h Header) First(name string) (first string, n int) {
	for _, f := range h {
		if len(f.Name) == len(name) && strings.EqualFold(f.Name, name) {
			if n == 0 {
				first = f.Value
			}
			n++
		}
	}
	return first, n
}

// Values returns the values of every field named name (case-insensitive),
// in wire order, or nil when there is none.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if len(f.Name) == len(name) && strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Unhex is the value of a hexadecimal digit (chunk sizes, percent
// escapes); ok is false for any other byte.
func Unhex(c byte) (v byte, ok bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
