package postgres

import "encoding/binary"

// Startup-phase request codes (the int32 after the length of an untyped
// message).
const (
	codeProtocol3 = 3 << 16 // 3.0; 3.x minor versions share the major
	codeCancel    = 80877102
	codeSSL       = 80877103
	codeGSSENC    = 80877104
)

// Message types the two sides may send after the startup packet.
const (
	frontendTypes = "QPBEDCSHXFdcfp"
	backendTypes  = "RSKZTDCEINnts123AGHWdcVv"
)

// message is one framed message. body is the kept prefix of its body; it
// is only valid during the callback and is wiped after it.
type message struct {
	typ    byte // 0: an untyped startup-phase message; for single, the answer byte
	single bool // the one-byte answer to SSLRequest or GSSENCRequest
	// length is the body length (the wire length less its own 4 bytes).
	length  uint32
	body    []byte
	cut     bool // body is longer than what was kept
	damaged bool // a gap fell in the kept part: do not read body
	r       Range
}

type frameState uint8

const (
	fsDetect frameState = iota // the frontend's first bytes: startup packet or mid-stream
	fsHeader
	fsBody
	fsResync
	fsOff // encrypted: nothing more is read
)

// keepRule says how much of a message body the parser reads: at most max
// bytes, stopping after nuls NUL bytes when nuls > 0 (so that a Bind's
// parameters after its two names are never copied).
type keepRule struct {
	max  int
	nuls int
}

// framer cuts one direction's byte stream into messages.
type framer struct {
	side    Side
	cfg     *Config
	stats   *Stats
	started bool
	next    uint64 // the stream offset expected next
	st      frameState
	// untyped: the next message is a startup-phase packet (no type byte).
	untyped bool
	// single: the next byte is a one-byte SSL/GSS answer.
	single bool
	hdr    [8]byte
	hdrN   int
	cur    message
	rule   keepRule
	got    uint32 // body bytes consumed of cur
	nuls   int    // NULs kept so far of cur
	keep   bool   // still keeping body bytes of cur
	buf    []byte
	// scan holds bytes while looking for a boundary, from stream offset
	// scanOff.
	scan    []byte
	scanOff uint64
	// keepFor and onMessage are the parser's: which part of a message it
	// reads, and the message once framed.
	keepFor   func(Side, byte, uint32) keepRule
	onMessage func(*message)
	// onLose is told when the framing is lost (first: the stream's first
	// bytes were no startup packet), before any later message.
	onLose func(first bool)
}

// feed takes the bytes of the stream range [off, off+len(data)).
func (f *framer) feed(off uint64, ts uint64, data []byte) {
	if !f.started {
		f.started, f.next = true, off
	}
	if off < f.next {
		skip := f.next - off
		if skip >= uint64(len(data)) {
			f.stats.OverlapBytes += uint64(len(data))
			return
		}
		f.stats.OverlapBytes += skip
		data, off = data[skip:], f.next
	}
	if off > f.next {
		f.gap(off - f.next)
	}
	f.consume(ts, data)
}

// gap skips n stream bytes that were never seen.
func (f *framer) gap(n uint64) {
	f.stats.GapBytes += n
	f.next += n
	switch f.st {
	case fsOff:
		f.stats.EncryptedBytes += n
	case fsBody:
		rest := uint64(f.cur.length - f.got)
		if f.keep {
			f.cur.damaged, f.keep = true, false
		}
		if n < rest {
			f.got += uint32(n)
			return
		}
		f.got = f.cur.length
		f.cur.r.End = f.next - (n - rest)
		f.cur.r.EndTime = f.cur.r.StartTime
		f.finish()
		if n > rest {
			f.lose()
		}
	case fsResync:
		f.dropScan(len(f.scan))
		f.scanOff = f.next
	default:
		f.lose()
	}
}

// lose gives up the framing: from here on, bytes are scanned for a
// boundary.
func (f *framer) lose() {
	f.st, f.hdrN, f.single, f.untyped = fsResync, 0, false, false
	f.dropScan(len(f.scan))
	f.scanOff = f.next
	f.stats.Resyncs++
	f.onLose(false)
}

