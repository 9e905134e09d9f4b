/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* capture_scratch: per-CPU room to build a data event, the iovecs of the
 * I/O being captured and a route lookup key. */
#ifndef AUTHPROBE_MAP_CAPTURE_SCRATCH_H
#define AUTHPROBE_MAP_CAPTURE_SCRATCH_H

#include "../capture/common.h"
#include "../capture/proof_scan.h"

/* struct iovec with plain integers: the user pointer is never
 * dereferenced here, only handed to bpf_probe_read_user. */
struct uvec {
	__u64 base;
	__u64 len;
};

/* gather: where capture_copy's walk over the iovecs is (io.h). */
struct gather {
	__u64 start; /* first byte of the I/O to copy */
	__u64 end;   /* byte of the I/O to stop before */
	__u64 pos;   /* bytes of the I/O in the iovecs before this one */
	__u32 dst;   /* where the next byte goes in ev.data */
	__u32 nvec;
	__u32 got;   /* bytes copied */
	__u32 fault;
};

struct capture_scratch {
	struct data_event ev;
	/* Copies land at a variable position in ev.data with a length of up
	 * to MAX_CAPTURE; the slack lets the verifier bound both. */
	__u8 slack[MAX_CAPTURE];
	struct uvec iov[MAX_IOV];
	struct route_key key;
	__u32 _pad;
	/* The proof's scans (capture_prove) and capture_copy's walk: not on
	 * the stack, which the capture's deepest call chains need
	 * (bpf/stack_test.go). */
	struct rl_scan rl;
	struct hdr_scan hdr;
	__u32 _pad2;
	struct gather gather;
	/* When this CPU last forced a wakeup of the reader (emit.h). */
	__u64 last_wake;
};

/* A plain array indexed by CPU, not a per-CPU array: a per-CPU value is
 * limited to 32 KiB. Tracepoint programs run with preemption disabled,
 * so a CPU's slot is theirs for the whole run. Sized from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture_scratch);
} capture_scratch SEC(".maps");

static __always_inline struct capture_scratch *scratch_get(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&capture_scratch, &cpu);
}

#endif
