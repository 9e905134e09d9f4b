package uprobe

import (
	"bytes"
	"encoding/binary"
)

// synthGo builds a minimal stripped Go executable for amd64 in memory:
// build info, a pclntab naming the functions the probes need, their code
// (each a NOP and a RET), the module record pointing at the pclntab, and
// the (*net.TCPConn, net.Conn) itab. It is the fuzz seed that reaches
// every stage of resolveGo.
func synthGo(version string) []byte {
	const (
		base     = 0x400000
		textOff  = 0x1000
		textAddr = base + textOff
		funcSize = 16
	)
	names := goFuncNames()
	// .text: each function is NOP; RET; INT3 padding.
	var text []byte
	for range names {
		fn := make([]byte, funcSize)
		fn[0], fn[1] = 0x90, 0xc3
		for i := 2; i < funcSize; i++ {
			fn[i] = 0xcc
		}
		text = append(text, fn...)
	}
	// .gopclntab: header, funcnametab, then functab and _func records.
	var names0 []byte
	nameOff := make([]int, len(names))
	for i, n := range names {
		nameOff[i] = len(names0)
		names0 = append(names0, n...)
		names0 = append(names0, 0)
	}
	const hdr = 8 + 8*8
	funcnameOff := uint64(hdr)
	cuOff := funcnameOff + uint64(len(names0))
	pclnOff := cuOff
	var ftab, funcs []byte
	nf := len(names)
	for i := range names {
		ftab = binary.LittleEndian.AppendUint32(ftab, uint32(i*funcSize))
		ftab = binary.LittleEndian.AppendUint32(ftab, uint32((2*nf+1)*4+len(funcs)))
		funcs = binary.LittleEndian.AppendUint32(funcs, uint32(i*funcSize))
		funcs = binary.LittleEndian.AppendUint32(funcs, uint32(nameOff[i]))
	}
	ftab = binary.LittleEndian.AppendUint32(ftab, uint32(nf*funcSize))
	pcln := binary.LittleEndian.AppendUint32(nil, pclntabMagic120)
	pcln = append(pcln, 0, 0, 1, 8)
	for _, w := range []uint64{uint64(nf), 0, 0, funcnameOff, cuOff, cuOff, cuOff, pclnOff} {
		pcln = binary.LittleEndian.AppendUint64(pcln, w)
	}
	pcln = append(pcln, names0...)
	pcln = append(pcln, ftab...)
	pcln = append(pcln, funcs...)

	// Layout of the read-only segment after .text.
	pclnFileOff := textOff + 0x1000
	pclnAddr := uint64(base + pclnFileOff)
	dataFileOff := pclnFileOff + (len(pcln)+0xfff)&^0xfff
	dataAddr := uint64(base + dataFileOff)

	// .noptrdata: the module record, then an itab.
	md := make([]byte, moduledataText+8)
	binary.LittleEndian.PutUint64(md, pclnAddr)
	binary.LittleEndian.PutUint64(md[8:], pclnAddr+funcnameOff)
	binary.LittleEndian.PutUint64(md[moduledataMinPC:], textAddr)
	binary.LittleEndian.PutUint64(md[moduledataText:], textAddr)
	itab := make([]byte, itabFunOffset)
	for i, n := range names {
		if bytes.HasPrefix([]byte(n), []byte("net.(*TCPConn).")) {
			itab = binary.LittleEndian.AppendUint64(itab, uint64(textAddr+i*funcSize))
		}
	}
	data := append(md, itab...)

	// .go.buildinfo: magic, pointer size, flags (inline strings), then
	// the version and module info as varint-prefixed strings.
	bi := append([]byte("\xff Go buildinf:"), 8, 2)
	bi = append(bi, make([]byte, 32-len(bi))...)
	bi = binary.AppendUvarint(bi, uint64(len(version)))
	bi = append(bi, version...)
	bi = binary.AppendUvarint(bi, 0)
	bi = append(bi, make([]byte, 256)...) // readers read ahead of a varint
	biFileOff := dataFileOff + (len(data)+0xfff)&^0xfff
	biAddr := uint64(base + biFileOff)

	type sec struct {
		name          string
		typ, flags    uint32
		addr, off, sz uint64
	}
	secs := []sec{
		{".text", 1, 0x6, textAddr, textOff, uint64(len(text))},
		{".gopclntab", 1, 0x2, pclnAddr, uint64(pclnFileOff), uint64(len(pcln))},
		{".noptrdata", 1, 0x3, dataAddr, uint64(dataFileOff), uint64(len(data))},
		{".go.buildinfo", 1, 0x3, biAddr, uint64(biFileOff), uint64(len(bi))},
	}
	shstr := []byte{0}
	shName := make([]uint32, len(secs)+1)
	for i, s := range secs {
		shName[i] = uint32(len(shstr))
		shstr = append(append(shstr, s.name...), 0)
	}
	shName[len(secs)] = uint32(len(shstr))
	shstr = append(append(shstr, ".shstrtab"...), 0)
	shstrOff := biFileOff + len(bi)
	shOff := (shstrOff + len(shstr) + 7) &^ 7

	file := make([]byte, shOff+64*(len(secs)+2))
	copy(file[textOff:], text)
	copy(file[pclnFileOff:], pcln)
	copy(file[dataFileOff:], data)
	copy(file[biFileOff:], bi)
	copy(file[shstrOff:], shstr)

	le := binary.LittleEndian
	copy(file, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1})
	le.PutUint16(file[16:], 2)  // ET_EXEC
	le.PutUint16(file[18:], 62) // EM_X86_64
	le.PutUint32(file[20:], 1)  // EV_CURRENT
	le.PutUint64(file[24:], textAddr)
	le.PutUint64(file[32:], 64) // phoff
	le.PutUint64(file[40:], uint64(shOff))
	le.PutUint16(file[52:], 64) // ehsize
	le.PutUint16(file[54:], 56) // phentsize
	le.PutUint16(file[56:], 2)  // phnum
	le.PutUint16(file[58:], 64) // shentsize
	le.PutUint16(file[60:], uint16(len(secs)+2))
	le.PutUint16(file[62:], uint16(len(secs)+1))
	// PT_LOAD r-x over the text, PT_LOAD rw- over data and build info.
	ph := func(i int, flags uint32, off, addr, sz uint64) {
		p := file[64+56*i:]
		le.PutUint32(p, 1)
		le.PutUint32(p[4:], flags)
		le.PutUint64(p[8:], off)
		le.PutUint64(p[16:], addr)
		le.PutUint64(p[24:], addr)
		le.PutUint64(p[32:], sz)
		le.PutUint64(p[40:], sz)
		le.PutUint64(p[48:], 0x1000)
	}
	ph(0, 5, textOff, textAddr, uint64(pclnFileOff+len(pcln)-textOff))
	ph(1, 6, uint64(dataFileOff), dataAddr, uint64(biFileOff+len(bi)-dataFileOff))
	for i, s := range append(secs, sec{".shstrtab", 3, 0, 0, uint64(shstrOff), uint64(len(shstr))}) {
		h := file[shOff+64*(i+1):]
		le.PutUint32(h, shName[i])
		le.PutUint32(h[4:], s.typ)
		le.PutUint64(h[8:], uint64(s.flags))
		le.PutUint64(h[16:], s.addr)
		le.PutUint64(h[24:], s.off)
		le.PutUint64(h[32:], s.sz)
		le.PutUint64(h[48:], 1)
	}
	return file
}
