package uprobe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// TestResolveGo resolves real Go TLS servers of both supported releases
// and both architectures, each built normally and stripped: the stripped
// build (pclntab, offset table) must agree with the normal one (symbol
// table, DWARF) on every address, and every return offset must decode to
// a RET.
func TestResolveGo(t *testing.T) {
	for _, tc := range []string{"local", "go1.27.3"} {
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(tc+"-"+arch, func(t *testing.T) {
				full := mustGoBinary(t, goBuild{Toolchain: tc, Arch: arch})
				stripped := mustGoBinary(t, goBuild{Toolchain: tc, Arch: arch, Stripped: true})
				g, err := ResolveGo(full)
				if err != nil {
					t.Fatalf("resolve %s: %v", full, err)
				}
				s, err := ResolveGo(stripped)
				if err != nil {
					t.Fatalf("resolve stripped: %v", err)
				}
				t.Logf("%s %s: Read entry %#x rets %d, Write entry %#x rets %d, offsets %+v, abi %+v",
					g.Version, g.Arch, g.Read.Offset, len(g.Read.Returns), g.Write.Offset, len(g.Write.Returns), g.Offsets, g.ABI)
				if g.Arch != arch || s.Arch != arch {
					t.Errorf("arch %s / %s, want %s", g.Arch, s.Arch, arch)
				}
				if g.Stripped || !s.Stripped {
					t.Errorf("stripped = %v / %v, want false / true", g.Stripped, s.Stripped)
				}
				wantRelease := "go1.26"
				if tc != "local" {
					wantRelease = strings.TrimSuffix(tc, ".3")
				}
				if !strings.HasPrefix(g.Version, wantRelease+".") || s.Version != g.Version {
					t.Errorf("versions %q / %q, want %s.x", g.Version, s.Version, wantRelease)
				}
				for _, p := range []struct{ full, stripped GoFunc }{{g.Read, s.Read}, {g.Write, s.Write}} {
					if p.full.Addr != p.stripped.Addr || p.full.Offset != p.stripped.Offset {
						t.Errorf("%s: entry %#x@%#x, stripped %#x@%#x", p.full.Name, p.full.Addr, p.full.Offset, p.stripped.Addr, p.stripped.Offset)
					}
					if !reflect.DeepEqual(p.full.Returns, p.stripped.Returns) {
						t.Errorf("%s: returns %#x, stripped %#x", p.full.Name, p.full.Returns, p.stripped.Returns)
					}
					mustBeRets(t, full, arch, p.full)
				}
				if g.Offsets.Source != "table "+wantRelease || s.Offsets.Source != "table "+wantRelease {
					t.Errorf("offset sources %q / %q, want the table of %s for both", g.Offsets.Source, s.Offsets.Source, wantRelease)
				}
				// The table is what the release's DWARF says.
				dw := mustDWARFOffsets(t, full)
				ss := s.Offsets
				ss.Source, ss.TCPConnItab = "", 0
				if dw != ss {
					t.Errorf("DWARF offsets %+v differ from the table's %+v", dw, ss)
				}
				if g.Offsets.TCPConnItab == 0 {
					t.Error("no TCPConn itab")
				}
				if g.ABI != s.ABI {
					t.Errorf("abi %+v / %+v", g.ABI, s.ABI)
				}
			})
		}
	}
}

// mustDWARFOffsets reads the struct offsets from path's DWARF.
func mustDWARFOffsets(t *testing.T, path string) GoOffsets {
	t.Helper()
	ef, err := openELF(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	o, err := dwarfOffsets(ef)
	if err != nil {
		t.Fatalf("dwarf of %s: %v", path, err)
	}
	return o
}

// mustBeRets decodes the instruction at each return offset, and at the
// entry, straight from the file.
func mustBeRets(t *testing.T, path, arch string, f GoFunc) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	isRet := func(off uint64) bool {
		switch arch {
		case "amd64":
			inst, err := x86asm.Decode(b[off:], 64)
			return err == nil && inst.Op == x86asm.RET
		case "arm64":
			inst, err := arm64asm.Decode(b[off:])
			return err == nil && inst.Op == arm64asm.RET
		}
		return false
	}
	if len(f.Returns) == 0 {
		t.Errorf("%s: no returns", f.Name)
	}
	for _, r := range f.Returns {
		if r <= f.Offset || r >= f.Offset+f.Size || !isRet(r) {
			t.Errorf("%s: offset %#x is not a RET inside the function", f.Name, r)
		}
	}
	if isRet(f.Offset) {
		t.Errorf("%s: entry decodes as RET", f.Name)
	}
}

