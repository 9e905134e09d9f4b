package secattr

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/authprobe/authprobe/config"
)

// tokenFields are response fields that hand out a token.
var tokenFields = [...]string{"access_token", "token", "id_token"}

// sessionIssued reports a successful attempt whose response sets a session
// cookie (a configured name, or any cookie when none is configured) or
// returns a token in its body. Cookies that delete (empty value, Max-Age<=0,
// Expires in the past) do not count; logout routes never issue. Only names
// and attributes are read, never values beyond "is it empty".
func (e *Extractor) sessionIssued(in Input, result string, body fields) bool {
	if in.Response == nil || result != resultSuccess || in.Route.Kind == config.KindLogout {
		return false
	}
	for _, f := range in.Response.Header {
		if strings.EqualFold(f.Name, "Set-Cookie") && e.setsSession(f.Value, in.RequestTime) {
			return true
		}
	}
	for _, name := range tokenFields {
		if v, ok := body.str(name); ok && strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// setsSession reads one Set-Cookie value.
func (e *Extractor) setsSession(sc string, now time.Time) bool {
	pair, attrs, _ := strings.Cut(sc, ";")
	name, val, ok := strings.Cut(pair, "=")
	name = strings.TrimSpace(name)
	val = strings.Trim(strings.TrimSpace(val), `"`)
	if !ok || name == "" || val == "" {
		return false
	}
	if len(e.sessionCookies) > 0 && !containsFold(e.sessionCookies, name) {
		return false
	}
	for a := range strings.SplitSeq(attrs, ";") {
		k, v, _ := strings.Cut(a, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case strings.EqualFold(k, "Max-Age"):
			if n, err := strconv.Atoi(v); err == nil && n <= 0 {
				return false
			}
		case strings.EqualFold(k, "Expires") && !now.IsZero():
			if t, err := http.ParseTime(v); err == nil && !t.After(now) {
				return false
			}
		}
	}
	return true
}
