/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Which request a task is serving (docs/capture.md, "Client
 * connections"). A task is a thread, or in a Go program on the register
 * ABI a goroutine. The server side of the state machine tells it:
 *   - a read of a captured server connection: the task serves that
 *     connection's request (task_serve);
 *   - a final response head written to the connection it serves: it no
 *     longer does (task_answered);
 *   - a request the kernel skipped, and that request's response head:
 *     one more, one less request in flight that user space never hears of
 *     (task_skipped, task_skip_answered).
 * The client side asks it (task_serving) for every I/O on a connection
 * the process opened. In a Go program a goroutine created while a
 * serving goroutine serves (go_spawned, set by go_runtime.c's
 * runtime.newproc1 probes) asks its root's state instead
 * (task_spawned_serving). */
#ifndef AUTHPROBE_TASK_H
#define AUTHPROBE_TASK_H

#include "common.h"
#include "io.h"
#include "../maps/tasks.h"
#include "../maps/go_spawned.h"
#include "../maps/counters.h"

/* A task that read nothing of its server connection for this long is not
 * taken to serve it any more (the request's response was never seen). */
volatile const __u64 serving_ns = 30ULL * 1000000000ULL;

static __always_inline struct task_key task_key_of(struct capture_io *io)
{
	struct task_key k = {.tgid = io->pid, .id = io->task ? io->task : io->tid};
	return k;
}

/* task_get finds the task's state, creating it when create is set. */
static __always_inline struct task_state *task_get(struct task_key *k, bool create)
{
	struct task_state *t = bpf_map_lookup_elem(&tasks, k);
	if (t || !create)
		return t;
	struct task_state zero = {};
	if (bpf_map_update_elem(&tasks, k, &zero, BPF_NOEXIST) && !bpf_map_lookup_elem(&tasks, k)) {
		count(CNT_DROP_TASK_STATE);
		return NULL;
	}
	return bpf_map_lookup_elem(&tasks, k);
}

/* task_serve: the task read from the captured server connection sk. */
static __always_inline void task_serve(struct capture_io *io, __u64 gen)
{
	struct task_key k = task_key_of(io);
	struct task_state *t = task_get(&k, true);
	if (!t)
		return;
	/* Another request (answered before, or on another connection): what
	 * the task spawned for the last one is not this one's. */
	if (t->sock != io->sk || t->gen != gen)
		t->serial++;
	t->sock = io->sk;
	t->gen = gen;
	t->since = bpf_ktime_get_ns();
}

/* task_answered: the task wrote a final response head to sk. */
static __always_inline void task_answered(struct capture_io *io)
{
	struct task_key k = task_key_of(io);
	struct task_state *t = task_get(&k, false);
	if (t && t->sock == io->sk)
		t->sock = 0;
}

/* task_skipped: the task read a request the kernel proved non-auth. */
static __always_inline void task_skipped(struct capture_io *io)
{
	struct task_key k = task_key_of(io);
	struct task_state *t = task_get(&k, true);
	if (t)
		__sync_fetch_and_add(&t->busy, 1);
}

/* task_skip_answered: the task began the response of a skipped request. */
static __always_inline void task_skip_answered(struct capture_io *io)
{
	struct task_key k = task_key_of(io);
	struct task_state *t = task_get(&k, false);
	if (!t)
		return;
	__u32 n = t->busy;
	if (n)
		__sync_val_compare_and_swap(&t->busy, n, n - 1);
}

/* task_serving says whether the task doing io serves a captured request,
 * and how many skipped requests it has in flight besides. */
static __always_inline bool task_serving(struct capture_io *io, __u32 *busy)
{
	struct task_key k = task_key_of(io);
	struct task_state *t = task_get(&k, false);
	if (!t || !t->sock)
		return false;
	if (bpf_ktime_get_ns() - t->since > serving_ns)
		return false;
	*busy = t->busy;
	return true;
}

/* task_root_serves says whether the root goroutine of spawn s (in tgid)
 * still serves the request it served when s was created, and gives its
 * state. */
static __always_inline struct task_state *task_root_serves(__u32 tgid, struct go_spawn *s)
{
	struct task_key rk = {.tgid = tgid, .id = s->root};
	struct task_state *t = bpf_map_lookup_elem(&tasks, &rk);
	if (!t || !t->sock || t->sock != s->sock || t->serial != s->serial)
		return NULL;
	if (bpf_ktime_get_ns() - t->since > serving_ns)
		return NULL;
	return t;
}

/* task_spawned_serving: for a goroutine that serves nothing itself, whether
 * it was spawned for a request its root still serves. If so its I/O is
 * the root's: io->task becomes the root's g, so that user space
 * attributes it as the root's own. */
static __always_inline bool task_spawned_serving(struct capture_io *io, __u32 *busy)
{
	if (!io->task)
		return false;
	struct task_key k = {.tgid = io->pid, .id = io->task};
	struct go_spawn *s = bpf_map_lookup_elem(&go_spawned, &k);
	if (!s)
		return false;
	struct task_state *t = task_root_serves(io->pid, s);
	if (!t)
		return false;
	*busy = t->busy;
	io->task = s->root;
	count(CNT_CLIENT_SPAWNED);
	return true;
}

#endif
