package uprobe

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Go function names the crypto/tls probes need.
const (
	fnTLSRead  = "crypto/tls.(*Conn).Read"
	fnTLSWrite = "crypto/tls.(*Conn).Write"
	// itabTCPConn is the symbol of the interface table that makes a
	// *net.TCPConn a net.Conn; a tls.Conn whose conn field holds it wraps
	// a TCP socket.
	itabTCPConn = "go:itab.*net.TCPConn,net.Conn"
)

// netConnMethods are net.Conn's methods in the order of an itab's fun
// array (sorted by name), and tcpConnMethods the functions that fill it
// for *net.TCPConn. The sequence of their addresses finds the itab in a
// binary without a symbol table.
var netConnMethods = [...]string{"Close", "LocalAddr", "Read", "RemoteAddr", "SetDeadline", "SetReadDeadline", "SetWriteDeadline", "Write"}

// itabFunOffset is where an itab's method pointers start on 64-bit
// targets (internal/abi.ITab: Inter, Type, Hash uint32 + padding).
const itabFunOffset = 24

// ErrUnsupportedGo is wrapped by the error for a Go binary whose version
// or architecture authprobe has no struct layout for: it is not probed.
var ErrUnsupportedGo = errors.New("unsupported Go binary")

// ErrNotGo is returned for an executable that is not a Go binary.
var ErrNotGo = errors.New("not a Go binary")

// GoTarget is what the crypto/tls probes need from one Go executable.
// Addresses are link-time virtual addresses; for a position-independent
// executable (PIE) the kernel side adds the process's load bias
// (LoadBias).
type GoTarget struct {
	Version string // Go toolchain, "go1.26.8"
	Arch    string // GOARCH: amd64 or arm64
	// Stripped: no symbol table; functions came from the pclntab.
	Stripped bool
	PIE      bool
	Read     GoFunc // crypto/tls.(*Conn).Read
	Write    GoFunc // crypto/tls.(*Conn).Write
	Offsets  GoOffsets
	ABI      RegABI
}

// GoFunc is a function to probe at its entry and at each RET.
type GoFunc struct {
	Name string
	Addr uint64 // virtual address of the entry
	Size uint64
	// Offset is the entry's file offset (link.UprobeOptions.Address).
	Offset uint64
	// Returns are the file offsets of every RET instruction.
	Returns []uint64
}

// GoOffsets lead from a *tls.Conn to the socket's file descriptor:
//
//	c := *(tls.Conn)                     receiver
//	itab, data := c+ConnConn, c+ConnConn+8   the net.Conn interface
//	itab == TCPConnItab                  it is a *net.TCPConn
//	fd := *(data + TCPConnFD)            *net.netFD
//	sysfd := *(fd + NetFDPfd + PollFDSysfd)
//
// and give the goroutine id for keying calls in flight.
type GoOffsets struct {
	// Source says where the offsets came from: "dwarf" or "table go1.N".
	Source      string
	ConnConn    uint64 // crypto/tls.Conn.conn
	TCPConnFD   uint64 // net.TCPConn.conn.fd (net.conn embedded)
	NetFDPfd    uint64 // net.netFD.pfd
	PollFDSysfd uint64 // internal/poll.FD.Sysfd
	GoID        uint64 // runtime.g.goid
	// TCPConnItab is the address of the (*net.TCPConn, net.Conn) itab.
	TCPConnItab uint64
}

// goLayout is one Go release's struct offsets on 64-bit targets, for
// binaries without DWARF. Each entry is checked against DWARF of a real
// binary of that release by the tests.
type goLayout struct {
	ConnConn, TCPConnFD, NetFDPfd, PollFDSysfd, GoID uint64
}

var goLayouts = map[string]goLayout{
	"go1.26": {ConnConn: 0, TCPConnFD: 0, NetFDPfd: 0, PollFDSysfd: 16, GoID: 152},
	"go1.27": {ConnConn: 0, TCPConnFD: 0, NetFDPfd: 0, PollFDSysfd: 16, GoID: 152},
}

// SupportedGoVersions lists the Go releases whose binaries are probed
// without DWARF.
func SupportedGoVersions() []string {
	return []string{"go1.26", "go1.27"}
}

