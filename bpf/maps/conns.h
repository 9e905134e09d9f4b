/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* conns: connection state keyed by the struct sock address. An entry
 * lives from the socket's first read by a watched process (or its
 * connect) to its TCP_CLOSE. */
#ifndef AUTHPROBE_MAP_CONNS_H
#define AUTHPROBE_MAP_CONNS_H

#include "../capture/common.h"

/* A plain hash, not an LRU: an entry is removed at TCP_CLOSE, and a full
 * map is a counted drop (drop_conn_state) rather than a silent eviction
 * of a connection in the middle of an exchange. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized from Go */
	__type(key, __u64);
	__type(value, struct conn_state);
} conns SEC(".maps");

#endif
