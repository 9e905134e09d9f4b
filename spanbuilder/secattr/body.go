package secattr

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/url"
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
}

// fields maps form field names, multipart part names and dotted JSON paths
// ("user.email", "roles.0") to their values. It lives for one Extract call.
type fields map[string]field

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
func parseBody(h decoder.Header, body []byte) fields {
	if len(body) == 0 {
		return nil
	}
	if ce := headerGet(h, "Content-Encoding"); ce != "" && !strings.EqualFold(strings.TrimSpace(ce), "identity") {
		return nil
	}
	if len(body) > maxBodyScan {
		body = body[:maxBodyScan]
	}
	mt, params := mediaType(h)
	switch {
	case mt == "application/x-www-form-urlencoded":
		return parseForm(body)
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return parseJSON(body)
	case mt == "multipart/form-data":
		return parseMultipart(body, params["boundary"])
	case mt == "" || mt == "text/plain":
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
			return parseJSON(body)
		}
		if mt == "" && bytes.IndexByte(body, '=') > 0 {
			return parseForm(body)
		}
	}
	return nil
}

// parseForm reads an application/x-www-form-urlencoded body. Malformed pairs
// are skipped; the first value of a repeated name wins.
func parseForm(body []byte) fields {
	f := fields{}
	for pair := range strings.SplitSeq(string(body), "&") {
		if len(f) >= maxFields {
			break
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || k == "" || len(k) > maxFieldKey {
			continue
		}
		if _, dup := f[k]; dup {
			continue
		}
		f[k] = field{val: capValue(v), scalar: true}
	}
	return f
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
		if _, dup := f[name]; dup {
			continue
		}
		// A truncated capture still names the part: keep what arrived.
		v, _ := io.ReadAll(io.LimitReader(p, maxFieldValue))
		f[name] = field{val: string(v), scalar: true}
		if len(f) >= maxFields {
			break
		}
	}
	return f
}

// parseJSON walks a JSON body token by token and records every value under
// its dotted path. It never builds the document, stops at maxJSONDepth (so a
// nesting bomb costs maxJSONDepth tokens), and keeps what it saw before a
// syntax error or the end of a truncated capture.
func parseJSON(body []byte) fields {
	f := fields{}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()

	// Each open container has a path prefix and, for arrays, an index.
	type frame struct {
		prefix string
		array  bool
		index  int
	}
	stack := make([]frame, 0, 8)
	var key string // pending object key
	haveKey := false

	record := func(path string, v field) {
		if path != "" && len(f) < maxFields && len(path) <= maxFieldKey {
			if _, dup := f[path]; !dup {
				f[path] = v
			}
		}
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
				stack = stack[:len(stack)-1]
				continue
			}
			k, ok := tok.(string)
			if !ok {
				break
			}
			key, haveKey = k, true
			continue
		}
		if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
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
				return f
			}
			if path != "" {
				record(path, field{})
			}
			stack = append(stack, frame{prefix: path, array: v == '['})
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
	return f
}

// capValue bounds a kept field value.
func capValue(v string) string {
	if len(v) > maxFieldValue {
		return v[:maxFieldValue]
	}
	return v
}
