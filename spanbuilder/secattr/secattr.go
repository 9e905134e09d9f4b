// Package secattr extracts the security attributes of one auth attempt from
// its captured request and response: how the caller authenticated, as whom,
// from where, and why it failed. Secrets it reads (passwords, tokens,
// cookies, API keys) never leave it: only derived, non-secret values do.
package secattr

import (
	"net/netip"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/authprobe/authprobe/config"
	"github.com/authprobe/authprobe/decoder"
)

// Input is one exchange on a matched route.
type Input struct {
	Route       config.Route
	Request     *decoder.Request
	Response    *decoder.Response // nil when none
	Peer        netip.Addr        // socket peer
	RequestTime time.Time
	// Result is the result inferred from the status code (success,
	// failure, error, unknown) before body matchers.
	Result string
	// Memory, when set, holds what the Output is made of (see Memory);
	// without it the Output's memory is its own.
	Memory *Memory
}

// Output is what Extract derived.
type Output struct {
	// Attributes to add to the span (auth.method, auth.username, JWT
	// claims, auth.session.issued, auth.oauth2.*, auth.client.subnet ...).
	Attributes []attribute.KeyValue
	// ClientAddr is the original client (socket peer, or the right-most
	// untrusted forwarded address when the peer is a trusted proxy).
	ClientAddr netip.Addr
	// ClientSubnet is ClientAddr's /24 or /48 ("" when disabled/unknown).
	ClientSubnet string
	// Result and FailureReason, when non-empty, override the status-based
	// inference (body matchers, OAuth2 errors).
	Result        string
	FailureReason string
	// UserKey is a keyed 64-bit hash of the normalised username (0: none),
	// for in-agent aggregation only, whatever the privacy mode. It is 0 when
	// the request names several usernames.
	UserKey uint64
	// Ambiguous lists the kinds of auth.request.ambiguous (also among
	// Attributes); nil when none.
	Ambiguous []string
}
