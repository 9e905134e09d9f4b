package postgres

import (
	"bytes"
	"strconv"
	"strings"
)

type phase uint8

const (
	phStart   phase = iota // nothing seen yet
	phStartup              // SSL/GSS negotiation, startup packet, authentication
	phReady                // queries
	phOff                  // encrypted, cancelled or terminated: nothing more is read
)

type pendKind uint8

const (
	pParse pendKind = iota + 1
	pBind
	pDescribe
	pClose
	pSync
	pQuery
	pExecute
	pFunc
)

// pending is one frontend message that the backend will answer.
type pending struct {
	kind pendKind
	op   *Operation // query, execute, function call
	stmt *statement // parse, bind, describe: what a failure is about
	r    Range      // the message's own frontend range
	// done: answered while unaligned; emitted at the ReadyForQuery.
	done bool
	// answered: the operation's Response.Start is set.
	answered bool
}

// statement is what is kept of a prepared statement: its sanitised text.
type statement struct {
	query Query
}

// Conn follows one PostgreSQL connection. Feed it both directions in the
// order the bytes were seen (per direction by stream offset; across
// directions, as they happened); it is not safe for concurrent use.
type Conn struct {
	cfg   Config
	stats Stats
	fe    framer
	be    framer
	phase phase
	// aligned: every backend answer can be paired with pending by order.
	// False from a mid-stream start or a loss until a ReadyForQuery.
	aligned bool
	startup *Operation
	// startupAnswered: the startup's Response.Start is set.
	startupAnswered bool
	// fromStart: the session was seen from its startup packet.
	fromStart bool
	encrypted bool
	pend      []pending
	// cycle is the first frontend message of the extended-protocol
	// exchange that the next Execute belongs to.
	cycle     Range
	cycleOpen bool
	stmts     boundedMap
	portals   boundedMap
	mode      StringMode
	namespace string
	out       []Operation
}

// NewConn starts following a connection. It tells a session seen from its
// first byte (a startup packet) from one first seen mid-stream by itself.
func NewConn(cfg Config) *Conn {
	c := &Conn{cfg: cfg.withDefaults()}
	c.stmts = boundedMap{max: c.cfg.MaxStatements, m: map[string]*statement{}}
	c.portals = boundedMap{max: c.cfg.MaxStatements, m: map[string]*statement{}}
	for _, f := range []*framer{&c.fe, &c.be} {
		f.cfg, f.stats, f.keepFor = &c.cfg, &c.stats, c.keepFor
	}
	c.fe.side, c.be.side = Frontend, Backend
	c.fe.st = fsDetect
	c.fe.onMessage = c.frontend
	c.be.onMessage = c.backend
	c.fe.onLose, c.be.onLose = c.lost, c.lost
	return c
}

// Feed takes the bytes of side's stream range [off, off+len(data)),
// seen at time ts (any clock; it is only carried into the Ranges). An
// offset ahead of the stream is a gap (bytes moved but not seen); one
// behind it is ignored as already seen. It returns the operations that
// completed; data is not retained.
func (c *Conn) Feed(side Side, off, ts uint64, data []byte) []Operation {
	switch side {
	case Frontend:
		if !c.fe.started && c.phase == phStart {
			// The client speaks first: the phase is known once the
			// framer has seen enough to tell.
			c.phase = phStartup
		}
		c.fe.feed(off, ts, data)
	case Backend:
		if !c.be.started {
			c.be.st = fsHeader
			if !c.fromStart {
				// Answers to a session whose start was not seen.
				c.be.st = fsResync
				c.be.scanOff = off
				c.stats.Resyncs++
				c.midStream()
			}
		}
		c.be.feed(off, ts, data)
	}
	out := c.out
	c.out = nil
	return out
}

// lost: a framer lost its framing. The frontend's first bytes being no
// startup packet means the session is seen from mid-stream; unless the
// backend is already aligned (it answered everything before the client's
// first captured byte), answers are paired loosely until a ReadyForQuery.
func (c *Conn) lost(first bool) {
	if c.phase == phOff {
		return
	}
	if first {
		if !c.be.started || !c.aligned {
			c.midStream()
		}
		return
	}
	c.desync()
}

// midStream: the session started before the capture.
func (c *Conn) midStream() {
	if c.phase != phReady {
		c.phase = phReady
		c.mode = StringsUnknown
	}
	c.aligned = false
}

