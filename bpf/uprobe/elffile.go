package uprobe

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
)

// Limits on what is read from an executable: the agent reads arbitrary
// files on a node and must stay bounded on each.
const (
	maxSectionRead = 256 << 20 // a section read whole (pclntab, .rodata)
	maxFuncBytes   = 1 << 20   // one function's code disassembled
)

var errNotELF = errors.New("not an ELF file")

// elfFile is an ELF file opened for reading, with debug/elf's panics on
// malformed input turned into errors.
type elfFile struct {
	r    io.ReaderAt
	c    io.Closer // nil when parsed from memory
	elf  *elf.File
	size int64
}

func openELF(path string) (*elfFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	ef, err := newELF(f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	ef.c = f
	return ef, nil
}

func newELF(r io.ReaderAt, size int64) (ef *elfFile, err error) {
	defer recoverTo(&err, "parse elf")
	e, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errNotELF, err)
	}
	if e.Class != elf.ELFCLASS64 || e.Data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%w: only 64-bit little-endian files are supported", errNotELF)
	}
	return &elfFile{r: r, elf: e, size: size}, nil
}

func (e *elfFile) Close() error {
	if e.c == nil {
		return nil
	}
	return e.c.Close()
}

// recoverTo turns a panic in a parser of untrusted input into an error.
func recoverTo(err *error, what string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: malformed input (%v)", what, r)
	}
}

// section returns the named section's bytes, bounded by maxSectionRead.
func (e *elfFile) section(name string) (b []byte, err error) {
	defer recoverTo(&err, "read section "+name)
	s := e.elf.Section(name)
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, fmt.Errorf("no section %s", name)
	}
	if s.Size > maxSectionRead || int64(s.Offset) > e.size || s.Size > uint64(e.size)-s.Offset {
		return nil, fmt.Errorf("section %s: size %d out of bounds", name, s.Size)
	}
	if s.Size == 0 {
		// An empty section (go1.25's .gosymtab): reading it at 0 is EOF.
		return nil, nil
	}
	b = make([]byte, s.Size)
	if _, err := s.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read section %s: %w", name, err)
	}
	return b, nil
}

// fileOffset converts a virtual address inside an executable PT_LOAD
// segment to the file offset a uprobe is attached at.
func (e *elfFile) fileOffset(vaddr uint64) (uint64, error) {
	for _, p := range e.elf.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 {
			continue
		}
		if vaddr >= p.Vaddr && vaddr-p.Vaddr < p.Filesz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no executable segment", vaddr)
}

// readCode reads n bytes of code at virtual address vaddr.
func (e *elfFile) readCode(vaddr, n uint64) ([]byte, error) {
	if n > maxFuncBytes {
		return nil, fmt.Errorf("code range of %d bytes at %#x too long", n, vaddr)
	}
	off, err := e.fileOffset(vaddr)
	if err != nil {
		return nil, err
	}
	end, err := e.fileOffset(vaddr + n - 1)
	if err != nil || end != off+n-1 {
		return nil, fmt.Errorf("code range %#x+%d leaves its segment", vaddr, n)
	}
	b := make([]byte, n)
	if _, err := e.r.ReadAt(b, int64(off)); err != nil {
		return nil, fmt.Errorf("read code at %#x: %w", vaddr, err)
	}
	return b, nil
}

// symbols returns the static and dynamic symbols; a file without either
// yields an empty list.
func (e *elfFile) symbols() (syms, dyn []elf.Symbol, err error) {
	defer recoverTo(&err, "read symbols")
	syms, err = e.elf.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, nil, fmt.Errorf("read symbol table: %w", err)
	}
	dyn, err = e.elf.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, nil, fmt.Errorf("read dynamic symbols: %w", err)
	}
	return syms, dyn, nil
}

// dataSections are the sections with the program's initialised data
// (allocated, not code, with file contents), where the Go linker puts
// itabs and the module record. The pclntab itself holds no addresses.
func (e *elfFile) dataSections() []*elf.Section {
	var out []*elf.Section
	for _, s := range e.elf.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 {
			continue
		}
		if s.Name == ".gopclntab" || s.Size > maxSectionRead {
			continue
		}
		out = append(out, s)
	}
	return out
}
