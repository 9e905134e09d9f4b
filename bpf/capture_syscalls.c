//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The "syscalls" capture backend, for kernels without the socket-layer
 * tracepoints: the exits of the read and write syscall families.
 *
 * Only exits are hooked: the syscall's arguments are still in the task's
 * saved user registers when sys_exit fires, so no enter program has to
 * keep them, and reads that were already blocked when the agent attached
 * are seen. The watched check comes first, so a syscall of an unwatched
 * process costs one lookup (but every task takes the kernel's slow
 * syscall path while any syscall tracepoint is attached: this backend is
 * the last resort). */

#include "capture/common.h"
#include "capture/arch.h"
#include "capture/conn.h"
#include "capture/state.h"
#include "capture/fd.h"
#include "maps/watched.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

enum flags_arg {
	NO_FLAGS = 0,
	FLAGS_ARG3 = 3, /* recvmsg(fd, msg, flags) */
	FLAGS_ARG4 = 4, /* recvfrom(fd, buf, len, flags, ...) */
};

static __always_inline int on_sys_exit(long ret, __u8 dir, __u8 kind, __u8 flags_arg)
{
	if (ret <= 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct watch_info *w = current_watch(id >> 32);
	if (!w)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	int flags = 0;
	if (flags_arg == FLAGS_ARG3)
		flags = SYSCALL_ARG3(regs);
	else if (flags_arg == FLAGS_ARG4)
		flags = SYSCALL_ARG4(regs);
	if (flags & MSG_PEEK) {
		count(CNT_PEEK); /* the bytes are read again */
		return 0;
	}
	if (flags & (MSG_ERRQUEUE | MSG_OOB))
		return 0; /* not the byte stream */
	struct sock *sk = sock_of_fd(SYSCALL_ARG1(regs));
	if (!sk)
		return 0;
	struct capture_io io = {
		.sk = (__u64)sk,
		.addr = SYSCALL_ARG2(regs),
		.iovcnt = SYSCALL_ARG3(regs),
		.len = ret,
		.pid = id >> 32,
		.tid = (__u32)id,
		.dir = dir,
		.kind = flags & MSG_TRUNC ? IO_NONE : kind,
		.source = SRC_SOCKET,
		.ssl = !!(w->flags & WATCH_SSL_CALLS),
	};
	/* Go's register ABI keeps the running goroutine in a register. */
	if (w->flags & WATCH_GO_REGABI)
		io.task = GO_G(regs);
	return capture_handle(&io);
}

SEC("tracepoint/syscalls/sys_exit_read")
int authprobe_sys_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_INGRESS, IO_BUF, NO_FLAGS);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int authprobe_sys_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_INGRESS, IO_BUF, FLAGS_ARG4);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int authprobe_sys_exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_INGRESS, IO_IOV, NO_FLAGS);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int authprobe_sys_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_INGRESS, IO_MSG, FLAGS_ARG3);
}

SEC("tracepoint/syscalls/sys_exit_write")
int authprobe_sys_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_EGRESS, IO_BUF, NO_FLAGS);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int authprobe_sys_exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_EGRESS, IO_BUF, NO_FLAGS);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int authprobe_sys_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_EGRESS, IO_IOV, NO_FLAGS);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int authprobe_sys_exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return on_sys_exit(ctx->ret, DIR_EGRESS, IO_MSG, NO_FLAGS);
}
