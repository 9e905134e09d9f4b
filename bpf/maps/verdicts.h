/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* verdicts: user space's decisions on captured connections, keyed like
 * conns; the kernel applies and deletes each at the connection's next I/O
 * (or at its close). */
#ifndef AUTHPROBE_MAP_VERDICTS_H
#define AUTHPROBE_MAP_VERDICTS_H

#include "../capture/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct verdict);
} verdicts SEC(".maps");

#endif
