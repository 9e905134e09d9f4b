package secattr

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/url"
	"slices"
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

// field is one value found in a body: a form field, a multipart part or a
// JSON value at a dotted path.
type field struct {
	val    string // scalar value (number text, true/false; "" for null, objects and arrays)
	scalar bool   // false for JSON objects and arrays
	// conflict: the name came again with another value (a repeated form
	// field or part, a JSON key twice), or only some servers' reading of
	// the body has it. Servers disagree on which value counts: Go's
	// FormValue and Python's parse_qs take the first, PHP, Django and
	// every JSON parser the last, Express an array of all. val is the
	// first.
	conflict bool
}

// fields maps form field names, multipart part names and dotted JSON paths
// ("user.email", "roles.0") to their values. It lives for one Extract call.
type fields map[string]field

// add records a value under name; a repeat keeps the first value and
// marks a conflict when the values differ.
func (f fields) add(name string, v field) {
	old, dup := f[name]
	if !dup {
		if len(f) < maxFields {
			f[name] = v
		}
		return
	}
	if old.val != v.val || old.scalar != v.scalar {
		old.conflict = true
		f[name] = old
	}
}

// bodyNotes are what a body parse saw that servers read differently.
type bodyNotes struct {
	// jsonDuplicateKey: a JSON object repeats a key. No serializer writes
	// one; RFC 8259 leaves the meaning to the parser (first, last, error).
	jsonDuplicateKey bool
}

// str returns the scalar value at name.
func (f fields) str(name string) (string, bool) {
	v, ok := f[name]
	if !ok || !v.scalar {
		return "", false
	}
	return v.val, true
}

// parseBody extracts the fields of a request or response body according to
// its Content-Type (form, JSON, multipart), sniffing JSON and forms when the
// type is missing. Encoded (gzip, ...) bodies and unknown types give nothing.
// Truncated bodies give what was parsed before the cut.
func parseBody(h decoder.Header, body []byte) (fields, bodyNotes) {
	if len(body) == 0 {
		return nil, bodyNotes{}
	}
	if ce := headerGet(h, "Content-Encoding"); ce != "" && !strings.EqualFold(strings.TrimSpace(ce), "identity") {
		return nil, bodyNotes{}
	}
	if len(body) > maxBodyScan {
		body = body[:maxBodyScan]
	}
	mt, params := mediaType(h)
	switch {
	case mt == "application/x-www-form-urlencoded":
		return parseForm(string(body)), bodyNotes{}
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return parseJSON(body)
	case mt == "multipart/form-data":
		return parseMultipart(body, params["boundary"]), bodyNotes{}
	case mt == "" || mt == "text/plain":
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return parseJSON(body)
		}
		if mt == "" && bytes.IndexByte(body, '=') > 0 {
			return parseForm(string(body)), bodyNotes{}
		}
	}
	return nil, bodyNotes{}
}

// parseForm reads an application/x-www-form-urlencoded body or a query
// string. Malformed pairs are skipped; a repeated name keeps its first
// value and conflicts when the values differ. A ';' inside a pair is read
// both ways: servers that split on it too (Python before 3.9.2, Rack's
// query parser) see the pairs after it, so "username=a;username=b" gives
// username "a;username=b" in conflict. Browsers escape ';' in forms.
func parseForm(body string) fields {
	f := fields{}
	for pair := range strings.SplitSeq(body, "&") {
		if len(f) >= maxFields {
			break
		}
		addPair(f, pair, false)
		if strings.IndexByte(pair, ';') >= 0 {
			for sub := range strings.SplitSeq(pair, ";") {
				addPair(f, sub, true)
			}
		}
	}
	return f
}

// addPair records one "name=value" pair; alt marks a pair only some
// servers' reading has.
func addPair(f fields, pair string, alt bool) {
	k, v, _ := strings.Cut(pair, "=")
	k, err1 := url.QueryUnescape(k)
	v, err2 := url.QueryUnescape(v)
	if err1 != nil || err2 != nil || k == "" || len(k) > maxFieldKey {
		return
	}
	if _, ok := f[k]; alt && !ok {
		// Only this reading has the name at all.
		if len(f) < maxFields {
			f[k] = field{val: capValue(v), scalar: true, conflict: true}
		}
		return
	}
	f.add(k, field{val: capValue(v), scalar: true})
}

// parseMultipart reads the non-file parts of a multipart/form-data body.
func parseMultipart(body []byte, boundary string) fields {
	if boundary == "" || len(boundary) > 70 {
		return nil
	}
	f := fields{}
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
		f.add(name, field{val: string(v), scalar: true})
		if len(f) >= maxFields {
			break
		}
	}
	return f
}

// parseJSON walks a JSON body token by token and records every value under
// its dotted path. It never builds the document, stops at maxJSONDepth (so a
// nesting bomb costs maxJSONDepth tokens), and keeps what it saw before a
// syntax error or the end of a truncated capture. A key repeated in one
// object, anywhere in the body, is noted: it has no use but to be read
// differently by different parsers.
func parseJSON(body []byte) (fields, bodyNotes) {
	f := fields{}
	var notes bodyNotes
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()

	// Each open container has a path prefix and, for arrays, an index; an
	// object's keys so far are keys[keysFrom:].
	type frame struct {
		prefix   string
		array    bool
		index    int
		keysFrom int
	}
	stack := make([]frame, 0, 8)
	keys := make([]string, 0, 16) // on the stack for ordinary bodies
	var key string                // pending object key
	haveKey := false

	record := func(path string, v field) {
		if path != "" && len(path) <= maxFieldKey {
			f.add(path, v)
		}
	}
	pop := func() {
		keys = keys[:stack[len(stack)-1].keysFrom]
		stack = stack[:len(stack)-1]
	}
	// path of the value about to be read
	valuePath := func() (string, bool) {
		if len(stack) == 0 {
			return "", true
		}
		top := &stack[len(stack)-1]
		var seg string
		if top.array {
			seg = strconv.Itoa(top.index)
			top.index++
		} else {
			if !haveKey {
				return "", false
			}
			seg, haveKey = key, false
		}
		if top.prefix == "" {
			return seg, true
		}
		return top.prefix + "." + seg, true
	}

	for len(f) < maxFields {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		// An object key comes where a key is expected.
		if len(stack) > 0 && !stack[len(stack)-1].array && !haveKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				pop()
				continue
			}
			k, ok := tok.(string)
			if !ok {
				break
			}
			switch {
			case slices.Contains(keys[stack[len(stack)-1].keysFrom:], k):
				notes.jsonDuplicateKey = true
			case len(keys) < maxFields: // bounds the search above
				keys = append(keys, k)
			}
			key, haveKey = k, true
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
			if len(stack) > 0 {
				pop()
			}
			continue
		}
		path, ok := valuePath()
		if !ok {
			break
		}
		switch v := tok.(type) {
		case json.Delim: // '{' or '['
			if len(stack) >= maxJSONDepth {
				return f, notes
			}
			if path != "" {
				record(path, field{})
			}
			stack = append(stack, frame{prefix: path, array: v == '[', keysFrom: len(keys)})
		case string:
			record(path, field{val: capValue(v), scalar: true})
		case json.Number:
			record(path, field{val: capValue(string(v)), scalar: true})
		case bool:
			record(path, field{val: strconv.FormatBool(v), scalar: true})
		case nil:
			record(path, field{scalar: true})
		}
		if len(stack) == 0 {
			break // one top-level value only
		}
	}
	return f, notes
}

// capValue bounds a kept field value.
func capValue(v string) string {
	if len(v) > maxFieldValue {
		return v[:maxFieldValue]
	}
	return v
}
