//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* The TLS byte sources. OpenSSL: uprobes on SSL_read, SSL_read_ex, SSL_write,
 * SSL_write_ex (entry and return), SSL_do_handshake and SSL_shutdown
 * (entry and return: their socket I/O names the socket) and SSL_free.
 *
 * The probes are attached once per library file, for every process that
 * maps it; the first thing each does is the watched check (entry) or the
 * in-flight lookup (return), so a process that is not watched pays the
 * uprobe and one hash lookup. Nothing here writes to the traced process:
 * user memory is only read, with bpf_probe_read_user. How the socket is
 * found: capture/tls.h. */

#include "capture/common.h"
#include "capture/conn.h"
#include "capture/state.h"
#include "capture/tls.h"
#include "maps/watched.h"
#include "maps/tls.h"
#include "maps/gotls.h"
#include "capture/fd.h"
#include "capture/arch.h"
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "headers/bpf_tracing.h"
#pragma clang diagnostic pop

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline bool tls_owner_is(struct tls_owner *o, __u32 tgid, __u64 ssl)
{
	return o->ssl == ssl && o->tgid == tgid;
}

/* tls_sock_free says whether sk may be guessed for ssl of process tgid:
 * no other SSL* is known to do its I/O on it. */
static __always_inline bool tls_sock_free(__u64 sk, __u32 tgid, __u64 ssl)
{
	struct tls_owner *o = bpf_map_lookup_elem(&tls_sock_owner, &sk);
	if (!o || tls_owner_is(o, tgid, ssl))
		return true;
	count(CNT_TLS_GUESS_REFUSED);
	return false;
}

/* tls_enter records the SSL call the current thread of a watched process
 * enters. ssl, buf and done are its arguments (done: the size_t* of an
 * _ex call). */
static __always_inline int tls_enter(__u64 ssl, __u64 buf, __u64 done, __u8 op, __u8 ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct watch_info *w = current_watch(id >> 32);
	if (!w)
		return 0;
	/* Before the call is recorded: this thread's socket I/O inside the
	 * call reads the flag after it is set. */
	if (!(w->flags & WATCH_SSL_CALLS))
		__sync_fetch_and_or(&w->flags, WATCH_SSL_CALLS);
	struct tls_call c = {.ssl = ssl, .buf = buf, .done = done, .op = op, .ex = ex};
	struct tls_ssl_key k = {.tgid = id >> 32, .ssl = ssl};
	__u64 *sk = bpf_map_lookup_elem(&tls_ssl, &k);
	if (sk) {
		c.sk = *sk;
	} else if (op == TLS_OP_READ) {
		/* A memory BIO: the ciphertext this thread read last, unless
		 * another SSL* owns that socket; then the read before it. */
		struct tls_reads *r = bpf_map_lookup_elem(&tls_last_read, &id);
		if (r) {
			__u64 s0 = r->sk[0], s1 = r->sk[1];
			if (s0 && tls_sock_free(s0, id >> 32, ssl))
				c.sk = s0;
			else if (s1 && tls_sock_free(s1, id >> 32, ssl))
				c.sk = s1;
			c.guessed = c.sk != 0;
		}
	}
	bpf_map_update_elem(&tls_calls, &id, &c, BPF_ANY);
	return 0;
}

SEC("uprobe")
int authprobe_ssl_read(struct pt_regs *ctx)
{
	return tls_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0, TLS_OP_READ, 0);
}

SEC("uprobe")
int authprobe_ssl_read_ex(struct pt_regs *ctx)
{
	return tls_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx), TLS_OP_READ, 1);
}

SEC("uprobe")
int authprobe_ssl_write(struct pt_regs *ctx)
{
	return tls_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), 0, TLS_OP_WRITE, 0);
}

SEC("uprobe")
int authprobe_ssl_write_ex(struct pt_regs *ctx)
{
	return tls_enter(PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx), PT_REGS_PARM4(ctx), TLS_OP_WRITE, 1);
}

