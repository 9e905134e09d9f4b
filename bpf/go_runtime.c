//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* Goroutine creation in watched Go programs (docs/capture.md, "Goroutines
 * that hand work on"): uprobes on runtime.newproc1, the one function every
 * `go` statement's goroutine is made by, attached per process by
 * Probe.WatchWith. Its entry gives the creator (callergp, the second
 * argument: newproc1 runs on the system stack, so the g register holds
 * g0, not the creator); each of its RET instructions the new g (its
 * result). No uretprobe: it rewrites the return address on a stack the Go
 * runtime moves (bpf/uprobe, rets.go).
 *
 * At the return the new g's entries of a former life are dropped (tasks,
 * go_spawned: Go reuses g structs), and when the creator serves a
 * captured request, or was itself spawned for one its root still serves,
 * the new goroutine is recorded as working for that root and request
 * (go_spawned). capture/task.h reads it at the goroutine's client I/O. */

#include "capture/common.h"
#include "capture/arch.h"
#include "capture/task.h"
#include "maps/go_spawned.h"
#include "maps/watched.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int authprobe_go_newproc1(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct watch_info *w = current_watch(id >> 32);
	if (!w || !(w->flags & WATCH_GO_REGABI))
		return 0;
	__u64 creator = GO_ARG2(ctx);
	bpf_map_update_elem(&go_newproc, &id, &creator, BPF_ANY);
	return 0;
}

/* spawn_of fills s when the creator g serves a captured request (it is
 * the root) or works for a root that still serves its request. */
static __always_inline bool spawn_of(__u32 tgid, __u64 creator, struct go_spawn *s)
{
	struct task_key ck = {.tgid = tgid, .id = creator};
	struct task_state *t = bpf_map_lookup_elem(&tasks, &ck);
	if (t && t->sock && bpf_ktime_get_ns() - t->since <= serving_ns) {
		s->root = creator;
		s->sock = t->sock;
		s->serial = t->serial;
		return true;
	}
	struct go_spawn *ps = bpf_map_lookup_elem(&go_spawned, &ck);
	if (!ps)
		return false;
	struct go_spawn p = *ps;
	if (!task_root_serves(tgid, &p))
		return false;
	*s = p;
	return true;
}

SEC("uprobe")
int authprobe_go_newproc1_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 *cp = bpf_map_lookup_elem(&go_newproc, &id);
	if (!cp)
		return 0;
	__u64 creator = *cp;
	bpf_map_delete_elem(&go_newproc, &id);
	__u64 g = GO_RET1(ctx);
	if (!g)
		return 0;
	__u32 tgid = id >> 32;
	struct task_key k = {.tgid = tgid, .id = g};
	bpf_map_delete_elem(&tasks, &k);
	struct go_spawn s = {};
	if (spawn_of(tgid, creator, &s)) {
		bpf_map_update_elem(&go_spawned, &k, &s, BPF_ANY);
		count(CNT_GO_SPAWNED);
	} else {
		bpf_map_delete_elem(&go_spawned, &k);
	}
	return 0;
}
