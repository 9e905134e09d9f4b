/* SPDX-License-Identifier: Apache-2.0 */
/* Structs shared between the BPF programs and Go (through bpf2go -type).
 * No packed structs: every field is naturally aligned and the build runs
 * with -Wpadded, so Go sees the same layout as C. */
#ifndef AUTHPROBE_TYPES_H
#define AUTHPROBE_TYPES_H

/* Most bytes one event carries; capture_bytes and response_bytes are
 * clamped to it in Go. A power of two so the verifier can bound sizes. */
#define MAX_CAPTURE 16384
/* Bytes of a request line the in-kernel route filter looks at. */
#define ROUTE_KEY_LEN 64
/* iovecs followed per readv/writev/recvmsg/sendmsg. */
#define MAX_IOV 8
#define MAX_FILENAME 256

enum event_type {
	EVENT_DATA = 1,  /* bytes moved on a captured connection */
	EVENT_CLOSE = 2, /* a captured connection was closed */
	EVENT_EXEC = 3,  /* some process exec'd (discovery) */
	EVENT_EXIT = 4,  /* a watched process exited */
	EVENT_FORK = 5,  /* a watched process forked a new process */
};

enum direction {
	DIR_INGRESS = 1, /* read by the process */
	DIR_EGRESS = 2,  /* written by the process */
};

/* Counters, one per-CPU slot each; Go sums and exports them. Every drop
 * has its own reason. */
enum counter {
	CNT_EVENTS_DATA = 0,
	CNT_EVENTS_CLOSE,
	CNT_EVENTS_PROC,
	CNT_REQUESTS_MATCHED,    /* request heads that passed the route filter */
	CNT_REQUESTS_SKIPPED,    /* request heads the route filter rejected */
	CNT_DROP_RINGBUF_FULL,   /* an event did not fit in the ring buffer */
	CNT_DROP_READ_FAULT,     /* user memory could not be read */
	CNT_DROP_IOV_TRUNCATED,  /* iovecs beyond MAX_IOV were not followed */
	CNT_TRUNC_REQUEST,       /* request bytes beyond capture_bytes */
	CNT_TRUNC_RESPONSE,      /* response bytes beyond response_bytes */
	CNT_DROP_NOT_TCP,        /* a request-looking read on a non-TCP fd */
	CNT_DROP_CONN_STATE,     /* connection state could not be stored */
	CNT_MAX,
};

/* Connection states, per {tgid, fd}. */
enum conn_phase {
	PHASE_IDLE = 0,    /* nothing seen yet, or between requests */
	PHASE_REQUEST = 1, /* capturing an auth request */
	PHASE_RESPONSE = 2,/* capturing the response to it */
	PHASE_SKIP = 3,    /* a request on a route nobody asked for */
};

struct conn_addr {
	__u8 addr[16]; /* IPv4 in the first 4 bytes, or IPv6 */
	__u16 port;    /* host order */
	__u16 family;  /* AF_INET or AF_INET6 */
};

struct conn_key {
	__u32 tgid;
	__s32 fd;
};

struct conn_state {
	__u64 gen;       /* distinguishes connections that reuse tgid/fd */
	__u32 seq;       /* next event sequence number */
	__u32 budget;    /* capture bytes left for the current message */
	__u8 phase;      /* enum conn_phase */
	__u8 captured;   /* an event was sent: close must be reported */
	__u16 _pad;
	__u32 _pad2;
	struct conn_addr peer;
	struct conn_addr local;
};

/* Header of every connection event; EVENT_DATA is followed by cap bytes. */
struct conn_event {
	__u8 type;   /* enum event_type */
	__u8 dir;    /* enum direction */
	__u16 _pad;
	__u32 seq;
	__u32 tgid;
	__s32 fd;
	__u64 gen;
	__u64 ts;    /* bpf_ktime_get_ns at syscall exit */
	__u32 len;   /* bytes the syscall moved */
	__u32 cap;   /* bytes captured after this header */
	struct conn_addr peer;
	struct conn_addr local;
};

struct data_event {
	struct conn_event hdr;
	__u8 data[MAX_CAPTURE];
};

/* Process lifecycle, for discovery. */
struct process_event {
	__u8 type;    /* EVENT_EXEC, EVENT_EXIT or EVENT_FORK */
	__u8 _pad[3];
	__u32 pid;    /* tgid */
	__u32 ppid;   /* parent tgid for EVENT_FORK */
	__u32 _pad2;
	__u64 ts;
	char filename[MAX_FILENAME]; /* EVENT_EXEC only */
};

struct route_key {
	__u32 prefixlen; /* in bits, as LPM tries want */
	__u8 data[ROUTE_KEY_LEN];
};

#endif /* AUTHPROBE_TYPES_H */
