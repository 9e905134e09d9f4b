// Package decoder turns the captured byte chunks of many connections into
// HTTP/1.x exchanges: it reassembles each connection's chunks in sequence
// order, parses request and response heads, follows Content-Length and
// chunked bodies (kept up to the capture limit), pairs each request with its
// response and carries the kernel timestamps through. It knows HTTP, not
// auth, and never logs.
package decoder

import "net/netip"

// Direction of a chunk as seen by the traced (server) process.
type Direction uint8

const (
	// Ingress bytes were read by the process (requests, on a server).
	Ingress Direction = iota + 1
	// Egress bytes were written by the process (responses).
	Egress
)

// ConnKey names one connection for its whole life: the kernel socket and
// its generation. Whichever process or fd uses the socket, it is the same
// connection (docs/capture.md).
type ConnKey struct {
	Sock uint64 // struct sock address
	Gen  uint64 // differs for every connection that used Sock
}

// Role is who opened the connection, as far as the kernel knows.
type Role uint8

const (
	RoleUnknown Role = iota // accepted by the traced process, or predates the agent
	RoleClient              // the traced process connected it
)

// ConnInfo describes a connection's endpoints as seen by the traced process.
type ConnInfo struct {
	Key   ConnKey
	Peer  netip.AddrPort // the socket peer (the client, for a server)
	Local netip.AddrPort
	Role  Role
}

// ChunkFlags qualify a chunk (the kernel's event_flags).
type ChunkFlags uint8

const (
	// Boundary: Data starts at a message boundary the kernel knows.
	Boundary ChunkFlags = 1 << 0
	// Episode: the first chunk of a capture episode; the kernel filtered
	// the connection until this read.
	Episode ChunkFlags = 1 << 1
	// Unreadable: Len bytes moved but none could be read.
	Unreadable ChunkFlags = 1 << 2
	// Budget: the episode's capture budget was exhausted; Len bytes moved,
	// none copied.
	Budget ChunkFlags = 1 << 3
)

// Chunk is what one event of the kernel covers on one direction of a
// connection: a stream range [Offset, Offset+Len) of which Data is the
// captured prefix.
type Chunk struct {
	Conn ConnInfo
	// PID and TID did the I/O; an exchange belongs to the process that
	// read its request.
	PID, TID uint32
	Dir      Direction
	// Seq increases by one for every chunk the kernel tried to send on this
	// connection and direction; a gap means chunks were lost. Chunks of one
	// direction may arrive slightly out of Seq order.
	Seq uint32
	// Offset is the stream offset of Data[0] in this direction. An offset
	// ahead of the expected one with no Seq gap is a deliberate skip.
	Offset uint64
	// Time is the kernel monotonic timestamp (ns) at the end of the I/O.
	Time uint64
	// Len is how many stream bytes the chunk covers; Data is the captured
	// prefix of them (len(Data) <= Len).
	Len  uint32
	Data []byte
	// Flags, Skipped and Unanswered are the kernel's notes (see bpf.ConnEvent).
	Flags      ChunkFlags
	Skipped    uint32
	Unanswered uint32
}

// VerdictKind is what user space tells the kernel about a connection
// (the kernel's enum verdict_kind).
type VerdictKind uint8

const (
	// VerdictResume: everything sent is decided and answered; the kernel
	// may filter again if its offsets still equal InOff and OutOff.
	VerdictResume VerdictKind = 1 << 0
	// VerdictSkip: ingress bytes before SkipTo are a non-auth body: do not
	// copy them.
	VerdictSkip VerdictKind = 1 << 1
	// VerdictOff: stop capturing the connection (not HTTP, tunnel).
	VerdictOff VerdictKind = 1 << 2
)

// Verdict is one decision for the kernel about a connection.
type Verdict struct {
	Key           ConnKey
	Kind          VerdictKind
	InOff, OutOff uint64
	SkipTo        uint64
}

// HeaderField is one header line, in wire order; duplicates are kept.
type HeaderField struct {
	Name  string
	Value string
}

// Header is the ordered header list of a request or response.
type Header []HeaderField

// Request is a parsed HTTP request head and the captured start of its body.
type Request struct {
	Method string
	Target string // request-target as sent (path and query)
	Proto  string // HTTP/1.0 or HTTP/1.1
	Header Header
	// ContentLength is the declared length, -1 when absent or chunked.
	ContentLength int64
	Chunked       bool
	// Body is the captured (de-chunked) start of the body.
	Body []byte
	// BodyTruncated: the body is longer than what was captured.
	BodyTruncated bool
	// Ambiguous names what in the request's framing peers may read
	// differently (Content-Length with Transfer-Encoding, two
	// Content-Lengths): the kind of request smuggling attempts use.
	Ambiguous Ambiguity
}

// Ambiguity flags a request that servers and proxies may frame
// differently.
type Ambiguity uint8

const (
	// AmbiguousCLTE: Content-Length together with Transfer-Encoding.
	AmbiguousCLTE Ambiguity = 1 << iota
	// AmbiguousCL: more than one Content-Length (equal or not).
	AmbiguousCL
	// AmbiguousTE: a Transfer-Encoding other than a final "chunked", or
	// more than one.
	AmbiguousTE
)

// Response is a parsed HTTP response head and the captured start of its body.
type Response struct {
	Proto         string
	StatusCode    int
	Reason        string
	Header        Header
	ContentLength int64
	Chunked       bool
	Body          []byte
	BodyTruncated bool
}

// EndReason says why an exchange ended without a response.
type EndReason uint8

const (
	EndResponse EndReason = iota // a response was seen
	EndClosed                    // the connection closed first
	EndTimeout                   // no response within the timeout
	EndLost                      // chunks were lost; the response cannot be known
)

// Exchange is one request and, when seen, its response.
type Exchange struct {
	Conn ConnInfo
	// PID and TID read the request: the exchange belongs to that process.
	PID, TID uint32
	Request  *Request
	Response *Response // nil when no response was seen
	End      EndReason
	// Kernel monotonic timestamps (ns): the first and last chunk of the
	// request, and of the response (0 when there is none).
	RequestStart, RequestEnd   uint64
	ResponseStart, ResponseEnd uint64
	// Lost is set when a sequence gap touched this exchange.
	Lost bool
}

// Config bounds the decoder's memory and time.
type Config struct {
	// MaxBodyBytes kept per request and per response body.
	MaxRequestBody  int
	MaxResponseBody int
	// MaxConnections tracked at once; the oldest idle one is evicted.
	MaxConnections int
	// MaxHeadBytes a request or response head may take before it is an
	// error (default 16 KiB).
	MaxHeadBytes int
	// ResponseTimeout (ns) after which a request without response is
	// emitted with End=EndTimeout by Expire.
	ResponseTimeout uint64
}

// Stats counts what the decoder saw and dropped, by reason.
type Stats struct {
	Chunks          uint64
	Exchanges       uint64
	ParseErrors     uint64 // unparseable heads (garbage, binary)
	SeqGaps         uint64 // chunks lost in the kernel or ring buffer
	Evicted         uint64 // connections evicted at MaxConnections
	Orphans         uint64 // responses without a request
	TruncatedBodies uint64
}

// String names the reason in lower case (response, closed, timeout, lost).
func (e EndReason) String() string {
	switch e {
	case EndResponse:
		return "response"
	case EndClosed:
		return "closed"
	case EndTimeout:
		return "timeout"
	case EndLost:
		return "lost"
	}
	return "unknown"
}
