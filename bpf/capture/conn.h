/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* A connection is its socket: finding and creating conn_state. */
#ifndef AUTHPROBE_CONN_H
#define AUTHPROBE_CONN_H

#include "common.h"
#include "../maps/conns.h"
#include "../maps/counters.h"

/* sock_is_tcp says whether sk is a TCP socket over IPv4 or IPv6. */
static __always_inline bool sock_is_tcp(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return (family == AF_INET || family == AF_INET6) &&
	       BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP &&
	       BPF_CORE_READ(sk, sk_type) == SOCK_STREAM;
}

static __always_inline void conn_read_addrs(struct sock *sk, struct conn_state *st)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	st->peer.family = family;
	st->local.family = family;
	st->peer.port = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	st->local.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET) {
		BPF_CORE_READ_INTO(&st->peer.addr, sk, __sk_common.skc_daddr);
		BPF_CORE_READ_INTO(&st->local.addr, sk, __sk_common.skc_rcv_saddr);
	} else {
		BPF_CORE_READ_INTO(&st->peer.addr, sk, __sk_common.skc_v6_daddr);
		BPF_CORE_READ_INTO(&st->local.addr, sk, __sk_common.skc_v6_rcv_saddr);
	}
}

/* tcp_consumed is how many bytes of the socket's ingress stream the
 * process has taken so far: what arrived in order (bytes_received) less
 * what still waits in the receive queue (rcv_nxt - copied_seq). Called
 * after a read, it includes that read's bytes. */
static __always_inline __u64 tcp_consumed(struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	__u32 unread = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	return received - unread;
}

/* conn_insert stores st for sk unless another CPU was first; either way
 * it returns the map's entry. */
static __always_inline struct conn_state *conn_insert(__u64 key, struct conn_state *st)
{
	long err = bpf_map_update_elem(&conns, &key, st, BPF_NOEXIST);
	if (err && err != -17 /* EEXIST */) {
		count(CNT_DROP_CONN_STATE);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, &key);
}

/* conn_new records a server-side connection first seen at a read of len
 * bytes from its socket. The read starts at a request boundary when it
 * holds the first bytes the process ever took from the socket. A socket
 * the kernel itself opened (NFS, iSCSI, ... doing I/O inside a watched
 * process's syscall) is recorded MODE_OFF: the syscall's buffer is not
 * its data. */
static __always_inline struct conn_state *conn_new(struct sock *sk, __u32 len)
{
	if (!sock_is_tcp(sk))
		return NULL;
	struct conn_state st = {};
	st.gen = bpf_ktime_get_ns();
	st.mode = MODE_FILTER;
	st.role = ROLE_UNKNOWN;
	st.source = SRC_SOCKET;
	st.boundary = tcp_consumed(sk) == len;
	if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_kern_sock))
		st.mode = MODE_OFF;
	conn_read_addrs(sk, &st);
	return conn_insert((__u64)sk, &st);
}

/* conn_get finds the state of sk for an I/O of len bytes in dir, creating
 * it at a read. A connection is not created at a write: the first read
 * tells where the ingress stream stands. NULL: not a connection to track. */
static __always_inline struct conn_state *conn_get(struct sock *sk, __u32 len, __u8 dir)
{
	__u64 key = (__u64)sk;
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (st || dir != DIR_INGRESS)
		return st;
	return conn_new(sk, len);
}

/* conn_new_client records a connection the watched process is opening
 * with connect() (capture/client.h). Its local port is chosen after this
 * point, so it may still read 0 here: the first I/O reads it again. */
static __always_inline void conn_new_client(struct sock *sk)
{
	struct conn_state st = {};
	st.gen = bpf_ktime_get_ns();
	st.mode = MODE_CLIENT;
	st.role = ROLE_CLIENT;
	st.source = SRC_SOCKET;
	conn_read_addrs(sk, &st);
	__u64 key = (__u64)sk;
	if (bpf_map_update_elem(&conns, &key, &st, BPF_ANY))
		count(CNT_DROP_CONN_STATE);
}

#endif
