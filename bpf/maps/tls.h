/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* TLS library calls (capture/tls.h): the call each thread of a watched
 * process is inside, and the socket each SSL* was learned to use. */
#ifndef AUTHPROBE_MAP_TLS_H
#define AUTHPROBE_MAP_TLS_H

#include "../capture/common.h"

enum tls_op {
	TLS_OP_READ = 1,
	TLS_OP_WRITE = 2,
	TLS_OP_HANDSHAKE = 3,
	TLS_OP_SHUTDOWN = 4,
};

/* One SSL_* call in flight on a thread, from its entry to its return. */
struct tls_call {
	__u64 ssl;       /* the SSL* argument */
	__u64 buf;       /* read/write: the plaintext buffer */
	__u64 done;      /* _ex: the size_t* that receives the bytes moved */
	__u64 sk;        /* the socket of the SSL*: known before, or learned in the call */
	__u8 op;         /* enum tls_op */
	__u8 ex;         /* SSL_read_ex/SSL_write_ex: 1 on success, count in *done */
	/* sk is the thread's last ciphertext read, not yet known to be the
	 * SSL*'s (a memory BIO): remembered for it if the read gives bytes. */
	__u8 guessed;
	__u8 _pad[5];
};

/* Keyed by pid_tgid: a thread is in at most one SSL call (they do not
 * nest). An LRU: a thread that dies inside a call leaves its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

struct tls_ssl_key {
	__u32 tgid;
	__u32 _pad;
	__u64 ssl;
};

/* The socket an SSL* does its I/O on, learned from the socket I/O inside
 * one of its calls; removed at SSL_free. An LRU: a process that never
 * frees its SSL objects cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized from Go */
	__type(key, struct tls_ssl_key);
	__type(value, __u64);
} tls_ssl SEC(".maps");

/* The sockets of each thread's last two reads of TLS ciphertext outside
 * any SSL call, on different sockets, the newest first: a library on
 * memory BIOs (Node.js) reads the socket itself and then runs SSL_read on
 * what it read, on the same thread; an event loop may read another
 * socket in between. */
struct tls_reads {
	__u64 sk[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_reads);
} tls_last_read SEC(".maps");

/* The SSL* each socket was learned for (the reverse of tls_ssl): one TLS
 * session per TCP connection, so a socket another SSL* owns is never
 * guessed for a new one. Removed at SSL_free and at the socket's end. An
 * LRU: an entry lost only makes a guess less careful. */
struct tls_owner {
	__u64 ssl;
	__u32 tgid;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* resized from Go */
	__type(key, __u64);
	__type(value, struct tls_owner);
} tls_sock_owner SEC(".maps");

/* tls_own records that ssl of process tgid does its I/O on sk. */
static __always_inline void tls_own(__u64 sk, __u32 tgid, __u64 ssl)
{
	struct tls_owner o = {.ssl = ssl, .tgid = tgid};
	bpf_map_update_elem(&tls_sock_owner, &sk, &o, BPF_ANY);
}

#endif