// Close ends the connection: what is still pending is emitted Closed.
func (c *Conn) Close() []Operation {
	if c.startup != nil {
		c.finishStartup(StatusClosed, Range{})
	}
	for _, p := range c.pend {
		if p.op != nil {
			c.emit(p.op, StatusClosed)
		}
	}
	c.pend = nil
	c.phase = phOff
	c.fe.st, c.be.st = fsOff, fsOff
	out := c.out
	c.out = nil
	return out
}

// Skip tells the connection that side's bytes before off were never
// seen and carried nothing that asks for, or answers, an operation it
// holds: a client connection captured only while its process serves a
// request has such holes, between its uses. When that side is between
// messages, its framing restarts at off on a boundary it verifies and
// nothing is counted lost; inside a message, it is an ordinary gap. The
// caller must know that no request is pending (Pending is 0).
func (c *Conn) Skip(side Side, off uint64) {
	f := &c.fe
	if side == Backend {
		f = &c.be
	}
	if !f.started || off <= f.next {
		return
	}
	if f.st != fsHeader || f.hdrN != 0 {
		f.gap(off - f.next)
		return
	}
	f.stats.GapBytes += off - f.next
	f.next = off
	f.st, f.single, f.untyped = fsResync, false, false
	f.dropScan(len(f.scan))
	f.scanOff = off
}

// Stats are this connection's counters.
func (c *Conn) Stats() Stats { return c.stats }

// Encrypted reports that the server accepted SSL or GSS encryption: the
// rest of the socket stream is ciphertext (TLS capture, if any, sees the
// session's plaintext from its StartupMessage on: feed that to a new Conn).
func (c *Conn) Encrypted() bool { return c.encrypted }

// Pending is the number of requests awaiting an answer.
func (c *Conn) Pending() int { return len(c.pend) }

func (c *Conn) keepFor(side Side, t byte, length uint32) keepRule {
	if side == Frontend {
		switch t {
		case 0:
			return keepRule{max: 4 << 10}
		case 'Q':
			return keepRule{max: c.cfg.MaxQueryBytes}
		case 'P':
			return keepRule{max: c.cfg.MaxQueryBytes + 256}
		case 'B':
			// Portal and statement names only: the parameters after
			// them are never copied.
			return keepRule{max: 512, nuls: 2}
		case 'E', 'D', 'C':
			return keepRule{max: 300}
		}
		// 'p' (passwords), 'F', 'd', 'c', 'f', 'S', 'H', 'X': framed only.
		return keepRule{}
	}
	switch t {
	case 'R':
		return keepRule{max: 64}
	case 'E', 'N':
		return keepRule{max: maxSmallBody}
	case 'C':
		return keepRule{max: 128}
	case 'Z':
		return keepRule{max: 1}
	case 'S':
		return keepRule{max: 256}
	}
	// DataRow, RowDescription, CopyData, BackendKeyData, ...: framed only.
	return keepRule{}
}

// frontend handles one framed frontend message.
func (c *Conn) frontend(m *message) {
	if m.typ == 0 {
		c.startupPacket(m)
		return
	}
	if c.phase == phStartup && m.typ == 'p' {
		return
	}
	if c.phase == phOff {
		return
	}
	c.request(m)
}

func (c *Conn) startupPacket(m *message) {
	r := newReader(m.body)
	code := uint32(r.int32())
	c.fromStart = true
	if c.startup == nil {
		c.startup = &Operation{Kind: KindStartup, Request: m.r}
		c.startupAnswered = false
	}
	c.startup.Request.End, c.startup.Request.EndTime = m.r.End, m.r.EndTime
	switch {
	case code == codeSSL || code == codeGSSENC:
		c.be.single = true
		c.fe.untyped = true
	case code == codeCancel:
		op := Operation{Kind: KindCancel, Request: m.r}
		c.startup = nil
		c.emit(&op, StatusOK)
		c.phase = phOff
		c.fe.st = fsOff
	case code>>16 == 3:
		c.phase = phStartup
		c.mode = StringsStandard // until the server says otherwise
		for r.ok && len(r.b) > 1 {
			key := r.cstring()
			val := r.cstring()
			if !r.ok || m.damaged {
				break
			}
			// Only the database is read; the user name is not kept.
			if string(key) == "database" && len(val) <= 63 {
				c.namespace = string(val)
			}
		}
		c.startup.Namespace = c.namespace
	default:
		c.stats.UnexpectedMessages++
	}
}

