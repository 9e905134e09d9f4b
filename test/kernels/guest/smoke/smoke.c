//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* Smoke test of a kernel for authprobe (test/kernels): one syscall
 * tracepoint program that reads the syscall's arguments from the task's
 * saved user registers with CO-RE (the way the agent does, on amd64 and
 * arm64 alike), reads task_struct through BTF, counts, runs a bpf_loop
 * and reports through a ring buffer. */

#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "vmlinux.h"
#include "bpf_helpers.h"
#include "bpf_core_read.h"
#include "bpf_tracing.h"
#pragma clang diagnostic pop

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader: the test's tgid and the write length that marks its
 * calls. */
volatile const __u32 target_tgid;
volatile const __u64 magic_count;

/* What the program saw of the test's writes. */
struct seen {
	__u64 calls;
	__u64 fd;
	__u64 buf;
	__u64 count;
	__s64 ret;
	__u64 loop_sum;
	__u32 tgid;
	__u32 ppid;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct seen);
} seen_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

static long add_index(__u32 i, void *ctx)
{
	*(__u64 *)ctx += i;
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_write")
int smoke_sys_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (PT_REGS_PARM3_CORE_SYSCALL(regs) != magic_count)
		return 0;
	__u32 zero = 0;
	struct seen *s = bpf_map_lookup_elem(&seen_map, &zero);
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->calls, 1);
	s->fd = PT_REGS_PARM1_CORE_SYSCALL(regs);
	s->buf = PT_REGS_PARM2_CORE_SYSCALL(regs);
	s->count = PT_REGS_PARM3_CORE_SYSCALL(regs);
	s->ret = ctx->ret;
	s->tgid = BPF_CORE_READ(task, tgid);
	s->ppid = BPF_CORE_READ(task, real_parent, tgid);
	__u64 sum = 0;
	bpf_loop(10, add_index, &sum, 0);
	s->loop_sum = sum;
	bpf_ringbuf_output(&events, s, sizeof(*s), 0);
	return 0;
}
