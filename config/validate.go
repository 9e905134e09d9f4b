package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Minimum capture size: below this not even a request line fits.
const MinCaptureBytes = 64

var (
	kinds     = []string{KindLogin, KindAuthorize, KindToken, KindLogout, KindOther}
	privacies = []string{PrivacyHash, PrivacyPlain, PrivacyDrop}
	exporters = []string{ExporterStdout, ExporterOTLP}
)

// Validate checks the whole config, including that there is at least one
// target: the CLI calls it after adding the targets given as flags. It
// reports every problem (joined), located at file:line when the config came
// from Parse or Load.
func (c *Config) Validate() error {
	return c.validate(true)
}

// problems collects located errors.
type problems struct {
	src  *source
	errs []error
}

func (p *problems) add(path, format string, args ...any) {
	p.errs = append(p.errs, p.src.errorAt(path, fmt.Sprintf(format, args...)))
}

func (c *Config) validate(needTargets bool) error {
	p := &problems{src: c.src}
	checkSize(p, "capture_bytes", c.CaptureBytes)
	checkSize(p, "response_bytes", c.ResponseBytes)
	if c.BurstBytes < MinBurstBytes || c.BurstBytes > MaxBurstBytes {
		p.add("burst_bytes", "%d is out of range %d..%d", c.BurstBytes, MinBurstBytes, MaxBurstBytes)
	}
	if c.ResponseTimeout <= 0 {
		p.add("response_timeout", "%s is not positive", c.ResponseTimeout)
	}
	if strings.ContainsFunc(c.ServiceName, unicode.IsControl) {
		p.add("service_name", "contains control characters")
	}
	if needTargets && len(c.Targets) == 0 {
		p.add("targets", "no target; add one (pid, exe, port or a k8s_ selector) here or with --pid")
	}
	for i, t := range c.Targets {
		checkTarget(p, fmt.Sprintf("targets[%d]", i), t)
	}
	if len(c.Routes) == 0 {
		p.add("routes", "no route; add at least one (name, kind, path)")
	}
	for i, r := range c.Routes {
		pre := fmt.Sprintf("routes[%d]", i)
		checkRoute(p, pre, r)
		// A route shadowed by an earlier one never matches: first match wins.
		for j, e := range c.Routes[:i] {
			if shadows(e, r) {
				p.add(pre, "routes[%d] (%s) already matches %s %s, so this route never matches", j, e.Name, methodWord(r.Method), r.Path)
				break
			}
		}
	}
	checkSecurity(p, "security", &c.Security)
	checkExporter(p, "exporter", &c.Exporter)
	if a := c.Metrics.Addr; a != "off" {
		if err := checkHostPort(a, true); err != nil {
			p.add("metrics.addr", "%q: %v; accepted: host:port or off", a, err)
		}
	}
	return errors.Join(p.errs...)
}

// shadows reports whether route e matches every request route r matches,
// as far as the spelling of the two tells: the same path (in any case when
// e ignores case), a method e takes too, and no prefix r has and e lacks.
func shadows(e, r Route) bool {
	if r.Path == "" {
		return false
	}
	samePath := e.Path == r.Path || !e.CaseSensitive && strings.EqualFold(e.Path, r.Path)
	switch {
	case !samePath:
		return false
	case e.CaseSensitive && !r.CaseSensitive: // r also takes other spellings
		return false
	case r.Prefix && !e.Prefix: // r also takes longer paths
		return false
	}
	// A GET route also takes HEAD requests.
	return e.Method == "" || e.Method == r.Method || e.Method == "GET" && r.Method == "HEAD"
}

func methodWord(m string) string {
	if m == "" {
		return "any method"
	}
	return m
}

func checkSize(p *problems, key string, n int) {
	if n < MinCaptureBytes || n > MaxCaptureBytes {
		p.add(key, "%d is not in %d..%d", n, MinCaptureBytes, MaxCaptureBytes)
	}
}