func (f *framer) dropScan(n int) {
	f.stats.ResyncBytes += uint64(n)
	clear(f.scan[:n])
	f.scan = append(f.scan[:0], f.scan[n:]...)
	f.scanOff += uint64(n)
}

func (f *framer) consume(ts uint64, data []byte) {
	for len(data) > 0 {
		switch f.st {
		case fsOff:
			f.stats.EncryptedBytes += uint64(len(data))
			f.next += uint64(len(data))
			return
		case fsResync:
			// At most MaxResyncBytes are held, whatever the chunk size.
			if len(f.scan) >= f.cfg.MaxResyncBytes {
				f.dropScan(len(f.scan) - f.cfg.MaxResyncBytes/2)
			}
			n := min(len(data), f.cfg.MaxResyncBytes-len(f.scan))
			f.scan = append(f.scan, data[:n]...)
			f.next += uint64(n)
			data = data[n:]
			f.resync(ts)
		case fsDetect:
			n := copy(f.hdr[f.hdrN:8], data)
			f.hdrN += n
			data = data[n:]
			f.next += uint64(n)
			if f.hdrN < 8 {
				continue
			}
			head := f.hdr
			f.hdrN = 0
			f.next -= 8
			if looksLikeStartup(head[:]) {
				f.st, f.untyped = fsHeader, true
			} else {
				f.st = fsResync
				f.scanOff = f.next
				f.stats.Resyncs++
				f.onLose(true)
			}
			f.consume(ts, head[:])
		case fsHeader:
			data = f.header(ts, data)
		case fsBody:
			data = f.body(ts, data)
		}
	}
}

// looksLikeStartup: a length and one of the startup-phase codes.
func looksLikeStartup(b []byte) bool {
	n := binary.BigEndian.Uint32(b)
	code := binary.BigEndian.Uint32(b[4:])
	switch {
	case code == codeSSL || code == codeGSSENC:
		return n == 8
	case code == codeCancel:
		return n == 16
	case code>>16 == 3:
		return n >= 8 && n <= 10000
	}
	return false
}

func (f *framer) header(ts uint64, data []byte) []byte {
	if f.hdrN == 0 {
		f.cur = message{r: Range{Start: f.next, StartTime: ts}}
	}
	if f.single {
		f.single = false
		// 'S' or 'N' (or 'G' for GSS); an old server may answer an
		// ErrorResponse instead, framed as usual.
		if c := data[0]; c != 'S' && c != 'N' && c != 'G' {
			return f.header(ts, data)
		}
		f.cur.typ, f.cur.single = data[0], true
		f.next++
		f.cur.r.End, f.cur.r.EndTime = f.next, ts
		f.onMessage(&f.cur)
		return data[1:]
	}
	need := 5
	if f.untyped {
		need = 4
	}
	n := copy(f.hdr[f.hdrN:need], data)
	f.hdrN += n
	f.next += uint64(n)
	data = data[n:]
	if f.hdrN < need {
		return data
	}
	f.hdrN = 0
	var length uint32
	if f.untyped {
		f.untyped = false
		length = binary.BigEndian.Uint32(f.hdr[:4])
		if length < 8 {
			f.lose()
			return data
		}
	} else {
		f.cur.typ = f.hdr[0]
		length = binary.BigEndian.Uint32(f.hdr[1:5])
		if length < 4 || length > 1<<30 || !validType(f.side, f.cur.typ) {
			f.lose()
			return data
		}
	}
	f.cur.length = length - 4
	f.rule = f.keepFor(f.side, f.cur.typ, f.cur.length)
	f.got, f.nuls = 0, 0
	f.keep = f.rule.max > 0
	f.buf = f.buf[:0]
	f.st = fsBody
	if f.cur.length == 0 {
		f.cur.r.End, f.cur.r.EndTime = f.next, ts
		f.finish()
	}
	return data
}