// tableOffsets returns the struct offsets of a Go release authprobe knows,
// for binaries without DWARF.
func tableOffsets(version string) (GoOffsets, error) {
	release, err := goRelease(version)
	if err != nil {
		return GoOffsets{}, err
	}
	l, ok := goLayouts[release]
	if !ok {
		return GoOffsets{}, fmt.Errorf("%w: %s has no DWARF and authprobe knows the struct layouts of %s only",
			ErrUnsupportedGo, version, strings.Join(SupportedGoVersions(), ", "))
	}
	return GoOffsets{Source: "table " + release, ConnConn: l.ConnConn, TCPConnFD: l.TCPConnFD,
		NetFDPfd: l.NetFDPfd, PollFDSysfd: l.PollFDSysfd, GoID: l.GoID}, nil
}

// goRelease reduces a toolchain version ("go1.26.8", "go1.27rc1",
// "go1.26.8 X:nodwarf5") to its release ("go1.26").
func goRelease(v string) (string, error) {
	v, _, _ = strings.Cut(v, " ")
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return "", fmt.Errorf("%w: toolchain %q", ErrUnsupportedGo, v)
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	minor, err := strconv.Atoi(rest[:i])
	if err != nil {
		return "", fmt.Errorf("%w: toolchain %q", ErrUnsupportedGo, v)
	}
	return "go1." + strconv.Itoa(minor), nil
}

// ResolveGo analyses the Go executable at path.
func ResolveGo(path string) (*GoTarget, error) {
	ef, err := openELF(path)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	return resolveGo(ef)
}

func resolveGo(ef *elfFile) (*GoTarget, error) {
	version, goarch, err := goVersion(ef.r)
	if err != nil {
		return nil, err
	}
	t := &GoTarget{Version: version, PIE: ef.elf.Type == elf.ET_DYN}
	switch ef.elf.Machine {
	case elf.EM_X86_64:
		t.Arch = "amd64"
	case elf.EM_AARCH64:
		t.Arch = "arm64"
	default:
		return nil, fmt.Errorf("%w: machine %v", ErrUnsupportedGo, ef.elf.Machine)
	}
	if goarch != "" && goarch != t.Arch {
		return nil, fmt.Errorf("%w: build info says GOARCH=%s on a %s file", ErrUnsupportedGo, goarch, t.Arch)
	}
	abi, err := regABI(t.Arch)
	if err != nil {
		return nil, err
	}
	t.ABI = abi

	funcs, itab, stripped, err := goFuncs(ef)
	if err != nil {
		return nil, err
	}
	t.Stripped = stripped
	for _, f := range []struct {
		name string
		dst  *GoFunc
	}{{fnTLSRead, &t.Read}, {fnTLSWrite, &t.Write}} {
		r, ok := funcs[f.name]
		if !ok {
			return nil, fmt.Errorf("%w: no %s", ErrNoTLS, f.name)
		}
		if *f.dst, err = ef.goFunc(f.name, r, t.Arch); err != nil {
			return nil, err
		}
	}
	if itab == 0 {
		if itab, err = findItab(ef, funcs); err != nil {
			return nil, err
		}
	}

	// The table of a release authprobe knows (checked against DWARF by
	// the tests) first: reading DWARF means holding the binary's whole
	// decompressed .debug_info, tens of MiB for a large service, in an
	// agent whose steady heap is a few. DWARF is for other releases.
	offs, err := tableOffsets(version)
	if err != nil {
		dw, derr := dwarfOffsets(ef)
		switch {
		case derr == nil:
			offs = dw
			offs.Source = "dwarf"
		case errors.Is(derr, errNoDWARF):
			return nil, err
		default:
			return nil, derr
		}
	}
	offs.TCPConnItab = itab
	t.Offsets = offs
	return t, nil
}

// goVersion reads the toolchain version and GOARCH from the build info
// the Go linker embeds (present in stripped binaries too).
func goVersion(r io.ReaderAt) (version, goarch string, err error) {
	defer recoverTo(&err, "read go build info")
	bi, err := buildinfo.Read(r)
	if err != nil {
		return "", "", fmt.Errorf("%w: %w", ErrNotGo, err)
	}
	for _, s := range bi.Settings {
		if s.Key == "GOARCH" {
			goarch = s.Value
		}
	}
	return bi.GoVersion, goarch, nil
}

