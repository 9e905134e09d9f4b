/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* go_spawned: per goroutine of a watched Go process created while a
 * serving goroutine (its root) served a captured request, that root and
 * the request (struct go_spawn); go_newproc: the creator of the goroutine
 * runtime.newproc1 is creating on each thread, between its entry and its
 * return (docs/capture.md, "Goroutines that hand work on"). */
#ifndef AUTHPROBE_MAP_GO_SPAWNED_H
#define AUTHPROBE_MAP_GO_SPAWNED_H

#include "../capture/common.h"

/* An LRU: goroutines end without telling; every creation rewrites (or
 * deletes) the entry of the g it hands out, so a reused g never keeps its
 * last life's root. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized from Go, as tasks */
	__type(key, struct task_key);
	__type(value, struct go_spawn);
} go_spawned SEC(".maps");

/* newproc1 runs on the thread's system stack, never switching threads
 * before it returns: the thread id keys the creation in flight. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);   /* pid_tgid */
	__type(value, __u64); /* the creator's g */
} go_newproc SEC(".maps");

#endif
