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

// ConnKey names one connection for its whole life: fd reuse gets a new Gen.
type ConnKey struct {
	PID uint32 // tgid of the traced process
	FD  int32
	Gen uint64 // generation: differs for every connection that used PID/FD
}

// ConnInfo describes a connection's endpoints as seen by the traced process.
type ConnInfo struct {
	Key   ConnKey
	Peer  netip.AddrPort // the socket peer (the client, for a server)
	Local netip.AddrPort
}

// Chunk is what one syscall moved on a connection.
type Chunk struct {
	Conn ConnInfo
	Dir  Direction
	// Seq increases by one for every chunk the kernel meant to send on this
	// connection; a gap means chunks were lost.
	Seq uint32
	// Time is the kernel monotonic timestamp (ns) at the end of the syscall.
	Time uint64
	// Len is how many bytes the syscall moved; Data is the captured prefix
	// of them (len(Data) <= Len). Len > len(Data) means the rest was not
	// captured (capture budget), and the decoder skips those bytes.
	Len  uint32
	Data []byte
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
}

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
	Conn     ConnInfo
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
