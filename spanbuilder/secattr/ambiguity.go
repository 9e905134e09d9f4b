package secattr

import (
	"github.com/authprobe/authprobe/decoder"
)

// AttrAmbiguous names what in a request servers read differently: a
// string slice of the kinds below, in this order.
const AttrAmbiguous = "auth.request.ambiguous"

// Kinds of auth.request.ambiguous. Clients that are not crafting a
// request send none of them; each is a way to make the server and the
// agent (or a proxy) see different requests.
const (
	// AmbiguousCLTE: Content-Length and Transfer-Encoding together
	// (request smuggling, RFC 9112 §6.1).
	AmbiguousCLTE = "cl_te"
	// AmbiguousContentLength: more than one Content-Length.
	AmbiguousContentLength = "duplicate_content_length"
	// AmbiguousTransferEncoding: a Transfer-Encoding other than one final
	// "chunked".
	AmbiguousTransferEncoding = "transfer_encoding"
	// AmbiguousHost: more than one Host header (RFC 9112 §3.2 makes it a
	// 400; servers that answer pick one).
	AmbiguousHost = "duplicate_host"
	// AmbiguousAuthorization: more than one Authorization header.
	AmbiguousAuthorization = "duplicate_authorization"
	// AmbiguousUsername: the username is named more than once with
	// different values; auth.username is left out.
	AmbiguousUsername = "duplicate_username"
	// AmbiguousJSONKey: a JSON body repeats a key in one object.
	AmbiguousJSONKey = "json_duplicate_key"
)

// ambiguity is a set of kinds, one bit each in the order above.
type ambiguity uint8

const (
	ambCLTE ambiguity = 1 << iota
	ambContentLength
	ambTransferEncoding
	ambHost
	ambAuthorization
	ambUsername
	ambJSONKey
)

var ambiguityKinds = [...]string{
	AmbiguousCLTE, AmbiguousContentLength, AmbiguousTransferEncoding,
	AmbiguousHost, AmbiguousAuthorization, AmbiguousUsername, AmbiguousJSONKey,
}

// kinds lists the set's kinds in their order; nil when empty.
func (a ambiguity) kinds() []string {
	if a == 0 {
		return nil
	}
	var out []string
	for i, k := range ambiguityKinds {
		if a&(1<<i) != 0 {
			out = append(out, k)
		}
	}
	return out
}

// headAmbiguity is what the decoder found in the framing and the header
// lines that servers disagree on.
func headAmbiguity(req *decoder.Request, a authInfo) ambiguity {
	var amb ambiguity
	if req.Ambiguous&decoder.AmbiguousCLTE != 0 {
		amb |= ambCLTE
	}
	if req.Ambiguous&decoder.AmbiguousCL != 0 {
		amb |= ambContentLength
	}
	if req.Ambiguous&decoder.AmbiguousTE != 0 {
		amb |= ambTransferEncoding
	}
	if headerCount(req.Header, "Host") > 1 {
		amb |= ambHost
	}
	if a.duplicate {
		amb |= ambAuthorization
	}
	return amb
}
