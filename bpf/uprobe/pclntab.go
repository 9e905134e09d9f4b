package uprobe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The pclntab ("pc-line table") survives `-ldflags='-s -w'`: the runtime
// needs it for stack traces, so it names every function of a Go binary
// even when the symbol table and DWARF are gone. This reader understands
// the layout of Go 1.20 and later (magic 0xfffffff1) and checks every
// offset it follows against the table's length.

const pclntabMagic120 = 0xfffffff1

var errPclntab = errors.New("malformed pclntab")

// pclntab is a parsed pcHeader and its function table.
type pclntab struct {
	data    []byte
	ptrSize int
	nfunc   int
	// textStart is the address function entries are relative to: the
	// runtime's moduledata.text (setTextStart), not in the table itself
	// since Go 1.22.
	textStart   uint64
	funcnameOff uint64
	funcnames   []byte // funcnametab
	functab     []byte // nfunc (entryoff, funcoff) pairs and the end entryoff
	funcdata    []byte // the pcln table the funcoffs index
}

// funcRange is a function's code: [Entry, End) in virtual addresses.
type funcRange struct {
	Entry, End uint64
}

func parsePclntab(b []byte) (*pclntab, error) {
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %d bytes", errPclntab, len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != pclntabMagic120 {
		return nil, fmt.Errorf("unsupported pclntab version (magic %#x)", m)
	}
	if b[4] != 0 || b[5] != 0 {
		return nil, fmt.Errorf("%w: header padding", errPclntab)
	}
	ptrSize := int(b[7])
	if ptrSize != 8 {
		return nil, fmt.Errorf("%w: pointer size %d (only 64-bit is supported)", errPclntab, ptrSize)
	}
	const nwords = 8 // nfunc, nfiles, textStart, funcname, cu, filetab, pctab, pcln
	if len(b) < 8+nwords*ptrSize {
		return nil, fmt.Errorf("%w: short header", errPclntab)
	}
	word := func(i int) uint64 { return binary.LittleEndian.Uint64(b[8+i*ptrSize:]) }
	nfunc := word(0)
	funcnameOff, cuOff, pclnOff := word(3), word(4), word(7)
	n := uint64(len(b))
	if funcnameOff > n || cuOff > n || pclnOff > n || funcnameOff > cuOff {
		return nil, fmt.Errorf("%w: table offsets beyond its %d bytes", errPclntab, n)
	}
	// The function table: 2 uint32 per function plus the end entry.
	if nfunc == 0 || nfunc > (n-pclnOff)/8 {
		return nil, fmt.Errorf("%w: %d functions do not fit", errPclntab, nfunc)
	}
	tabLen := (2*nfunc + 1) * 4
	if tabLen > n-pclnOff {
		return nil, fmt.Errorf("%w: function table beyond its end", errPclntab)
	}
	return &pclntab{
		data:        b,
		ptrSize:     ptrSize,
		nfunc:       int(nfunc),
		funcnameOff: funcnameOff,
		funcnames:   b[funcnameOff:cuOff],
		functab:     b[pclnOff : pclnOff+tabLen],
		funcdata:    b[pclnOff:],
	}, nil
}

// entryOff returns the text offset of function i (i == nfunc: the end of
// the last function).
func (t *pclntab) entryOff(i int) uint32 {
	return binary.LittleEndian.Uint32(t.functab[8*i:])
}

// name returns the name of function i, or "" when its record is out of
// bounds.
func (t *pclntab) name(i int) string {
	funcOff := uint64(binary.LittleEndian.Uint32(t.functab[8*i+4:]))
	// _func starts with entryOff uint32, nameOff int32.
	if funcOff+8 > uint64(len(t.funcdata)) {
		return ""
	}
	nameOff := int32(binary.LittleEndian.Uint32(t.funcdata[funcOff+4:]))
	if nameOff < 0 || int(nameOff) >= len(t.funcnames) {
		return ""
	}
	s := t.funcnames[nameOff:]
	end := bytes.IndexByte(s, 0)
	if end < 0 {
		return ""
	}
	return string(s[:end])
}

// lookup finds the named functions. A function whose entries are not in
// increasing order is refused: its end would be wrong, and a probe placed
// from a wrong end could land mid-instruction.
func (t *pclntab) lookup(names ...string) (map[string]funcRange, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	found := make(map[string]funcRange, len(names))
	for i := 0; i < t.nfunc && len(found) < len(want); i++ {
		name := t.name(i)
		if !want[name] {
			continue
		}
		entry, end := t.entryOff(i), t.entryOff(i+1)
		if end <= entry {
			return nil, fmt.Errorf("%w: function %s has no extent", errPclntab, name)
		}
		found[name] = funcRange{Entry: t.textStart + uint64(entry), End: t.textStart + uint64(end)}
	}
	return found, nil
}

// moduledata layout (runtime/symtab.go, 64-bit, Go 1.20 to 1.27): the
// pcHeader pointer, six slices, findfunctab, minpc, maxpc, text.
const (
	moduledataMinPC = 8 + 6*24 + 8
	moduledataText  = moduledataMinPC + 16
)

// setTextStart finds the runtime's moduledata, the one structure that
// points at the pclntab (at pclntabAddr), and takes its text field. The
// record is accepted only if its minpc is the first function's entry and
// the address is in an executable segment: a wrong base would put probes
// in the middle of instructions.
func (t *pclntab) setTextStart(ef *elfFile, pclntabAddr uint64) error {
	var pattern [16]byte
	binary.LittleEndian.PutUint64(pattern[:], pclntabAddr)
	binary.LittleEndian.PutUint64(pattern[8:], pclntabAddr+t.funcnameOff)
	var texts []uint64
	for _, s := range ef.dataSections() {
		b, err := ef.section(s.Name)
		if err != nil {
			return err
		}
		for i := 0; i < len(b); {
			j := bytes.Index(b[i:], pattern[:])
			if j < 0 {
				break
			}
			at := i + j
			i = at + 1
			if at%8 != 0 || at+moduledataText+8 > len(b) {
				continue
			}
			minpc := binary.LittleEndian.Uint64(b[at+moduledataMinPC:])
			text := binary.LittleEndian.Uint64(b[at+moduledataText:])
			if minpc != text+uint64(t.entryOff(0)) {
				continue
			}
			if _, err := ef.fileOffset(text); err != nil {
				continue
			}
			texts = append(texts, text)
		}
	}
	if len(texts) != 1 {
		return fmt.Errorf("%w: found %d module records for the pclntab, want 1", errPclntab, len(texts))
	}
	t.textStart = texts[0]
	return nil
}
