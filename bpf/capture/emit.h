/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Sending data events: one I/O's reported range becomes up to MAX_SLICES
 * events of at most MAX_CAPTURE copied bytes each. */
#ifndef AUTHPROBE_EMIT_H
#define AUTHPROBE_EMIT_H

#include "common.h"
#include "io.h"
#include "../maps/events.h"
#include "../maps/counters.h"

struct report {
	__u64 off;       /* stream offset of the first reported byte */
	__u32 from;      /* the I/O's byte that is the first reported one */
	__u32 carry;     /* bytes reported before the I/O's: a carried short read */
	__u32 busy;      /* client I/O: the task's skipped requests in flight */
	__u32 len;       /* bytes reported */
	__u32 cap;       /* bytes to copy: a prefix of len */
	__u32 filled;    /* ev.data[0..filled) already holds bytes from.. of the I/O */
	__u32 seq;       /* seq of the first event */
	__u32 nslices;
	__u8 flags;      /* of the first event */
	__u8 wake;       /* wake the reader once its last event is in (prompt_wake) */
	__u8 _pad[6];
	__u64 other;     /* client I/O: the other direction's stream offset */
	struct capture_io io;
};

struct slicing {
	struct capture_scratch *s;
	struct report *r;
};

/* slice_step sends event k of a report: it covers MAX_CAPTURE bytes, the
 * last one everything that is left. */
static long slice_step(__u32 k, void *data)
{
	struct slicing *sl = data;
	struct report *r = sl->r;
	struct capture_scratch *s = sl->s;
	if (k >= r->nslices)
		return 1;
	__u64 start = (__u64)(k & (MAX_SLICES - 1)) * MAX_CAPTURE;
	__u64 end = k + 1 == r->nslices ? r->len : start + MAX_CAPTURE;
	__u64 want = r->cap > start ? min64(r->cap - start, MAX_CAPTURE) : 0;
	__u64 have = 0;
	if (k == 0 && r->filled)
		have = min64(r->filled, want);
	__u8 flags = k == 0 ? r->flags : (r->flags & EVF_UNREADABLE);
	if (have < want) {
		/* Reported byte i is the I/O's byte from + i - carry; the
		 * carried bytes are always among the filled ones. */
		__u32 got = capture_copy(&r->io, r->from + start + have - r->carry, want - have, have);
		if (got < want - have) {
			/* A fault: what could not be copied is not sent. */
			want = have + got;
			if (want == 0)
				flags |= EVF_UNREADABLE;
		}
	}
	if (want < end - start && !(flags & EVF_UNREADABLE))
		flags |= EVF_BUDGET;

	struct conn_event *h = &s->ev.hdr;
	h->flags = flags;
	h->seq = r->seq + k;
	h->off = r->off + start;
	h->len = end - start;
	h->cap = want;
	if (k > 0) {
		h->skipped = 0;
		h->unanswered = 0;
	}
	__u64 wf = r->wake && k + 1 == r->nslices ? BPF_RB_FORCE_WAKEUP : wakeup_flags();
	if (bpf_ringbuf_output(&events, &s->ev, sizeof(s->ev.hdr) + clamp(want, MAX_CAPTURE), wf)) {
		count(CNT_DROP_RINGBUF_FULL);
		return 0;
	}
	count(CNT_EVENTS_DATA);
	return 0;
}

/* capture_report sends the events of r; the header fields they share are
 * already in the scratch event. A global function: verified once. */
__noinline int capture_report(struct report *r)
{
	struct capture_scratch *s = scratch_get();
	if (!r || !s)
		return 0;
	struct slicing sl = {.s = s, .r = r};
	bpf_loop(MAX_SLICES, slice_step, &sl, 0);
	return 0;
}

/* The least time between two wakeups prompt_wake forces on one CPU (0:
 * none is): an episode whose resumes keep coming too late costs at most
 * one wakeup per this long per CPU, not one per response. */
volatile const __u64 prompt_wake_ns = 0;

/* prompt_wake says whether a report that asks to wake the reader at once
 * (at time now) may: not within prompt_wake_ns of the last one this CPU
 * forced. */
static __always_inline bool prompt_wake(struct capture_scratch *s, __u64 now)
{
	if (!prompt_wake_ns)
		return false;
	if (now - s->last_wake < prompt_wake_ns) {
		count(CNT_PROMPT_WAKES_LIMITED);
		return false;
	}
	s->last_wake = now;
	count(CNT_PROMPT_WAKES);
	return true;
}

/* report_send sends r's events for the connection st. */
static __always_inline void report_send(struct report *r, struct conn_state *st,
					__u32 skipped, __u32 unanswered)
{
	struct capture_scratch *s = scratch_get();
	if (!s || r->nslices == 0)
		return;
	struct conn_event *h = &s->ev.hdr;
	h->type = EVENT_DATA;
	h->dir = r->io.dir;
	h->role = st->role;
	h->source = r->io.source;
	h->sock = r->io.sk;
	h->gen = st->gen;
	h->pid = r->io.pid;
	h->tid = r->io.tid;
	h->task = r->io.task ? r->io.task : r->io.tid;
	h->busy = r->busy;
	h->other = r->other;
	h->ts = bpf_ktime_get_ns();
	if (r->wake)
		r->wake = prompt_wake(s, h->ts);
	h->skipped = skipped;
	h->unanswered = unanswered;
	h->peer = st->peer;
	h->local = st->local;
	st->captured = 1;
	capture_report(r);
}

/* slices is how many events n reported bytes take. */
static __always_inline __u32 slices(__u32 n)
{
	__u32 k = (n + MAX_CAPTURE - 1) / MAX_CAPTURE;
	return k < MAX_SLICES ? k : MAX_SLICES;
}

#endif
