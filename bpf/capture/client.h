/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Client connections (docs/capture.md, "Client connections"): the ones
 * the watched process connect()ed, MODE_CLIENT from their SYN. Their I/O
 * is sent only while the task doing it serves a captured request
 * (capture/task.h), or in a Go program was spawned for one its root
 * still serves; outside one an I/O costs the tasks lookup (and for a
 * goroutine the go_spawned lookup) and the
 * offset update, as a MODE_OFF connection's does. The first write of the
 * connection is always sent, its first CLIENT_PROBE bytes at least: user
 * space tells the protocol from it once per connection (HTTP/1 request,
 * PostgreSQL startup, else it turns the connection off). */
#ifndef AUTHPROBE_CLIENT_H
#define AUTHPROBE_CLIENT_H

#include "common.h"
#include "io.h"
#include "emit.h"
#include "conn.h"
#include "task.h"
#include "../maps/verdicts.h"
#include "../maps/counters.h"

/* Bytes of a first write sent outside a served request: enough for a
 * request line's method or a startup message's length and code. */
#define CLIENT_PROBE 64

/* client_verdict applies user space's pending verdict on a client
 * connection: only VERDICT_OFF means anything for one. */
static __always_inline void client_verdict(__u64 sk, struct conn_state *st)
{
	struct verdict *vp = bpf_map_lookup_elem(&verdicts, &sk);
	if (!vp)
		return;
	struct verdict v = *vp;
	bpf_map_delete_elem(&verdicts, &sk);
	if (v.gen != st->gen) {
		count(CNT_VERDICTS_STALE);
		return;
	}
	if (v.kind & VERDICT_OFF)
		st->mode = MODE_OFF;
	count(CNT_VERDICTS_APPLIED);
}

/* capture_client handles io->len bytes moved on the client connection st. */
static __always_inline void capture_client(struct capture_io *io, struct conn_state *st)
{
	if (st->source != io->source)
		return;
	/* connect() chose the local port after the SYN_SENT state change. */
	if (st->local.port == 0)
		conn_read_addrs((struct sock *)io->sk, st);
	bool in = io->dir == DIR_INGRESS;
	__u64 off = __sync_fetch_and_add(in ? &st->in_off : &st->out_off, io->len);
	if (io->kind == IO_NONE)
		count(CNT_UNSUPPORTED_SYSCALL);
	__u32 busy = 0;
	bool serving = task_serving(io, &busy) || task_spawned_serving(io, &busy);
	bool first = !in && off == 0;
	/* The answer to a request sent for a served task is sent whoever
	 * reads it: an event loop reads it while serving another request, or
	 * none (it answered another one meanwhile). A write outside one ends
	 * that. */
	bool answer = in && st->awaiting;
	if (!in)
		st->awaiting = serving;
	if (!serving && !first && !answer) {
		count(CNT_CLIENT_OUTSIDE);
		return;
	}
	client_verdict(io->sk, st);
	if (st->mode != MODE_CLIENT)
		return;
	__u8 flags = off == 0 ? EVF_BOUNDARY : 0;
	__u32 cap = 0;
	if (io->kind == IO_NONE)
		flags |= EVF_UNREADABLE;
	else
		cap = serving || answer ? copyable(io->len) : min64(io->len, CLIENT_PROBE);
	struct report r = {
		.off = off,
		.len = io->len,
		.cap = cap,
		.busy = busy,
		.other = in ? st->out_off : st->in_off,
		.flags = flags,
		.io = *io,
	};
	r.nslices = slices(io->len);
	r.seq = __sync_fetch_and_add(in ? &st->in_seq : &st->out_seq, r.nslices);
	report_send(&r, st, 0, 0);
	if (serving || answer)
		count(CNT_CLIENT_CAPTURED);
}

#endif
