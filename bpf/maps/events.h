/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* events: the one ring buffer every program writes to. */
#ifndef AUTHPROBE_MAP_EVENTS_H
#define AUTHPROBE_MAP_EVENTS_H

#include "../capture/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized from Go */
} events SEC(".maps");

/* Wake the reader only once this much is waiting; it also drains on its
 * own tick, so a quiet stream is read within that tick. One wakeup per
 * event cost the agent more CPU than decoding the events did. */
volatile const __u64 wakeup_bytes = 65536;

static __always_inline __u64 wakeup_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

#endif
