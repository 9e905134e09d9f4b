package decoder

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseRequestHead(t *testing.T) {
	tests := []struct {
		name    string
		head    string
		want    Request
		wantErr error
	}{
		{
			name: "get",
			head: "GET /authorize?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
			want: Request{Method: "GET", Target: "/authorize?x=1", Proto: "HTTP/1.1",
				Header: Header{{"Host", "a"}}, ContentLength: -1},
		},
		{
			name: "duplicates kept in order, OWS trimmed, bare LF",
			head: "POST /login HTTP/1.0\nCookie: a=1\nX-A:\t x \t\ncookie:b=2\nContent-Length: 5, 5\n\n",
			want: Request{Method: "POST", Target: "/login", Proto: "HTTP/1.0",
				Header:        Header{{"Cookie", "a=1"}, {"X-A", "x"}, {"cookie", "b=2"}, {"Content-Length", "5, 5"}},
				ContentLength: 5},
		},
		{
			name: "chunked overrides content-length",
			head: "POST /t HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip,Chunked\r\n\r\n",
			want: Request{Method: "POST", Target: "/t", Proto: "HTTP/1.1",
				Header:        Header{{"Content-Length", "3"}, {"Transfer-Encoding", "gzip,Chunked"}},
				ContentLength: -1, Chunked: true},
		},
		{
			name: "obs-fold joined with a space",
			head: "GET / HTTP/1.1\r\nX-Long: a\r\n  b\r\n\r\n",
			want: Request{Method: "GET", Target: "/", Proto: "HTTP/1.1",
				Header: Header{{"X-Long", "a b"}}, ContentLength: -1},
		},
		{
			name: "cut by capture: last partial line ignored",
			head: "GET /x HTTP/1.1\r\nHost: a\r\nCookie: sess",
			want: Request{Method: "GET", Target: "/x", Proto: "HTTP/1.1",
				Header: Header{{"Host", "a"}}, ContentLength: -1},
		},
		{name: "empty", head: "", wantErr: errStartLine},
		{name: "no line end", head: "GET / HTTP/1.1", wantErr: errStartLine},
		{name: "http/0.9", head: "GET /\r\n\r\n", wantErr: errStartLine},
		{name: "http/2 preface", head: "PRI * HTTP/2.0\r\n\r\n", wantErr: errProto},
		{name: "bad method", head: "G(T / HTTP/1.1\r\n\r\n", wantErr: errMethod},
		{name: "double space", head: "GET  / HTTP/1.1\r\n\r\n", wantErr: errTarget},
		{name: "control in target", head: "GET /\x00 HTTP/1.1\r\n\r\n", wantErr: errTarget},
		{name: "space before colon", head: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", wantErr: errHeaderName},
		{name: "no colon", head: "GET / HTTP/1.1\r\nHost\r\n\r\n", wantErr: errHeaderLine},
		{name: "nul in value", head: "GET / HTTP/1.1\r\nA: b\x00c\r\n\r\n", wantErr: errHeaderValue},
		{name: "fold first", head: "GET / HTTP/1.1\r\n a\r\n\r\n", wantErr: errHeaderLine},
		{name: "conflicting lengths", head: "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", wantErr: errContentLength},
		{name: "negative length", head: "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", wantErr: errContentLength},
		{name: "huge length", head: "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", wantErr: errContentLength},
		{name: "request not chunked last", head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", wantErr: errTransferCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Request
			err := parseRequestHead([]byte(tt.head), &got)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if got.Method != tt.want.Method || got.Target != tt.want.Target || got.Proto != tt.want.Proto ||
				!slices.Equal(got.Header, tt.want.Header) || got.ContentLength != tt.want.ContentLength ||
				got.Chunked != tt.want.Chunked {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseResponseHead(t *testing.T) {
	tests := []struct {
		name    string
		head    string
		want    Response
		wantErr error
	}{
		{
			name: "ok",
			head: "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n",
			want: Response{Proto: "HTTP/1.1", StatusCode: 401, Reason: "Unauthorized",
				Header: Header{{"WWW-Authenticate", "Bearer"}, {"Content-Length", "0"}}},
		},
		{
			name: "no reason",
			head: "HTTP/1.0 200\r\n\r\n",
			want: Response{Proto: "HTTP/1.0", StatusCode: 200, ContentLength: -1},
		},
		{
			name: "empty reason, close-delimited coding",
			head: "HTTP/1.1 200 \r\nTransfer-Encoding: gzip\r\nContent-Length: 9\r\n\r\n",
			want: Response{Proto: "HTTP/1.1", StatusCode: 200,
				Header: Header{{"Transfer-Encoding", "gzip"}, {"Content-Length", "9"}}, ContentLength: -1},
		},
		{name: "garbage", head: "\x16\x03\x01\x00\x00\r\n\r\n", wantErr: errStartLine},
		{name: "http/2", head: "HTTP/2.0 200 OK\r\n\r\n", wantErr: errProto},
		{name: "short code", head: "HTTP/1.1 20 OK\r\n\r\n", wantErr: errStatus},
		{name: "letters", head: "HTTP/1.1 2x0 OK\r\n\r\n", wantErr: errStatus},
		{name: "code too low", head: "HTTP/1.1 099 OK\r\n\r\n", wantErr: errStatus},
		{name: "no space after code", head: "HTTP/1.1 2000\r\n\r\n", wantErr: errStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Response
			err := parseResponseHead([]byte(tt.head), &got)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if tt.want.ContentLength == 0 && tt.want.Header.Get("Content-Length") == "" {
				tt.want.ContentLength = -1
			}
			if got.Proto != tt.want.Proto || got.StatusCode != tt.want.StatusCode || got.Reason != tt.want.Reason ||
				!slices.Equal(got.Header, tt.want.Header) || got.ContentLength != tt.want.ContentLength ||
				got.Chunked != tt.want.Chunked {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestHeaderGetValues(t *testing.T) {
	h := Header{{"Set-Cookie", "a=1"}, {"Content-Type", "text/html"}, {"set-cookie", "b=2"}}
	tests := []struct {
		name   string
		get    string
		values []string
	}{
		{name: "SET-COOKIE", get: "a=1", values: []string{"a=1", "b=2"}},
		{name: "content-type", get: "text/html", values: []string{"text/html"}},
		{name: "Authorization", get: "", values: nil},
	}
	for _, tt := range tests {
		if got := h.Get(tt.name); got != tt.get {
			t.Errorf("Get(%q) = %q, want %q", tt.name, got, tt.get)
		}
		if got := h.Values(tt.name); !slices.Equal(got, tt.values) {
			t.Errorf("Values(%q) = %q, want %q", tt.name, got, tt.values)
		}
	}
}

func TestHeadEnd(t *testing.T) {
	tests := []struct {
		in   string
		from int
		want int
	}{
		{"GET / HTTP/1.1\r\n\r\nrest", 0, 18},
		{"GET / HTTP/1.1\n\nrest", 0, 16},
		{"GET / HTTP/1.1\r\nA: b\r\n", 0, -1},
		{"GET / HTTP/1.1\r\nA: b\r\n\r", 0, -1},
		{"GET / HTTP/1.1\r\nA: b\r\n\r\n", 20, 24},
	}
	for _, tt := range tests {
		if got := headEnd([]byte(tt.in), tt.from); got != tt.want {
			t.Errorf("headEnd(%q, %d) = %d, want %d", tt.in, tt.from, got, tt.want)
		}
	}
}

func TestTokenMasks(t *testing.T) {
	const tchars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for c := range 256 {
		if want := strings.IndexByte(tchars, byte(c)) >= 0; isTokenChar(byte(c)) != want {
			t.Errorf("isTokenChar(%#x) = %v, want %v", c, !want, want)
		}
	}
}

func TestValidFieldValue(t *testing.T) {
	for c := range 256 {
		want := c == '\t' || (c >= ' ' && c != 0x7f)
		for _, pos := range []int{0, 3, 7, 8, 15, 16, 20} {
			b := []byte(strings.Repeat("a", 21))
			b[pos] = byte(c)
			if got := validFieldValue(string(b)); got != want {
				t.Errorf("byte %#x at %d: valid = %v, want %v", c, pos, got, want)
			}
		}
	}
}