// request queues a frontend message that the backend will answer.
func (c *Conn) request(m *message) {
	if c.phase == phStartup {
		// Sent before the startup finished (pipelined): it is answered
		// after ReadyForQuery like any other.
		c.phase = phReady
	}
	if !c.cycleOpen {
		switch m.typ {
		case 'P', 'B', 'D', 'E', 'C':
			c.cycle, c.cycleOpen = m.r, true
		}
	}
	r := newReader(m.body)
	switch m.typ {
	case 'Q':
		op := &Operation{Kind: KindQuery, Request: m.r, Namespace: c.namespace, Affected: -1}
		if m.damaged {
			c.stats.DamagedMessages++
		} else {
			text := m.body
			if i := bytes.IndexByte(text, 0); i >= 0 {
				text = text[:i]
			}
			op.Query = c.sanitize(text, m.cut)
		}
		c.push(pending{kind: pQuery, op: op, r: m.r})
	case 'P':
		name := r.cstring()
		named := r.ok
		st := &statement{}
		if m.damaged || !r.ok {
			c.stats.DamagedMessages++
		} else {
			text, cut := r.b, m.cut
			if i := bytes.IndexByte(text, 0); i >= 0 {
				text, cut = text[:i], false
			}
			st.query = c.sanitize(text, cut)
		}
		if named && !m.damaged {
			c.stats.Evicted += c.stmts.put(string(name), st)
		}
		c.push(pending{kind: pParse, stmt: st, r: m.r})
	case 'B':
		portal := r.cstring()
		stmt := r.cstring()
		var st *statement
		if r.ok && !m.damaged {
			st = c.stmts.get(string(stmt))
			c.stats.Evicted += c.portals.put(string(portal), st)
		}
		c.push(pending{kind: pBind, stmt: st, r: m.r})
	case 'D':
		kind := r.byte()
		name := r.cstring()
		var st *statement
		if r.ok && !m.damaged {
			if kind == 'S' {
				st = c.stmts.get(string(name))
			} else {
				st = c.portals.get(string(name))
			}
		}
		c.push(pending{kind: pDescribe, stmt: st, r: m.r})
	case 'E':
		portal := r.cstring()
		req := c.cycle
		req.End, req.EndTime = m.r.End, m.r.EndTime
		op := &Operation{Kind: KindExecute, Request: req, Namespace: c.namespace, Affected: -1}
		var st *statement
		if r.ok && !m.damaged {
			st = c.portals.get(string(portal))
		}
		if st != nil {
			op.Query = st.query
		} else {
			c.stats.UnknownStatements++
		}
		c.cycleOpen = false
		c.push(pending{kind: pExecute, op: op, r: m.r})
	case 'C':
		kind := r.byte()
		name := r.cstring()
		if r.ok && !m.damaged {
			if kind == 'S' {
				c.stmts.del(string(name))
			} else {
				c.portals.del(string(name))
			}
		}
		c.push(pending{kind: pClose, r: m.r})
	case 'S':
		c.cycleOpen = false
		c.push(pending{kind: pSync, r: m.r})
	case 'F':
		op := &Operation{Kind: KindFunctionCall, Request: m.r, Namespace: c.namespace, Affected: -1}
		c.push(pending{kind: pFunc, op: op, r: m.r})
	case 'X':
		c.phase = phOff
	case 'H', 'd', 'c', 'f':
		// Flush and COPY data get no answer of their own.
	default:
		c.stats.UnexpectedMessages++
	}
}

func (c *Conn) sanitize(text []byte, cut bool) Query {
	if cut {
		c.stats.TruncatedQueries++
	}
	q := SanitizeQuery(text, c.mode, cut)
	if q.Unsafe {
		c.stats.UnsafeQueries++
	}
	return q
}

func (c *Conn) push(p pending) {
	if len(c.pend) >= c.cfg.MaxPending {
		c.stats.PendingOverflow += uint64(len(c.pend))
		c.desync()
	}
	c.pend = append(c.pend, p)
}

// desync: the pairing of answers with requests is lost. What is pending
// is emitted Lost; answers are paired loosely until a ReadyForQuery.
func (c *Conn) desync() {
	for _, p := range c.pend {
		if p.op != nil {
			c.emit(p.op, StatusLost)
		}
	}
	c.pend = c.pend[:0]
	c.cycleOpen = false
	c.aligned = false
}

