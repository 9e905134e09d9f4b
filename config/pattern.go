package config

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"unicode"
)

// PathPattern is a parsed Route.Path. A trailing slash is not significant:
// "/login/" and "/login" are the same pattern, because common frameworks
// route both to the same handler and a detector must not be evaded by it.
type PathPattern struct {
	// Segments are the parts between slashes after the leading "/"; the
	// pattern "/" has none.
	Segments []PathSegment
	// Rest is set by a trailing "/**": any rest of the path, including
	// none, matches.
	Rest bool
}

// PathSegment is one segment of a PathPattern.
type PathSegment struct {
	// Literal is the exact text to match when Wild is false.
	Literal string
	// Wild matches any one non-empty segment ("*" or "{param}").
	Wild bool
	// Param is the name of a "{param}" segment.
	Param string
}

// maxPathPattern bounds a pattern's length; routes are short.
const maxPathPattern = 1024

// ParsePathPattern parses a Route.Path: it starts with "/", "*" matches one
// segment, "{param}" matches one segment and names it, and "/**" only at the
// end matches any rest (including none).
func ParsePathPattern(p string) (PathPattern, error) {
	var pp PathPattern
	switch {
	case p == "":
		return pp, errors.New("is empty; a path starts with \"/\", e.g. /login")
	case p[0] != '/':
		return pp, fmt.Errorf("%q does not start with \"/\"", p)
	case len(p) > maxPathPattern:
		return pp, fmt.Errorf("is longer than %d bytes", maxPathPattern)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c == 0x7f {
			return pp, fmt.Errorf("%q contains a space or control character", p)
		}
		switch c {
		case '?', '#':
			return pp, fmt.Errorf("%q contains %q; a route path has no query or fragment", p, c)
		case ';':
			// Servlet containers strip ";params" from every segment before
			// routing, and so does the matcher: a route cannot name one.
			return pp, fmt.Errorf("%q contains ';'; path parameters (\";jsessionid=...\") are stripped from request paths before matching, so leave them out", p)
		case '\\':
			return pp, fmt.Errorf("%q contains a backslash; request paths are matched with backslashes read as \"/\", so write \"/\"", p)
		}
	}
	parts := strings.Split(p[1:], "/")
	if n := len(parts); n > 1 && parts[n-1] == "" {
		parts = parts[:n-1] // trailing slash
	}
	if len(parts) == 1 && parts[0] == "" {
		return pp, nil // "/"
	}
	params := map[string]bool{}
	for i, s := range parts {
		last := i == len(parts)-1
		switch {
		case s == "":
			return pp, fmt.Errorf("%q has an empty segment (\"//\")", p)
		case s == "." || s == "..":
			return pp, fmt.Errorf("%q has a %q segment", p, s)
		case s == "**":
			if !last {
				return pp, fmt.Errorf("%q: \"/**\" is only accepted at the end", p)
			}
			pp.Rest = true
		case s == "*":
			pp.Segments = append(pp.Segments, PathSegment{Wild: true})
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			if !isParamName(name) {
				return pp, fmt.Errorf("%q: parameter %q is not a name (letters, digits, _)", p, s)
			}
			if params[name] {
				return pp, fmt.Errorf("%q: parameter {%s} appears twice", p, name)
			}
			params[name] = true
			pp.Segments = append(pp.Segments, PathSegment{Wild: true, Param: name})
		case strings.ContainsAny(s, "*"):
			return pp, fmt.Errorf("%q: \"*\" must be a whole segment (\"/*/\" or a final \"/**\")", p)
		case strings.ContainsAny(s, "{}"):
			return pp, fmt.Errorf("%q: \"{param}\" must be a whole segment", p)
		default:
			pp.Segments = append(pp.Segments, PathSegment{Literal: s})
		}
	}
	return pp, nil
}

func isParamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Results a route's Results may name.
const (
	resultSuccess = "success"
	resultFailure = "failure"
	resultError   = "error"
	resultUnknown = "unknown"
)

