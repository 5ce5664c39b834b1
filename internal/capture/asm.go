package capture

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// asm is a tiny label assembler for the fixed part of the filter. x/net/bpf counts jumps
// in instructions to skip; labels keep the program readable and let sections be left out
// (no TCP, no UDP) without recounting by hand. Classic BPF only jumps forward, and a
// conditional jump skips at most 255 instructions: resolve reports anything else, which
// the layout in filter.go avoids by construction.
type asm struct {
	ins   []bpf.Instruction
	at    []int // label → instruction index; -1 until placed
	fixes []fix
}

type label int

// next is the label of the instruction right after a jump (a skip of 0).
const next label = -1

type fix struct {
	pc   int
	t, f label
}

func (a *asm) label() label {
	a.at = append(a.at, -1)
	return label(len(a.at) - 1)
}

// mark places l at the next instruction to be emitted.
func (a *asm) mark(l label) { a.at[l] = len(a.ins) }

func (a *asm) emit(ins ...bpf.Instruction) { a.ins = append(a.ins, ins...) }

// jmp emits "if A <cond> val goto t else goto f".
func (a *asm) jmp(cond bpf.JumpTest, val uint32, t, f label) {
	a.fixes = append(a.fixes, fix{len(a.ins), t, f})
	a.emit(bpf.JumpIf{Cond: cond, Val: val})
}

// ja emits an unconditional jump; its offset is 32 bits wide, so it reaches anywhere.
func (a *asm) ja(t label) {
	a.fixes = append(a.fixes, fix{len(a.ins), t, next})
	a.emit(bpf.Jump{})
}

func (a *asm) resolve() ([]bpf.Instruction, error) {
	for _, fx := range a.fixes {
		skip := func(l label) (uint32, error) {
			if l == next {
				return 0, nil
			}
			to := a.at[l]
			if to <= fx.pc {
				return 0, fmt.Errorf("capture: bpf label %d unplaced or behind pc %d", l, fx.pc)
			}
			return uint32(to - fx.pc - 1), nil
		}
		t, err := skip(fx.t)
		if err != nil {
			return nil, err
		}
		switch ins := a.ins[fx.pc].(type) {
		case bpf.Jump:
			ins.Skip = t
			a.ins[fx.pc] = ins
		case bpf.JumpIf:
			f, err := skip(fx.f)
			if err != nil {
				return nil, err
			}
			if t > 255 || f > 255 {
				return nil, fmt.Errorf("capture: bpf jump at %d too far (%d/%d)", fx.pc, t, f)
			}
			ins.SkipTrue, ins.SkipFalse = uint8(t), uint8(f)
			a.ins[fx.pc] = ins
		}
	}
	return a.ins, nil
}
