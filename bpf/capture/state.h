/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The one capture state machine every byte source feeds (docs/capture.md):
 * MODE_FILTER proves requests non-auth or starts an episode, MODE_CAPTURE
 * sends every byte (bounded), MODE_OFF looks at nothing. A backend finds
 * the socket and describes the I/O (struct capture_io); capture_ingress
 * and capture_egress do the rest. */
#ifndef AUTHPROBE_STATE_H
#define AUTHPROBE_STATE_H

#include "common.h"
#include "io.h"
#include "emit.h"
#include "proof.h"
#include "../maps/conns.h"
#include "../maps/verdicts.h"
#include "../maps/counters.h"
#include "conn.h"
#include "task.h"
#include "tls.h"

/* Ingress bytes one episode may copy; beyond it events carry lengths
 * only. */
volatile const __u32 burst_bytes = 256 << 10;
/* Bytes copied of each response, from the write that begins it. */
volatile const __u32 response_bytes = 1024;

/* apply_verdict applies and deletes user space's pending verdict on the
 * connection, if any. Only episodes get verdicts: user space only hears
 * of a connection while it is captured. */
static __always_inline void apply_verdict(__u64 sk, struct conn_state *st)
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
	if (v.kind & VERDICT_OFF) {
		st->mode = MODE_OFF;
		count(CNT_VERDICTS_APPLIED);
		return;
	}
	if (v.kind & VERDICT_SKIP) {
		if (v.skip_to > st->skip_to)
			st->skip_to = v.skip_to;
		count(CNT_VERDICTS_APPLIED);
	}
	if (!(v.kind & VERDICT_RESUME))
		return;
	/* Only if nothing moved since user space looked: then both streams
	 * are at a message boundary and every request is answered. */
	if (st->in_off != v.in_off || st->out_off != v.out_off) {
		/* Stale, but user space has read the ingress up to v.in_off: the
		 * episode's budget counts again from there, so it bounds what is
		 * copied ahead of user space (a window), not what one episode
		 * may ever copy. A connection that streams requests faster than
		 * verdicts come back keeps being captured. */
		if (v.in_off <= st->in_off && st->in_off - v.in_off < st->in_used)
			st->in_used = st->in_off - v.in_off;
		/* User space could end the episode as soon as it sees the next
		 * response: wake it then, not when the batch fills. */
		st->wake = 1;
		count(CNT_VERDICTS_STALE);
		return;
	}
	st->mode = MODE_FILTER;
	st->boundary = 1;
	st->skipped = 0;
	st->unanswered = 0;
	st->egress_on = 0;
	st->skip_to = 0;
	st->carry_len = 0;
	st->h2 = 0;
	count(CNT_VERDICTS_APPLIED);
}

/* take_budget takes up to n bytes from a budget of limit bytes of which
 * *used are gone, atomically: concurrent threads get disjoint shares. */
static __always_inline __u32 take_budget(__u32 *used, __u32 limit, __u32 n)
{
	if (*used >= limit)
		return 0;
	__u32 u = __sync_fetch_and_add(used, n);
	if (u >= limit)
		return 0;
	return n < limit - u ? n : limit - u;
}

/* copyable is how many of n reported bytes the events can carry; the rest
 * is counted. */
static __always_inline __u32 copyable(__u32 n)
{
	if (n <= MAX_SLICES * MAX_CAPTURE)
		return n;
	count_n(CNT_TRUNC_SLICES, n - MAX_SLICES * MAX_CAPTURE);
	return MAX_SLICES * MAX_CAPTURE;
}

static __always_inline bool is_tls_record(const __u8 *d)
{
	/* A handshake record: what a TLS client sends first. */
	return d[0] == 0x16 && d[1] == 0x03 && d[2] <= 0x04;
}

/* is_h2_preface: the first bytes of HTTP/2's client preface. */
static __always_inline bool is_h2_preface(const __u8 *d)
{
	return d[0] == 'P' && d[1] == 'R' && d[2] == 'I' && d[3] == ' ' && d[4] == '*' &&
	       d[5] == ' ' && d[6] == 'H' && d[7] == 'T' && d[8] == 'T' && d[9] == 'P' &&
	       d[10] == '/' && d[11] == '2' && d[12] == '.' && d[13] == '0';
}

static __always_inline void episode_start(struct conn_state *st)
{
	st->mode = MODE_CAPTURE;
	st->boundary = 0;
	st->in_used = 0;
	st->resp_used = 0;
	st->skip_to = 0;
	/* Egress is sent from the next response head on, once the skipped
	 * requests' responses have gone by. */
	st->egress_on = 0;
	/* User space may end the episode once it has the response of the
	 * request that began it: the reader is woken for that response, not
	 * left to the next batch (a batch of a mostly filtered stream can be
	 * tens of requests of this connection away, all of them captured). */
	st->wake = 1;
	count(CNT_EPISODES);
}

