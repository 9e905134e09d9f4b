// Package decoder turns the chunks the kernel captured on many connections
// into HTTP exchanges, and tells the kernel what it need not capture.
//
// It is built in layers that call one way (README.md):
//
//	Decoder     connection table (by socket), per-direction ordering of
//	            chunks by sequence number, holes, verdicts for the kernel
//	  http1     one stream parser per protocol: heads, framing, bodies
//	    exchange   requests queued per connection, responses paired in
//	               order, finished exchanges; the shared vocabulary
//
// It knows HTTP, not auth (Config.Interesting is how the pipeline says
// which requests matter), and never logs.
package decoder

import "github.com/authprobe/authprobe/decoder/exchange"

// The vocabulary is shared with the layers below; these are its names for
// the decoder's users.
type (
	Direction   = exchange.Direction
	ConnKey     = exchange.ConnKey
	Role        = exchange.Role
	ConnInfo    = exchange.ConnInfo
	HeaderField = exchange.HeaderField
	Header      = exchange.Header
	Request     = exchange.Request
	Response    = exchange.Response
	Ambiguity   = exchange.Ambiguity
	EndReason   = exchange.EndReason
	Exchange    = exchange.Exchange
	Stats       = exchange.Stats
	Loss        = exchange.Loss
	Opened      = exchange.Opened
	Closed      = exchange.Closed
)

const (
	Ingress = exchange.Ingress
	Egress  = exchange.Egress

	RoleUnknown = exchange.RoleUnknown
	RoleClient  = exchange.RoleClient

	AmbiguousCLTE    = exchange.AmbiguousCLTE
	AmbiguousCL      = exchange.AmbiguousCL
	AmbiguousTE      = exchange.AmbiguousTE
	AmbiguousCLValue = exchange.AmbiguousCLValue
	AmbiguousHeader  = exchange.AmbiguousHeader

	EndResponse = exchange.EndResponse
	EndClosed   = exchange.EndClosed
	EndTimeout  = exchange.EndTimeout
	EndLost     = exchange.EndLost

	LossSeqGap     = exchange.LossSeqGap
	LossBudget     = exchange.LossBudget
	LossUnreadable = exchange.LossUnreadable
	LossTruncated  = exchange.LossTruncated
	LossEvicted    = exchange.LossEvicted
	LossQueueFull  = exchange.LossQueueFull
	LossParseError = exchange.LossParseError
	LossDesync     = exchange.LossDesync
	NumLoss        = exchange.NumLoss
)

// Unhex is the value of a hexadecimal digit; ok is false for other bytes.
func Unhex(c byte) (v byte, ok bool) { return exchange.Unhex(c) }

// ChunkFlags qualify a chunk (the kernel's event_flags).
type ChunkFlags uint8

const (
	// Boundary: Data starts at a request boundary the kernel knows (the
	// connection's first byte, or right after requests it skipped).
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
	// read its request (wrote it, on a client connection). Task is the
	// kernel's task: the goroutine in a Go process, else TID; Busy, on a
	// client connection, the requests the kernel skipped on Task and had
	// not seen answered.
	PID, TID uint32
	Task     uint64
	Busy     uint32
	// Other, on a client connection, is the other direction's stream
	// offset when this I/O was done: the bytes of it before Other moved
	// before this chunk's.
	Other uint64
	Dir   Direction
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
	// prefix of them (len(Data) <= Len). Data is not kept after Feed.
	Len  uint32
	Data []byte
	// Flags, Skipped and Unanswered are the kernel's notes (see
	// bpf.ConnEvent): Skipped whole requests were proven non-auth and
	// skipped right before this chunk; Unanswered of their responses the
	// kernel suppresses itself (informational).
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
	// VerdictSkip: ingress bytes before SkipTo are a body nobody keeps: do
	// not copy them.
	VerdictSkip VerdictKind = 1 << 1
	// VerdictOff: stop capturing the connection (not HTTP, tunnel).
	VerdictOff VerdictKind = 1 << 2
)