func (c *Conn) emit(op *Operation, st Status) {
	if op.Status == 0 {
		op.Status = st
	}
	if op.Error != nil && op.Status == StatusOK {
		op.Status = StatusError
	}
	if op.Status == StatusLost || op.Status == StatusClosed {
		c.stats.Unpaired++
	}
	c.stats.Operations++
	c.out = append(c.out, *op)
}

// backend handles one framed backend message.
func (c *Conn) backend(m *message) {
	if m.single {
		c.sslAnswer(m)
		return
	}
	switch m.typ {
	case 'S':
		c.parameterStatus(m)
		return
	case 'A', 'K', 'v':
		return
	}
	if c.startup != nil && c.phase == phStartup {
		c.startupAnswer(m)
		return
	}
	if c.phase == phOff {
		return
	}
	if !c.aligned {
		c.looseAnswer(m)
		return
	}
	c.answer(m)
}

func (c *Conn) sslAnswer(m *message) {
	if c.startup == nil {
		return
	}
	c.answerStartup(m)
	switch m.typ {
	case 'S', 'G':
		c.startup.Encrypted = true
		c.encrypted = true
		c.finishStartup(StatusOK, m.r)
		c.phase = phOff
		c.fe.st, c.be.st = fsOff, fsOff
	default: // 'N': the client goes on in plaintext with a new packet
		c.fe.untyped = true
	}
}

func (c *Conn) answerStartup(m *message) {
	if !c.startupAnswered {
		c.startupAnswered = true
		c.startup.Response = m.r
	}
}

func (c *Conn) finishStartup(st Status, end Range) {
	op := c.startup
	c.startup = nil
	if end.End != 0 {
		op.Response.End, op.Response.EndTime = end.End, end.EndTime
	}
	c.emit(op, st)
}

func (c *Conn) startupAnswer(m *message) {
	op := c.startup
	c.answerStartup(m)
	switch m.typ {
	case 'R':
		r := newReader(m.body)
		code := r.int32()
		if !r.ok || m.damaged {
			return
		}
		switch code {
		case 0:
			if op.Auth == "" {
				op.Auth = "trust"
			}
		case 2:
			op.Auth = "kerberos"
		case 3:
			op.Auth = "password"
		case 5:
			op.Auth = "md5"
		case 7:
			op.Auth = "gss"
		case 9:
			op.Auth = "sspi"
		case 10:
			op.Auth = saslMechanism(r)
		}
	case 'E':
		op.Error = errorFields(m)
		c.finishStartup(StatusError, m.r)
		c.phase = phOff
	case 'N':
		op.Notices++
	case 'Z':
		c.finishStartup(StatusOK, m.r)
		c.phase = phReady
		c.aligned = true
	default:
		c.stats.UnexpectedMessages++
	}
}

// saslMechanism names the SASL mechanism the server offers (the client's
// choice is inside its password message, which is never read): the
// first one, in lower case, when it has the shape of a mechanism name.
func saslMechanism(r reader) string {
	mech := r.cstring()
	if !r.ok || len(mech) == 0 || len(mech) > 32 {
		return "sasl"
	}
	for _, ch := range mech {
		if !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return "sasl"
		}
	}
	return strings.ToLower(strings.TrimSuffix(string(mech), "-PLUS"))
}

func (c *Conn) parameterStatus(m *message) {
	if m.damaged {
		return
	}
	r := newReader(m.body)
	name := r.cstring()
	val := r.cstring()
	if !r.ok || string(name) != "standard_conforming_strings" {
		return
	}
	switch string(val) {
	case "on":
		c.mode = StringsStandard
	case "off":
		c.mode = StringsBackslash
	}
}

// target is the operation a backend answer to the head of pending counts
// towards: the head's own, or for Parse, Bind and Describe the Execute
// that follows them before the Sync.
func (c *Conn) target() *pending {
	for i := range c.pend {
		switch c.pend[i].kind {
		case pQuery, pExecute, pFunc:
			return &c.pend[i]
		case pSync:
			return nil
		}
	}
	return nil
}

// answered notes the first answer towards p's operation.
func answered(p *pending, m *message) {
	if p != nil && !p.answered {
		p.answered = true
		p.op.Response.Start, p.op.Response.StartTime = m.r.Start, m.r.StartTime
	}
}

