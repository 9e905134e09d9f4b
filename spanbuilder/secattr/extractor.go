package secattr

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.opentelemetry.io/otel/attribute"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/spanbuilder/internal/strcache"
)

// Options are the process-level inputs of New, explicit so tests need
// neither the environment nor global randomness.
type Options struct {
	// Env looks up UsernameConfig.KeyEnv; os.Getenv when nil.
	Env func(string) string
	// Rand is the source of a random key; crypto/rand when nil.
	Rand io.Reader
}

// Extractor derives security attributes. It is immutable after New and
// safe for concurrent use.
type Extractor struct {
	privacy        string
	lowercase      bool
	randomKey      bool
	key            []byte
	macs           sync.Pool // of hash.Hash: HMAC-SHA256 keyed with key
	scratches      *scratchPool
	lists          *listCache
	subnets        *strcache.Cache[netip.Prefix, string]
	bodyFields     []string
	userHeader     string
	apiHeaders     []string
	apiQuery       []string
	sessionCookies []string
	rolesClaim     string
	leeway         time.Duration
	jwks           *jose.JSONWebKeySet
	trusted        []netip.Prefix
	subnet         bool
}

// New builds an Extractor from the security config, reading KeyEnv from
// the process environment.
func New(cfg config.Security) (*Extractor, error) {
	return NewWithOptions(cfg, Options{})
}