SEC("uprobe")
int authprobe_ssl_do_handshake(struct pt_regs *ctx)
{
	return tls_enter(PT_REGS_PARM1(ctx), 0, 0, TLS_OP_HANDSHAKE, 0);
}

SEC("uprobe")
int authprobe_ssl_shutdown(struct pt_regs *ctx)
{
	return tls_enter(PT_REGS_PARM1(ctx), 0, 0, TLS_OP_SHUTDOWN, 0);
}

/* (The Go crypto/tls programs are at the end.) */

/* SSL_free: the SSL* may be reused by the allocator for another
 * connection. */
SEC("uprobe")
int authprobe_ssl_free(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_ssl_key k = {.tgid = id >> 32, .ssl = PT_REGS_PARM1(ctx)};
	__u64 *sk = bpf_map_lookup_elem(&tls_ssl, &k);
	if (sk) {
		__u64 s = *sk;
		struct tls_owner *o = bpf_map_lookup_elem(&tls_sock_owner, &s);
		if (o && tls_owner_is(o, k.tgid, k.ssl))
			bpf_map_delete_elem(&tls_sock_owner, &s);
	}
	bpf_map_delete_elem(&tls_ssl, &k);
	return 0;
}

/* tls_remember maps ssl to sk for the process tgid. A global function:
 * its frame is not on the state machine's stack. */
__noinline int tls_remember(__u32 tgid, __u64 ssl, __u64 sk)
{
	struct tls_ssl_key k = {.tgid = tgid, .ssl = ssl};
	bpf_map_update_elem(&tls_ssl, &k, &sk, BPF_ANY);
	tls_own(sk, tgid, ssl);
	return 0;
}

/* authprobe_ssl_ret is the return of every recorded call: a read or
 * write that moved plaintext runs it through the connection's state
 * machine. */
SEC("uretprobe")
int authprobe_ssl_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *cp = bpf_map_lookup_elem(&tls_calls, &id);
	if (!cp)
		return 0;
	/* The call's fields go straight into the I/O: this program's frame
	 * is on the stack of the whole state machine, which is near the
	 * verifier's limit. iovcnt holds _ex's size_t* and task the SSL*
	 * until they are used. */
	struct capture_io io = {
		.sk = cp->sk,
		.addr = cp->buf,
		.iovcnt = cp->done,
		.task = cp->ssl,
		.pid = id >> 32,
		.tid = (__u32)id,
		.dir = cp->op == TLS_OP_READ ? DIR_INGRESS : DIR_EGRESS,
		.kind = IO_BUF,
		.source = SRC_TLS,
	};
	__u8 op = cp->op, ex = cp->ex, guessed = cp->guessed;
	bpf_map_delete_elem(&tls_calls, &id);
	if (op != TLS_OP_READ && op != TLS_OP_WRITE)
		return 0;
	int ret = (int)PT_REGS_RC(ctx);
	if (ex) {
		if (ret != 1 || bpf_probe_read_user(&io.iovcnt, sizeof(io.iovcnt), (void *)io.iovcnt))
			return 0;
	} else {
		if (ret <= 0)
			return 0;
		io.iovcnt = (__u32)ret;
	}
	if (io.iovcnt == 0 || io.iovcnt > 0x7fffffff)
		return 0;
	io.len = io.iovcnt;
	io.iovcnt = 0;
	if (!io.sk) {
		count(CNT_TLS_UNATTRIBUTED);
		return 0;
	}
	/* It gave plaintext: a memory BIO held that socket's ciphertext. */
	if (guessed)
		tls_remember(io.pid, io.task, io.sk);
	io.task = 0;
	count(CNT_TLS_IO);
	/* The connection exists unless the agent has not seen its socket
	 * since it started, or the socket closed. */
	tls_adopt(io.sk, false);
	return capture_handle(&io);
}

