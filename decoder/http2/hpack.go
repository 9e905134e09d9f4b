package http2

import (
	"errors"

	"golang.org/x/net/http2/hpack"
)

// A direction decodes header blocks exactly, with hpack.Decoder, while it
// has followed the connection from its start. When it has not (joined
// mid-stream, a gap, an undecodable block) the dynamic table holds
// entries it never saw, and partialDecoder takes over: it decodes static
// references and literals, and the entries it saw inserted since, and
// counts every field that refers to anything older, never guessing it.

// The HPACK static table (RFC 7541, Appendix A), index 1 first.
var staticTable = [...]HeaderField{
	{":authority", ""}, {":method", "GET"}, {":method", "POST"}, {":path", "/"},
	{":path", "/index.html"}, {":scheme", "http"}, {":scheme", "https"}, {":status", "200"},
	{":status", "204"}, {":status", "206"}, {":status", "304"}, {":status", "400"},
	{":status", "404"}, {":status", "500"}, {"accept-charset", ""}, {"accept-encoding", "gzip, deflate"},
	{"accept-language", ""}, {"accept-ranges", ""}, {"accept", ""}, {"access-control-allow-origin", ""},
	{"age", ""}, {"allow", ""}, {"authorization", ""}, {"cache-control", ""},
	{"content-disposition", ""}, {"content-encoding", ""}, {"content-language", ""}, {"content-length", ""},
	{"content-location", ""}, {"content-range", ""}, {"content-type", ""}, {"cookie", ""},
	{"date", ""}, {"etag", ""}, {"expect", ""}, {"expires", ""},
	{"from", ""}, {"host", ""}, {"if-match", ""}, {"if-modified-since", ""},
	{"if-none-match", ""}, {"if-range", ""}, {"if-unmodified-since", ""}, {"last-modified", ""},
	{"link", ""}, {"location", ""}, {"max-forwards", ""}, {"proxy-authenticate", ""},
	{"proxy-authorization", ""}, {"range", ""}, {"referer", ""}, {"refresh", ""},
	{"retry-after", ""}, {"server", ""}, {"set-cookie", ""}, {"strict-transport-security", ""},
	{"transfer-encoding", ""}, {"user-agent", ""}, {"vary", ""}, {"via", ""},
	{"www-authenticate", ""},
}

var errHPACK = errors.New("malformed header block")

// maxPartialTable bounds the entries a partial decoder remembers (HPACK
// sizes: name + value + 32).
const maxPartialTable = 64 << 10

// partialDecoder knows the newest entries of a dynamic table whose older
// entries it never saw.
type partialDecoder struct {
	known     []HeaderField // newest first: index 62 is known[0]
	knownSize int
}

// reset forgets every entry: after a block it could not follow, it does
// not know how many entries were inserted, so no position is known.
func (d *partialDecoder) reset() { d.known, d.knownSize = nil, 0 }

func (d *partialDecoder) insert(f HeaderField) {
	d.known = append([]HeaderField{f}, d.known...)
	d.knownSize += len(f.Name) + len(f.Value) + 32
	for d.knownSize > maxPartialTable && len(d.known) > 0 {
		last := d.known[len(d.known)-1]
		d.knownSize -= len(last.Name) + len(last.Value) + 32
		d.known = d.known[:len(d.known)-1]
	}
}

// lookup returns entry i, or false when it is older than what is known.
func (d *partialDecoder) lookup(i uint64) (HeaderField, bool) {
	switch {
	case i == 0:
		return HeaderField{}, false
	case i <= uint64(len(staticTable)):
		return staticTable[i-1], true
	case i-uint64(len(staticTable))-1 < uint64(len(d.known)):
		f := d.known[i-uint64(len(staticTable))-1]
		return f, f.Name != unknownName
	}
	return HeaderField{}, false
}

// decode parses a whole header block, calling emit for each field it can
// decode; it returns how many fields it could not. An error means the
// block is malformed: the caller resets the table.
func (d *partialDecoder) decode(b []byte, emit func(HeaderField)) (unknown int, err error) {
	for len(b) > 0 {
		c := b[0]
		switch {
		case c&0x80 != 0: // indexed field
			var i uint64
			if i, b, err = readInt(7, b); err != nil {
				return unknown, err
			}
			if i == 0 {
				return unknown, errHPACK
			}
			if f, ok := d.lookup(i); ok {
				emit(f)
			} else {
				unknown++
			}
		case c&0xe0 == 0x20: // dynamic table size update
			var size uint64
			if size, b, err = readInt(5, b); err != nil {
				return unknown, err
			}
			if size == 0 {
				// The table is emptied: from here on it is all known.
				d.reset()
			}
		default: // literal: with indexing (01), without (0000), never (0001)
			n, insert := uint8(4), false
			if c&0xc0 == 0x40 {
				n, insert = 6, true
			}
			var i uint64
			if i, b, err = readInt(n, b); err != nil {
				return unknown, err
			}
			var f HeaderField
			known := true
			if i == 0 {
				if f.Name, b, err = readString(b); err != nil {
					return unknown, err
				}
			} else {
				var nf HeaderField
				nf, known = d.lookup(i)
				f.Name = nf.Name
			}
			if f.Value, b, err = readString(b); err != nil {
				return unknown, err
			}
			if insert {
				if !known {
					// The entry exists, but not under a name we know:
					// every position behind it is still right, this one
					// is not. Keep its place with an entry never emitted.
					d.insert(HeaderField{Name: unknownName, Value: f.Value})
				} else {
					d.insert(f)
				}
			}
			if known {
				emit(f)
			} else {
				unknown++
			}
		}
	}
	return unknown, nil
}

// unknownName marks a table entry whose name is not known; it is never a
// valid header name, and lookup treats the entry as unknown.
const unknownName = "\x00UNKNOWN"

// readInt reads an HPACK integer with an n-bit prefix (RFC 7541 5.1).
func readInt(n uint8, b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, b, errHPACK
	}
	mask := uint64(1)<<n - 1
	v := uint64(b[0]) & mask
	b = b[1:]
	if v < mask {
		return v, b, nil
	}
	for shift := uint(0); ; shift += 7 {
		if len(b) == 0 || shift > 56 {
			return 0, b, errHPACK
		}
		c := b[0]
		b = b[1:]
		v += uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, b, nil
		}
	}
}

// maxStringLen bounds one HPACK string.
const maxStringLen = 64 << 10

// readString reads an HPACK string literal, Huffman-decoded if flagged.
func readString(b []byte) (string, []byte, error) {
	if len(b) == 0 {
		return "", b, errHPACK
	}
	huff := b[0]&0x80 != 0
	n, rest, err := readInt(7, b)
	if err != nil {
		return "", rest, err
	}
	if n > uint64(len(rest)) || n > maxStringLen {
		return "", rest, errHPACK
	}
	raw := rest[:n]
	rest = rest[n:]
	if !huff {
		return string(raw), rest, nil
	}
	s, err := hpack.HuffmanDecodeToString(raw)
	if err != nil {
		return "", rest, errHPACK
	}
	return s, rest, nil
}