// TestStrippedLookupMatchesSymbols checks the pclntab reader (and the
// text base it takes from the module record) against the symbol table of
// the same binary, for every function the probes use.
func TestStrippedLookupMatchesSymbols(t *testing.T) {
	for _, b := range testBuilds() {
		if b.Stripped {
			continue
		}
		t.Run(b.String(), func(t *testing.T) {
			ef, err := openELF(mustGoBinary(t, b))
			if err != nil {
				t.Fatal(err)
			}
			defer ef.Close()
			syms, _, err := ef.symbols()
			if err != nil {
				t.Fatal(err)
			}
			tab, err := ef.pclntab()
			if err != nil {
				t.Fatal(err)
			}
			names := goFuncNames()
			got, err := tab.lookup(names...)
			if err != nil {
				t.Fatal(err)
			}
			bySym := map[string]uint64{}
			var itab uint64
			for _, s := range syms {
				bySym[s.Name] = s.Value
				if s.Name == itabTCPConn {
					itab = s.Value
				}
			}
			for _, n := range names {
				if got[n].Entry != bySym[n] || bySym[n] == 0 {
					t.Errorf("%s: pclntab entry %#x, symbol %#x", n, got[n].Entry, bySym[n])
				}
			}
			scanned, err := findItab(ef, got)
			if err != nil {
				t.Fatal(err)
			}
			// go1.27 no longer names itabs in the symbol table.
			if itab != 0 && scanned != itab {
				t.Errorf("itab by method table %#x, symbol %#x", scanned, itab)
			}
		})
	}
}

// TestUnsupportedGoVersion relabels a real stripped go1.26 binary as
// go1.99 in its build info: without DWARF there is no layout for it, so
// it must be refused with ErrUnsupportedGo, never probed with a guess.
func TestUnsupportedGoVersion(t *testing.T) {
	src := mustGoBinary(t, goBuild{Toolchain: "local", Arch: "amd64", Stripped: true})
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	g, err := ResolveGo(src)
	if err != nil {
		t.Fatal(err)
	}
	old := []byte(g.Version)
	relabelled := []byte(strings.Replace(g.Version, "go1.26", "go1.99", 1))
	if n := bytes.Count(b, old); n == 0 {
		t.Fatalf("version %q not found in the binary", old)
	}
	b = bytes.ReplaceAll(b, old, relabelled)
	p := filepath.Join(t.TempDir(), "relabelled")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = ResolveGo(p)
	if !errors.Is(err, ErrUnsupportedGo) {
		t.Fatalf("resolve go1.99: err = %v, want ErrUnsupportedGo", err)
	}
	t.Logf("refused: %v", err)

	// The same release built with DWARF is probed from its DWARF.
	full := mustGoBinary(t, goBuild{Toolchain: "local", Arch: "amd64"})
	fb, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(t.TempDir(), "relabelled-full")
	if err := os.WriteFile(pf, bytes.ReplaceAll(fb, old, relabelled), 0o755); err != nil {
		t.Fatal(err)
	}
	gf, err := ResolveGo(pf)
	if err != nil {
		t.Fatalf("resolve go1.99 with DWARF: %v", err)
	}
	want := g.Offsets
	want.Source, want.TCPConnItab = "dwarf", gf.Offsets.TCPConnItab
	if gf.Offsets != want || gf.Offsets.TCPConnItab == 0 {
		t.Errorf("go1.99 with DWARF: offsets %+v, want %+v and an itab", gf.Offsets, want)
	}
	if _, err := tableOffsets("go1.25.4"); !errors.Is(err, ErrUnsupportedGo) {
		t.Errorf("go1.25 table: %v", err)
	}
	for _, v := range []string{"devel +abc", "", "go2"} {
		if _, err := tableOffsets(v); !errors.Is(err, ErrUnsupportedGo) {
			t.Errorf("tableOffsets(%q) = %v", v, err)
		}
	}
}

func TestResolveGoRefusesNonGo(t *testing.T) {
	for _, p := range []string{"/bin/true", "/usr/bin/node"} {
		if _, err := os.Stat(p); err != nil {
			t.Logf("skip %s: %v", p, err)
			continue
		}
		if _, err := ResolveGo(p); !errors.Is(err, ErrNotGo) {
			t.Errorf("%s: err = %v, want ErrNotGo", p, err)
		}
	}
}
