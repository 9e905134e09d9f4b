/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Go crypto/tls calls in flight, keyed by goroutine, and the per-binary
 * offsets their probes use (struct go_tls_cfg, by attach cookie). */
#ifndef AUTHPROBE_MAP_GOTLS_H
#define AUTHPROBE_MAP_GOTLS_H

#include "../capture/common.h"

struct go_call_key {
	__u32 tgid;
	__u32 _pad;
	__u64 g; /* the goroutine: its runtime.g */
};

/* One (*tls.Conn).Read or Write between its entry and a RET. */
struct go_call {
	__u64 conn; /* the *tls.Conn receiver */
	__u64 buf;  /* b's data pointer */
	__u64 cookie;
	__u8 op;    /* TLS_OP_READ or TLS_OP_WRITE */
	__u8 _pad[7];
};

/* An LRU: a goroutine that panics out of a call never reaches a RET. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_call_key);
	__type(value, struct go_call);
} go_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct go_tls_cfg);
} go_tls_cfgs SEC(".maps");

#endif
