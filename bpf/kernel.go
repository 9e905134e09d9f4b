package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
)

// Requirement is a kernel feature every backend needs: without it the
// agent cannot run at all.
type Requirement struct {
	Name string
	// Since is the kernel release that added it.
	Since string
	// Why says what it is for.
	Why   string
	probe func() error
}

// Requirements are what the oldest kernel authprobe runs on must have,
// newest first: the minimum kernel is the newest Since (5.17, bpf_loop).
func Requirements() []Requirement {
	helper := func(fn asm.BuiltinFunc) func() error {
		return func() error { return features.HaveProgramHelper(ebpf.TracePoint, fn) }
	}
	return []Requirement{
		{Name: "bpf_loop", Since: "5.17", Why: "the proof and the copies loop without unrolling", probe: helper(asm.FnLoop)},
		{Name: "bpf_task_pt_regs", Since: "5.15", Why: "syscall arguments from the saved user registers", probe: helper(asm.FnTaskPtRegs)},
		{Name: "bpf_get_current_task_btf", Since: "5.11", Why: "the current task through BTF", probe: helper(asm.FnGetCurrentTaskBtf)},
		{Name: "ring buffer", Since: "5.8", Why: "events to user space", probe: func() error { return features.HaveMapType(ebpf.RingBuf) }},
		{Name: "BTF", Since: "5.4", Why: "CO-RE relocations against this kernel's types (CONFIG_DEBUG_INFO_BTF)", probe: kernelBTF},
		{Name: "LPM trie", Since: "4.11", Why: "the in-kernel route filter", probe: func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	}
}

func kernelBTF() error {
	_, err := btf.LoadKernelSpec()
	return err
}

// RequirementCheck is whether this kernel has one Requirement.
type RequirementCheck struct {
	Requirement
	Err error // nil: present
}

// CheckRequirements probes this kernel for every Requirement.
func CheckRequirements() []RequirementCheck {
	return checkRequirements(Requirements())
}

func checkRequirements(reqs []Requirement) []RequirementCheck {
	out := make([]RequirementCheck, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, RequirementCheck{Requirement: r, Err: r.probe()})
	}
	return out
}

// ErrKernelTooOld marks a kernel that lacks a Requirement.
var ErrKernelTooOld = errors.New("kernel too old for authprobe")

// missingRequirements is an ErrKernelTooOld error naming every missing
// requirement and the release that added it, or nil. A probe that fails
// for another reason than the kernel not supporting the feature (no
// privileges, say) is reported as it is.
func missingRequirements(checks []RequirementCheck) error {
	var missing []string
	var other []error
	for _, c := range checks {
		switch {
		case c.Err == nil:
		case errors.Is(c.Err, ebpf.ErrNotSupported), errors.Is(c.Err, btf.ErrNotSupported):
			missing = append(missing, fmt.Sprintf("%s (kernel %s+: %s)", c.Name, c.Since, c.Why))
		default:
			other = append(other, fmt.Errorf("probe %s: %w", c.Name, c.Err))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: it lacks %s; authprobe needs kernel 5.17 or newer with BTF", ErrKernelTooOld, strings.Join(missing, ", "))
	}
	return errors.Join(other...)
}
