/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* TLS connections (docs/capture.md, "TLS"): the plaintext a TLS library
 * reads and writes is the connection's byte stream (source SRC_TLS); its
 * ciphertext on the socket is not looked at.
 *
 * An SSL* is mapped to its socket with no knowledge of the library's
 * structs: the uprobe at the entry of an SSL_* call records the call for
 * the thread (maps/tls.h), and the socket I/O the call does on the same
 * thread names the socket (tls_socket_io, called for every socket I/O of a
 * watched process before the plaintext path). A read served from the
 * library's buffer, with no socket I/O inside it, uses the socket learned
 * earlier for that SSL*. */
#ifndef AUTHPROBE_CAPTURE_TLS_H
#define AUTHPROBE_CAPTURE_TLS_H

#include "common.h"
#include "io.h"
#include "conn.h"
#include "../maps/conns.h"
#include "../maps/tls.h"
#include "../maps/counters.h"

/* tls_adopt makes sk a TLS connection: a fresh generation whose streams
 * are the plaintext ones, starting at a request boundary when the socket
 * was learned inside the handshake (nothing was read over it yet). A
 * connection the process connect()ed stays a client connection. A global
 * function: its frame is not on the stack of the state machine's. */
__noinline int tls_adopt(__u64 sk, int boundary)
{
	struct conn_state *old = bpf_map_lookup_elem(&conns, &sk);
	if (old && old->source == SRC_TLS)
		return 0;
	if (!old && !sock_is_tcp((struct sock *)sk))
		return 0;
	struct conn_state st = {};
	st.gen = bpf_ktime_get_ns();
	st.source = SRC_TLS;
	st.mode = MODE_FILTER;
	st.role = ROLE_UNKNOWN;
	/* A socket whose first bytes the plaintext path saw were a TLS
	 * record: the library's plaintext starts with it too. */
	st.boundary = boundary || (old && old->tls_start);
	if (old && old->role == ROLE_CLIENT) {
		st.role = ROLE_CLIENT;
		st.mode = MODE_CLIENT;
	}
	conn_read_addrs((struct sock *)sk, &st);
	if (bpf_map_update_elem(&conns, &sk, &st, BPF_ANY))
		count(CNT_DROP_CONN_STATE);
	else
		count(CNT_TLS_CONNS);
	return 0;
}

/* tls_socket_io: the socket I/O io of a watched process. When its thread
 * is inside an SSL call, the I/O is that call's ciphertext: the socket is
 * learned for the SSL* and the I/O goes no further (true). */
static __always_inline bool tls_socket_io(struct capture_io *io)
{
	if (!io->ssl)
		return false; /* no SSL call yet in this process */
	__u64 id = ((__u64)io->pid << 32) | io->tid;
	struct tls_call *c = bpf_map_lookup_elem(&tls_calls, &id);
	if (!c)
		return false;
	if (c->sk != io->sk) {
		c->sk = io->sk;
		struct tls_ssl_key k = {.tgid = io->pid, .ssl = c->ssl};
		/* &c->sk, a map value: 6.1 takes no pointer into io (PTR_TO_MEM in
		 * a global function) as a map value. */
		bpf_map_update_elem(&tls_ssl, &k, &c->sk, BPF_ANY);
		tls_own(io->sk, io->pid, c->ssl);
	}
	tls_adopt(io->sk, c->op == TLS_OP_HANDSHAKE);
	return true;
}

/* tls_last_read_set records sk as the thread's last ciphertext read. A
 * global function: its frame is not on the state machine's stack. */
__noinline int tls_last_read_set(__u64 id, __u64 sk)
{
	struct tls_reads *r = bpf_map_lookup_elem(&tls_last_read, &id);
	if (!r) {
		struct tls_reads fresh = {.sk = {sk, 0}};
		bpf_map_update_elem(&tls_last_read, &id, &fresh, BPF_ANY);
		return 0;
	}
	if (r->sk[0] != sk) {
		r->sk[1] = r->sk[0];
		r->sk[0] = sk;
	}
	return 0;
}

/* tls_note_read: io read TLS ciphertext outside an SSL call (st is its
 * connection): the thread's next SSL_read of an SSL* not mapped yet is
 * taken to decrypt it. */
static __always_inline void tls_note_read(struct capture_io *io, struct conn_state *st)
{
	if (io->dir != DIR_INGRESS || io->source != SRC_SOCKET)
		return;
	if (st->source != SRC_TLS && !st->tls_start)
		return;
	tls_last_read_set(((__u64)io->pid << 32) | io->tid, io->sk);
}

#endif