func (c *Conn) pop() {
	c.pend[0] = pending{}
	c.pend = c.pend[1:]
}

// answer pairs a backend message with the head of pending.
func (c *Conn) answer(m *message) {
	if len(c.pend) == 0 {
		switch m.typ {
		case 'E':
			c.stats.AsyncErrors++
		case 'N':
		default:
			c.stats.Orphans++
		}
		return
	}
	head := &c.pend[0]
	answered(c.target(), m)
	ok := true
	switch m.typ {
	case '1':
		ok = head.kind == pParse
		if ok {
			c.pop()
		}
	case '2':
		ok = head.kind == pBind
		if ok {
			c.pop()
		}
	case '3':
		ok = head.kind == pClose
		if ok {
			c.pop()
		}
	case 't':
		ok = head.kind == pDescribe
	case 'T', 'n':
		switch head.kind {
		case pDescribe:
			c.pop()
		case pQuery, pExecute:
			ok = m.typ == 'T'
		default:
			ok = false
		}
	case 'D':
		ok = head.kind == pQuery || head.kind == pExecute
		if ok {
			head.op.Rows++
		}
	case 'C', 'I':
		switch head.kind {
		case pExecute:
			completed(head.op, m)
			c.finish(head.op, StatusOK, m.r)
			c.pop()
		case pQuery:
			completed(head.op, m)
		default:
			ok = false
		}
	case 's':
		ok = head.kind == pExecute
		if ok {
			head.op.Suspended = true
			c.finish(head.op, StatusOK, m.r)
			c.pop()
		}
	case 'E':
		c.failed(m)
	case 'N':
		if p := c.target(); p != nil {
			p.op.Notices++
		}
	case 'Z':
		switch head.kind {
		case pQuery, pFunc:
			c.finish(head.op, StatusOK, m.r)
			c.pop()
		case pSync:
			c.pop()
		default:
			ok = false
		}
	case 'G', 'H', 'W', 'd', 'c':
		ok = head.kind == pQuery || head.kind == pExecute
	case 'V':
		ok = head.kind == pFunc
	default:
		c.stats.UnexpectedMessages++
	}
	if !ok {
		c.stats.Mismatches++
		c.desync()
	}
}

// completed reads a CommandComplete tag (or an EmptyQueryResponse).
func completed(op *Operation, m *message) {
	op.Statements++
	if m.typ != 'C' || m.damaged {
		return
	}
	r := newReader(m.body)
	tag := r.cstring()
	if !r.ok {
		return
	}
	op.Command, op.Affected = parseTag(string(tag))
}

// parseTag splits "INSERT 0 1" into its command and its last count. Tags
// are the server's words and counts; anything else is not kept.
func parseTag(tag string) (string, int64) {
	fields := strings.Fields(tag)
	n := len(fields)
	for n > 0 && isNumber(fields[n-1]) {
		n--
	}
	cmd := strings.Join(fields[:n], " ")
	for _, ch := range cmd {
		if !(ch >= 'A' && ch <= 'Z' || ch == ' ') {
			return "", -1
		}
	}
	if n < len(fields) {
		if v, err := strconv.ParseInt(fields[len(fields)-1], 10, 64); err == nil {
			return cmd, v
		}
	}
	return cmd, -1
}

func isNumber(s string) bool {
	for _, ch := range s {
		if ch < '0' || ch > '9' {
			return false
		}
	}
	return s != ""
}

func (c *Conn) finish(op *Operation, st Status, end Range) {
	op.Response.End, op.Response.EndTime = end.End, end.EndTime
	c.emit(op, st)
}

// failed pairs an ErrorResponse: it answers the head, and the server
// skips every extended-protocol message up to the next Sync.
func (c *Conn) failed(m *message) {
	e := errorFields(m)
	head := &c.pend[0]
	switch head.kind {
	case pQuery, pFunc:
		if head.op.Error == nil {
			head.op.Error = e
		}
		return
	case pSync:
		// A failure at Sync itself (the implicit COMMIT): no Execute is
		// left to carry it.
		op := &Operation{Kind: KindPrepare, Request: head.r, Response: m.r, Namespace: c.namespace, Error: e, Affected: -1}
		c.emit(op, StatusError)
		return
	}
	carried := false
	if !c.executeBeforeSync() {
		// The failure is the head's own: a Parse, Bind, Describe or
		// Close with no Execute to carry it.
		op := &Operation{Kind: KindPrepare, Request: head.r, Response: m.r, Namespace: c.namespace, Error: e, Affected: -1}
		if head.stmt != nil {
			op.Query = head.stmt.query
		}
		c.emit(op, StatusError)
		carried = true
	}
	for len(c.pend) > 0 && c.pend[0].kind != pSync {
		if p := c.pend[0]; p.kind == pExecute {
			if !carried {
				p.op.Error = e
				c.finish(p.op, StatusError, m.r)
				carried = true
			} else {
				c.emit(p.op, StatusAborted)
			}
		}
		c.pop()
	}
}

