// Package postgres follows one PostgreSQL connection (frontend/backend
// protocol 3) from its two byte streams, fed incrementally in any split,
// and gives the completed operations on it: the startup and
// authentication exchange, each simple query, each extended-protocol
// execution, with what OpenTelemetry's database conventions ask for
// (db.operation.name, db.collection.name, db.query.summary, a query text
// with its literals replaced, db.response.status_code = SQLSTATE,
// error.type) and the stream offsets and times of its request and
// response, so the caller can attach kernel timestamps.
//
// What it never keeps or gives, whatever the traffic:
//   - password messages ('p': cleartext, MD5, SASL and GSS responses) are
//     framed and skipped, their bytes never copied; the server's SASL
//     challenges, MD5 salt and BackendKeyData secret likewise;
//   - the user name of the StartupMessage (and session_authorization):
//     nothing in the database span conventions needs it, so it is never
//     copied out of the parse buffer; db.namespace is the database
//     parameter only, never the user name the server would default it to;
//   - Bind parameter values, DataRow values, COPY data, function call
//     arguments and results, notification payloads;
//   - literal values in query text: SanitizeQuery replaces them;
//   - the text fields of ErrorResponse and NoticeResponse (message,
//     detail, hint, where, ...), which quote values ("Key (email)=(x)
//     already exists"): only the SQLSTATE code, its condition and class
//     names and the severity are kept.
//
// The bytes of a message the parser reads (at most MaxQueryBytes of a
// query, 1 KiB of the small ones) sit in a buffer that is wiped as soon as
// the message is parsed; bytes scanned for a boundary while resyncing (at
// most MaxResyncBytes) are wiped when discarded.
//
// Memory is bounded by Config; every byte or message that could not be
// followed is counted in Stats. A connection first seen mid-stream, or
// one that lost bytes where a message header was, resyncs on message
// boundaries it can verify and marks what it pairs after that Resynced.
// It knows the PostgreSQL protocol, not auth, and never logs.
package postgres

// Side is one direction of a PostgreSQL connection.
type Side uint8

const (
	// Frontend bytes go from the client to the server.
	Frontend Side = iota + 1
	// Backend bytes go from the server to the client.
	Backend
)

func (s Side) String() string {
	switch s {
	case Frontend:
		return "frontend"
	case Backend:
		return "backend"
	}
	return "unknown"
}

// Config bounds what one connection keeps. Zero fields take the defaults.
type Config struct {
	// MaxQueryBytes of a query text kept for sanitising (default 8 KiB);
	// the rest is framed and counted, and the query marked Truncated.
	MaxQueryBytes int
	// MaxPending requests awaiting their response (default 256). Past it
	// the connection drops its pending requests, counted, and resyncs.
	MaxPending int
	// MaxStatements named prepared statements and portals remembered
	// (default 256 each); the oldest is forgotten, counted.
	MaxStatements int
	// MaxResyncBytes scanned for a message boundary before the scanned
	// bytes are discarded, counted (default 64 KiB).
	MaxResyncBytes int
}

const (
	defaultMaxQuery      = 8 << 10
	defaultMaxPending    = 256
	defaultMaxStatements = 256
	defaultMaxResync     = 64 << 10
	// maxSmallBody is what is kept of the messages read for a few fields
	// (tags, error fields, parameter status, statement names).
	maxSmallBody = 1 << 10
	// maxMessage is the largest length a header may claim and still be
	// believed while resyncing: PostgreSQL itself caps most messages at
	// 1 GB, but a resync candidate that large is almost surely not one.
	maxResyncMessage = 1 << 20
)

func (c Config) withDefaults() Config {
	if c.MaxQueryBytes <= 0 {
		c.MaxQueryBytes = defaultMaxQuery
	}
	if c.MaxPending <= 0 {
		c.MaxPending = defaultMaxPending
	}
	if c.MaxStatements <= 0 {
		c.MaxStatements = defaultMaxStatements
	}
	if c.MaxResyncBytes <= 0 {
		c.MaxResyncBytes = defaultMaxResync
	}
	return c
}

// Kind is what an operation was.
type Kind uint8

const (
	// KindStartup is the start of the session: StartupMessage, the
	// authentication exchange, up to ReadyForQuery or the error that
	// refused it.
	KindStartup Kind = iota + 1
	// KindQuery is one simple-protocol Query message (one or more
	// statements) up to its ReadyForQuery.
	KindQuery
	// KindExecute is one extended-protocol Execute of a portal, up to its
	// CommandComplete, PortalSuspended or error.
	KindExecute
	// KindPrepare is a Parse, Bind, Describe or Close that failed with no
	// Execute after it before the Sync: the error would be lost otherwise.
	KindPrepare
	// KindFunctionCall is a FunctionCall message.
	KindFunctionCall
	// KindCancel is a CancelRequest (a connection of its own).
	KindCancel
)

func (k Kind) String() string {
	switch k {
	case KindStartup:
		return "startup"
	case KindQuery:
		return "query"
	case KindExecute:
		return "execute"
	case KindPrepare:
		return "prepare"
	case KindFunctionCall:
		return "function_call"
	case KindCancel:
		return "cancel"
	}
	return "unknown"
}

