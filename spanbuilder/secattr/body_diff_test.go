package secattr

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/authprobe/authprobe/decoder"
)

// parseBodyMap parses a body with a fresh scratch and gives its fields as
// a map, the shape the reference parser (body_ref_test.go) returns.
func parseBodyMap(h decoder.Header, body []byte) (map[string]field, bodyNotes) {
	f, notes := parseBody(newScratchPool().get(nil), h, body)
	return fieldsMap(f), notes
}

func fieldsMap(f fields) map[string]field {
	m := map[string]field{}
	for k, v := range f.all() {
		m[k] = v
	}
	return m
}

// FuzzBodyDifferential: the allocation-free parsers (body.go, json.go,
// fields.go, mediaType's fast path) give exactly the fields and notes of
// the parsers they replaced, kept in body_ref_test.go, for any body and
// Content-Type, through one reused scratch as Extract uses it.
func FuzzBodyDifferential(f *testing.F) {
	for _, s := range diffSeeds {
		f.Add(s.ct, []byte(s.body))
	}
	pool := newScratchPool()
	sc := pool.get(nil)
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		h := hdr("Content-Type", ct)
		want, wantNotes := refParseBody(h, body)
		got, gotNotes := parseBody(sc, h, body)
		if d := diffFields(map[string]field(want), fieldsMap(got)); d != "" || wantNotes != gotNotes {
			t.Fatalf("Content-Type %q body %q:\n%s notes want %+v got %+v", ct, body, d, wantNotes, gotNotes)
		}
		// The query string reading of the same bytes.
		if q := string(body); !strings.ContainsAny(q, "\x00") {
			wq := refParseForm(q)
			sc.reset()
			if d := diffFields(map[string]field(wq), fieldsMap(parseForm(sc, q))); d != "" {
				t.Fatalf("query %q:\n%s", q, d)
			}
		}
		wmt, wparams := refMediaType(h)
		if gmt, gb := mediaType(h); gmt != wmt || gb != wparams["boundary"] {
			t.Fatalf("Content-Type %q: media type %q boundary %q, want %q %q", ct, gmt, gb, wmt, wparams["boundary"])
		}
	})
}

func diffFields(want, got map[string]field) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if g, ok := got[k]; !ok || g != want[k] {
			fmt.Fprintf(&b, "  %q: want %+v, got %+v (present %v)\n", k, want[k], g, ok)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "  %q: unexpected %+v\n", k, got[k])
		}
	}
	return b.String()
}

// diffSeeds cover what the rewrite had to get right: escapes of both
// syntaxes, surrogates, invalid UTF-8, numbers cut at every place,
// literals, repeats, depth, bounds, media types with and without a fast
// path.
var diffSeeds = []struct{ ct, body string }{
	{"application/x-www-form-urlencoded", "username=alice&password=x"},
	{"application/x-www-form-urlencoded", "user%6eame=al%69ce+b&username=alice+b&u=%zz&=x&a&b=&a=1"},
	{"application/x-www-form-urlencoded", "username=a;username=b&x=1;y=2;x=3&%=1&k=%4"},
	{"", "username=a&username=b"},
	{"text/plain", "a=b"},
	{"application/json", `{"user":{"email":"a@b"},"password":"x","n":[1,{"a":null}]}`},
	{"application/json; charset=utf-8", `{"username":"a","Username":"b","x":{"k":1,"k":2}}`},
	{"Application/JSON; Charset=UTF-8", `{"a":"\u00e9\ud83d\ude00\ud800x\udc00\u0000\"\\\/\b\f\n\r\t"}`},
	{"application/vnd.api+json", "{\"a\":\"\xff\xfeok\xe2\x82\",\"b\":-0.5e+3,\"c\":01,\"d\":true,\"e\":false,\"f\":null}"},
	{"application/json", `{"a":1.,"b":2}`},
	{"application/json", `{"a":-,"b":2}`},
	{"application/json", `{"a":1e,"b":2}`},
	{"application/json", `{"a":12`},
	{"application/json", `{"a":tru`},
	{"application/json", `{"a":"b"`},
	{"application/json", `{"a" "b"}`},
	{"application/json", `{"a":1,,,"b":2}`},
	{"application/json", `{"a":[1,2,[3,{"b":[]}]],"a":{"c":1},"":{"d":2}}`},
	{"application/json", `[{"a":1},{"a":1,"a":2}] trailing`},
	{"application/json", `"top" {"a":1}`},
	{"application/json", `{"a":"x` + "\x01" + `"}`},
	{"application/json", `{"a":"\x"}`},
	{"application/json", `{"a":"\u12"}`},
	{"application/json", strings.Repeat(`{"a":`, 40) + "1"},
	{"application/json", strings.Repeat("[", 40)},
	{"application/json", `{"` + strings.Repeat("k", 300) + `":{"x":1},"y":{"` + strings.Repeat("z", 250) + `":{"q":1}}}`},
	{"application/json", `{"v":"` + strings.Repeat("é", 600) + `"}`},
	{"", ` {"k":"v"}`},
	{"", "\t[1,2]"},
	{"multipart/form-data; boundary=B", "--B\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\na\r\n--B\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nb\r\n--B--\r\n"},
	{"multipart/form-data", "--B--"},
	{"application/json;", `{"a":1}`},
	{"application/json ; charset=utf-8", `{"a":1}`},
	{"application/json; charset=\"utf-8\"", `{"a":1}`},
	{"application/json; charset=utf-8; x", `{"a":1}`},
	{" application/json\t", `{"a":1}`},
	{"application/", `{"a":1}`},
	{"/json", `{"a":1}`},
	{"application/json/x", `{"a":1}`},
	{"\u212aey/json", `{"a":1}`},
	{"application/x-www-form-urlencoded", strings.Repeat("f=1&", 300) + "zz=2"},
	{"application/x-www-form-urlencoded", "v=" + strings.Repeat("x", 1100)},
}

// TestBodyDifferentialSeeds runs the seeds without -fuzz as a table, with
// one scratch reused across them (the pool's life).
func TestBodyDifferentialSeeds(t *testing.T) {
	sc := newScratchPool().get(nil)
	for _, s := range diffSeeds {
		h := hdr("Content-Type", s.ct)
		want, wantNotes := refParseBody(h, []byte(s.body))
		got, gotNotes := parseBody(sc, h, []byte(s.body))
		if d := diffFields(map[string]field(want), fieldsMap(got)); d != "" || wantNotes != gotNotes {
			t.Errorf("Content-Type %q body %.80q:\n%s notes want %+v got %+v", s.ct, s.body, d, wantNotes, gotNotes)
		}
	}
}