/* Go crypto/tls: uprobes at the entry of (*tls.Conn).Read and Write and
 * at each of their RET instructions (never uretprobes: they rewrite the
 * return address on a goroutine stack the runtime may move). Arguments
 * and results are in registers (Go's register ABI); a call in flight is
 * keyed by its goroutine, which is still the one running at its RET. The
 * socket is reached through the conn's net.Conn (a *net.TCPConn) to its
 * netFD's file descriptor, with the offsets of the binary's Go release
 * (struct go_tls_cfg, by attach cookie). */

static __always_inline int go_enter(struct pt_regs *ctx, __u8 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!current_watch(id >> 32))
		return 0;
	struct go_call_key k = {.tgid = id >> 32, .g = GO_G(ctx)};
	struct go_call c = {.conn = GO_ARG1(ctx), .buf = GO_ARG2(ctx), .cookie = bpf_get_attach_cookie(ctx), .op = op};
	bpf_map_update_elem(&go_calls, &k, &c, BPF_ANY);
	return 0;
}

SEC("uprobe")
int authprobe_go_tls_read(struct pt_regs *ctx)
{
	return go_enter(ctx, TLS_OP_READ);
}

SEC("uprobe")
int authprobe_go_tls_write(struct pt_regs *ctx)
{
	return go_enter(ctx, TLS_OP_WRITE);
}

/* go_conn_sock follows a *tls.Conn to its socket with the offsets of the
 * probes' executable; 0 when it does not wrap a TCP socket, 1 when its
 * file descriptor is closed already. A global
 * function: its frame is not on the state machine's stack. */
__noinline __u64 go_conn_sock(__u64 conn, __u64 cookie)
{
	struct go_tls_cfg *cfg = bpf_map_lookup_elem(&go_tls_cfgs, &cookie);
	if (!cfg)
		return 0;
	__u64 iface[2] = {};
	if (bpf_probe_read_user(iface, sizeof(iface), (void *)(conn + cfg->conn_conn)))
		return 0;
	if (cfg->itab && iface[0] != cfg->itab)
		return 0; /* not a *net.TCPConn */
	__u64 netfd = 0;
	if (bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(iface[1] + cfg->tcpconn_fd)) || !netfd)
		return 0;
	__s64 sysfd = -1;
	if (bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + cfg->netfd_pfd + cfg->pollfd_sysfd)))
		return 0;
	if (sysfd < 0 || sysfd > 0x7fffffff) {
		/* Close sets Sysfd to -1: a call that raced the close (an
		 * HTTP/2 frame written as the connection ends). */
		if (sysfd == -1)
			count(CNT_TLS_AFTER_CLOSE);
		return 1;
	}
	struct sock *sk = sock_of_fd((int)sysfd);
	if (!sk || !sock_is_tcp(sk))
		return 0;
	return (__u64)sk;
}

SEC("uprobe")
int authprobe_go_tls_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_call_key k = {.tgid = id >> 32, .g = GO_G(ctx)};
	struct go_call *cp = bpf_map_lookup_elem(&go_calls, &k);
	if (!cp)
		return 0;
	__u64 conn = cp->conn, buf = cp->buf, cookie = cp->cookie;
	__u8 op = cp->op;
	bpf_map_delete_elem(&go_calls, &k);
	__s64 n = (__s64)GO_RET1(ctx);
	if (n <= 0 || n > 0x7fffffff)
		return 0;
	__u64 sk = go_conn_sock(conn, cookie);
	if (sk == 1)
		return 0; /* closed: counted */
	if (!sk) {
		count(CNT_TLS_UNATTRIBUTED);
		return 0;
	}
	count(CNT_TLS_IO);
	tls_adopt(sk, false);
	struct capture_io io = {
		.sk = sk,
		.addr = buf,
		.len = n,
		.task = k.g,
		.pid = id >> 32,
		.tid = (__u32)id,
		.dir = op == TLS_OP_READ ? DIR_INGRESS : DIR_EGRESS,
		.kind = IO_BUF,
		.source = SRC_TLS,
	};
	return capture_handle(&io);
}
