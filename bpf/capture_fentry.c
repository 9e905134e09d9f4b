//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The "fentry" capture backend, for kernels without the socket-layer
 * tracepoints (before 6.3) that let BPF trampolines attach: the exits of
 * TCP's own send and receive functions.
 *
 * fexit programs see the function's arguments and its return value, so
 * the socket and the bytes moved come from tcp_sendmsg/tcp_recvmsg as the
 * "sock" backend gets them from its tracepoints, and the user buffer from
 * the syscall's saved user registers in the same way: the same events,
 * the same connection model. Only TCP socket I/O pays, as with "sock".
 * tcp_sendpage (sendfile and splice to a socket before 6.5) moves the
 * stream too; its bytes are not readable (IO_NONE). */

#include "capture/sockio.h"
#include "headers/bpf_tracing.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("fexit/tcp_recvmsg")
int BPF_PROG(authprobe_fexit_tcp_recvmsg, struct sock *sk, struct msghdr *msg, size_t len, int flags,
	     int *addr_len, int ret)
{
	return on_sock_io(sk, ret, flags, DIR_INGRESS);
}

SEC("fexit/tcp_sendmsg")
int BPF_PROG(authprobe_fexit_tcp_sendmsg, struct sock *sk, struct msghdr *msg, size_t size, int ret)
{
	return on_sock_io(sk, ret, 0, DIR_EGRESS);
}

/* Optional: gone in 6.5, where sendfile and splice reach tcp_sendmsg. */
SEC("fexit/tcp_sendpage")
int BPF_PROG(authprobe_fexit_tcp_sendpage, struct sock *sk, struct page *page, int offset, size_t size,
	     int flags, int ret)
{
	return on_sock_io(sk, ret, 0, DIR_EGRESS);
}
