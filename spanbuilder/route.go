package spanbuilder

import (
	"fmt"
	"strings"

	"github.com/authprobe/authprobe/config"
)

// route is one compiled config.Route.
type route struct {
	cfg    config.Route
	method string // "" for any
	// segs are the pattern's segments with literals in the canonical
	// spelling of normalizePath.
	segs    []config.PathSegment
	rest    bool // a final "/**"
	prefix  bool // the last literal may be a prefix of its segment
	fold    bool // literals match in any ASCII case
	results overrides
}

// router finds the route of a request; the first configured route that
// matches wins.
type router struct {
	routes []route
}

func newRouter(rs []config.Route) (*router, error) {
	r := &router{routes: make([]route, 0, len(rs))}
	for i, cr := range rs {
		pat, err := config.ParsePathPattern(cr.Path)
		if err != nil {
			return nil, fmt.Errorf("route %d (%s) path: %w", i, cr.Name, err)
		}
		// Request paths are matched after normalisation; literals must be
		// spelled the same way.
		for j, s := range pat.Segments {
			if !s.Wild {
				pat.Segments[j].Literal = canonicalLiteral(s.Literal)
			}
		}
		ov, err := compileOverrides(cr.Results)
		if err != nil {
			return nil, fmt.Errorf("route %d (%s) results: %w", i, cr.Name, err)
		}
		m := strings.ToUpper(cr.Method)
		if m == "*" {
			m = ""
		}
		r.routes = append(r.routes, route{
			cfg: cr, method: m, segs: pat.Segments, rest: pat.Rest,
			prefix: cr.Prefix, fold: !cr.CaseSensitive, results: ov,
		})
	}
	return r, nil
}

// canonicalLiteral spells a pattern literal as normalizePath spells a
// request segment.
func canonicalLiteral(lit string) string {
	var buf [128]byte
	out, _ := normalizePath(buf[:0], "/"+lit, readCanonical)
	return string(out[1:])
}

// takesMethod reports whether the route takes a request method. Methods
// compare exactly, except that a GET route also takes HEAD: Go's ServeMux
// and Express answer HEAD from the GET handler.
func (rt *route) takesMethod(method string) bool {
	return rt.method == "" || rt.method == method || rt.method == "GET" && method == "HEAD"
}

// maxStackPath is the normalised path length matched without a heap
// buffer; longer paths are matched all the same.
const maxStackPath = 512

// find returns the route of a request-target and the normalised path it
// matched on; nil when no route takes it. Servers disagree on how a path
// is read, so it tries each reading that differs from the canonical one
// (see reading); the first reading that some route takes wins, and within
// a reading the first route. It allocates only for long or unclean paths
// when keep is set, to return the path.
func (r *router) find(method, target string, keep bool) (*route, string) {
	raw, ok := splitTarget(target)
	if !ok {
		return nil, ""
	}
	if isCleanPath(raw) {
		if rt := r.matchString(method, raw); rt != nil {
			return rt, raw
		}
		return nil, ""
	}
	var buf [maxStackPath]byte
	p, saw := normalizePath(buf[:0], raw, readCanonical)
	if rt := r.matchBytes(method, p); rt != nil {
		return rt, keepString(p, keep)
	}
	if saw&sawEncodedSlash != 0 {
		p, _ = normalizePath(buf[:0], raw, readEncodedSlash)
		if rt := r.matchBytes(method, p); rt != nil {
			return rt, keepString(p, keep)
		}
	}
	if saw&sawDotSegment != 0 {
		p, _ = normalizePath(buf[:0], raw, readKeepDots)
		if rt := r.matchBytes(method, p); rt != nil {
			return rt, keepString(p, keep)
		}
	}
	if auth, ok := afterAuthority(raw); ok {
		p, _ = normalizePath(buf[:0], auth, readCanonical)
		if rt := r.matchBytes(method, p); rt != nil {
			return rt, keepString(p, keep)
		}
	}
	return nil, ""
}

func keepString(p []byte, keep bool) string {
	if !keep {
		return ""
	}
	return string(p)
}

func (r *router) matchString(method, path string) *route {
	for i := range r.routes {
		rt := &r.routes[i]
		if rt.takesMethod(method) && matchPattern(rt, path) {
			return rt
		}
	}
	return nil
}

func (r *router) matchBytes(method string, path []byte) *route {
	for i := range r.routes {
		rt := &r.routes[i]
		if rt.takesMethod(method) && matchPattern(rt, path) {
			return rt
		}
	}
	return nil
}

