/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* watched: the processes (tgids) whose connections are captured, with the
 * identity they had when they were watched. */
#ifndef AUTHPROBE_MAP_WATCHED_H
#define AUTHPROBE_MAP_WATCHED_H

#include "../capture/common.h"
#include "counters.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192); /* resized from Go */
	__type(key, __u32); /* tgid */
	__type(value, struct watch_info);
} watched SEC(".maps");

/* The agent's own tgid: never watched, nor its children. */
volatile const __u32 agent_tgid = 0;

/* start_ticks is a process's identity next to its tgid: its group
 * leader's start time as /proc/PID/stat field 22 has it. */
static __always_inline __u64 start_ticks(struct task_struct *leader)
{
	return leader->start_boottime / NSEC_PER_TICK;
}

/* current_watch is the current process's watch entry when it is watched
 * under its own identity. A tgid that now belongs to another process is
 * forgotten here (stale_watch): nothing it does is captured. */
static __always_inline struct watch_info *current_watch(__u32 tgid)
{
	struct watch_info *w = bpf_map_lookup_elem(&watched, &tgid);
	if (!w)
		return NULL;
	struct task_struct *task = bpf_get_current_task_btf();
	if (w->start == start_ticks(task->group_leader))
		return w;
	count(CNT_STALE_WATCH);
	bpf_map_delete_elem(&watched, &tgid);
	return NULL;
}

static __always_inline bool current_watched(__u32 tgid)
{
	return current_watch(tgid) != NULL;
}

#endif
