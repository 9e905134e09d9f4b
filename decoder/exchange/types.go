// Package exchange is the vocabulary the decoder's layers share
// (connections, requests, responses, exchanges, counters) and the
// decoder's last layer: a connection's requests queued in arrival order,
// each response paired with the request it answers, finished exchanges
// handed to a Sink. Stream parsers (http1, later http2) call into it; it
// calls nothing above it.
package exchange

import (
	"net/netip"

	"github.com/authprobe/authprobe/decoder/postgres"
)

// Direction of bytes as seen by the traced process.
type Direction uint8

const (
	// Ingress bytes were read by the process (requests on a server
	// connection, responses on a client connection).
	Ingress Direction = iota + 1
	// Egress bytes were written by the process.
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
	RoleUnknown Role = iota // accepted by the traced process, or predates the agent: a server connection
	RoleClient              // the traced process connected it: its own calls
)

// ConnInfo describes a connection's endpoints as seen by the traced process.
type ConnInfo struct {
	Key   ConnKey
	Peer  netip.AddrPort // the socket peer (the client, for a server)
	Local netip.AddrPort
	Role  Role
	// TLS: the bytes are a TLS library's plaintext (the connection is
	// HTTPS), not the socket's.
	TLS bool
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
	Target string // request-target as sent (origin, absolute, authority or asterisk form)
	Proto  string // as sent: HTTP/1.1, HTTP/1.0, HTTP/1.7, HTTP/0.9 for a simple request
	Header Header
	// ContentLength is the declared length the decoder framed the body
	// with, -1 when absent or chunked.
	ContentLength int64
	Chunked       bool
	// Body is the captured (de-chunked) start of the body.
	Body []byte
	// BodyTruncated: the body is longer than what was captured.
	BodyTruncated bool
	// HeadTruncated: the head was longer than the decoder keeps or was cut
	// by the capture; Header holds its first complete lines (framing still
	// follows the whole head when it was seen).
	HeadTruncated bool
	// Ambiguous names what in the request peers may read differently:
	// the kind of thing request smuggling and parser-confusion attempts use.
	Ambiguous Ambiguity
}

// Ambiguity flags a request that servers and proxies may read
// differently. Where they disagree on framing, the decoder ends the body
// at the earliest point any of the readings allows, so that no request a
// server could see hides inside what the decoder took for a body.
type Ambiguity uint8

const (
	// AmbiguousCLTE: Content-Length together with Transfer-Encoding.
	AmbiguousCLTE Ambiguity = 1 << iota
	// AmbiguousCL: more than one Content-Length (equal or not).
	AmbiguousCL
	// AmbiguousTE: a Transfer-Encoding other than one field whose value is
	// exactly "chunked", or one on an HTTP/1.0 request.
	AmbiguousTE
	// AmbiguousCLValue: a Content-Length not every peer reads alike: a
	// sign, underscores, a list, surrounding odd whitespace, or no number.
	AmbiguousCLValue
	// AmbiguousHeader: a header line some servers reject and others
	// skip or stop at (no colon, a space or non-ASCII byte in the name, a
	// continuation line first); Header holds the fields before it, as
	// Python's http.server does.
	AmbiguousHeader
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
	HeadTruncated bool
}

// EndReason says why an exchange ended.
type EndReason uint8

const (
	EndResponse EndReason = iota // a final response was seen
	EndClosed                    // the connection closed first
	EndTimeout                   // no response within the timeout
	EndLost                      // capture was lost; the response cannot be known
)

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

// Exchange is one request and, when seen, its final response: HTTP on a
// server or client connection, or one database operation on a client
// connection.
type Exchange struct {
	Conn ConnInfo
	// ID names the exchange in this decoder from its request head on
	// (Opened has the same ID); 0 for a database operation.
	ID uint64
	// PID and TID read the request head (wrote it, on a client
	// connection): the exchange belongs to that process. Task is the task
	// that did (the goroutine in a Go process, else TID); Busy, on a client
	// connection, the requests the kernel skipped on that task and had not
	// seen answered then.
	PID, TID uint32
	Task     uint64
	Busy     uint32
	Request  *Request
	Response *Response // nil when no final response was seen
	// Database is the operation of a PostgreSQL client connection
	// (Request and Response are nil then).
	Database *postgres.Operation
	End      EndReason
	// Kernel monotonic timestamps (ns): the first and last chunk of the
	// request, and of the response (0 when there is none).
	RequestStart, RequestEnd   uint64
	ResponseStart, ResponseEnd uint64
	// Lost is set when captured bytes were lost next to this exchange, so
	// that its body is incomplete or its pairing with the response is a
	// best guess (the response was matched across lost bytes).
	Lost bool
}

// Meta says who did the I/O of a stretch of bytes and when it completed.
type Meta struct {
	T        uint64 // kernel monotonic ns
	PID, TID uint32
	Task     uint64 // the goroutine in a Go process, else TID
	Busy     uint32 // client I/O: requests the kernel skipped on Task, unanswered
	Other    uint64 // client I/O: the other direction's stream offset then
}

// Kind is what a response parser needs to know about the request a
// response answers to frame it (RFC 9112 §6.3).
type Kind uint8

