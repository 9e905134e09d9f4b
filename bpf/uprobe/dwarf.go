package uprobe

import (
	"debug/dwarf"
	"errors"
	"fmt"
)

var errNoDWARF = errors.New("no DWARF")

// dwarfMember names a struct field whose offset the probes need.
type dwarfMember struct {
	typ, field string
	dst        *uint64
}

// dwarfOffsets reads the struct offsets from the binary's DWARF.
func dwarfOffsets(ef *elfFile) (o GoOffsets, err error) {
	defer recoverTo(&err, "read dwarf")
	if ef.elf.Section(".debug_info") == nil && ef.elf.Section(".zdebug_info") == nil {
		return o, errNoDWARF
	}
	d, err := ef.elf.DWARF()
	if err != nil {
		return o, fmt.Errorf("read dwarf: %w", err)
	}
	var tcpConn, connFD uint64
	members := []dwarfMember{
		{"crypto/tls.Conn", "conn", &o.ConnConn},
		{"net.TCPConn", "conn", &tcpConn},
		{"net.conn", "fd", &connFD},
		{"net.netFD", "pfd", &o.NetFDPfd},
		{"internal/poll.FD", "Sysfd", &o.PollFDSysfd},
		{"runtime.g", "goid", &o.GoID},
	}
	if err := readMembers(d, members); err != nil {
		return o, err
	}
	o.TCPConnFD = tcpConn + connFD
	return o, nil
}

// readMembers walks the DWARF once and fills every member's offset.
func readMembers(d *dwarf.Data, members []dwarfMember) error {
	byType := make(map[string][]dwarfMember)
	for _, m := range members {
		byType[m.typ] = append(byType[m.typ], m)
	}
	found := make(map[string]bool)
	r := d.Reader()
	for len(found) < len(members) {
		e, err := r.Next()
		if err != nil {
			return fmt.Errorf("read dwarf: %w", err)
		}
		if e == nil {
			break
		}
		if e.Tag != dwarf.TagStructType {
			if e.Tag != dwarf.TagCompileUnit && e.Children {
				r.SkipChildren()
			}
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		want := byType[name]
		if len(want) == 0 || !e.Children {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if err := readStruct(r, name, want, found); err != nil {
			return err
		}
	}
	for _, m := range members {
		if !found[m.typ+"."+m.field] {
			return fmt.Errorf("dwarf has no %s.%s", m.typ, m.field)
		}
	}
	return nil
}

// readStruct reads the members of the struct entry just read.
func readStruct(r *dwarf.Reader, typ string, want []dwarfMember, found map[string]bool) error {
	for {
		e, err := r.Next()
		if err != nil {
			return fmt.Errorf("read dwarf %s: %w", typ, err)
		}
		if e == nil || e.Tag == 0 {
			return nil
		}
		if e.Children {
			r.SkipChildren()
		}
		if e.Tag != dwarf.TagMember {
			continue
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		for _, m := range want {
			if m.field != name {
				continue
			}
			off, ok := e.Val(dwarf.AttrDataMemberLoc).(int64)
			if !ok || off < 0 {
				return fmt.Errorf("dwarf %s.%s has no constant offset", typ, name)
			}
			*m.dst = uint64(off)
			found[typ+"."+name] = true
		}
	}
}
