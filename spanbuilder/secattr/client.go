package secattr

import (
	"net/netip"
	"strings"

	"github.com/authprobe/authprobe/decoder"
)

// maxHops bounds how many forwarded entries the walk considers (from the
// right); beyond them the last trusted hop is taken.
const maxHops = 64

// clientAddr is the socket peer, unless the peer is a trusted proxy: then it
// walks the forwarding chain from the right (the entries the trusted proxies
// appended), skips trusted addresses and returns the right-most untrusted
// one. RFC 7239 Forwarded wins over X-Forwarded-For when a request has both.
// An entry that is not an address (garbage, "unknown", an obfuscated
// identifier, a missing for=) stops the walk: what lies left of it cannot be
// trusted, so the last trusted hop is the answer.
func (e *Extractor) clientAddr(peer netip.Addr, req *decoder.Request) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if !peer.IsValid() || req == nil || !e.isTrusted(peer) {
		return peer
	}
	var hops []string
	if fwd := headerJoin(req.Header, "Forwarded"); strings.TrimSpace(fwd) != "" {
		hops = forwardedFors(fwd)
	} else {
		hops = xffEntries(headerJoin(req.Header, "X-Forwarded-For"))
	}
	last := peer
	for i, n := len(hops)-1, 0; i >= 0 && n < maxHops; i, n = i-1, n+1 {
		a, ok := parseHop(hops[i])
		if !ok {
			return last
		}
		if !e.isTrusted(a) {
			return a
		}
		last = a
	}
	return last
}

func (e *Extractor) isTrusted(a netip.Addr) bool {
	for _, p := range e.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// xffEntries splits X-Forwarded-For; empty entries (",,") are skipped.
func xffEntries(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// forwardedFors returns, left to right, the for= value of each element of
// an RFC 7239 Forwarded value (quoted-strings unquoted); "" for an element
// without a usable for=, which stops the walk there.
func forwardedFors(v string) []string {
	var out []string
	for _, elem := range splitQuoted(v, ',') {
		if strings.TrimSpace(elem) == "" {
			continue
		}
		forVal := ""
		for _, pair := range splitQuoted(elem, ';') {
			k, val, ok := strings.Cut(pair, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "for") {
				continue
			}
			val, ok = unquote(strings.TrimSpace(val))
			if ok {
				forVal = val
			}
			break
		}
		out = append(out, forVal)
	}
	return out
}

// splitQuoted splits s at sep outside quoted-strings. An unterminated quote
// runs to the end, where unquote then rejects it.
func splitQuoted(s string, sep byte) []string {
	var out []string
	start, inQuote, esc := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case esc:
			esc = false
		case inQuote && c == '\\':
			esc = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unquote returns a token as is and the content of a quoted-string.
func unquote(s string) (string, bool) {
	if !strings.HasPrefix(s, `"`) {
		return s, !strings.ContainsAny(s, "\" \t")
	}
	if len(s) < 2 || s[len(s)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		c := s[i]
		if c == '\\' {
			i++
			if i >= len(s)-1 {
				return "", false
			}
			c = s[i]
		} else if c == '"' {
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// parseHop reads one forwarded node: IPv4, IPv4:port, [IPv6], [IPv6]:port or
// a bare IPv6 address (seen in X-Forwarded-For). Ports, real or obfuscated,
// are ignored; zones are dropped; IPv4-mapped IPv6 becomes IPv4.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 || !validPort(s[end+1:], true) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() {
			return netip.Addr{}, false
		}
		return a.WithZone("").Unmap(), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap(), true
	}
	if host, port, ok := strings.Cut(s, ":"); ok && validPort(":"+port, false) {
		if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// validPort accepts "" (when optional) or ":" followed by digits or an
// RFC 7239 obfuscated port ("_" and token characters).
func validPort(s string, optional bool) bool {
	if s == "" {
		return optional
	}
	if len(s) < 2 || s[0] != ':' || len(s) > 16 {
		return false
	}
	p := s[1:]
	digits := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			digits = false
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.' || c == '-') {
				return false
			}
		}
	}
	return digits || p[0] == '_'
}

// subnetOf is the /24 (IPv4) or /48 (IPv6) holding a, "" when invalid.
func (e *Extractor) subnetOf(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return e.subnets.Get(p)
}