func (f *framer) body(ts uint64, data []byte) []byte {
	take := min(uint64(f.cur.length-f.got), uint64(len(data)))
	part := data[:take]
	if f.keep {
		room := f.rule.max - len(f.buf)
		kept := part
		if len(kept) > room {
			kept = kept[:room]
		}
		if f.rule.nuls > 0 {
			for i, c := range kept {
				if c == 0 {
					f.nuls++
					if f.nuls == f.rule.nuls {
						kept = kept[:i+1]
						break
					}
				}
			}
		}
		f.buf = append(f.buf, kept...)
		if len(f.buf) >= f.rule.max || (f.rule.nuls > 0 && f.nuls >= f.rule.nuls) {
			f.keep = false
		}
	}
	f.got += uint32(take)
	f.next += take
	if f.got == f.cur.length {
		f.cur.r.End, f.cur.r.EndTime = f.next, ts
		f.finish()
	}
	return data[take:]
}

// finish hands the framed message over and wipes what was kept of it.
func (f *framer) finish() {
	f.cur.body = f.buf
	f.cur.cut = uint32(len(f.buf)) < f.cur.length
	if f.side == Frontend {
		f.stats.FrontendMessages++
	} else {
		f.stats.BackendMessages++
	}
	f.st = fsHeader
	f.onMessage(&f.cur)
	clear(f.buf)
	f.buf = f.buf[:0]
	f.cur.body = nil
}

// resync looks for a verifiable message boundary in the scanned bytes.
func (f *framer) resync(ts uint64) {
	for p := 0; p < len(f.scan); p++ {
		switch verifyCandidate(f.side, f.scan[p:]) {
		case candReject:
			continue
		case candMore:
			f.dropScan(p)
			return
		case candAccept:
			f.dropScan(p)
			at := f.scanOff
			rest := append([]byte(nil), f.scan...)
			f.dropScanQuiet()
			f.st = fsHeader
			f.next = at
			f.consume(ts, rest)
			clear(rest)
			return
		}
	}
	f.dropScan(len(f.scan))
}

// dropScanQuiet empties the scan without counting: its bytes are being
// framed after all.
func (f *framer) dropScanQuiet() {
	f.scanOff += uint64(len(f.scan))
	clear(f.scan)
	f.scan = f.scan[:0]
}

func validType(side Side, t byte) bool {
	set := backendTypes
	if side == Frontend {
		set = frontendTypes
	}
	for i := 0; i < len(set); i++ {
		if set[i] == t {
			return true
		}
	}
	return false
}

type candidate uint8

const (
	candReject candidate = iota
	candMore
	candAccept
)

// maxCandidate is the longest message a resync waits for to verify it.
const maxCandidate = 16 << 10

// verifyCandidate says whether b starts with a message of side that can
// be verified from its content and is followed by something that looks
// like a message header (or the end of what was fed). Messages whose
// content cannot be checked (CopyData, passwords, function calls) are
// never boundaries.
func verifyCandidate(side Side, b []byte) candidate { return verifyAt(side, b, 0) }

// maxWeak is how many 4-byte messages in a row may vouch for each other.
const maxWeak = 3

func verifyAt(side Side, b []byte, weak int) candidate {
	if len(b) < 5 {
		if validType(side, b[0]) {
			return candMore
		}
		return candReject
	}
	t := b[0]
	n := binary.BigEndian.Uint32(b[1:5])
	if !validType(side, t) || n < 4 || n > maxResyncMessage {
		return candReject
	}
	total := 1 + int(n)
	if len(b) < total {
		if total <= maxCandidate {
			return candMore
		}
		return candReject
	}
	strong, ok := verifyBody(side, t, b[5:total])
	if !ok {
		return candReject
	}
	rest := b[total:]
	switch {
	case len(rest) == 0:
		if strong {
			return candAccept
		}
		return candMore
	case len(rest) < 5:
		return candMore
	}
	nt, nn := rest[0], binary.BigEndian.Uint32(rest[1:5])
	if !validType(side, nt) || nn < 4 || nn > maxResyncMessage {
		return candReject
	}
	if strong {
		return candAccept
	}
	// A 4-byte message is too easy to meet by chance: the next one must
	// verify too (and a run of them ends in one with content).
	if weak >= maxWeak {
		return candReject
	}
	if next := verifyAt(side, rest, weak+1); next == candAccept {
		return candAccept
	} else if next == candMore {
		return candMore
	}
	return candReject
}

