package uprobe

import (
	"debug/elf"
	"fmt"
)

// fnNewproc1 makes the goroutine of every `go` statement.
const fnNewproc1 = "runtime.newproc1"

// minSpawnGo is the first Go release whose runtime.newproc1 takes the
// creating goroutine as its second argument (newproc1(fn, callergp,
// callerpc, ...)); Go 1.17's took it fourth.
const minSpawnGo = 18

// GoSpawn is what the goroutine-creation probes need from one Go
// executable: runtime.newproc1's entry (its second argument is the
// creator's g) and its RET instructions (its result is the new g).
type GoSpawn struct {
	Version  string // Go toolchain, "go1.26.8"
	Arch     string // GOARCH: amd64 or arm64
	Stripped bool   // no symbol table: newproc1 came from the pclntab
	Newproc1 GoFunc
}

// ResolveGoSpawn analyses the Go executable at path for the
// goroutine-creation probes. It wraps ErrNotGo for a file that is not Go
// and ErrUnsupportedGo for a release or architecture they cannot read.
func ResolveGoSpawn(path string) (*GoSpawn, error) {
	ef, err := openELF(path)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	return resolveGoSpawn(ef)
}

func resolveGoSpawn(ef *elfFile) (*GoSpawn, error) {
	version, goarch, err := goVersion(ef.r)
	if err != nil {
		return nil, err
	}
	s := &GoSpawn{Version: version}
	switch ef.elf.Machine {
	case elf.EM_X86_64:
		s.Arch = "amd64"
	case elf.EM_AARCH64:
		s.Arch = "arm64"
	default:
		return nil, fmt.Errorf("%w: machine %v", ErrUnsupportedGo, ef.elf.Machine)
	}
	if goarch != "" && goarch != s.Arch {
		return nil, fmt.Errorf("%w: build info says GOARCH=%s on a %s file", ErrUnsupportedGo, goarch, s.Arch)
	}
	if err := spawnSupported(version); err != nil {
		return nil, err
	}
	r, stripped, err := ef.goFuncRange(fnNewproc1)
	if err != nil {
		return nil, err
	}
	s.Stripped = stripped
	if s.Newproc1, err = ef.goFunc(fnNewproc1, r, s.Arch); err != nil {
		return nil, err
	}
	return s, nil
}

// spawnSupported says whether the probes read runtime.newproc1 of a Go
// toolchain version right.
func spawnSupported(version string) error {
	release, err := goRelease(version)
	if err != nil {
		return err
	}
	var minor int
	if _, err := fmt.Sscanf(release, "go1.%d", &minor); err != nil || minor < minSpawnGo {
		return fmt.Errorf("%w: %s (goroutine creation is read from go1.%d on)", ErrUnsupportedGo, version, minSpawnGo)
	}
	return nil
}

// goFuncRange finds one function, from the symbol table when it has it,
// else from the pclntab.
func (ef *elfFile) goFuncRange(name string) (r funcRange, stripped bool, err error) {
	syms, _, err := ef.symbols()
	if err != nil {
		return funcRange{}, false, err
	}
	for _, s := range syms {
		if s.Name == name && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 {
			return funcRange{Entry: s.Value, End: s.Value + s.Size}, false, nil
		}
	}
	tab, err := ef.pclntab()
	if err != nil {
		return funcRange{}, true, err
	}
	funcs, err := tab.lookup(name)
	if err != nil {
		return funcRange{}, true, err
	}
	f, ok := funcs[name]
	if !ok {
		return funcRange{}, true, fmt.Errorf("%w: no %s", ErrUnsupportedGo, name)
	}
	return f, true, nil
}
