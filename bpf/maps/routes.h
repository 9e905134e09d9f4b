/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* routes: lower-cased path prefixes of every configured route; a request
 * whose lower-cased path matches none of them may be provably non-auth. */
#ifndef AUTHPROBE_MAP_ROUTES_H
#define AUTHPROBE_MAP_ROUTES_H

#include "../capture/common.h"

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct route_key);
	__type(value, __u32); /* route index, informational */
} routes SEC(".maps");

#endif
