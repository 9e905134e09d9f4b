/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* Socket I/O seen inside the kernel's socket path (the "sock" and
 * "fentry" backends): the socket is in hand, the syscall's arguments are
 * still in the task's saved user registers. */
#ifndef AUTHPROBE_SOCKIO_H
#define AUTHPROBE_SOCKIO_H

#include "common.h"
#include "arch.h"
#include "conn.h"
#include "state.h"
#include "../maps/watched.h"

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

/* on_sock_io runs ret bytes of socket I/O in direction dir on sk (recv
 * flags for ingress) through the capture, for a watched process. */
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
		.ssl = !!(w->flags & WATCH_SSL_CALLS),
	};
	if (w->flags & WATCH_GO_REGABI)
		io.task = go_task();
	/* MSG_TRUNC on TCP discards the bytes instead of copying them. */
	if (!(flags & MSG_TRUNC))
		sock_io(&io);
	return capture_handle(&io);
}

#endif