func checkTarget(p *problems, pre string, t Target) {
	set := 0
	for _, b := range []bool{t.PID != 0, t.Exe != "", t.Port != 0} {
		if b {
			set++
		}
	}
	switch {
	case set > 1:
		p.add(pre, "set at most one of pid, exe, port (%d set)", set)
	case set == 0 && !t.HasK8s():
		p.add(pre, "selects nothing; set pid, exe or port, or a Kubernetes selector (k8s_namespace, k8s_pod_labels, k8s_workload, k8s_container)")
	}
	checkK8sSelector(p, pre, t)
	if t.PID < 0 {
		p.add(pre+".pid", "%d is not a process id", t.PID)
	}
	if t.Exe != "" {
		if err := CheckExePattern(t.Exe); err != nil {
			p.add(pre+".exe", "%v", err)
		}
	}
	if t.Port < 0 || t.Port > 65535 {
		p.add(pre+".port", "%d is not in 1..65535", t.Port)
	}
	if strings.ContainsFunc(t.ServiceName, unicode.IsControl) {
		p.add(pre+".service_name", "contains control characters")
	}
}

func checkRoute(p *problems, pre string, r Route) {
	switch {
	case r.Name == "":
		p.add(pre+".name", "missing; it is the span name, e.g. auth.login")
	case len(r.Name) > 128 || !utf8.ValidString(r.Name) ||
		strings.ContainsFunc(r.Name, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }):
		p.add(pre+".name", "%q must be at most 128 bytes without spaces or control characters", r.Name)
	}
	if !oneOf(r.Kind, kinds) {
		if r.Kind == "" {
			p.add(pre+".kind", "missing; accepted: %s", strings.Join(kinds, ", "))
		} else {
			p.add(pre+".kind", "%q is not one of %s", r.Kind, strings.Join(kinds, ", "))
		}
	}
	if r.Method != "" && !isToken(r.Method) {
		p.add(pre+".method", "%q is not an HTTP method (a token such as GET or POST); leave it out for any method", r.Method)
	}
	if r.Path == "" {
		p.add(pre+".path", "missing; e.g. /login, /api/**, /users/{id}")
	} else if pat, err := ParsePathPattern(r.Path); err != nil {
		p.add(pre+".path", "%v", err)
	} else if r.Prefix && pat.Rest {
		p.add(pre+".prefix", "has no effect on %q, which ends in \"/**\" and takes any rest already; remove one", r.Path)
	}
	for _, k := range sortedKeys(r.Results) {
		kp := pre + ".results." + k
		if _, _, err := ParseResultKey(k); err != nil {
			p.add(kp, "%v", err)
		}
		if _, _, err := ParseResultValue(r.Results[k]); err != nil {
			p.add(kp, "%v", err)
		}
	}
	for i, m := range r.FailureMatchers {
		checkMatcher(p, fmt.Sprintf("%s.failure_matchers[%d]", pre, i), m)
	}
}

func checkMatcher(p *problems, pre string, m BodyMatcher) {
	switch {
	case m.JSONField == "" && m.Contains == "":
		p.add(pre, "set json_field or contains")
	case m.JSONField != "" && m.Contains != "":
		p.add(pre, "set json_field or contains, not both")
	}
	if m.JSONField != "" && !isDottedPath(m.JSONField) {
		p.add(pre+".json_field", "%q is not a dotted path such as error.code", m.JSONField)
	}
	if m.Equals != "" && m.JSONField == "" {
		p.add(pre+".equals", "only applies with json_field; use contains for a substring")
	}
	if !IsReason(m.Reason) {
		if m.Reason == "" {
			p.add(pre+".reason", "missing; the auth.failure_reason to set, e.g. mfa_required")
		} else {
			p.add(pre+".reason", "%q is not snake_case (a-z, 0-9, _)", m.Reason)
		}
	}
	if m.Result != "" && m.Result != resultFailure && m.Result != resultError {
		p.add(pre+".result", "%q is not one of failure, error", m.Result)
	}
}

