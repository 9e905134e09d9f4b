/* Kernel types for CO-RE, per target architecture. bpf2go defines
 * __TARGET_ARCH_<arch> for each -target (amd64: x86, arm64: arm64).
 * vmlinux_x86.h and vmlinux_arm64.h are `bpftool btf dump ... format c`
 * of a kernel's BTF; vmlinux_arm64.h is reproduced by
 * `go run ./test/kernels/cmd/btfdump` (see test/kernels/README.md). */
#if defined(__TARGET_ARCH_x86)
#include "vmlinux_x86.h"
#elif defined(__TARGET_ARCH_arm64)
#include "vmlinux_arm64.h"
#else
#error "vmlinux.h: no kernel types for this target; define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif
