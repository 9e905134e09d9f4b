package secattr

// The body parser as it was before the allocation-free rewrite of
// body.go, kept as the oracle of FuzzBodyDifferential: same inputs, same
// fields, same notes. Only renamed (ref*) and its field map made a test type.

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/authprobe/authprobe/decoder"
)

// fields maps form field names, multipart part names and dotted JSON paths
// ("user.email", "roles.0") to their values. It lives for one Extract call.
type refFields map[string]field

// add records a value under name; a repeat keeps the first value and
// marks a conflict when the values differ.
func (f refFields) add(name string, v field) {
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

// str returns the scalar value at name.
func (f refFields) str(name string) (string, bool) {
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
func refParseBody(h decoder.Header, body []byte) (refFields, bodyNotes) {
	if len(body) == 0 {
		return nil, bodyNotes{}
	}
	if ce := headerGet(h, "Content-Encoding"); ce != "" && !strings.EqualFold(strings.TrimSpace(ce), "identity") {
		return nil, bodyNotes{}
	}
	if len(body) > maxBodyScan {
		body = body[:maxBodyScan]
	}
	mt, params := refMediaType(h)
	switch {
	case mt == "application/x-www-form-urlencoded":
		return refParseForm(string(body)), bodyNotes{}
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return refParseJSON(body)
	case mt == "multipart/form-data":
		return refParseMultipart(body, params["boundary"]), bodyNotes{}
	case mt == "" || mt == "text/plain":
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return refParseJSON(body)
		}
		if mt == "" && bytes.IndexByte(body, '=') > 0 {
			return refParseForm(string(body)), bodyNotes{}
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
func refParseForm(body string) refFields {
	f := refFields{}
	for pair := range strings.SplitSeq(body, "&") {
		if len(f) >= maxFields {
			break
		}
		refAddPair(f, pair, false)
		if strings.IndexByte(pair, ';') >= 0 {
			for sub := range strings.SplitSeq(pair, ";") {
				refAddPair(f, sub, true)
			}
		}
	}
	return f
}

// addPair records one "name=value" pair; alt marks a pair only some
// servers' reading has.
func refAddPair(f refFields, pair string, alt bool) {
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
func refParseMultipart(body []byte, boundary string) refFields {
	if boundary == "" || len(boundary) > 70 {
		return nil
	}
	f := refFields{}
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
func refParseJSON(body []byte) (refFields, bodyNotes) {
	f := refFields{}
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

// refMediaType is mediaType before its fast path.
func refMediaType(h decoder.Header) (string, map[string]string) {
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
