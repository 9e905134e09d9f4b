package bpf

import (
	"fmt"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/stretchr/testify/require"
)

// An older kernel is refused in words that name each missing feature and
// the release that added it, not with the verifier's complaint. The
// probes are the real ones' stand-ins: we cannot boot a 5.10 kernel
// cheaply, but what it answers is known (ErrNotSupported).
func TestKernelTooOld(t *testing.T) {
	reqs := Requirements()
	absent := map[string]bool{}
	// 5.15 (Ubuntu 22.04, AL2 5.15): everything but bpf_loop.
	for i := range reqs {
		name := reqs[i].Name
		reqs[i].probe = func() error {
			if absent[name] {
				return fmt.Errorf("probe: %w", ebpf.ErrNotSupported)
			}
			return nil
		}
	}
	absent["bpf_loop"] = true
	err := missingRequirements(checkRequirements(reqs))
	require.ErrorIs(t, err, ErrKernelTooOld)
	require.EqualError(t, err, "kernel too old for authprobe: it lacks bpf_loop (kernel 5.17+: the proof and the copies loop without unrolling); authprobe needs kernel 5.17 or newer with BTF")

	// 5.10: several at once, each named.
	absent["bpf_task_pt_regs"] = true
	err = missingRequirements(checkRequirements(reqs))
	require.ErrorContains(t, err, "it lacks bpf_loop (kernel 5.17+: the proof and the copies loop without unrolling), bpf_task_pt_regs (kernel 5.15+")

	for i := range reqs {
		if reqs[i].Name == "BTF" {
			reqs[i].probe = func() error { return fmt.Errorf("load kernel spec: %w", btf.ErrNotSupported) }
		}
	}
	err = missingRequirements(checkRequirements(reqs))
	require.ErrorContains(t, err, "BTF (kernel 5.4+: CO-RE relocations against this kernel's types (CONFIG_DEBUG_INFO_BTF))")

	// A probe that fails for another reason is not a verdict on the
	// kernel: it is said as it is.
	for i := range reqs {
		reqs[i].probe = func() error { return nil }
	}
	reqs[0].probe = func() error { return os.ErrPermission }
	err = missingRequirements(checkRequirements(reqs))
	require.NotErrorIs(t, err, ErrKernelTooOld)
	require.ErrorContains(t, err, "probe bpf_loop: permission denied")

	// The newest Since is the minimum the refusal names.
	require.Equal(t, "5.17", Requirements()[0].Since)
}

// This kernel has every requirement (the host, and each kernel of the
// matrix).
func TestKernelRequirements(t *testing.T) {
	skipUnlessRoot(t)
	for _, c := range CheckRequirements() {
		require.NoError(t, c.Err, c.Name)
	}
	require.NoError(t, missingRequirements(CheckRequirements()))
}
