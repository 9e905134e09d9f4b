package http1

import (
	"bytes"

	"github.com/authprobe/authprobe/decoder/exchange"
)

type chunkState uint8

const (
	csSize         chunkState = iota // hex digits of a chunk size
	csExt                            // chunk extension, up to LF
	csSizeLF                         // LF after the size line's CR
	csData                           // chunk data
	csDataCR                         // CRLF after chunk data
	csDataLF                         //
	csTrailerStart                   // start of a trailer line or the final empty line
	csTrailer                        // trailer field, up to LF
	csTrailerLF                      // LF of the final empty line
)

// maxChunkMeta bounds the chunk extensions and trailers of a body: they
// are skipped, never kept.
const maxChunkMeta = 16384

// framer follows a body's framing without buffering it.
type framer struct {
	mode bodyMode
	n    int64 // bytes left in the body (length) or the current chunk (chunked)
	// limit: a chunked body with a Content-Length too ends after that
	// many more bytes at the latest; -1 when there is none.
	limit  int64
	cs     chunkState
	digits int // hex digits of the current chunk size
	meta   int // bytes of chunk extensions or trailers
}

// absorb takes n uncaptured bytes as body bytes when the framing can
// account for them without seeing them.
func (f *framer) absorb(n uint64) bool {
	switch f.mode {
	case bodyLength:
		if n > uint64(f.n) {
			return false
		}
		f.n -= int64(n)
		return true
	case bodyClose:
		return true
	case bodyChunked:
		if f.cs != csData || n > uint64(f.n) || (f.limit >= 0 && n > uint64(f.limit)) {
			return false
		}
		if f.n -= int64(n); f.n == 0 {
			f.cs = csDataCR
		}
		if f.limit >= 0 {
			f.limit -= int64(n)
		}
		return true
	}
	return false
}

// done reports that a body ended by absorbed bytes.
func (f *framer) done() bool {
	return (f.mode == bodyLength && f.n == 0) || (f.mode == bodyChunked && f.limit == 0)
}

// chunked de-chunks b incrementally (RFC 9112 §7.1): chunk boundaries may
// fall anywhere relative to chunks of capture. It returns how many bytes
// belonged to the body, whether it ended, and false when the framing is
// broken.
func (c *Conn) chunked(s *stream, dir exchange.Direction, b []byte, m exchange.Meta) (int, bool, bool) {
	f := &s.body
	i := 0
	for i < len(b) {
		ch := b[i]
		switch f.cs {
		case csSize:
			if v, ok := exchange.Unhex(ch); ok {
				if f.digits >= 15 {
					return i, false, false
				}
				f.n = f.n<<4 | int64(v)
				f.digits++
				i++
				continue
			}
			if f.digits == 0 {
				return i, false, false
			}
			i++
			switch ch {
			case ';', ' ', '\t':
				f.cs = csExt
			case '\r':
				f.cs = csSizeLF
			case '\n':
				f.endSizeLine()
			default:
				return i, false, false
			}
		case csExt, csTrailer:
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				f.meta += len(b) - i
				i = len(b)
			} else {
				f.meta += j
				i += j + 1
				if f.cs == csExt {
					f.endSizeLine()
				} else {
					f.cs = csTrailerStart
				}
			}
			if f.meta > maxChunkMeta {
				return i, false, false
			}
		case csSizeLF:
			if ch != '\n' {
				return i, false, false
			}
			i++
			f.endSizeLine()
		case csData:
			n := min(int64(len(b)-i), f.n)
			c.keep(s, dir, b[i:i+int(n)], m)
			i += int(n)
			if f.n -= n; f.n == 0 {
				f.cs = csDataCR
			}
		case csDataCR:
			i++
			switch ch {
			case '\r':
				f.cs = csDataLF
			case '\n':
				f.cs = csSize
			default:
				return i, false, false
			}
		case csDataLF:
			if ch != '\n' {
				return i, false, false
			}
			i++
			f.cs = csSize
		case csTrailerStart:
			switch ch {
			case '\r':
				i++
				f.cs = csTrailerLF
			case '\n':
				return i + 1, true, true
			default:
				f.cs = csTrailer
			}
		case csTrailerLF:
			if ch != '\n' {
				return i, false, false
			}
			return i + 1, true, true
		}
	}
	return i, false, true
}

// endSizeLine moves from a chunk-size line to the chunk data, or to the
// trailers after the last (zero-size) chunk.
func (f *framer) endSizeLine() {
	if f.n == 0 {
		f.cs = csTrailerStart
	} else {
		f.cs = csData
	}
	f.digits, f.meta = 0, 0
}

// maxFramingLine bytes of each line beyond MaxHeadBytes are looked at:
// enough for any framing field a server would accept as such.
const maxFramingLine = 128

// overflow reads the lines of a head beyond MaxHeadBytes for its framing
// only, without keeping them.
type overflow struct {
	f framing
	// stopped: a line the fields end at was seen; later ones are not read.
	stopped bool
	http10  bool
	interim bool // a 1xx response head
	code    int  // a response's status
	inLine  bool // still inside the start line
	line    [maxFramingLine]byte
	n       int  // bytes of the current line in line
	long    bool // the current line is longer than line
}

// start takes the part of the head that was kept: what follows its last
// line end is the start of the current line.
func (o *overflow) start(head []byte) {
	i := bytes.LastIndexByte(head, '\n')
	if i < 0 {
		o.inLine = true
		return
	}
	o.add(head[i+1:])
}

func (o *overflow) add(b []byte) {
	n := copy(o.line[o.n:], b)
	o.n += n
	o.long = o.long || n < len(b)
}

// feed reads head bytes, and returns how many of b belonged to the head
// and whether it ended.
func (o *overflow) feed(b []byte) (int, bool) {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			o.add(b[i:])
			return len(b), false
		}
		o.add(b[i : i+j])
		if o.endLine() {
			return i + j + 1, true
		}
		i += j + 1
	}
	return len(b), false
}

// endLine reads the completed current line; it reports the empty line that
// ends the head.
func (o *overflow) endLine() bool {
	line, long := o.line[:o.n], o.long
	o.n, o.long = 0, false
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	switch {
	case o.inLine:
		o.inLine = false
	case len(line) == 0 && !long:
		return true
	case o.stopped:
	default:
		o.stopped = o.f.line(line)
		if long && !isContinuation(line) {
			o.f.folded() // a framing value cut here is not read as a number
		}
	}
	return false
}
