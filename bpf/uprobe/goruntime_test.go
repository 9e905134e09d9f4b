package uprobe

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

// TestResolveGoSpawn finds runtime.newproc1 in real Go binaries of both
// releases and architectures: the stripped build (pclntab) agrees with
// the normal one (symbol table) on the entry and every RET, and each
// return offset decodes to a RET inside the function.
func TestResolveGoSpawn(t *testing.T) {
	for _, tc := range []string{"local", "go1.27.3"} {
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(tc+"-"+arch, func(t *testing.T) {
				full := mustGoBinary(t, goBuild{Toolchain: tc, Arch: arch})
				stripped := mustGoBinary(t, goBuild{Toolchain: tc, Arch: arch, Stripped: true})
				g, err := ResolveGoSpawn(full)
				if err != nil {
					t.Fatalf("resolve %s: %v", full, err)
				}
				s, err := ResolveGoSpawn(stripped)
				if err != nil {
					t.Fatalf("resolve stripped: %v", err)
				}
				t.Logf("%s %s: newproc1 entry %#x, %d rets", g.Version, g.Arch, g.Newproc1.Offset, len(g.Newproc1.Returns))
				if g.Arch != arch || s.Arch != arch || g.Stripped || !s.Stripped {
					t.Errorf("arch %s/%s stripped %v/%v, want %s false/true", g.Arch, s.Arch, g.Stripped, s.Stripped, arch)
				}
				if g.Newproc1.Offset != s.Newproc1.Offset || !reflect.DeepEqual(g.Newproc1.Returns, s.Newproc1.Returns) {
					t.Errorf("entry %#x rets %#x, stripped %#x rets %#x", g.Newproc1.Offset, g.Newproc1.Returns, s.Newproc1.Offset, s.Newproc1.Returns)
				}
				mustBeRets(t, full, arch, g.Newproc1)
			})
		}
	}
}

// TestResolveGoSpawnRefuses: not Go, and Go before 1.18 (newproc1 took its
// creator fourth), are refused with the errors callers tell apart.
func TestResolveGoSpawnRefuses(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err == nil {
		if _, err := ResolveGoSpawn("/bin/sh"); !errors.Is(err, ErrNotGo) {
			t.Errorf("/bin/sh: %v, want ErrNotGo", err)
		}
	}
	for v, ok := range map[string]bool{"go1.17.13": false, "go1.18": true, "go1.26.8": true, "go1.27rc1": true, "devel +abc": false} {
		err := spawnSupported(v)
		if (err == nil) != ok || (err != nil && !errors.Is(err, ErrUnsupportedGo)) {
			t.Errorf("%s: %v, want supported %v", v, err, ok)
		}
	}
}
