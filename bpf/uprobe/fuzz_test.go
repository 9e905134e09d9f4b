package uprobe

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestSynthGo resolves the synthetic stripped binary the fuzz targets
// start from, so the seed is known to reach every stage.
func TestSynthGo(t *testing.T) {
	b := synthGo("go1.26.8")
	ef, err := newELF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := resolveGo(ef)
	if err != nil {
		t.Fatal(err)
	}
	if !g.Stripped || g.Offsets.Source != "table go1.26" || len(g.Read.Returns) != 1 || g.Read.Returns[0] != g.Read.Offset+1 {
		t.Errorf("%+v", g)
	}
	if g.Offsets.TCPConnItab == 0 {
		t.Error("no itab")
	}
	ef, _ = newELF(bytes.NewReader(b), int64(len(b)))
	if _, err := resolveOpenSSL(ef, ""); !errors.Is(err, ErrNoTLS) {
		t.Errorf("openssl: %v", err)
	}
}

// FuzzResolveELF feeds arbitrary files to everything that parses an
// executable: the agent reads whatever runs on a node and must return an
// error, never panic or run away, on a malformed one.
func FuzzResolveELF(f *testing.F) {
	f.Add(synthGo("go1.26.8"))
	f.Add(synthGo("go1.27.3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ef, err := newELF(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if g, err := resolveGo(ef); err == nil {
			for _, fn := range []GoFunc{g.Read, g.Write} {
				for _, r := range fn.Returns {
					if r < fn.Offset || r >= fn.Offset+fn.Size {
						t.Fatalf("%s: return %#x outside [%#x, +%d)", fn.Name, r, fn.Offset, fn.Size)
					}
				}
			}
		}
		resolveOpenSSL(ef, "")
	})
}

// FuzzPclntab parses arbitrary pclntabs and looks functions up.
func FuzzPclntab(f *testing.F) {
	b := synthGo("go1.26.8")
	ef, err := newELF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		f.Fatal(err)
	}
	tab, err := ef.section(".gopclntab")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tab)
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := parsePclntab(b)
		if err != nil {
			return
		}
		found, err := tab.lookup(goFuncNames()...)
		if err != nil {
			return
		}
		for n, r := range found {
			if r.End <= r.Entry {
				t.Fatalf("%s: empty range %+v", n, r)
			}
		}
	})
}

// FuzzParseMaps: the maps text is the kernel's, but a parser of it must
// not panic on any line.
func FuzzParseMaps(f *testing.F) {
	f.Add("00400000-00452000 r-xp 00000000 fd:01 1234 /usr/bin/prog\n7f10-7f20 r-xp 00022000 08:11 99 /a b (deleted)\n")
	f.Add("7ffd000000-7ffd021000 rw-p 00000000 00:00 0                          [stack]\n")
	f.Fuzz(func(t *testing.T, s string) {
		maps, err := ParseMaps(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, m := range maps {
			if m.End < m.Start {
				t.Fatalf("%+v", m)
			}
		}
	})
}

// FuzzRets decodes arbitrary code as both architectures.
func FuzzRets(f *testing.F) {
	f.Add([]byte{0x90, 0xc3, 0xcc, 0xcc})
	f.Add([]byte{0xc0, 0x03, 0x5f, 0xd6, 0, 0, 0, 0}) // arm64 RET; padding
	f.Fuzz(func(t *testing.T, code []byte) {
		for _, arch := range []string{"amd64", "arm64"} {
			rets, err := retOffsets(arch, code)
			if err != nil {
				continue
			}
			for _, r := range rets {
				if r >= uint64(len(code)) {
					t.Fatalf("%s: ret %d beyond %d bytes", arch, r, len(code))
				}
			}
		}
	})
}