// Verdict is one decision for the kernel about a connection.
type Verdict struct {
	Key           ConnKey
	Kind          VerdictKind
	InOff, OutOff uint64 // VerdictResume
	SkipTo        uint64 // VerdictSkip
}

// Config bounds the decoder's memory and time. Zero fields take the
// Default values.
type Config struct {
	// MaxRequestBody and MaxResponseBody bytes are kept per body; a
	// negative value keeps none.
	MaxRequestBody  int
	MaxResponseBody int
	// MaxConnections tracked at once; the least recently used one is
	// evicted (its requests end with EndLost).
	MaxConnections int
	// MaxHeadBytes of a request or response head are kept; a longer head
	// keeps its first lines and its framing is still followed.
	MaxHeadBytes int
	// ResponseTimeout (ns) after which Expire ends a request without
	// response (EndTimeout); a connection idle for twice as long is
	// dropped.
	ResponseTimeout uint64
	// MaxPending requests may wait for their responses on one connection
	// (pipelining), holding at most MaxPendingBytes; MaxTotalPendingBytes
	// bounds all connections together. A request beyond them is counted
	// lost (LossQueueFull) and only its place is kept.
	MaxPending           int
	MaxPendingBytes      int
	MaxTotalPendingBytes int
	// ReorderWindow chunks (ReorderBytes of data) of one direction are held
	// while an earlier one is missing; beyond that, or when the gap is still
	// there at the second Expire, the missing chunks count as lost.
	ReorderWindow int
	ReorderBytes  int
	// Interesting says whether a request (its method and raw target) is
	// worth an exchange; nil means every request is. Others only hold their
	// place for pairing: no body kept, no exchange, their bodies skipped
	// in the kernel. method and target are valid only during the call.
	Interesting func(method, target string) bool
	// HoldBytes: a capture episode whose last request was interesting is
	// not resumed (the kernel keeps sending the connection) until HoldBytes
	// of ingress went by since the episode began, or since the last
	// resume sent in it (a stale one renews the kernel's budget: a held
	// stream of auth requests gets one every HoldBytes). A connection that
	// carried an auth request likely carries more (a stuffing run, an API
	// client): each resume is a syscall, and the next such request would
	// start an episode again. The first uninteresting request resumes as
	// before. Keep it below the kernel's per-episode copy budget
	// (burst_bytes); 0 never holds. A held connection idle for HoldIdle
	// ns (0: DefaultHoldIdle) is resumed by Expire: the decoder may
	// forget an idle connection, and a connection it forgot must come
	// back to the kernel's filter, whose next episode starts at a
	// boundary.
	HoldBytes uint64
	HoldIdle  uint64
	// HoldSkipped: an episode that began right after more than
	// HoldSkipped requests the kernel proved non-auth and skipped (the
	// Skipped of its first chunk) is not held: the connection mostly
	// carries other traffic, and its next request is more likely one of
	// those than another auth request. Resumed at once, it goes back to
	// the kernel's filter before that request instead of after it (the
	// kernel wakes the reader for the episode's first response). 0:
	// DefaultHoldSkipped.
	HoldSkipped uint32
}

// Defaults applied by New for zero Config fields.
const (
	DefaultMaxRequestBody       = 4096
	DefaultMaxResponseBody      = 1024
	DefaultMaxConnections       = 65536
	DefaultMaxHeadBytes         = 16384
	DefaultResponseTimeout      = 30_000_000_000 // 30 s in ns
	DefaultMaxPending           = 1024           // 500 pipelined logins and then some
	DefaultMaxPendingBytes      = 4 << 20
	DefaultMaxTotalPendingBytes = 32 << 20
	DefaultReorderWindow        = 8
	DefaultReorderBytes         = 64 << 10
	DefaultHoldIdle             = 1_000_000_000 // 1 s in ns
	DefaultHoldSkipped          = 8
)
