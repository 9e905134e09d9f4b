// Package http2 decodes the HTTP/2 of one connection from the bytes each
// direction carries: frames, HPACK header blocks (golang.org/x/net's
// decoder), streams paired by id into request/response exchanges with
// their pseudo-headers, regular headers, trailers and the start of their
// bodies. It takes byte chunks in stream order per direction (the
// decoder's reassembly gives them) and gives completed exchanges. It
// knows HTTP/2, not auth, and never logs.
//
// The types mirror decoder.Request and decoder.Response; they are this
// package's own because the decoder will import this package to dispatch
// HTTP/2 connections to it (see Exchange.Map in the report for the field
// mapping).
package http2

// Direction of bytes as seen by the traced (server) process.
type Direction uint8

const (
	// Ingress bytes were read by the process: the client's frames.
	Ingress Direction = iota + 1
	// Egress bytes were written by the process: the server's frames.
	Egress
)

// HeaderField is one regular header field, in wire order; duplicates
// are kept.
type HeaderField struct {
	Name  string
	Value string
}

// Request is a stream's request: its pseudo-headers, regular headers,
// trailers and the captured start of its body.
type Request struct {
	Method    string // :method
	Path      string // :path (origin form with query)
	Authority string // :authority
	Scheme    string // :scheme
	Header    []HeaderField
	Trailer   []HeaderField
	// ContentLength is the content-length header, -1 when absent.
	ContentLength int64
	Body          []byte
	BodyTruncated bool
	// Partial: some fields of the request's header blocks could not be
	// decoded (they referred to HPACK state from before the decoder
	// joined) and are missing; no field is ever guessed.
	Partial bool
}

// Response is a stream's final response (1xx responses are skipped).
type Response struct {
	StatusCode    int // :status
	Header        []HeaderField
	Trailer       []HeaderField
	ContentLength int64
	Body          []byte
	BodyTruncated bool
	Partial       bool
}

// EndReason says how an exchange ended.
type EndReason uint8

const (
	EndResponse EndReason = iota // the response ended (END_STREAM)
	EndReset                     // RST_STREAM from either side
	EndRefused                   // GOAWAY: the server never processed the stream
	EndClosed                    // the connection ended first
	EndLost                      // bytes of the stream were lost
)

func (e EndReason) String() string {
	switch e {
	case EndResponse:
		return "response"
	case EndReset:
		return "reset"
	case EndRefused:
		return "refused"
	case EndClosed:
		return "closed"
	case EndLost:
		return "lost"
	}
	return "unknown"
}

// Exchange is one stream: its request and, when seen, its response.
type Exchange struct {
	StreamID uint32
	Request  *Request  // nil when the request's headers were never seen
	Response *Response // nil when no final response was seen
	End      EndReason
	// ErrorCode is the RST_STREAM or GOAWAY error code (End Reset or
	// Refused).
	ErrorCode uint32
	// Times (whatever clock Feed was given): the first and last frame of
	// the request, and of the response (0 when none).
	RequestStart, RequestEnd   uint64
	ResponseStart, ResponseEnd uint64
	// Lost: bytes of this connection were lost while the stream was open.
	Lost bool
}

// Config bounds one connection's memory. Zero fields take the defaults.
type Config struct {
	// MaxStreams open at once (default 128); streams beyond are not
	// tracked (their header blocks are still decoded, for HPACK).
	MaxStreams int
	// MaxHeaderBytes of decoded fields kept per stream and direction
	// (default 16 KiB); fields beyond are dropped and counted.
	MaxHeaderBytes int
	// MaxBodyBytes kept of each request and response body (default 4 KiB).
	MaxBodyBytes int
	// MaxFrameBuffer is the largest frame payload buffered whole (default
	// 64 KiB); DATA beyond it is skipped after the body prefix, a larger
	// header block loses the direction's HPACK state.
	MaxFrameBuffer int
	// MidStream: the connection is joined after its start (no preface
	// expected): both directions hunt for a frame boundary and decode
	// header blocks without the HPACK state from before.
	MidStream bool
}

func (c Config) withDefaults() Config {
	if c.MaxStreams <= 0 {
		c.MaxStreams = 128
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 4 << 10
	}
	if c.MaxFrameBuffer <= 0 {
		c.MaxFrameBuffer = 64 << 10
	}
	return c
}

// Stats counts what a connection saw and dropped, by reason.
type Stats struct {
	Frames       uint64
	HeaderBlocks uint64
	Exchanges    uint64
	// NotHTTP2: the client's first bytes were not the connection preface;
	// the connection is not decoded.
	NotHTTP2 uint64
	// Drops and losses.
	StreamsDropped    uint64 // streams beyond MaxStreams
	FieldsDropped     uint64 // fields beyond MaxHeaderBytes
	FieldsUndecodable uint64 // fields referring to unknown HPACK state
	BlocksUndecodable uint64 // header blocks HPACK could not decode (state lost)
	FramesSkipped     uint64 // frames larger than MaxFrameBuffer, or cut by a gap
	ResyncBytes       uint64 // bytes skipped to find a frame boundary
	Gaps              uint64 // Gap calls (bytes lost upstream)
	Orphans           uint64 // frames for streams never opened
	TruncatedBodies   uint64
	PushPromises      uint64 // server pushes (not exchanges of the client)
	ProtocolErrors    uint64 // frames that break the framing rules (ignored)
}