// ParseResultKey parses a Route.Results key: an exact status code ("401",
// 100..599) or a class ("4xx", 1xx..5xx). It returns the code, or the class
// digit (1..5) with code 0.
func ParseResultKey(k string) (code, class int, err error) {
	if len(k) == 3 && k[0] >= '1' && k[0] <= '5' {
		if k[1:] == "xx" {
			return 0, int(k[0] - '0'), nil
		}
		if isDigit(k[1]) && isDigit(k[2]) {
			return int(k[0]-'0')*100 + int(k[1]-'0')*10 + int(k[2]-'0'), 0, nil
		}
	}
	return 0, 0, fmt.Errorf("%q is not a status code (100..599) or class (1xx..5xx)", k)
}

// ParseResultValue parses a Route.Results value: "success", or "failure",
// "error", "unknown" optionally followed by "/reason" where reason is a
// snake_case word.
func ParseResultValue(v string) (result, reason string, err error) {
	result, reason, hasReason := strings.Cut(v, "/")
	switch result {
	case resultSuccess:
		if hasReason {
			return "", "", fmt.Errorf("%q: success takes no reason", v)
		}
	case resultFailure, resultError, resultUnknown:
		if hasReason && !IsReason(reason) {
			return "", "", fmt.Errorf("%q: reason %q is not snake_case (a-z, 0-9, _)", v, reason)
		}
	default:
		return "", "", fmt.Errorf("%q is not one of success, failure, error, unknown (optionally with /reason, e.g. failure/invalid_credentials)", v)
	}
	return result, reason, nil
}

// IsReason reports whether s is an acceptable auth.failure_reason: a
// snake_case word of at most 64 bytes.
func IsReason(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || isDigit(c)) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// CheckExePattern checks a Target.Exe: a base-name glob (no "/"), or an
// absolute path glob whose segments are path.Match patterns or "**".
func CheckExePattern(p string) error {
	if strings.ContainsFunc(p, unicode.IsControl) {
		return fmt.Errorf("%q contains control characters", p)
	}
	if !strings.Contains(p, "/") {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%q is not a valid glob (path.Match syntax: *, ?, [a-z])", p)
		}
		return nil
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q is neither a base name (python3*) nor an absolute path (/usr/bin/python3*, /opt/**/bin/java)", p)
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "**" {
			continue
		}
		if strings.Contains(seg, "**") {
			return fmt.Errorf("%q: \"**\" must be a whole segment (/opt/**/bin/java)", p)
		}
		if _, err := path.Match(seg, ""); err != nil {
			return fmt.Errorf("%q is not a valid glob (path.Match syntax: *, ?, [a-z], and ** for any directories)", p)
		}
	}
	return nil
}

// MatchExe reports whether an executable path matches a Target.Exe
// pattern (see CheckExePattern); an invalid pattern matches nothing.
func MatchExe(pattern, exe string) bool {
	if exe == "" {
		return false
	}
	if !strings.Contains(pattern, "/") {
		ok, err := path.Match(pattern, path.Base(exe))
		return err == nil && ok
	}
	if !strings.Contains(pattern, "**") {
		ok, err := path.Match(pattern, exe)
		return err == nil && ok
	}
	if !strings.HasPrefix(pattern, "/") || !strings.HasPrefix(exe, "/") {
		return false
	}
	return matchSegments(strings.Split(pattern[1:], "/"), strings.Split(exe[1:], "/"))
}

// matchSegments matches path segments, "**" standing for any number of
// them (none included).
func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			// Collapse repeats, then try every split point.
			for len(pat) > 0 && pat[0] == "**" {
				pat = pat[1:]
			}
			if len(pat) == 0 {
				return len(name) > 0 // "/opt/**" needs something below /opt
			}
			for i := 0; i <= len(name); i++ {
				if matchSegments(pat, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		ok, err := path.Match(pat[0], name[0])
		if err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