// NewWithOptions builds an Extractor. Zero config values take the documented
// defaults. It fails on an unknown privacy mode, a missing or short key for
// privacy hash (unless RandomKey), a bad trusted proxy, or an unreadable
// JWKS file.
func NewWithOptions(cfg config.Security, opt Options) (*Extractor, error) {
	if opt.Env == nil {
		opt.Env = os.Getenv
	}
	if opt.Rand == nil {
		opt.Rand = rand.Reader
	}
	e := &Extractor{
		privacy:        strings.ToLower(strings.TrimSpace(cfg.Username.Privacy)),
		lowercase:      cfg.Username.Lowercase == nil || *cfg.Username.Lowercase,
		subnet:         cfg.ClientSubnet == nil || *cfg.ClientSubnet,
		bodyFields:     nonEmpty(cfg.Username.BodyFields, "username", "user", "email", "login"),
		userHeader:     strings.TrimSpace(cfg.Username.Header),
		apiHeaders:     nonEmpty(cfg.APIKey.Headers, "X-API-Key"),
		apiQuery:       nonEmpty(cfg.APIKey.QueryParams, "api_key"),
		sessionCookies: nonEmpty(cfg.SessionCookies),
		rolesClaim:     strings.TrimSpace(cfg.JWT.RolesClaim),
		leeway:         time.Duration(cfg.JWT.Leeway),
		scratches:      newScratchPool(),
		lists:          newListCache(),
		subnets:        strcache.New(netip.Prefix.String),
	}
	switch e.privacy {
	case "":
		e.privacy = config.PrivacyHash
	case config.PrivacyHash, config.PrivacyPlain, config.PrivacyDrop:
	default:
		return nil, fmt.Errorf("username: unknown privacy %q (want hash, plain or drop)", cfg.Username.Privacy)
	}
	if e.rolesClaim == "" {
		e.rolesClaim = "roles"
	}
	if e.leeway < 0 {
		return nil, fmt.Errorf("jwt: negative leeway %s", e.leeway)
	}
	var err error
	if e.key, e.randomKey, err = loadKey(cfg.Username, e.privacy, opt.Env, opt.Rand); err != nil {
		return nil, err
	}
	if e.trusted, err = parseTrusted(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	if cfg.JWT.JWKSFile != "" {
		if e.jwks, err = loadJWKS(cfg.JWT.JWKSFile); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// RandomKeyInUse reports that hashed usernames use a random per-run key
// (RandomKey was accepted): they do not correlate across restarts or nodes,
// which the caller should log.
func (e *Extractor) RandomKeyInUse() bool { return e.randomKey }

// Extract derives the security attributes of one exchange. It never fails:
// what it cannot parse it leaves out (or marks, like a malformed token).
func (e *Extractor) Extract(in Input) Output {
	var out Output
	attrs := in.Memory.attributes()

	var (
		reqBody, query fields
		notes          bodyNotes
		amb            ambiguity
	)
	// One scratch holds the request body's fields, then the response
	// body's; a query that may name a username has its own.
	sc := e.scratches.get(in.Memory)
	defer e.scratches.put(sc)
	if in.Request != nil {
		reqBody, notes = parseBody(sc, in.Request.Header, in.Request.Body)
		if qsc := e.queryFields(in.Request.Target, &query, in.Memory); qsc != nil {
			defer e.scratches.put(qsc)
		}
	}
	a := e.detectMethod(in.Route, in.Request, reqBody)
	if in.Request != nil {
		amb = headAmbiguity(in.Request, a)
	}
	if notes.jsonDuplicateKey {
		amb |= ambJSONKey
	}
	attrs = append(attrs, attribute.String("auth.method", a.method))
	if a.duplicate {
		attrs = append(attrs, attribute.Bool("auth.authorization.duplicate", true))
	}
	if a.hasGrantType && a.grantType != "" {
		attrs = append(attrs, attribute.String("auth.oauth2.grant_type", a.grantType))
	}
	if id := clean(a.clientID, maxClientIDLen); id != "" {
		attrs = append(attrs, attribute.String("auth.oauth2.client_id", id))
	}
	switch u, ambiguous := e.username(in, a, reqBody, query); {
	case ambiguous:
		// No username at all, not even for aggregation: any one of them
		// may be the decoy.
		amb |= ambUsername
	case u != "":
		var v string
		v, out.UserKey = e.usernameValue(u, in.Memory)
		if v != "" {
			attrs = append(attrs, attribute.String("auth.username", v))
		}
	}
	if out.Ambiguous = amb.kinds(); out.Ambiguous != nil {
		attrs = append(attrs, attribute.StringSlice(AttrAmbiguous, out.Ambiguous))
	}
	if a.method == MethodBearer {
		attrs = e.tokenAttrs(attrs, a.bearer, in.RequestTime, in.Memory)
	}

	out.ClientAddr = e.clientAddr(in.Peer, in.Request)
	if e.subnet {
		out.ClientSubnet = e.subnetOf(out.ClientAddr)
		if out.ClientSubnet != "" {
			attrs = append(attrs, attribute.String("auth.client.subnet", out.ClientSubnet))
		}
	}

	var respBody fields
	if in.Response != nil && needsResponseBody(in) {
		reqBody = fields{} // its entries are in sc, which the response's take
		respBody, _ = parseBody(sc, in.Response.Header, in.Response.Body)
	}
	var oauthErr string
	out.Result, out.FailureReason, oauthErr = e.outcome(in, respBody)
	if oauthErr != "" {
		attrs = append(attrs, attribute.String("auth.oauth2.error", oauthErr))
	}
	result := in.Result
	if out.Result != "" {
		result = out.Result
	}
	if e.sessionIssued(in, result, respBody) {
		attrs = append(attrs, attribute.Bool("auth.session.issued", true))
	}
	out.Attributes = attrs
	in.Memory.keepAttributes(attrs)
	return out
}

// queryFields parses the query string of a request-target into *f (its
// text in out) when it may name a username field, and returns the scratch
// that holds the fields for the caller to give back; nil otherwise, the
// usual case, at no cost.
func (e *Extractor) queryFields(target string, f *fields, out *Memory) *scratch {
	_, q, ok := strings.Cut(target, "?")
	if !ok {
		return nil
	}
	q, _, _ = strings.Cut(q, "#")
	if len(q) > maxBodyScan {
		q = q[:maxBodyScan]
	}
	if !mayName(q, e.bodyFields) {
		return nil
	}
	sc := e.scratches.get(out)
	*f = parseForm(sc, q)
	return sc
}

// mayName reports whether a query could spell one of names: it holds one
// in any ASCII case, an escape, or a non-ASCII byte (a Unicode fold).
func mayName(q string, names []string) bool {
	for i := 0; i < len(q); i++ {
		if q[i] == '%' || q[i] >= 0x80 {
			return true
		}
	}
	for _, n := range names {
		if containsFoldASCII(q, n) {
			return true
		}
	}
	return false
}

func containsFoldASCII(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// needsResponseBody tells whether anything reads the response body:
// failure matchers, OAuth2 errors (token and authorize routes) and session
// issuance (successes). A failed login — what an attack is made of — skips
// the parse.
func needsResponseBody(in Input) bool {
	switch {
	case len(in.Route.FailureMatchers) > 0:
		return true
	case in.Route.Kind == config.KindToken, in.Route.Kind == config.KindAuthorize:
		return true
	}
	return in.Result == "success"
}

// parseTrusted reads trusted proxy CIDRs; a bare address is its own /32 or
// /128.
func parseTrusted(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("trusted_proxies: %w", err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies: %w", err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// nonEmpty returns the trimmed non-empty entries of list, or def when none.
func nonEmpty(list []string, def ...string) []string {
	out := make([]string, 0, len(list))
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}
