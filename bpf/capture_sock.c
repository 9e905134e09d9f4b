//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The "sock" capture backend: the socket layer's own tracepoints.
 *
 * sock_recv_length and sock_send_length (kernel 6.3+) fire inside
 * sock_recvmsg/sock_sendmsg, only for socket I/O, with the socket in hand
 * and the syscall's arguments still in the task's saved user registers.
 * No syscall tracepoint is attached: a syscall that is not socket I/O
 * costs nothing, and socket I/O of an unwatched process one hash lookup. */

#include "capture/common.h"
#include "capture/arch.h"
#include "capture/conn.h"
#include "capture/state.h"
#include "maps/watched.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* sock_io finds the user buffer of the syscall doing this socket I/O.
 * Anything but a plain read/write/recv/send family call (io_uring and
 * its workers, sendfile, splice, mmsg, compat syscalls) stays IO_NONE:
 * its bytes move the stream, unread. */
static __always_inline void sock_io(struct capture_io *io)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->flags & (PF_KTHREAD | PF_IO_WORKER))
		return;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	long nr = SYSCALL_NR(regs);
	__u8 kind = IO_NONE;
	if (io->dir == DIR_INGRESS) {
		if (nr == SYS_READ || nr == SYS_RECVFROM)
			kind = IO_BUF;
		else if (nr == SYS_READV)
			kind = IO_IOV;
		else if (nr == SYS_RECVMSG)
			kind = IO_MSG;
	} else {
		if (nr == SYS_WRITE || nr == SYS_SENDTO)
			kind = IO_BUF;
		else if (nr == SYS_WRITEV)
			kind = IO_IOV;
		else if (nr == SYS_SENDMSG)
			kind = IO_MSG;
	}
	__u64 n = SYSCALL_ARG3(regs);
	/* A buffer shorter than the I/O is not this I/O's buffer. */
	if (kind == IO_BUF && n < io->len)
		return;
	io->kind = kind;
	io->addr = SYSCALL_ARG2(regs);
	io->iovcnt = n;
}

/* go_task is the goroutine doing this syscall in a Go program on the
 * register ABI: its g, which Go's syscall path leaves in the saved user
 * registers. 0 (the thread is the task) outside a syscall. */
static __always_inline __u64 go_task(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->flags & (PF_KTHREAD | PF_IO_WORKER))
		return 0;
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	return GO_G(regs);
}

static __always_inline int on_sock_io(struct sock *sk, int ret, int flags, __u8 dir)
{
	if (ret <= 0)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct watch_info *w = current_watch(id >> 32);
	if (!w)
		return 0;
	if (dir == DIR_INGRESS) {
		if (flags & MSG_PEEK) {
			count(CNT_PEEK); /* the bytes are read again */
			return 0;
		}
		if (flags & (MSG_ERRQUEUE | MSG_OOB))
			return 0; /* not the byte stream */
	}
	struct capture_io io = {
		.sk = (__u64)sk,
		.len = ret,
		.pid = id >> 32,
		.tid = (__u32)id,
		.dir = dir,
		.source = SRC_SOCKET,
	};
	if (w->flags & WATCH_GO_REGABI)
		io.task = go_task();
	/* MSG_TRUNC on TCP discards the bytes instead of copying them. */
	if (!(flags & MSG_TRUNC))
		sock_io(&io);
	return capture_handle(&io);
}

SEC("raw_tp/sock_recv_length")
int authprobe_sock_recv_length(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sock_io((struct sock *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2],
			  DIR_INGRESS);
}

SEC("raw_tp/sock_send_length")
int authprobe_sock_send_length(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sock_io((struct sock *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2],
			  DIR_EGRESS);
}