// matchPattern matches a normalised path ("/" or "/a/b": no empty
// segments, no trailing slash) against a route's pattern. "*" and
// "{param}" take exactly one segment; a trailing "/**" takes any rest,
// including none; with prefix the last pattern segment, when literal, may
// be a prefix of its path segment, and any rest follows.
func matchPattern[P string | []byte](rt *route, path P) bool {
	rest := path[1:]
	for i, seg := range rt.segs {
		if len(rest) == 0 {
			return false
		}
		s, after := rest, rest[:0]
		for j := 0; j < len(rest); j++ {
			if rest[j] == '/' {
				s, after = rest[:j], rest[j+1:]
				break
			}
		}
		last := i == len(rt.segs)-1
		switch {
		case seg.Wild:
		case rt.prefix && last:
			return len(s) >= len(seg.Literal) && equalLiteral(s[:len(seg.Literal)], seg.Literal, rt.fold)
		case !equalLiteral(s, seg.Literal, rt.fold):
			return false
		}
		rest = after
	}
	return len(rest) == 0 || rt.rest || rt.prefix
}

// equalLiteral compares a path segment with a pattern literal, ignoring
// ASCII case when fold is set. Only ASCII folds: Express, the one common
// router that ignores case, compares the percent-encoded path, where every
// other byte is an escape.
func equalLiteral[P string | []byte](s P, lit string, fold bool) bool {
	if len(s) != len(lit) {
		return false
	}
	for i := 0; i < len(lit); i++ {
		a, b := s[i], lit[i]
		if a == b {
			continue
		}
		if !fold || lowerASCII(a) != lowerASCII(b) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// splitTarget takes the raw path of a request-target, without query and
// fragment. Origin form ("/a?b") has one; so has absolute form with any
// scheme, in any case ("http://h/a", "HTTPS://h", "ws://h/a": Go, Node, the
// JDK and Python take the path of each) and a scheme without authority
// ("http:/a", which Go, the JDK and Python accept). Asterisk form ("*"),
// authority form (CONNECT) and opaque URIs ("http:a") have no path.
func splitTarget(target string) (rawPath string, ok bool) {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if strings.HasPrefix(target, "/") {
		return target, true
	}
	rest, ok := afterScheme(target)
	if !ok {
		return "", false
	}
	if strings.HasPrefix(rest, "//") {
		// The authority ends at the first slash; WHATWG URL parsers (Node's
		// URL, browsers) read a backslash as one too.
		if i := strings.IndexAny(rest[2:], "/\\"); i >= 0 {
			return rest[2+i:], true
		}
		return "/", true
	}
	if strings.HasPrefix(rest, "/") {
		return rest, true
	}
	return "", false
}

// afterScheme returns what follows "scheme:" (RFC 3986 §3.1).
func afterScheme(t string) (string, bool) {
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return t[i+1:], true
		default:
			return "", false
		}
	}
	return "", false
}

// afterAuthority reads an origin-form path that starts with "//" the way
// java.net.URI (and so the JDK's HttpServer) does: as a network-path
// reference whose first segment is a host, "//h/login" being "/login".
func afterAuthority(raw string) (string, bool) {
	if !strings.HasPrefix(raw, "//") {
		return "", false
	}
	if i := strings.IndexByte(raw[2:], '/'); i >= 0 {
		return raw[2+i:], true
	}
	return "/", true
}

// reading is one way servers read a raw path before routing. They
// disagree, so a request is matched under each reading that differs from
// the canonical one and the first that a route takes wins: a request
// cannot dodge its route by picking a spelling one server family reads
// differently.
type reading uint8

const (
	// readCanonical: what Go's ServeMux (through its redirect), nginx,
	// servlet containers and RFC 3986 §6 agree a path names.
	readCanonical reading = iota
	// readEncodedSlash: %2F and %5C separate segments too, as in nginx,
	// the JDK's HttpServer and Go before 1.22 (which route on the decoded
	// path), and Tomcat with ALLOW_ENCODED_SLASH.
	readEncodedSlash
	// readKeepDots: "." and ".." are ordinary segment names, as in
	// Express, Python's http.server and the JDK's HttpServer, none of
	// which resolve them: "/api/../admin" is then under "/api/**".
	readKeepDots
)

// What normalizePath saw that another reading would read differently.
const (
	sawEncodedSlash = 1 << iota
	sawDotSegment
)