func checkSecurity(p *problems, pre string, s *Security) {
	u := s.Username
	if !oneOf(u.Privacy, privacies) {
		p.add(pre+".username.privacy", "%q is not one of %s", u.Privacy, strings.Join(privacies, ", "))
	}
	if u.Privacy == PrivacyHash {
		n := 0
		for _, b := range []bool{u.KeyFile != "", u.KeyEnv != "", u.RandomKey} {
			if b {
				n++
			}
		}
		switch {
		case n == 0:
			p.add(pre+".username", "privacy hash needs a key: set key_env or key_file, or random_key: true to accept a per-run key")
		case n > 1:
			p.add(pre+".username", "set only one of key_env, key_file, random_key")
		}
	}
	for i, f := range u.BodyFields {
		if !isDottedPath(f) {
			p.add(fmt.Sprintf("%s.username.body_fields[%d]", pre, i), "%q is not a field name or dotted path such as user.email", f)
		}
	}
	if u.Header != "" && !isToken(u.Header) {
		p.add(pre+".username.header", "%q is not a header name", u.Header)
	}
	for i, h := range s.APIKey.Headers {
		if !isToken(h) {
			p.add(fmt.Sprintf("%s.api_key.headers[%d]", pre, i), "%q is not a header name", h)
		}
	}
	for i, q := range s.APIKey.QueryParams {
		if q == "" || strings.ContainsAny(q, "&=#? ") {
			p.add(fmt.Sprintf("%s.api_key.query_params[%d]", pre, i), "%q is not a query parameter name", q)
		}
	}
	for i, c := range s.SessionCookies {
		if !isToken(c) {
			p.add(fmt.Sprintf("%s.session_cookies[%d]", pre, i), "%q is not a cookie name", c)
		}
	}
	if !isDottedPath(s.JWT.RolesClaim) {
		p.add(pre+".jwt.roles_claim", "%q is not a claim name or dotted path such as realm_access.roles", s.JWT.RolesClaim)
	}
	if s.JWT.Leeway < 0 {
		p.add(pre+".jwt.leeway", "%s is negative", s.JWT.Leeway)
	}
	for i, cidr := range s.TrustedProxies {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			p.add(fmt.Sprintf("%s.trusted_proxies[%d]", pre, i), "%q is not a CIDR such as 10.0.0.0/8 or 10.1.2.3/32", cidr)
		}
	}
}

// Bounds of the export buffer sizes.
const (
	MinBufferSize = 64 << 10
	MinSpillSize  = 1 << 20
)

func checkExporter(p *problems, pre string, e *Exporter) {
	if !oneOf(e.Kind, exporters) {
		p.add(pre+".kind", "%q is not one of %s", e.Kind, strings.Join(exporters, ", "))
	}
	if e.BufferSize < MinBufferSize {
		p.add(pre+".buffer_size", "%s is below %s", e.BufferSize, ByteSize(MinBufferSize))
	}
	if e.SpillDir != "" {
		switch {
		case e.Kind != ExporterOTLP:
			p.add(pre+".spill_dir", "only applies to kind otlp (stdout is not retried)")
		case !filepath.IsAbs(e.SpillDir):
			p.add(pre+".spill_dir", "%q is not an absolute path", e.SpillDir)
		}
	}
	if e.SpillSize < MinSpillSize {
		p.add(pre+".spill_size", "%s is below %s", e.SpillSize, ByteSize(MinSpillSize))
	}
	if e.Endpoint == "" {
		return
	}
	if e.Kind == ExporterStdout {
		p.add(pre+".endpoint", "is set but kind is stdout; remove one")
	}
	if scheme, _, ok := strings.Cut(e.Endpoint, "://"); ok {
		u, err := url.Parse(e.Endpoint)
		if err != nil || (scheme != "http" && scheme != "https") || u.Host == "" {
			p.add(pre+".endpoint", "%q is not host:port or an http(s):// URL", e.Endpoint)
		}
		return
	}
	if err := checkHostPort(e.Endpoint, false); err != nil {
		p.add(pre+".endpoint", "%q: %v; accepted: host:port or an http(s):// URL", e.Endpoint, err)
	}
}

func checkHostPort(a string, zeroOK bool) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("not host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || n == 0 && !zeroOK {
		return fmt.Errorf("port %q is not a number in 1..65535", port)
	}
	return nil
}

func oneOf(s string, set []string) bool {
	for _, v := range set {
		if s == v {
			return true
		}
	}
	return false
}

// isToken reports whether s is an RFC 9110 token (methods, header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', isDigit(c):
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isDottedPath reports whether s is name(.name)* without spaces.
func isDottedPath(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || strings.ContainsFunc(part, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) {
			return false
		}
	}
	return true
}
