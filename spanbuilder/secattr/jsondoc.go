package secattr

import (
	"bytes"
	"strconv"
	"unsafe"
)

// docNode is one value of a JSON document parsed by parseDoc. Nodes are
// in document order, so a container's members follow it, up to its end.
type docNode struct {
	tok    jsonToken // jsonBeginObject or jsonBeginArray for a container
	parent int32     // the containing node; -1 for the top value
	key    span      // its name in the scratch's buf, when in an object
	val    span      // a string's decoded bytes (scratch buf), a number's text (the document)
	end    int32     // a container's: one past its last descendant
}

// parseDoc parses doc into sc.nodes the way encoding/json's Unmarshal
// takes it: one value with only whitespace around it, the syntax and
// string decoding of jsonLexer (held to encoding/json by
// FuzzBodyDifferential), and with floats set every number must be a
// float64 (Unmarshal into an interface refuses 1e400). The top value is
// sc.nodes[0]. It allocates nothing once the scratch has grown.
func parseDoc(sc *scratch, doc []byte, floats bool) bool {
	sc.nodes, sc.open = sc.nodes[:0], sc.open[:0]
	lx := jsonLexer{b: doc, stack: sc.states[:0]}
	ok := sc.walkDoc(&lx, floats)
	sc.states = lx.stack[:0]
	if !ok {
		return false
	}
	for _, c := range doc[lx.p:] {
		if !isJSONSpace(c) {
			return false
		}
	}
	return true
}

// walkDoc reads the tokens of the top value into sc.nodes; it stops
// when that value is complete, reporting false for an error before.
func (sc *scratch) walkDoc(lx *jsonLexer, floats bool) bool {
	var key span
	wantKey := false
	for {
		tok, from, to, ok := lx.next(sc)
		if !ok {
			return false
		}
		if wantKey && tok == jsonString {
			key, wantKey = span{from, to}, false
			continue
		}
		if tok == jsonEndObject || tok == jsonEndArray {
			top := sc.open[len(sc.open)-1]
			sc.open = sc.open[:len(sc.open)-1]
			sc.nodes[top].end = int32(len(sc.nodes))
			if len(sc.open) == 0 {
				return true
			}
			wantKey = sc.nodes[sc.open[len(sc.open)-1]].tok == jsonBeginObject
			continue
		}
		if tok == jsonNumber && floats {
			b := lx.b[from:to]
			if _, err := strconv.ParseFloat(unsafe.String(&b[0], len(b)), 64); err != nil {
				return false
			}
		}
		n := docNode{tok: tok, parent: -1, val: span{from, to}}
		if len(sc.open) > 0 {
			n.parent = sc.open[len(sc.open)-1]
			if sc.nodes[n.parent].tok == jsonBeginObject {
				n.key = key
			}
		}
		sc.nodes = append(sc.nodes, n)
		switch tok {
		case jsonBeginObject, jsonBeginArray:
			sc.open = append(sc.open, int32(len(sc.nodes)-1))
			wantKey = tok == jsonBeginObject
		default:
			if n.parent < 0 {
				return true // a scalar at the top
			}
			wantKey = sc.nodes[n.parent].tok == jsonBeginObject
		}
	}
}

// nextSibling is the node after n and its descendants.
func (sc *scratch) nextSibling(n int32) int32 {
	if t := sc.nodes[n].tok; t == jsonBeginObject || t == jsonBeginArray {
		return sc.nodes[n].end
	}
	return n + 1
}

// member returns the last member of object n named name (a repeated
// name's last value is the one Unmarshal keeps), or -1.
func (sc *scratch) member(n int32, name string) int32 {
	found := int32(-1)
	if sc.nodes[n].tok != jsonBeginObject {
		return found
	}
	for i := n + 1; i < sc.nodes[n].end; i = sc.nextSibling(i) {
		if string(sc.text(sc.nodes[i].key)) == name {
			found = i
		}
	}
	return found
}

// text is the bytes of s in sc.buf.
func (sc *scratch) text(s span) []byte { return sc.buf[s.from:s.to] }

// str is string node n's decoded text, aliasing the scratch (valid until
// it is reset).
func (sc *scratch) str(n int32) string {
	b := sc.text(sc.nodes[n].val)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// float is number node n's value (parseDoc with floats checked it).
func (sc *scratch) float(n int32, doc []byte) float64 {
	b := doc[sc.nodes[n].val.from:sc.nodes[n].val.to]
	f, _ := strconv.ParseFloat(unsafe.String(&b[0], len(b)), 64)
	return f
}

// keyFolds reports whether node i's name equals name under Unicode case
// folding, as encoding/json matches a member to a struct field.
func (sc *scratch) keyFolds(i int32, name string) bool {
	return bytes.EqualFold(sc.text(sc.nodes[i].key), []byte(name))
}