/* ingress_report sends the ingress bytes of io at stream offset off that
 * user space has not asked the kernel to skip, after carry bytes carried
 * from before it (already in the scratch event with the filled ones). */
static __always_inline void ingress_report(struct capture_io *io, struct conn_state *st,
					   __u64 off, __u8 flags, __u32 filled, __u32 carry)
{
	__u64 from = 0;
	__u64 skip_to = st->skip_to;
	if (skip_to > off) {
		if (skip_to >= off + io->len)
			return; /* all of it is a body user space does not want */
		from = skip_to - off;
		filled = 0;
	}
	__u32 n = io->len - from + carry;
	__u32 cap = 0;
	if (io->kind == IO_NONE) {
		flags |= EVF_UNREADABLE;
	} else if (st->h2) {
		cap = copyable(n);
	} else {
		__u32 c = copyable(n);
		cap = take_budget(&st->in_used, burst_bytes, c);
		if (cap < c)
			count_n(CNT_TRUNC_BUDGET, c - cap);
	}
	struct report r = {
		.off = off + from - carry,
		.from = from,
		.carry = carry,
		.len = n,
		.cap = cap,
		.filled = filled,
		.flags = flags,
		.io = *io,
	};
	r.nslices = slices(n);
	r.seq = __sync_fetch_and_add(&st->in_seq, r.nslices);
	__u32 skipped = 0, unanswered = 0;
	if (flags & EVF_EPISODE) {
		skipped = st->skipped;
		st->skipped = 0;
		unanswered = st->unanswered;
	}
	report_send(&r, st, skipped, unanswered);
}

/* capture_ingress handles io->len bytes the process read from the
 * connection st. */
static __always_inline void capture_ingress(struct capture_io *io, struct conn_state *st)
{
	if (st->source != io->source)
		return;
	if (st->mode == MODE_CAPTURE)
		apply_verdict(io->sk, st);
	__u64 off = __sync_fetch_and_add(&st->in_off, io->len);
	if (io->kind == IO_NONE)
		count(CNT_UNSUPPORTED_SYSCALL);
	if (st->mode == MODE_OFF)
		return;
	__u8 flags = 0;
	__u32 filled = 0, carry = 0;
	if (st->mode == MODE_FILTER) {
		bool boundary = st->boundary;
		carry = st->carry_len & (CARRY_MAX * 2 - 1);
		st->carry_len = 0;
		struct capture_scratch *s = scratch_get();
		if (!s)
			return;
		/* The carried bytes first, then this read's. */
		*(__u64 *)s->ev.data = st->carry;
		filled = carry;
		if (boundary && io->kind != IO_NONE) {
			filled += capture_copy(io, 0, min64(io->len, PROOF_MAX - carry), carry);
			if (filled >= 3 && is_tls_record(s->ev.data)) {
				st->mode = MODE_OFF;
				st->tls_start = 1;
				count(CNT_TLS_SKIPPED);
				return;
			}
			if (filled == carry + io->len && st->unanswered == 0) {
				if (filled <= CARRY_MAX) {
					st->carry = *(__u64 *)s->ev.data;
					st->carry_len = filled;
					return;
				}
				/* One skipped request at a time: its response must
				 * have started before another is skipped, so a
				 * response the kernel suppresses always begins its
				 * own write. */
				if (capture_prove(filled)) {
					__sync_fetch_and_add(&st->skipped, 1);
					__sync_fetch_and_add(&st->unanswered, 1);
					count(CNT_REQUESTS_SKIPPED);
					task_skipped(io);
					return;
				}
			}
		}
		if (boundary && filled >= 14 && is_h2_preface(s->ev.data))
			st->h2 = 1;
		episode_start(st);
		flags = EVF_EPISODE | (boundary ? EVF_BOUNDARY : 0);
	}
	task_serve(io, st->gen);
	ingress_report(io, st, off, flags, filled, carry);
}

enum head_kind {
	HEAD_NONE = 0,    /* not the start of a response head */
	HEAD_INTERIM = 1, /* 1xx other than 101 */
	HEAD_FINAL = 2,
	HEAD_SWITCH = 3,  /* 101: the connection becomes a tunnel */
};

/* response_head classifies the start of a write; its first bytes are
 * left in the scratch event (*filled of them). */
