// Package smoke is the test binary the kernel matrix (test/kernels) runs
// in every guest, amd64 and arm64: a CO-RE tracepoint program that must
// load, attach, count and report; what the kernel offers an eBPF agent
// (probed by loading, not by reading config); and a static Go login
// server answering on loopback. The tests run only in a guest
// (AUTHPROBE_GUEST=1) or when asked (AUTHPROBE_SMOKE=1, as root).
package smoke

// The objects for both architectures are committed, like bpf/'s; `make
// generate` rebuilds them.
//go:generate go tool bpf2go -cc clang-14 -cflags "-O2 -g -Wall -Werror -Wpadded" -target amd64,arm64 -type seen smoke smoke.c -- -I../../../../bpf/headers
