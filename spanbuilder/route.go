package spanbuilder

import (
	"fmt"
	"strings"

	"github.com/authprobe/authprobe/config"
)

// route is one compiled config.Route.
type route struct {
	cfg     config.Route
	method  string // "" for any
	pattern config.PathPattern
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
				pat.Segments[j].Literal = decodeUnreserved(s.Literal)
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
		r.routes = append(r.routes, route{cfg: cr, method: m, pattern: pat, results: ov})
	}
	return r, nil
}

// match returns the route of a request whose path is already normalised.
func (r *router) match(method, path string) *route {
	for i := range r.routes {
		rt := &r.routes[i]
		if rt.method != "" && rt.method != method {
			continue
		}
		if matchPattern(rt.pattern, path) {
			return rt
		}
	}
	return nil
}

// matchPattern matches a normalised path ("/" or "/a/b", no empty
// segments) against a pattern. "*" and "{param}" take exactly one
// segment; a trailing "/**" takes any rest, including none.
func matchPattern(p config.PathPattern, path string) bool {
	rest := path[1:]
	for _, seg := range p.Segments {
		if rest == "" {
			return false
		}
		s, after, _ := strings.Cut(rest, "/")
		if !seg.Wild && s != seg.Literal {
			return false
		}
		rest = after
	}
	return rest == "" || p.Rest
}

// splitTarget takes the path of a request-target and the raw target
// without query and fragment. Origin form ("/a?b") and absolute form
// ("http://h/a?b", sent to proxies) have a path; asterisk ("*") and
// authority form (CONNECT) do not.
func splitTarget(target string) (rawPath string, ok bool) {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if strings.HasPrefix(target, "/") {
		return target, true
	}
	for _, scheme := range []string{"http://", "https://"} {
		if len(target) >= len(scheme) && strings.EqualFold(target[:len(scheme)], scheme) {
			rest := target[len(scheme):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				return rest[i:], true
			}
			return "/", true
		}
	}
	return "", false
}

// normalizePath makes the path routes are matched against. We match the
// raw (not fully percent-decoded) path, with the normalisations RFC 3986
// §6.2.2 calls equivalent plus the ones common servers apply before
// routing, so that a request cannot dodge its route by spelling:
//   - percent-encoded unreserved characters are decoded ("%6Cogin" is
//     "login"); other escapes, %2F included, stay as they are;
//   - empty segments collapse ("//login" is "/login") and a trailing
//     slash is dropped ("/login/" is "/login");
//   - "." segments are dropped and ".." removes the previous segment,
//     never climbing above the root ("/api/../login" is "/login").
//
// Over-matching a request a server would not route is the lesser harm:
// the span then records what the server answered (typically a 404).
func normalizePath(raw string) string {
	if isCleanPath(raw) {
		return raw
	}
	p := decodeUnreserved(raw)
	segs := make([]string, 0, 8)
	for p != "" {
		var s string
		s, p, _ = strings.Cut(p, "/")
		switch s {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, s)
		}
	}
	return "/" + strings.Join(segs, "/")
}

// isCleanPath reports whether raw needs no normalisation, the usual case.
func isCleanPath(raw string) bool {
	if raw == "" || raw[0] != '/' {
		return false
	}
	if len(raw) > 1 && raw[len(raw)-1] == '/' {
		return false
	}
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '%':
			return false
		case '/':
			if i+1 < len(raw) && (raw[i+1] == '/' || raw[i+1] == '.') {
				return false
			}
		}
	}
	return true
}

// decodeUnreserved decodes %XX escapes of unreserved characters
// (ALPHA / DIGIT / "-" / "." / "_" / "~"), which name the same resource
// either way, and keeps every other byte as it is.
func decodeUnreserved(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			if h, ok := unhex(s[i+1], s[i+2]); ok && isUnreserved(h) {
				b.WriteByte(h)
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
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

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
