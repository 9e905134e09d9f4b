package secattr

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// testKey is the HMAC key of most tests (not a secret: a fixture).
const testKey = "0123456789abcdef0123456789abcdef"

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mustExtractor builds an Extractor with a fixed key from a fake environment.
func mustExtractor(tb testing.TB, cfg config.Security) *Extractor {
	tb.Helper()
	if cfg.Username.KeyFile == "" && cfg.Username.KeyEnv == "" && !cfg.Username.RandomKey {
		cfg.Username.KeyEnv = "AUTHPROBE_TEST_KEY"
	}
	e, err := NewWithOptions(cfg, Options{Env: func(k string) string {
		if k == "AUTHPROBE_TEST_KEY" {
			return testKey
		}
		return ""
	}})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return e
}

// mustFile writes content to a file that is removed after the test.
func mustFile(tb testing.TB, name, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// mustFixture reads testdata/name.
func mustFixture(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// hdr builds a header from name, value pairs.
func hdr(kv ...string) decoder.Header {
	h := make(decoder.Header, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		h = append(h, decoder.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return h
}

func request(target string, body string, kv ...string) *decoder.Request {
	return &decoder.Request{Method: "POST", Target: target, Proto: "HTTP/1.1", Header: hdr(kv...), Body: []byte(body), ContentLength: int64(len(body))}
}

func response(status int, body string, kv ...string) *decoder.Response {
	return &decoder.Response{Proto: "HTTP/1.1", StatusCode: status, Header: hdr(kv...), Body: []byte(body), ContentLength: int64(len(body))}
}

func input(kind string, req *decoder.Request, resp *decoder.Response, result string) Input {
	return Input{
		Route:       config.Route{Name: "auth." + kind, Kind: kind, Path: "/x"},
		Request:     req,
		Response:    resp,
		Peer:        netip.MustParseAddr("198.51.100.7"),
		RequestTime: testTime,
		Result:      result,
	}
}

// attrs indexes an Output's attributes by key, failing on duplicates.
func attrs(tb testing.TB, out Output) map[string]attribute.Value {
	tb.Helper()
	m := map[string]attribute.Value{}
	for _, kv := range out.Attributes {
		if _, dup := m[string(kv.Key)]; dup {
			tb.Fatalf("duplicate attribute %s", kv.Key)
		}
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// jwt assembles a compact JWS from a header and claims (as JSON text or
// values) and a signature segment.
func jwt(tb testing.TB, header, claims any, sig string) string {
	tb.Helper()
	seg := func(v any) string {
		var b []byte
		switch x := v.(type) {
		case string:
			b = []byte(x)
		default:
			var err error
			if b, err = json.Marshal(x); err != nil {
				tb.Fatal(err)
			}
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return seg(header) + "." + seg(claims) + "." + sig
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func ptr[T any](v T) *T { return &v }

func str(v attribute.Value) string {
	if v.Type() == attribute.STRINGSLICE {
		return strings.Join(v.AsStringSlice(), "|")
	}
	return v.Emit()
}
