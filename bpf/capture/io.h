/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The bytes of one I/O: where they are in user memory, and copying a
 * range of them into the scratch event. Backends describe an I/O with
 * struct capture_io; the state machine asks for bytes only when it needs
 * them. */
#ifndef AUTHPROBE_IO_H
#define AUTHPROBE_IO_H

#include "common.h"
#include "../maps/capture_scratch.h"
#include "../maps/counters.h"

enum io_kind {
	IO_NONE = 0, /* the buffer cannot be read (unsupported syscall) */
	IO_BUF = 1,  /* one buffer at addr */
	IO_IOV = 2,  /* an iovec array at addr, iovcnt entries */
	IO_MSG = 3,  /* a struct user_msghdr at addr */
};

struct capture_io {
	__u64 sk;     /* struct sock address: the connection */
	__u64 addr;   /* user memory, as kind says */
	__u64 iovcnt; /* IO_IOV: entries at addr */
	__u64 task;   /* the goroutine (g) of a Go process; 0: the thread is the task */
	__u32 len;    /* bytes the I/O moved (> 0) */
	__u32 pid;    /* tgid doing the I/O */
	__u32 tid;
	__u8 dir;     /* enum direction */
	__u8 kind;    /* enum io_kind */
	__u8 source;  /* enum byte_source */
	__u8 ssl;     /* the process makes SSL_* calls (WATCH_SSL_CALLS) */
	/* Set by io_resolve: how many iovecs are in the scratch, and how many
	 * of the I/O's bytes they hold (less than len when there were more
	 * than MAX_IOV). */
	__u32 nvec;
	__u32 readable;
};

/* io_resolve puts the iovecs of io into s->iov (a single buffer is one
 * iovec) and says how many of its bytes can be read. 0: none. */
static __always_inline __u32 io_resolve(struct capture_io *io, struct capture_scratch *s)
{
	if (io->nvec)
		return io->readable;
	if (io->kind == IO_BUF) {
		s->iov[0].base = io->addr;
		s->iov[0].len = io->len;
		io->nvec = 1;
		io->readable = io->len;
		return io->readable;
	}
	if (io->kind == IO_MSG) {
		/* The message header goes where its iovecs are about to be
		 * read, not on the stack: capture_copy is in the capture's
		 * deepest call chains (bpf/stack_test.go). */
		_Static_assert(sizeof(struct user_msghdr) <= sizeof(s->iov), "msghdr fits the iovec scratch");
		struct user_msghdr *m = (struct user_msghdr *)s->iov;
		if (bpf_probe_read_user(m, sizeof(*m), (void *)io->addr)) {
			count(CNT_DROP_READ_FAULT);
			io->kind = IO_NONE;
			return 0;
		}
		io->addr = (__u64)m->msg_iov;
		io->iovcnt = m->msg_iovlen;
		io->kind = IO_IOV;
	}
	if (io->kind != IO_IOV)
		return 0;
	__u64 n = io->iovcnt < MAX_IOV ? io->iovcnt : MAX_IOV;
	if (n == 0 || bpf_probe_read_user(s->iov, clamp(n, MAX_IOV) * sizeof(struct uvec), (void *)io->addr)) {
		count(CNT_DROP_READ_FAULT);
		io->kind = IO_NONE;
		return 0;
	}
	__u64 total = 0;
#pragma unroll
	for (int i = 0; i < MAX_IOV; i++)
		if (i < n)
			total += s->iov[i].len;
	io->nvec = n;
	io->readable = total < io->len ? total : io->len;
	if (io->readable < io->len)
		count_n(CNT_DROP_IOV_TRUNCATED, io->len - io->readable);
	return io->readable;
}

/* gather_walk is what gather_step gets: the scratch, whose gather it
 * advances. */
struct gather_walk {
	struct capture_scratch *s;
};

/* gather_step copies the part of one iovec that falls in [start, end). */
static long gather_step(__u32 i, void *data)
{
	struct capture_scratch *s = ((struct gather_walk *)data)->s;
	struct gather *g = &s->gather;
	if (i >= g->nvec || g->pos >= g->end)
		return 1;
	struct uvec *v = &s->iov[i & (MAX_IOV - 1)];
	__u64 lo = g->pos;
	__u64 hi = lo + v->len;
	g->pos = hi;
	if (hi <= g->start)
		return 0;
	__u64 a = g->start > lo ? g->start : lo;
	__u64 b = hi < g->end ? hi : g->end;
	__u64 n = clamp(b - a, MAX_CAPTURE);
	__u32 dst = g->dst & (MAX_CAPTURE - 1);
	if (n && bpf_probe_read_user(s->ev.data + dst, n, (void *)(v->base + (a - lo)))) {
		g->fault = 1;
		return 1;
	}
	g->dst += n;
	g->got += n;
	return 0;
}

/* capture_copy copies n (at most MAX_CAPTURE) bytes of the I/O, from byte
 * start on, to the scratch event's data at dst; dst + n is at most
 * MAX_CAPTURE. It returns the bytes copied: fewer on a fault or past the
 * readable end. A global function: verified once, not per caller path. */
__noinline int capture_copy(struct capture_io *io, __u64 start, __u64 n, __u32 dst)
{
	struct capture_scratch *s = scratch_get();
	if (!io || !s)
		return 0;
	__u32 readable = io_resolve(io, s);
	if (start >= readable)
		return 0;
	if (n > readable - start)
		n = readable - start;
	n = clamp(n, MAX_CAPTURE);
	if (io->nvec == 1) {
		/* The common case, a single buffer: no walk. */
		if (bpf_probe_read_user(s->ev.data + (dst & (MAX_CAPTURE - 1)), n,
					(void *)(s->iov[0].base + start))) {
			count(CNT_DROP_READ_FAULT);
			return 0;
		}
		return n;
	}
	s->gather = (struct gather){
		.start = start,
		.end = start + n,
		.dst = dst,
		.nvec = io->nvec,
	};
	struct gather_walk w = {.s = s};
	bpf_loop(MAX_IOV, gather_step, &w, 0);
	if (s->gather.fault)
		count(CNT_DROP_READ_FAULT);
	return s->gather.got;
}

#endif