static __always_inline __u8 response_head(struct capture_io *io, struct capture_scratch *s,
					  __u32 *filled)
{
	__u32 got = capture_copy(io, 0, io->len < 16 ? io->len : 16, 0);
	*filled = got;
	const __u8 *d = s->ev.data;
	if (got < 5 || d[0] != 'H' || d[1] != 'T' || d[2] != 'T' || d[3] != 'P' || d[4] != '/')
		return HEAD_NONE;
	/* A head split before its status is taken as a final one. */
	if (got < 12)
		return HEAD_FINAL;
	if (d[5] != '1' || d[6] != '.' || d[8] != ' ')
		return HEAD_NONE;
	if (d[9] != '1')
		return HEAD_FINAL;
	return d[10] == '0' && d[11] == '1' ? HEAD_SWITCH : HEAD_INTERIM;
}

/* answer_one takes one from unanswered, never below zero. */
static __always_inline void answer_one(struct conn_state *st)
{
	__u32 n = st->unanswered;
	if (n)
		__sync_val_compare_and_swap(&st->unanswered, n, n - 1);
}

/* egress_all sends a write of an HTTP/2 connection whole. */
static __always_inline void egress_all(struct capture_io *io, struct conn_state *st, __u64 off)
{
	struct report r = {
		.off = off,
		.len = io->len,
		.cap = io->kind == IO_NONE ? 0 : copyable(io->len),
		.flags = io->kind == IO_NONE ? EVF_UNREADABLE : 0,
		.io = *io,
	};
	r.nslices = slices(io->len);
	r.seq = __sync_fetch_and_add(&st->out_seq, r.nslices);
	report_send(&r, st, 0, 0);
}

/* capture_egress handles io->len bytes the process wrote to the
 * connection st. */
static __always_inline void capture_egress(struct capture_io *io, struct conn_state *st)
{
	if (st->source != io->source)
		return;
	if (st->mode == MODE_CAPTURE)
		apply_verdict(io->sk, st);
	__u64 off = __sync_fetch_and_add(&st->out_off, io->len);
	if (io->kind == IO_NONE)
		count(CNT_UNSUPPORTED_SYSCALL);
	__u8 mode = st->mode;
	if (mode == MODE_OFF || (mode == MODE_FILTER && st->unanswered == 0))
		return;
	if (mode == MODE_CAPTURE && st->h2) {
		egress_all(io, st, off);
		return;
	}
	struct capture_scratch *s = scratch_get();
	if (!s)
		return;
	__u32 filled = 0;
	__u8 head = io->kind == IO_NONE ? HEAD_NONE : response_head(io, s, &filled);
	if (mode == MODE_FILTER || st->unanswered) {
		/* The response of a skipped request: never sent. */
		if (head == HEAD_FINAL || head == HEAD_SWITCH) {
			answer_one(st);
			task_skip_answered(io);
		}
		if (head == HEAD_SWITCH)
			st->mode = MODE_OFF;
		return;
	}
	if (head != HEAD_NONE) {
		st->egress_on = 1;
		st->resp_used = 0;
	}
	if (head == HEAD_FINAL || head == HEAD_SWITCH)
		task_answered(io);
	if (!st->egress_on)
		return;
	__u8 flags = 0;
	__u32 cap = 0;
	if (io->kind == IO_NONE) {
		flags = EVF_UNREADABLE;
	} else {
		__u32 c = copyable(io->len);
		cap = take_budget(&st->resp_used, response_bytes, c);
		if (cap < c)
			count_n(CNT_TRUNC_RESPONSE, c - cap);
	}
	struct report r = {
		.off = off,
		.len = io->len,
		.cap = cap,
		.filled = filled,
		.flags = flags,
		.io = *io,
	};
	if (head == HEAD_FINAL && st->wake) {
		st->wake = 0;
		r.wake = 1;
	}
	r.nslices = slices(io->len);
	r.seq = __sync_fetch_and_add(&st->out_seq, r.nslices);
	report_send(&r, st, 0, 0);
	/* After a 101 the connection speaks what the request asked to
	 * upgrade to: h2c must not pass unseen, so every byte goes to user
	 * space, which turns a WebSocket (or any other tunnel) off. */
	if (head == HEAD_SWITCH)
		st->h2 = 1;
}

#include "client.h"

/* capture_handle runs an I/O of a watched process through the state
 * machine of its connection. The one entry point of every backend; a
 * global function, so the verifier checks it once. */
__noinline int capture_handle(struct capture_io *io)
{
	if (!io)
		return 0;
	/* Ciphertext of an SSL call: it names the call's socket, nothing more. */
	if (io->source == SRC_SOCKET && tls_socket_io(io))
		return 0;
	struct conn_state *st = conn_get((struct sock *)io->sk, io->len, io->dir);
	if (!st)
		return 0;
	if (st->mode == MODE_CLIENT) {
		capture_client(io, st);
		return 0;
	}
	if (io->dir == DIR_INGRESS)
		capture_ingress(io, st);
	else
		capture_egress(io, st);
	tls_note_read(io, st);
	return 0;
}

#endif