// goFuncNames is every function goFuncs looks up.
func goFuncNames() []string {
	names := []string{fnTLSRead, fnTLSWrite}
	for _, m := range netConnMethods {
		names = append(names, "net.(*TCPConn)."+m)
	}
	return names
}

// goFuncs finds the functions authprobe needs, from the symbol table when
// there is one (and the itab symbol with it), else from the pclntab.
func goFuncs(ef *elfFile) (funcs map[string]funcRange, itab uint64, stripped bool, err error) {
	syms, _, err := ef.symbols()
	if err != nil {
		return nil, 0, false, err
	}
	want := make(map[string]bool)
	for _, n := range goFuncNames() {
		want[n] = true
	}
	if len(syms) > 0 {
		funcs = make(map[string]funcRange)
		for _, s := range syms {
			if s.Name == itabTCPConn {
				itab = s.Value
			}
			if want[s.Name] && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
				funcs[s.Name] = funcRange{Entry: s.Value, End: s.Value + s.Size}
			}
		}
		if _, ok := funcs[fnTLSRead]; ok {
			return funcs, itab, false, nil
		}
		// A symbol table without Go's functions (an external linker's
		// partial strip): the pclntab still knows them.
	}
	tab, err := ef.pclntab()
	if err != nil {
		return nil, 0, true, err
	}
	funcs, err = tab.lookup(goFuncNames()...)
	if err != nil {
		return nil, 0, true, err
	}
	return funcs, 0, true, nil
}

// pclntab locates and parses the binary's pclntab.
func (ef *elfFile) pclntab() (*pclntab, error) {
	b, err := ef.section(".gopclntab")
	if err != nil {
		// External linking of a PIE folds it into .data.rel.ro; those
		// binaries are not supported without a symbol table.
		return nil, fmt.Errorf("%w: %w", ErrUnsupportedGo, err)
	}
	t, err := parsePclntab(b)
	if err != nil {
		return nil, err
	}
	if err := t.setTextStart(ef, ef.elf.Section(".gopclntab").Addr); err != nil {
		return nil, err
	}
	return t, nil
}

// goFunc fills a GoFunc: file offsets of the entry and of every RET.
func (ef *elfFile) goFunc(name string, r funcRange, arch string) (GoFunc, error) {
	f := GoFunc{Name: name, Addr: r.Entry, Size: r.End - r.Entry}
	off, err := ef.fileOffset(r.Entry)
	if err != nil {
		return GoFunc{}, fmt.Errorf("%s: %w", name, err)
	}
	f.Offset = off
	code, err := ef.readCode(r.Entry, f.Size)
	if err != nil {
		return GoFunc{}, fmt.Errorf("%s: %w", name, err)
	}
	rets, err := retOffsets(arch, code)
	if err != nil {
		return GoFunc{}, fmt.Errorf("%s: %w", name, err)
	}
	for _, r := range rets {
		f.Returns = append(f.Returns, off+r)
	}
	return f, nil
}

// findItab finds the (*net.TCPConn, net.Conn) itab of a binary without a
// symbol table by the addresses of its methods, which the pclntab gives.
func findItab(ef *elfFile, funcs map[string]funcRange) (uint64, error) {
	pattern := make([]byte, 0, 8*len(netConnMethods))
	for _, m := range netConnMethods {
		r, ok := funcs["net.(*TCPConn)."+m]
		if !ok {
			return 0, fmt.Errorf("no net.(*TCPConn).%s: the binary's TLS does not run over *net.TCPConn", m)
		}
		pattern = binary.LittleEndian.AppendUint64(pattern, r.Entry)
	}
	var found []uint64
	for _, s := range ef.dataSections() {
		b, err := ef.section(s.Name)
		if err != nil {
			return 0, err
		}
		for i := 0; ; {
			j := bytes.Index(b[i:], pattern)
			if j < 0 {
				break
			}
			if at := i + j; at >= itabFunOffset && at%8 == 0 {
				found = append(found, s.Addr+uint64(at)-itabFunOffset)
			}
			i += j + 1
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("found %d (*net.TCPConn, net.Conn) itabs by method table, want 1", len(found))
	}
	return found[0], nil
}
