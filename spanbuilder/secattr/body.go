package secattr

import (
	"bytes"
	"io"
	"mime/multipart"
	"strconv"
	"strings"

	"github.com/authprobe/authprobe/decoder"
)

// Bounds on body parsing. Captured bodies are at most a few KiB, but the
// parser must stay cheap whatever it is handed.
const (
	maxBodyScan   = 64 << 10 // bytes of a body ever looked at
	maxFields     = 256      // fields kept per body
	maxFieldKey   = 256      // bytes of a field name or JSON path
	maxFieldValue = 1024     // bytes of a field value kept
	maxJSONDepth  = 32       // nesting of a body's JSON
	maxParts      = 32       // multipart parts looked at
)

// bodyNotes are what a body parse saw that servers read differently.
type bodyNotes struct {
	// jsonDuplicateKey: a JSON object repeats a key. No serializer writes
	// one; RFC 8259 leaves the meaning to the parser (first, last, error).
	jsonDuplicateKey bool
}

// parseBody extracts the fields of a request or response body according to
// its Content-Type (form, JSON, multipart), sniffing JSON and forms when the
// type is missing. Encoded (gzip, ...) bodies and unknown types give nothing.
// Truncated bodies give what was parsed before the cut. The fields live in
// sc (reset here) and in one string made for them.
func parseBody(sc *scratch, h decoder.Header, body []byte) (fields, bodyNotes) {
	if len(body) == 0 {
		return fields{}, bodyNotes{}
	}
	if ce := headerGet(h, "Content-Encoding"); ce != "" && !strings.EqualFold(strings.TrimSpace(ce), "identity") {
		return fields{}, bodyNotes{}
	}
	if len(body) > maxBodyScan {
		body = body[:maxBodyScan]
	}
	sc.reset()
	mt, boundary := mediaType(h)
	switch {
	case mt == "application/x-www-form-urlencoded":
		return parseForm(sc, body), bodyNotes{}
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return parseJSON(sc, body)
	case mt == "multipart/form-data":
		return parseMultipart(sc, body, boundary), bodyNotes{}
	case mt == "" || mt == "text/plain":
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return parseJSON(sc, body)
		}
		if mt == "" && bytes.IndexByte(body, '=') > 0 {
			return parseForm(sc, body), bodyNotes{}
		}
	}
	return fields{}, bodyNotes{}
}

// parseForm reads an application/x-www-form-urlencoded body or a query
// string into sc (reset by the caller). Malformed pairs are skipped; a
// repeated name keeps its first value and conflicts when the values
// differ. A ';' inside a pair is read both ways: servers that split on it
// too (Python before 3.9.2, Rack's query parser) see the pairs after it,
// so "username=a;username=b" gives username "a;username=b" in conflict.
// Browsers escape ';' in forms.
func parseForm[T string | []byte](sc *scratch, body T) fields {
	for rest := body; ; {
		if len(sc.ents) >= maxFields {
			break
		}
		pair, next, more := cut(rest, '&')
		addPair(sc, pair, false)
		if indexByte(pair, ';') >= 0 {
			for sub := pair; ; {
				s, n, m := cut(sub, ';')
				addPair(sc, s, true)
				if !m {
					break
				}
				sub = n
			}
		}
		if !more {
			break
		}
		rest = next
	}
	return sc.fields()
}

// addPair records one "name=value" pair, both unescaped into sc.buf; alt
// marks a pair only some servers' reading has.
func addPair[T string | []byte](sc *scratch, pair T, alt bool) {
	mark := len(sc.buf)
	k, v, _ := cut(pair, '=')
	k0 := int32(len(sc.buf))
	ok1 := unescape(sc, k)
	k1 := int32(len(sc.buf))
	ok2 := unescape(sc, v)
	v1 := int32(len(sc.buf))
	if !ok1 || !ok2 || k1 == k0 || k1-k0 > maxFieldKey {
		sc.buf = sc.buf[:mark]
		return
	}
	v1 = min(v1, k1+maxFieldValue)
	sc.buf = sc.buf[:v1]
	if alt {
		if i, slot := sc.find(k0, k1); i < 0 {
			// Only this reading has the name at all.
			if len(sc.ents) < maxFields {
				sc.insert(slot, entry{k0: k0, k1: k1, v0: k1, v1: v1, scalar: true, conflict: true})
				return
			}
			sc.buf = sc.buf[:mark]
			return
		}
	}
	if !sc.add(k0, k1, k1, v1, true) {
		sc.buf = sc.buf[:mark]
	}
}