// verifyBody checks a message body's structure; strong is false for
// messages with no content to check.
func verifyBody(side Side, t byte, body []byte) (strong, ok bool) {
	r := newReader(body)
	if side == Frontend {
		switch t {
		case 'Q':
			r.cstring()
			return true, r.done()
		case 'P':
			r.cstring()
			r.cstring()
			r.skip(4 * r.count16())
			return true, r.done()
		case 'B':
			r.cstring()
			r.cstring()
			r.skip(2 * r.count16())
			for i, np := 0, r.count16(); i < np && r.ok; i++ {
				if l := r.int32(); l >= 0 {
					r.skip(int(l))
				} else if l != -1 {
					r.ok = false
				}
			}
			r.skip(2 * r.count16())
			return true, r.done()
		case 'E':
			r.cstring()
			r.int32()
			return true, r.done()
		case 'D', 'C':
			k := r.byte()
			r.cstring()
			return true, r.done() && (k == 'S' || k == 'P')
		case 'S', 'H', 'X', 'c':
			return false, len(body) == 0
		}
		return false, false
	}
	switch t {
	case 'Z':
		k := r.byte()
		return true, r.done() && (k == 'I' || k == 'T' || k == 'E')
	case 'C':
		s := r.cstring()
		return true, r.done() && len(s) > 0 && s[0] >= 'A' && s[0] <= 'Z'
	case 'E', 'N':
		fields := 0
		for r.ok {
			k := r.byte()
			if k == 0 {
				break
			}
			if !(k >= 'A' && k <= 'Z' || k >= 'a' && k <= 'z') {
				return true, false
			}
			r.cstring()
			fields++
		}
		return true, r.done() && fields > 0
	case 'T':
		for i, nf := 0, r.count16(); i < nf && r.ok; i++ {
			r.cstring()
			r.skip(18)
		}
		return true, r.done()
	case 'D':
		for i, nf := 0, r.count16(); i < nf && r.ok; i++ {
			if l := r.int32(); l >= 0 {
				r.skip(int(l))
			} else if l != -1 {
				r.ok = false
			}
		}
		return true, r.done()
	case 'S':
		r.cstring()
		r.cstring()
		return true, r.done()
	case 't':
		r.skip(4 * r.count16())
		return true, r.done()
	case 'A':
		r.int32()
		r.cstring()
		r.cstring()
		return true, r.done()
	case 'G', 'H', 'W':
		r.byte()
		r.skip(2 * r.count16())
		return true, r.done()
	case 'K':
		return false, len(body) == 8
	case '1', '2', '3', 'n', 'I', 's', 'c':
		return false, len(body) == 0
	}
	return false, false
}

// reader reads the fields of a message body; any overrun clears ok.
type reader struct {
	b  []byte
	ok bool
}

func newReader(b []byte) reader { return reader{b: b, ok: true} }

func (r *reader) byte() byte {
	if !r.ok || len(r.b) < 1 {
		r.ok = false
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) int32() int32 {
	if !r.ok || len(r.b) < 4 {
		r.ok = false
		return 0
	}
	v := int32(binary.BigEndian.Uint32(r.b))
	r.b = r.b[4:]
	return v
}

// count16 is a non-negative int16 count.
func (r *reader) count16() int {
	if !r.ok || len(r.b) < 2 {
		r.ok = false
		return 0
	}
	v := int16(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	if v < 0 {
		r.ok = false
		return 0
	}
	return int(v)
}

func (r *reader) skip(n int) {
	if !r.ok || n < 0 || len(r.b) < n {
		r.ok = false
		return
	}
	r.b = r.b[n:]
}

// cstring is a NUL-terminated string (without the NUL), aliasing the body.
func (r *reader) cstring() []byte {
	if !r.ok {
		return nil
	}
	for i, c := range r.b {
		if c == 0 {
			s := r.b[:i]
			r.b = r.b[i+1:]
			return s
		}
	}
	r.ok = false
	return nil
}

// done: everything read, nothing left over.
func (r *reader) done() bool { return r.ok && len(r.b) == 0 }
