/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The socket behind a file descriptor of the current task. */
#ifndef AUTHPROBE_FD_H
#define AUTHPROBE_FD_H

#include "common.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* sock_of_fd walks the current task's fd table to the socket behind fd;
 * NULL when fd is not a socket. Not inlined: the reads it does through
 * the stack would deepen the frame under capture_handle's deepest call
 * chains (bpf/stack_test.go). */
static __noinline struct sock *sock_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0)
		return NULL;
	if ((unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

#endif