// unescape appends s to sc.buf decoded as url.QueryUnescape does ('+' is
// a space, %XX a byte); false when an escape is malformed.
func unescape[T string | []byte](sc *scratch, s T) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			sc.buf = append(sc.buf, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			sc.buf = append(sc.buf, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			sc.buf = append(sc.buf, c)
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// parseMultipart reads the non-file parts of a multipart/form-data body.
// It is not on the hot path: it allocates what mime/multipart does.
func parseMultipart(sc *scratch, body []byte, boundary string) fields {
	if boundary == "" || len(boundary) > 70 {
		return fields{}
	}
	r := multipart.NewReader(bytes.NewReader(body), boundary)
	for range maxParts {
		p, err := r.NextPart()
		if err != nil {
			break
		}
		name := p.FormName()
		if name == "" || p.FileName() != "" || len(name) > maxFieldKey {
			continue
		}
		// A truncated capture still names the part: keep what arrived.
		v, _ := io.ReadAll(io.LimitReader(p, maxFieldValue))
		mark := len(sc.buf)
		sc.buf = append(sc.buf, name...)
		k1 := int32(len(sc.buf))
		sc.buf = append(sc.buf, v...)
		if !sc.add(int32(mark), k1, k1, int32(len(sc.buf)), true) {
			sc.buf = sc.buf[:mark]
		}
		if len(sc.ents) >= maxFields {
			break
		}
	}
	return sc.fields()
}

// jsonFrame is an open JSON container: its path (a range of buf; long when
// it is over maxFieldKey, so nothing under it is kept), for arrays the
// next index, for objects where its keys begin in keys.
type jsonFrame struct {
	prefix   span
	long     bool
	array    bool
	index    int
	keysFrom int
}

// parseJSON walks a JSON body token by token and records every value under
// its dotted path. It never builds the document, stops at maxJSONDepth (so a
// nesting bomb costs maxJSONDepth tokens), and keeps what it saw before a
// syntax error or the end of a truncated capture. A key repeated in one
// object, anywhere in the body, is noted: it has no use but to be read
// differently by different parsers. The tokens are encoding/json's
// Decoder.Token's, from jsonLexer.
func parseJSON(sc *scratch, body []byte) (fields, bodyNotes) {
	var notes bodyNotes
	lx := jsonLexer{b: body, stack: sc.states[:0]}
	defer func() { sc.states = lx.stack[:0] }()
	var key span // pending object key
	haveKey := false

	pop := func() {
		sc.keys = sc.keys[:sc.frames[len(sc.frames)-1].keysFrom]
		sc.frames = sc.frames[:len(sc.frames)-1]
	}
	for len(sc.ents) < maxFields {
		mark := int32(len(sc.buf))
		tok, t0, t1, ok := lx.next(sc)
		if !ok {
			break
		}
		// An object key comes where a key is expected.
		if len(sc.frames) > 0 && !sc.frames[len(sc.frames)-1].array && !haveKey {
			if tok == jsonEndObject {
				pop()
				continue
			}
			if tok != jsonString {
				break
			}
			k := span{t0, t1}
			switch {
			case sc.hasKey(sc.keys[sc.frames[len(sc.frames)-1].keysFrom:], k):
				notes.jsonDuplicateKey = true
			case len(sc.keys) < maxFields: // bounds the search above
				sc.keys = append(sc.keys, k)
			}
			key, haveKey = k, true
			continue
		}
		if tok == jsonEndArray || tok == jsonEndObject {
			if len(sc.frames) > 0 {
				pop()
			}
			continue
		}
		// The value's bytes: a string's are decoded in buf already; a
		// number's are the body's; literals are written here.
		v0, v1 := t0, t1
		switch tok {
		case jsonNumber:
			v0 = int32(len(sc.buf))
			sc.buf = append(sc.buf, body[t0:t1]...)
			v1 = int32(len(sc.buf))
		case jsonTrue, jsonFalse:
			v0 = int32(len(sc.buf))
			sc.buf = strconv.AppendBool(sc.buf, tok == jsonTrue)
			v1 = int32(len(sc.buf))
		case jsonNull, jsonBeginObject, jsonBeginArray:
			v0, v1 = int32(len(sc.buf)), int32(len(sc.buf))
		}
		v1 = min(v1, v0+maxFieldValue)
		// Its path, after the value in buf.
		p0 := int32(len(sc.buf))
		long := false
		if n := len(sc.frames); n > 0 {
			top := &sc.frames[n-1]
			prefix := sc.buf[top.prefix.from:top.prefix.to]
			long = top.long
			if !long && len(prefix) > 0 {
				sc.buf = append(sc.buf, prefix...)
				sc.buf = append(sc.buf, '.')
			}
			if top.array {
				if !long {
					sc.buf = strconv.AppendInt(sc.buf, int64(top.index), 10)
				}
				top.index++
			} else {
				if !long {
					sc.buf = append(sc.buf, sc.buf[key.from:key.to]...)
				}
				haveKey = false
			}
			if !long && len(sc.buf)-int(p0) > maxFieldKey {
				long = true
			}
		}
		p1 := int32(len(sc.buf))
		if long {
			p1 = p0
			sc.buf = sc.buf[:p0]
		}
		container := tok == jsonBeginObject || tok == jsonBeginArray
		if container && len(sc.frames) >= maxJSONDepth {
			return sc.fields(), notes
		}
		stored := false
		if p1 > p0 { // a path "" (the top level) is never kept
			stored = sc.add(p0, p1, v0, v1, !container)
		}
		switch {
		case container:
			// The path stays in buf as the prefix of what is inside.
			sc.frames = append(sc.frames, jsonFrame{prefix: span{p0, p1}, long: long, array: tok == jsonBeginArray, keysFrom: len(sc.keys)})
		default:
			if !stored {
				sc.buf = sc.buf[:mark]
			}
		}
		if len(sc.frames) == 0 {
			break // one top-level value only
		}
	}
	return sc.fields(), notes
}

// hasKey reports whether k's bytes are among keys'.
func (sc *scratch) hasKey(keys []span, k span) bool {
	want := sc.buf[k.from:k.to]
	for _, o := range keys {
		if string(sc.buf[o.from:o.to]) == string(want) {
			return true
		}
	}
	return false
}

// capValue bounds a kept field value.
func capValue(v string) string {
	if len(v) > maxFieldValue {
		return v[:maxFieldValue]
	}
	return v
}

// cut is strings.Cut and bytes.Cut on a byte.
func cut[T string | []byte](s T, sep byte) (before, after T, found bool) {
	if i := indexByte(s, sep); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, s[len(s):], false
}

func indexByte[T string | []byte](s T, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