// normalizePath appends to dst the path routes are matched against and
// reports what another reading would change. Under readCanonical:
//   - percent-escapes are decoded ("%6Cogin" is "login", "%C3%A9" the
//     bytes of "é"), as Go, the JDK and nginx do before routing, except
//     %2F and %5C (segment separators in some servers only), %25 and %3B,
//     which stay escapes with upper-case hex digits; a '%' that starts no
//     escape becomes "%25";
//   - a backslash separates segments, as in IIS and WHATWG URL parsers;
//   - ";params" are dropped from every segment ("/login;jsessionid=1" is
//     "/login"), as servlet containers do;
//   - empty segments collapse ("//login" is "/login") and the trailing
//     slash goes ("/login/" is "/login");
//   - "." segments go and ".." removes the previous segment, never
//     climbing above the root ("/api/../login" is "/login"), after
//     decoding and parameter removal ("/%2e%2e;x/" is "..").
//
// Over-matching a request a server would not route is the lesser harm:
// the span then records what the server answered (typically a 404).
func normalizePath(dst []byte, raw string, r reading) (out []byte, saw uint8) {
	start := len(dst)
	segStart := -1 // index in dst of the current segment's first byte
	inParams := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		escaped := false // c is '%' of an escape kept as it is
		if c == '%' && i+2 < len(raw) {
			if h, ok := unhex(raw[i+1], raw[i+2]); ok {
				switch {
				case h == '/' || h == '\\':
					saw |= sawEncodedSlash
					if r == readEncodedSlash {
						c, i = '/', i+2
					} else {
						escaped = true
					}
				case h == '%' || h == ';':
					escaped = true
				default:
					c, i = h, i+2
				}
			}
		}
		// Only a separator is '/' or '\\' here: decoding gives neither
		// outside readEncodedSlash, and a kept escape is '%'.
		if c == '/' || c == '\\' {
			var s uint8
			dst, s = endSegment(dst, start, segStart, r)
			saw |= s
			dst = append(dst, '/')
			segStart, inParams = len(dst), false
			continue
		}
		if segStart < 0 {
			// Text before the first slash (no origin form) is a segment.
			dst = append(dst, '/')
			segStart = len(dst)
		}
		if c == ';' {
			inParams = true
		}
		switch {
		case inParams && escaped:
			i += 2
		case inParams:
		case escaped:
			dst = append(dst, '%', upperHex(raw[i+1]), upperHex(raw[i+2]))
			i += 2
		case c == '%' && raw[i] == '%':
			// A '%' that starts no escape: spelled as one, so that what
			// follows cannot be read as an escape later ("%%32%66" is
			// not "%2f").
			dst = append(dst, "%25"...)
		default:
			dst = append(dst, c)
		}
	}
	dst, s := endSegment(dst, start, segStart, r)
	saw |= s
	if len(dst) == start {
		dst = append(dst, '/')
	}
	return dst, saw
}

// endSegment ends the segment that starts at dst[segStart] (after its
// '/'; segStart < 0 when there is none): an empty one goes, and so do dot
// segments, ".." with the segment before it, unless r keeps them.
func endSegment(dst []byte, start, segStart int, r reading) ([]byte, uint8) {
	if segStart < 0 {
		return dst, 0
	}
	seg := dst[segStart:]
	dot := len(seg) == 1 && seg[0] == '.'
	dotdot := len(seg) == 2 && seg[0] == '.' && seg[1] == '.'
	switch {
	case len(seg) == 0:
		return dst[:segStart-1], 0
	case !dot && !dotdot:
		return dst, 0
	case r == readKeepDots:
		return dst, sawDotSegment
	}
	dst = dst[:segStart-1]
	if dotdot {
		i := len(dst) - 1
		for i >= start && dst[i] != '/' {
			i--
		}
		if i >= start {
			dst = dst[:i]
		}
	}
	return dst, sawDotSegment
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// isCleanPath reports whether raw is its own canonical form, the usual
// case, which needs no copy: it starts with "/", has no escape, backslash,
// parameter, empty segment, dot segment or trailing slash.
func isCleanPath(raw string) bool {
	if raw == "" || raw[0] != '/' {
		return false
	}
	if len(raw) > 1 && raw[len(raw)-1] == '/' {
		return false
	}
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '%', '\\', ';':
			return false
		case '/':
			if i+1 < len(raw) && (raw[i+1] == '/' || raw[i+1] == '.') {
				return false
			}
		}
	}
	return true
}

func unhex(a, b byte) (byte, bool) {
	x, ok1 := hexVal(a)
	y, ok2 := hexVal(b)
	return x<<4 | y, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
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