func (c *Conn) executeBeforeSync() bool {
	for _, p := range c.pend {
		switch p.kind {
		case pExecute:
			return true
		case pSync:
			return false
		}
	}
	return false
}

// errorFields keeps the SQLSTATE and the severity of an ErrorResponse or
// NoticeResponse; its text fields are never read.
func errorFields(m *message) *Error {
	e := &Error{}
	if m.damaged {
		return e
	}
	r := newReader(m.body)
	var localised string
	for r.ok {
		k := r.byte()
		if k == 0 || !r.ok {
			break
		}
		v := r.cstring()
		switch k {
		case 'C':
			if ValidSQLSTATE(string(v)) {
				e.Code = string(v)
			}
		case 'V':
			if severity(v) {
				e.Severity = string(v)
			}
		case 'S':
			if severity(v) {
				localised = string(v)
			}
		}
	}
	if e.Severity == "" {
		e.Severity = localised
	}
	return e
}

func severity(v []byte) bool {
	switch string(v) {
	case "ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", "DEBUG", "INFO", "LOG":
		return true
	}
	return false
}

// looseAnswer pairs answers after a loss or a mid-stream start, when the
// order of answers against requests is not known: results go to the
// oldest unanswered operation, and the first ReadyForQuery realigns.
func (c *Conn) looseAnswer(m *message) {
	var p *pending
	for i := range c.pend {
		if c.pend[i].op != nil && !c.pend[i].done {
			p = &c.pend[i]
			break
		}
	}
	if p != nil && m.typ != 'Z' {
		answered(p, m)
	}
	switch m.typ {
	case 'D':
		if p != nil {
			p.op.Rows++
		}
	case 'C', 'I', 's':
		if p != nil {
			completed(p.op, m)
			p.op.Suspended = m.typ == 's'
			p.op.Response.End, p.op.Response.EndTime = m.r.End, m.r.EndTime
			if p.kind == pExecute {
				p.done = true
			}
		}
	case 'E':
		if p != nil {
			if p.op.Error == nil {
				p.op.Error = errorFields(m)
			}
			p.op.Response.End, p.op.Response.EndTime = m.r.End, m.r.EndTime
			if p.kind == pExecute {
				p.done = true
			}
		} else {
			c.stats.AsyncErrors++
		}
	case 'Z':
		for len(c.pend) > 0 {
			q := c.pend[0]
			c.pop()
			if q.op != nil {
				q.op.Resynced = true
				st := StatusOK
				if !q.done && q.kind == pExecute {
					st = StatusLost
				}
				if q.kind != pExecute {
					q.op.Response.End, q.op.Response.EndTime = m.r.End, m.r.EndTime
				}
				c.emit(q.op, st)
			}
			if q.kind == pSync || q.kind == pQuery || q.kind == pFunc {
				break
			}
		}
		c.aligned = true
	}
}

// boundedMap keeps at most max named statements or portals, forgetting
// the oldest. The unnamed ones ("") are always kept.
type boundedMap struct {
	max   int
	m     map[string]*statement
	order []string
}

func (b *boundedMap) get(name string) *statement { return b.m[name] }

// put stores st under name and returns how many entries it evicted.
func (b *boundedMap) put(name string, st *statement) uint64 {
	if _, ok := b.m[name]; ok || name == "" {
		b.m[name] = st
		return 0
	}
	var evicted uint64
	for len(b.order) >= b.max {
		delete(b.m, b.order[0])
		b.order = b.order[1:]
		evicted++
	}
	b.m[name] = st
	b.order = append(b.order, name)
	return evicted
}

func (b *boundedMap) del(name string) {
	if _, ok := b.m[name]; !ok {
		return
	}
	delete(b.m, name)
	for i, n := range b.order {
		if n == name {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
}
