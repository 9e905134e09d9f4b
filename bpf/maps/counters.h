/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* counters: one per-CPU slot per enum counter; Go sums them. */
#ifndef AUTHPROBE_MAP_COUNTERS_H
#define AUTHPROBE_MAP_COUNTERS_H

#include "../capture/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += n;
}

static __always_inline void count(__u32 idx)
{
	count_n(idx, 1);
}

#endif
