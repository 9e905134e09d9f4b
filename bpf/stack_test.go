package bpf

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// maxStack is the verifier's bound on the stack of a whole call chain
// (MAX_BPF_STACK).
const maxStack = 512

// TestStackFitsOlderVerifiers: every program's deepest chain of BPF
// calls fits in 512 bytes the way the oldest verifier we support counts
// it. The host cannot show this by loading: 6.13+ gives tracing programs
// on x86 a private stack and 6.9+ rounds frames to 16 bytes when
// jitting, while 6.1 rounds every frame up to 32 bytes (at least 32,
// even for a frame that uses none) and counts a bpf_loop callback as a
// frame on top of its caller. A chain over 512 is refused there with
// "combined stack size of N calls is M. Too large".
func TestStackFitsOlderVerifiers(t *testing.T) {
	// The committed objects of every arch, not only this one's.
	objs, err := filepath.Glob("*_bpfel.o")
	if err != nil || len(objs) == 0 {
		t.Fatalf("no committed objects: %v", err)
	}
	for _, obj := range objs {
		spec, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		for name, prog := range spec.Programs {
			depth, chain, err := deepestChain(prog.Instructions, 32)
			if err != nil {
				t.Fatalf("%s/%s: %v", obj, name, err)
			}
			t.Logf("%s/%s: %d bytes: %s", obj, name, depth, chain)
			if depth > maxStack {
				t.Errorf("%s/%s: deepest call chain takes %d bytes of stack on a 6.1 verifier, over %d: %s",
					obj, name, depth, maxStack, chain)
			}
		}
	}
}

// bpfFunc is one function of a program: how deep it reaches into its
// frame, and what it calls (BPF calls and callbacks handed to helpers).
type bpfFunc struct {
	depth int
	calls []string
}

// funcsOf splits a program's instructions (the entry point, then the
// functions it references, each starting at an instruction with a
// symbol) into functions.
func funcsOf(insns asm.Instructions) (map[string]*bpfFunc, string, error) {
	funcs := map[string]*bpfFunc{}
	var cur *bpfFunc
	entry := ""
	// fp holds the registers that are r10 plus an offset.
	fp := map[asm.Register]int{}
	for _, ins := range insns {
		if sym := ins.Symbol(); sym != "" {
			cur = &bpfFunc{}
			funcs[sym] = cur
			if entry == "" {
				entry = sym
			}
			fp = map[asm.Register]int{}
		}
		if cur == nil {
			return nil, "", fmt.Errorf("instruction before any symbol: %v", ins)
		}
		reach := func(off int) {
			if -off > cur.depth {
				cur.depth = -off
			}
		}
		switch {
		case ins.IsFunctionCall(), ins.IsLoadOfFunctionPointer():
			cur.calls = append(cur.calls, ins.Reference())
		case ins.OpCode.Class().IsLoad() || ins.OpCode.Class().IsStore():
			for _, r := range []asm.Register{ins.Src, ins.Dst} {
				if r == asm.R10 {
					reach(int(ins.Offset))
				} else if base, ok := fp[r]; ok && (ins.OpCode.Class().IsStore() && r == ins.Dst || ins.OpCode.Class().IsLoad() && r == ins.Src) {
					reach(base + int(ins.Offset))
				}
			}
		}
		// Track r10-relative pointers (r1 = r10; r1 += -16), which
		// helpers and callees write through.
		if ins.OpCode.Class().IsALU() {
			op := ins.OpCode.ALUOp()
			switch {
			case op == asm.Mov && ins.OpCode.Source() == asm.RegSource && ins.Src == asm.R10:
				fp[ins.Dst] = 0
			case op == asm.Mov && ins.OpCode.Source() == asm.RegSource:
				if base, ok := fp[ins.Src]; ok {
					fp[ins.Dst] = base
				} else {
					delete(fp, ins.Dst)
				}
			case op == asm.Add && ins.OpCode.Source() == asm.ImmSource:
				if base, ok := fp[ins.Dst]; ok {
					fp[ins.Dst] = base + int(ins.Constant)
					reach(base + int(ins.Constant))
				}
			default:
				delete(fp, ins.Dst)
			}
		} else if ins.OpCode.Class().IsLoad() {
			delete(fp, ins.Dst)
		} else if ins.OpCode.JumpOp() == asm.Call {
			for _, r := range []asm.Register{asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R5} {
				delete(fp, r)
			}
		}
	}
	return funcs, entry, nil
}

// deepestChain is the stack the deepest call chain from the entry point
// takes, each frame rounded up to round bytes (and at least round).
func deepestChain(insns asm.Instructions, round int) (int, string, error) {
	funcs, entry, err := funcsOf(insns)
	if err != nil {
		return 0, "", err
	}
	var walk func(name string, seen map[string]bool) (int, []string, error)
	walk = func(name string, seen map[string]bool) (int, []string, error) {
		f, ok := funcs[name]
		if !ok {
			return 0, nil, fmt.Errorf("call to %s: not in the program", name)
		}
		if seen[name] {
			return 0, nil, fmt.Errorf("recursion through %s", name)
		}
		seen[name] = true
		defer delete(seen, name)
		own := (max(f.depth, 1) + round - 1) / round * round
		best, bestChain := 0, []string(nil)
		for _, c := range f.calls {
			d, ch, err := walk(c, seen)
			if err != nil {
				return 0, nil, err
			}
			if d > best {
				best, bestChain = d, ch
			}
		}
		return own + best, append([]string{fmt.Sprintf("%s(%d)", name, own)}, bestChain...), nil
	}
	d, chain, err := walk(entry, map[string]bool{})
	return d, strings.Join(chain, " → "), err
}