const (
	KindOther   Kind = iota
	KindHead         // HEAD: the response has no body whatever it says
	KindConnect      // CONNECT: a 2xx response turns the connection into a tunnel
	KindSimple       // HTTP/0.9 simple request: the response is raw bytes up to the close
)

// HoleCause says why stream bytes reached a parser as a length without
// data.
type HoleCause uint8

const (
	// HoleLost: events were lost (a sequence gap).
	HoleLost HoleCause = iota
	// HoleBudget: the episode's capture budget was exhausted.
	HoleBudget
	// HoleUnreadable: the syscall's buffer could not be read.
	HoleUnreadable
	// HoleTruncated: the capture of one event was cut short (Len beyond
	// the copied bytes).
	HoleTruncated
	// HoleSkipped: the kernel proved whole requests non-auth and skipped
	// them (ingress); a request boundary follows.
	HoleSkipped
	// HoleFiltered: the kernel did not send these bytes on purpose: egress
	// while it filtered the connection, ingress a body it was told to skip.
	HoleFiltered
	// HoleOutside: a client connection's I/O that the kernel did not send
	// because the task doing it served no captured request; the next
	// chunk may start anywhere in a message.
	HoleOutside
)

// Loss is the reason a request attempt was lost: it will not appear as
// an Exchange.
type Loss uint8

const (
	LossSeqGap     Loss = iota // events lost in the kernel or ring buffer
	LossBudget                 // beyond the episode's capture budget
	LossUnreadable             // I/O the kernel could not read (io_uring, sendfile, fault)
	LossTruncated              // the capture of an event was cut short inside a head
	LossEvicted                // the connection was evicted at MaxConnections
	LossQueueFull              // beyond MaxPending or the pending byte bounds
	LossParseError             // a head that failed to parse
	LossDesync                 // the kernel's boundary disagreed with the decoder's
	NumLoss
)

var lossNames = [NumLoss]string{"seq_gap", "budget", "unreadable", "truncated", "evicted", "queue_full", "parse_error", "desync"}

// String is the reason's metric label.
func (l Loss) String() string {
	if l < NumLoss {
		return lossNames[l]
	}
	return "unknown"
}

// HoleLoss maps a hole that lost track of a stream to the loss it stands for.
func HoleLoss(c HoleCause) Loss {
	switch c {
	case HoleLost:
		return LossSeqGap
	case HoleBudget:
		return LossBudget
	case HoleUnreadable:
		return LossUnreadable
	case HoleTruncated:
		return LossTruncated
	}
	return LossDesync
}

// Stats counts what the decoder saw and dropped. Every drop has one
// reason; LostAttempts is in request units, the other drops in the units
// they name.
type Stats struct {
	Chunks    uint64
	Exchanges uint64
	// Uninteresting requests were only held as placeholders for pairing
	// (Config.Interesting said no): no body kept, no exchange.
	Uninteresting uint64
	// KernelSkipped requests the kernel proved non-auth (from the chunks'
	// Skipped; informational, the kernel counts them too).
	KernelSkipped uint64
	// LostAttempts are request attempts that will not appear as an
	// Exchange, by reason: at least one per hole where a request could
	// have been, exactly one per parsed request beyond the queue bounds.
	LostAttempts [NumLoss]uint64
	// SeqGaps are events the kernel sent that never arrived (sequence
	// numbers skipped); the same events the kernel counts as ring buffer
	// drops, so never add the two.
	SeqGaps uint64
	// Reordered chunks arrived ahead of their turn and were held until the
	// missing ones came.
	Reordered uint64
	// LateChunks arrived after their place was given up as lost, or
	// repeated bytes already seen; they are dropped.
	LateChunks uint64
	// OffChunks arrived for a connection the decoder stopped following
	// (not HTTP, a tunnel) before the kernel's verdict took effect.
	OffChunks uint64
	// NotHTTP connections turned off because their bytes are not HTTP/1
	// (binary, a TLS record, the HTTP/2 preface).
	NotHTTP uint64
	// Tunnels: connections that left HTTP (101, CONNECT 2xx).
	Tunnels uint64
	// ParseErrors: heads that failed to parse.
	ParseErrors uint64
	// Desyncs: the kernel said a request starts where the decoder was
	// inside a message, or an offset moved where nothing explains it.
	Desyncs uint64
	// Resyncs: times a direction lost its place and looked for the next
	// message start.
	Resyncs uint64
	// Evicted connections (MaxConnections).
	Evicted uint64
	// ClientConns by the protocol their first write showed (HTTP/1,
	// PostgreSQL), and ClientUnknown: client connections turned off
	// because their first write was not seen or was neither.
	ClientHTTP, ClientPostgres, ClientUnknown uint64
	// DatabaseOps: operations of PostgreSQL client connections given;
	// DatabaseUnplaced: those whose request's task was not known (its
	// chunk was no longer remembered).
	DatabaseOps, DatabaseUnplaced uint64
	// Orphans: final responses paired with no request.
	Orphans         uint64
	TruncatedBodies uint64
	// Verdicts queued for the kernel, by kind.
	VerdictsResume, VerdictsSkip, VerdictsOff uint64
	// ResumesHeld: times a connection was quiescent after an interesting
	// request and its resume was held back (Config.HoldBytes).
	ResumesHeld uint64
}

// Lost counts n lost request attempts for reason.
func (s *Stats) Lost(reason Loss, n uint64) { s.LostAttempts[reason] += n }
