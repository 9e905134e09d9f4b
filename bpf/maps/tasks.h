/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* tasks: per task (thread, or goroutine of a Go process) of a watched
 * process, the captured request it serves and the skipped requests it has
 * not answered yet (struct task_state). */
#ifndef AUTHPROBE_MAP_TASKS_H
#define AUTHPROBE_MAP_TASKS_H

#include "../capture/common.h"

/* An LRU: tasks end without telling (a thread exits, a goroutine returns),
 * and an entry evicted is a task that did no server I/O for a long time.
 * Losing one costs at most the capture of that task's next calls. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized from Go */
	__type(key, struct task_key);
	__type(value, struct task_state);
} tasks SEC(".maps");

#endif
