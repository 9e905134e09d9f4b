//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The "sock" capture backend: the socket layer's own tracepoints.
 *
 * sock_recv_length and sock_send_length (kernel 6.3+) fire inside
 * sock_recvmsg/sock_sendmsg, only for socket I/O, with the socket in hand
 * and the syscall's arguments still in the task's saved user registers.
 * No syscall tracepoint is attached: a syscall that is not socket I/O
 * costs nothing, and socket I/O of an unwatched process one hash lookup. */

#include "capture/sockio.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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