// Status is how an operation ended.
type Status uint8

const (
	// StatusOK: it completed without an error.
	StatusOK Status = iota + 1
	// StatusError: the server answered ErrorResponse (Error is set).
	StatusError
	// StatusAborted: an earlier message of the same Sync group failed,
	// so the server skipped this one.
	StatusAborted
	// StatusLost: bytes were lost (or the pairing broke) before its
	// response was seen.
	StatusLost
	// StatusClosed: the connection ended (Close) before its response.
	StatusClosed
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusError:
		return "error"
	case StatusAborted:
		return "aborted"
	case StatusLost:
		return "lost"
	case StatusClosed:
		return "closed"
	}
	return "unknown"
}

// Error is what is kept of an ErrorResponse.
type Error struct {
	// Code is the SQLSTATE ('C'), "" when it was missing or malformed.
	Code string
	// Severity is the non-localised severity ('V': ERROR, FATAL, PANIC),
	// else the localised one ('S') when it is one of those words.
	Severity string
}

// Name is the SQLSTATE's condition name, Class its class name.
func (e Error) Name() string  { return SQLSTATEName(e.Code) }
func (e Error) Class() string { return SQLSTATEClass(e.Code) }

// Range is where a request or a response lies in its stream, and the
// times of the chunks that held its first and last byte (as given to
// Feed).
type Range struct {
	Start, End         uint64 // stream offsets: [Start, End)
	StartTime, EndTime uint64
}

// Operation is one completed request/response cycle.
type Operation struct {
	Kind   Kind
	Status Status
	// Request is the frontend range: from the first message of the cycle
	// (Query; Parse or Bind before an Execute) to the end of the message
	// that asked for it (Query, Execute). Response is the backend range:
	// from the first answer to the message that completed it
	// (ReadyForQuery for a Query; CommandComplete, PortalSuspended or
	// ErrorResponse for an Execute). A zero Response means none was seen.
	Request, Response Range

	// Query is the sanitised text and what is derived from it; its Text
	// is empty when the statement was prepared before the capture began
	// (or was forgotten at MaxStatements).
	Query Query
	// Command is the command of the last CommandComplete tag ("SELECT",
	// "INSERT", "CREATE TABLE"): the tag without its counts, which are
	// never values. A fallback for db.operation.name.
	Command string
	// Rows is the number of DataRow messages (db.response.returned_rows).
	Rows int64
	// Affected is the count of the last CommandComplete tag (rows
	// selected, inserted, updated, ...), -1 when the tag has none.
	Affected int64
	// Statements completed (CommandComplete or EmptyQueryResponse).
	Statements int
	// Suspended: the Execute stopped at its row limit (PortalSuspended).
	Suspended bool
	// Notices is how many NoticeResponses arrived during the operation.
	Notices int
	// Error is set when Status is StatusError.
	Error *Error
	// Namespace is the database named in the StartupMessage
	// (db.namespace), "" when the session was seen from mid-stream or the
	// client named none.
	Namespace string
	// Auth is how the server asked the client to authenticate (Startup
	// only): trust, password, md5, scram-sha-256, gss, sspi, kerberos.
	Auth string
	// Encrypted (Startup only): the server accepted SSLRequest or
	// GSSENCRequest; the rest of the connection is not readable here.
	Encrypted bool
	// Resynced: the request and response were paired after the
	// connection resynced, by order alone.
	Resynced bool
}

// Stats counts what one connection saw and everything it could not
// follow, by reason.
type Stats struct {
	FrontendMessages, BackendMessages uint64
	Operations                        uint64
	// GapBytes were never fed: the offset jumped.
	GapBytes uint64
	// OverlapBytes were fed twice (an offset behind the stream); ignored.
	OverlapBytes uint64
	// DamagedMessages had a gap in the part kept for parsing: framed but
	// not read.
	DamagedMessages uint64
	// Resyncs: framing was lost and a boundary found again.
	Resyncs uint64
	// ResyncBytes were discarded while looking for a boundary.
	ResyncBytes uint64
	// TruncatedQueries were longer than MaxQueryBytes.
	TruncatedQueries uint64
	// UnsafeQueries: the text was dropped because backslash handling was
	// unknown and mattered.
	UnsafeQueries uint64
	// PendingOverflow: requests dropped because MaxPending were waiting.
	PendingOverflow uint64
	// Evicted prepared statements or portals (MaxStatements).
	Evicted uint64
	// UnknownStatements: an Execute of a portal or statement whose Parse
	// was not seen.
	UnknownStatements uint64
	// Mismatches: a backend message did not fit the pending requests (the
	// pairing broke; the pending operations are emitted Lost).
	Mismatches uint64
	// Orphans: backend answers with nothing pending.
	Orphans uint64
	// Unpaired: operations whose answers never came or were not
	// attributable (emitted Lost or Closed).
	Unpaired uint64
	// AsyncErrors: ErrorResponses with no request pending (a FATAL at
	// shutdown or idle timeout).
	AsyncErrors uint64
	// EncryptedBytes followed an accepted SSLRequest or GSSENCRequest.
	EncryptedBytes uint64
	// UnexpectedMessages: messages of a type not valid at that point.
	UnexpectedMessages uint64
}
