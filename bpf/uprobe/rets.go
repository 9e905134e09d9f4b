package uprobe

import (
	"fmt"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"
)

// Return probes on Go functions are uprobes on their RET instructions:
// a uretprobe rewrites the return address on the goroutine stack, and the
// Go runtime moves and inspects those stacks, which can crash the program.
// A uprobe must sit on an instruction boundary, so the code is decoded
// linearly from the entry; any byte that does not decode before the
// function's last instruction refuses the whole function.

// retOffsets returns the offsets, relative to the function's first byte,
// of every RET instruction in code.
func retOffsets(arch string, code []byte) ([]uint64, error) {
	switch arch {
	case "amd64":
		return retsAMD64(code)
	case "arm64":
		return retsARM64(code)
	}
	return nil, fmt.Errorf("unsupported architecture %q", arch)
}

func retsAMD64(code []byte) ([]uint64, error) {
	var rets []uint64
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil || inst.Len == 0 {
			// The linker pads between functions with INT3 (0xcc), which
			// decodes; anything else undecodable means we lost the
			// instruction stream.
			return nil, fmt.Errorf("undecodable instruction at +%#x", off)
		}
		if inst.Op == x86asm.RET {
			rets = append(rets, uint64(off))
		}
		off += inst.Len
	}
	if len(rets) == 0 {
		return nil, fmt.Errorf("no RET instruction in %d bytes", len(code))
	}
	return rets, nil
}

func retsARM64(code []byte) ([]uint64, error) {
	if len(code)%4 != 0 {
		return nil, fmt.Errorf("code length %d is not a multiple of 4", len(code))
	}
	var rets []uint64
	for off := 0; off < len(code); off += 4 {
		inst, err := arm64asm.Decode(code[off:])
		if err != nil {
			// Fixed-width instructions cannot lose sync: padding (zero
			// words) and literal data decode as errors and are skipped.
			continue
		}
		if inst.Op == arm64asm.RET {
			rets = append(rets, uint64(off))
		}
	}
	if len(rets) == 0 {
		return nil, fmt.Errorf("no RET instruction in %d bytes", len(code))
	}
	return rets, nil
}
