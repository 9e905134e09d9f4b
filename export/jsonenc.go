package export

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/authprobe/authprobe/spanbuilder"
)

// spanIDs are the identity of one exported span.
type spanIDs struct {
	trace  [16]byte
	span   [8]byte
	parent [8]byte // zero for a root
}

// appendJSONSpan appends the JSON line of s:
//
//	name, trace_id (32 hex), span_id (16 hex), parent_span_id (16 hex, ""
//	for a root), kind ("SERVER", or "CLIENT" for a call), start_time_unix_nano and
//	end_time_unix_nano (integers), status_code ("UNSET", "OK", "ERROR"),
//	status_message (only with ERROR, omitted when empty), trace_state
//	(omitted when empty), attributes and resource (objects, sorted keys).
//
// It writes what encoding/json would write for that object (same key order,
// sorted attribute keys, a repeated key's last value, same string escaping
// without HTML escaping) without reflection or maps; the oracle test checks
// it byte for byte. Attribute values keep their JSON type (string, integer,
// bool, number, arrays for slices); non-finite floats, which JSON cannot
// carry, become the strings "NaN", "+Inf" and "-Inf"; byte slices are
// base64 strings. res is the resource object, encoded once per process.
func appendJSONSpan(b []byte, s *spanbuilder.Span, ids *spanIDs, lay *layout, traceState string, res []byte) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, s.Name)
	b = append(b, `,"trace_id":"`...)
	b = appendHex(b, ids.trace[:])
	b = append(b, `","span_id":"`...)
	b = appendHex(b, ids.span[:])
	b = append(b, `","parent_span_id":"`...)
	if ids.parent != [8]byte{} {
		b = appendHex(b, ids.parent[:])
	}
	b = append(b, `","kind":"`...)
	b = append(b, kindWord(s)...)
	b = append(b, `","start_time_unix_nano":`...)
	b = strconv.AppendInt(b, s.Start.UnixNano(), 10)
	b = append(b, `,"end_time_unix_nano":`...)
	b = strconv.AppendInt(b, s.End.UnixNano(), 10)
	b = append(b, `,"status_code":"`...)
	b = append(b, statusWord(s.StatusCode)...)
	b = append(b, '"')
	if m := statusMessage(s); m != "" {
		b = append(b, `,"status_message":`...)
		b = appendString(b, m)
	}
	if traceState != "" {
		b = append(b, `,"trace_state":`...)
		b = appendString(b, traceState)
	}
	b = append(b, `,"attributes":{`...)
	for i, at := range lay.order {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, lay.jsonKey(i)...)
		b = appendValue(b, s.Attributes[at].Value)
	}
	b = append(b, `},"resource":`...)
	b = append(b, res...)
	return append(b, "}\n"...)
}

// kindWord is the span's kind as the SDK's JSON names it: a call's span
// is CLIENT, every other SERVER.
func kindWord(s *spanbuilder.Span) string {
	if s.Kind == trace.SpanKindClient {
		return "CLIENT"
	}
	return "SERVER"
}

// statusMessage is kept with an Error status only, as the SDK does.
func statusMessage(s *spanbuilder.Span) string {
	if s.StatusCode != codes.Error {
		return ""
	}
	return s.StatusMessage
}

func statusWord(c codes.Code) string {
	switch c {
	case codes.Ok:
		return "OK"
	case codes.Error:
		return "ERROR"
	default:
		return "UNSET"
	}
}

const hexDigits = "0123456789abcdef"

func appendHex(b []byte, id []byte) []byte {
	for _, c := range id {
		b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return b
}

// appendAttributes writes an object with sorted keys; a repeated key keeps
// its last value, as a map would.
func appendAttributes(b []byte, kvs []attribute.KeyValue) []byte {
	// Sort positions, not the KeyValues: moving those (pointers inside)
	// costs write barriers. An insertion sort is stable, so a repeated key
	// keeps its last value, and is quick for the few dozen of a span.
	var small [64]uint16
	order := small[:0]
	if len(kvs) > len(small) {
		order = make([]uint16, 0, len(kvs))
	}
	for i := range kvs {
		order = append(order, uint16(i))
	}
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && kvs[order[j]].Key < kvs[order[j-1]].Key; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	b = append(b, '{')
	first := true
	for i, at := range order {
		kv := kvs[at]
		if i+1 < len(order) && kvs[order[i+1]].Key == kv.Key {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, string(kv.Key))
		b = append(b, ':')
		b = appendValue(b, kv.Value)
	}
	return append(b, '}')
}

func appendValue(b []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return strconv.AppendBool(b, v.AsBool())
	case attribute.INT64:
		return strconv.AppendInt(b, v.AsInt64(), 10)
	case attribute.FLOAT64:
		return appendFloat(b, v.AsFloat64())
	case attribute.STRING:
		return appendString(b, v.AsString())
	case attribute.BOOLSLICE:
		return appendSlice(b, v.AsBoolSlice(), strconv.AppendBool)
	case attribute.INT64SLICE:
		return appendSlice(b, v.AsInt64Slice(), func(b []byte, i int64) []byte { return strconv.AppendInt(b, i, 10) })
	case attribute.FLOAT64SLICE:
		return appendSlice(b, v.AsFloat64Slice(), appendFloat)
	case attribute.STRINGSLICE:
		return appendSlice(b, v.AsStringSlice(), appendString)
	case attribute.BYTESLICE:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.AsByteSlice())
		return append(b, '"')
	case attribute.SLICE:
		return appendSlice(b, v.AsSlice(), appendValue)
	case attribute.MAP:
		return appendAttributes(b, v.AsMap())
	default:
		return append(b, "null"...)
	}
}

func appendSlice[T any](b []byte, vs []T, f func([]byte, T) []byte) []byte {
	if vs == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = f(b, v)
	}
	return append(b, ']')
}

// appendFloat writes finite floats as encoding/json does and the others
// as the strings "NaN", "+Inf" and "-Inf", which JSON can carry.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"+Inf"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Inf"`...)
	}
	out, _ := json.Marshal(f) // rare here; exactness beats speed
	return append(b, out...)
}

// plain8 reports whether none of the 8 bytes of s needs attention: no
// control character, quote, backslash or non-ASCII byte. Byte-wise
// comparisons in one word (the "has zero byte" trick, exact for "any").
func plain8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	ctl := (x - ones*0x20) &^ x
	q := x ^ (ones * '"')
	bs := x ^ (ones * '\\')
	return (ctl|(q-ones)&^q|(bs-ones)&^bs|x)&highs == 0
}

// appendString quotes s as encoding/json does with HTML escaping off:
// control characters escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029
// escaped for JavaScript's sake.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight plain bytes at a time: most values need no escaping.
		if i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
			continue
		}
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
