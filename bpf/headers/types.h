/* SPDX-License-Identifier: Apache-2.0 */
/* Structs shared between the BPF programs and Go (through bpf2go -type).
 * No packed structs: every field is naturally aligned and the build runs
 * with -Wpadded, so Go sees the same layout as C.
 *
 * The connection model (docs/capture.md): a connection is its socket
 * (struct sock address plus a generation), never {tgid, fd}. Each
 * direction of a connection is a byte stream with its own offset and its
 * own event sequence number; every event says where its bytes sit in that
 * stream, so user space can tell a deliberate skip (offset moves, seq
 * does not) from a loss (seq moves past events that never arrived). */
#ifndef AUTHPROBE_TYPES_H
#define AUTHPROBE_TYPES_H

/* Most bytes one event carries. A power of two so the verifier can bound
 * sizes; larger reads are split into several events. */
#define MAX_CAPTURE 16384
/* Most events one read or write is split into while capturing. */
#define MAX_SLICES 4
/* Bytes of a request the kernel examines to prove it is not an auth
 * request; a longer head always goes to user space. */
#define PROOF_MAX 4096
/* A read at a request boundary this short is kept and proven together
 * with the next one (Go's net/http reads 1 byte in the background while a
 * handler runs, which splits the next request after its first byte). */
#define CARRY_MAX 8
/* Bytes of a request path the route-prefix trie is keyed on. */
#define ROUTE_KEY_LEN 64
/* iovecs followed per readv/writev/recvmsg/sendmsg. */
#define MAX_IOV 8
#define MAX_FILENAME 256

enum event_type {
	EVENT_DATA = 1,   /* bytes moved on a captured connection */
	EVENT_CLOSE = 2,  /* a captured connection's socket closed */
	EVENT_EXEC = 3,   /* some process exec'd (discovery) */
	EVENT_EXIT = 4,   /* a watched process exited (its last thread) */
	EVENT_FORK = 5,   /* a watched process forked a new process */
	EVENT_LISTEN = 6, /* some process started listening on a TCP port */
};

enum direction {
	DIR_INGRESS = 1, /* read by the process */
	DIR_EGRESS = 2,  /* written by the process */
};

/* Who opened the connection, as far as the kernel knows. */
enum conn_role {
	ROLE_UNKNOWN = 0, /* first seen at its first I/O (accepted, or predates the agent) */
	ROLE_CLIENT = 1,  /* the watched process connect()ed it */
};

/* Where the bytes of a data event come from. */
enum byte_source {
	SRC_SOCKET = 0, /* the socket itself (plaintext) */
	SRC_TLS = 1,    /* a TLS library's plaintext side */
};

/* Flags of a data event. */
enum event_flags {
	/* The data starts at a message boundary the kernel knows: the first
	 * bytes of the connection, or right after requests it skipped. */
	EVF_BOUNDARY = 1 << 0,
	/* First event of a capture episode: the connection was being
	 * filtered in the kernel until this read. Egress events of an
	 * episode start wherever the response stream happens to be. */
	EVF_EPISODE = 1 << 1,
	/* The syscall's buffer could not be read (unsupported syscall such as
	 * io_uring or sendfile, or a fault): len bytes moved, none captured. */
	EVF_UNREADABLE = 1 << 2,
	/* Bytes counted, not copied (cap < len): the episode's budget or the
	 * response's response_bytes is exhausted, or a read was longer than
	 * MAX_SLICES events carry. */
	EVF_BUDGET = 1 << 3,
};

/* Counters, one per-CPU slot each; Go sums and exports them. Every drop
 * has exactly one reason. */
enum counter {
	CNT_EVENTS_DATA = 0,
	CNT_EVENTS_CLOSE,
	CNT_EVENTS_PROC,
	CNT_REQUESTS_SKIPPED,     /* requests proven non-auth in the kernel */
	CNT_EPISODES,             /* capture episodes started */
	CNT_DROP_RINGBUF_FULL,    /* an event did not fit in the ring buffer */
	CNT_DROP_READ_FAULT,      /* user memory could not be read */
	CNT_DROP_IOV_TRUNCATED,   /* iovecs beyond MAX_IOV were not followed */
	CNT_TRUNC_BUDGET,         /* bytes of an episode beyond its budget */
	CNT_TRUNC_RESPONSE,       /* response bytes beyond response_bytes */
	CNT_DROP_CONN_STATE,      /* connection state could not be stored */
	CNT_UNSUPPORTED_SYSCALL,  /* socket I/O from a syscall we cannot read (io_uring, sendfile, mmsg) */
	CNT_PEEK,                 /* MSG_PEEK reads, ignored (the data is read again) */
	CNT_STALE_WATCH,          /* a watched tgid now belongs to another process */
	CNT_TLS_SKIPPED,          /* connections that carried a TLS record on the plaintext path */
	CNT_VERDICTS_APPLIED,     /* user-space verdicts the kernel applied */
	CNT_VERDICTS_STALE,       /* user-space verdicts that arrived too late to apply */
	CNT_TRUNC_SLICES,         /* bytes of one read beyond what MAX_SLICES events carry */
	CNT_DROP_WATCH_FULL,      /* a watched process's child could not be watched (map full) */
	CNT_CLIENT_CAPTURED,      /* client-connection I/Os sent: their task was serving a captured request */
	CNT_CLIENT_OUTSIDE,       /* client-connection I/Os outside any captured request: not sent */
	CNT_DROP_TASK_STATE,      /* a task's serving state could not be stored */
	CNT_GO_SPAWNED,           /* goroutines created by one serving a captured request (or by such a child) */
	CNT_CLIENT_SPAWNED,       /* of client_captured: I/Os of such a goroutine, sent as its root's */
	CNT_TLS_CONNS,            /* sockets learned to carry a TLS library's connection */
	CNT_TLS_IO,               /* plaintext reads and writes of TLS libraries handled */
	CNT_TLS_UNATTRIBUTED,     /* plaintext reads and writes whose socket was never learned: lost */
	CNT_TLS_AFTER_CLOSE,      /* Go: plaintext of a call that returned after its conn's fd was closed */
	CNT_PROMPT_WAKES,         /* reader woken at once for a response that may end an episode */
	CNT_PROMPT_WAKES_LIMITED, /* such a wakeup left to the batch: one was just forced on that CPU */
	CNT_TLS_GUESS_REFUSED,    /* memory BIO: a socket not taken for an SSL*: another SSL* is its own */
	CNT_MAX,
};

/* What the kernel does with a connection's bytes. */
enum conn_mode {
	MODE_FILTER = 0,  /* prove each request non-auth in the kernel, or start an episode */
	MODE_CAPTURE = 1, /* an episode: every byte goes to user space (bounded) */
	MODE_OFF = 2,     /* not HTTP to us (TLS ciphertext, tunnel, verdict) */
	/* A connection the watched process opened (connect): its first write
	 * is always sent (user space tells the protocol from it), the rest of
	 * its I/O only while the task doing it serves a captured request. */
	MODE_CLIENT = 3,
};

struct conn_addr {
	__u8 addr[16]; /* IPv4 in the first 4 bytes, or IPv6 */
	__u16 port;    /* host order */
	__u16 family;  /* AF_INET or AF_INET6 */
};

/* Per-connection state, keyed by the struct sock address. Offsets,
 * sequence numbers and the bytes taken from budgets are updated with
 * atomics: several threads may use one socket. Kernel-private: Go only
 * reads it in tests. */
struct conn_state {
	__u64 gen;        /* bpf_ktime_get_ns at first sight */
	__u64 in_off;     /* ingress bytes moved so far */
	__u64 out_off;    /* egress bytes moved so far */
	__u64 skip_to;    /* ingress bytes before this offset are not copied (verdict) */
	__u64 carry;      /* the first carry_len bytes of a request not proven yet */
	__u32 in_seq;     /* next ingress event sequence number */
	__u32 out_seq;    /* next egress event sequence number */
	__u32 in_used;    /* ingress bytes copied in this episode (of burst_bytes) */
	__u32 resp_used;  /* bytes copied of the current response (of response_bytes) */
	__u32 skipped;    /* requests skipped since the last ingress event */
	__u32 unanswered; /* skipped requests whose final response has not started */
	__u32 awaiting;   /* client connections: its last write was sent (a request of a served task): its answer is sent too */
	__u32 _pad32;
	__u8 mode;        /* enum conn_mode */
	__u8 boundary;    /* the next ingress byte starts a request */
	__u8 role;        /* enum conn_role */
	__u8 source;      /* enum byte_source */
	__u8 captured;    /* an event was sent: the close must be reported */
	__u8 egress_on;   /* egress of this episode is being sent */
	__u8 carry_len;   /* bytes in carry: a read too short to prove, kept for the next */
	/* HTTP/2 (the client's preface, or a 101 that may be h2c): every byte
	 * of both directions is sent, with no budget, until user space says
	 * VERDICT_OFF; streams interleave, so there is no boundary to resume
	 * at and no response head to wait for. */
	__u8 h2;
	/* Its first bytes were a TLS record on the plaintext path: when a TLS
	 * library's plaintext is first seen on it, that starts at a request
	 * boundary. */
	__u8 tls_start;
	/* Wake the reader at once (rate limited, prompt_wake_ns) when the
	 * next final response head is sent: user space can end the episode
	 * then. Set at an episode's start and by a stale resume. */
	__u8 wake;
	__u8 _pad[6];
	struct conn_addr peer;
	struct conn_addr local;
};

/* User space's verdict on a connection, written to the verdicts map and
 * applied by the kernel at the connection's next I/O. */
enum verdict_kind {
	/* Every request user space was sent is decided and answered: back to
	 * MODE_FILTER, provided the stream has not moved since (in_off and
	 * out_off match). */
	VERDICT_RESUME = 1 << 0,
	/* The request being read is not an auth request: do not copy ingress
	 * bytes before skip_to (its body). */
	VERDICT_SKIP = 1 << 1,
	/* Stop looking at the connection (not HTTP, tunnel, TLS). */
	VERDICT_OFF = 1 << 2,
};

struct verdict {
	__u64 gen;     /* applies to this generation of the socket only */
	__u64 in_off;  /* RESUME: ingress offset user space has seen up to */
	__u64 out_off; /* RESUME: egress offset user space has seen up to */
	__u64 skip_to; /* SKIP: first ingress offset to copy again */
	__u32 kind;    /* enum verdict_kind bits */
	__u32 _pad;
};

/* Header of every connection event; EVENT_DATA is followed by cap bytes. */
struct conn_event {
	__u8 type;        /* enum event_type */
	__u8 dir;         /* enum direction */
	__u8 flags;       /* enum event_flags */
	__u8 role;        /* enum conn_role */
	__u8 source;      /* enum byte_source */
	__u8 _pad[3];
	__u64 sock;       /* struct sock address: the connection, with gen */
	__u64 gen;
	__u32 seq;        /* per connection and direction; every send attempt */
	__u32 pid;        /* tgid doing the I/O */
	__u32 tid;        /* thread doing the I/O */
	__u32 len;        /* bytes of the stream this event covers */
	__u64 off;        /* stream offset of the first of them */
	__u64 ts;         /* bpf_ktime_get_ns when the I/O completed */
	__u32 cap;        /* bytes captured after this header (a prefix of len) */
	__u32 skipped;    /* ingress: requests skipped right before this event */
	__u32 unanswered; /* EVF_EPISODE: skipped requests whose response the kernel suppresses */
	__u32 busy;       /* client I/O: requests the kernel skipped on this task whose response has not started */
	__u64 task;       /* the task doing the I/O: the goroutine (its g) in a Go process, else the tid */
	__u64 other;      /* client I/O: the other direction's stream offset when it was done */
	struct conn_addr peer;
	struct conn_addr local;
};

struct data_event {
	struct conn_event hdr;
	__u8 data[MAX_CAPTURE];
};

/* Process lifecycle and listeners, for discovery. */
struct process_event {
	__u8 type;    /* EVENT_EXEC, EVENT_EXIT, EVENT_FORK or EVENT_LISTEN */
	__u8 _pad[3];
	__u32 pid;    /* tgid */
	__u32 ppid;   /* parent tgid for EVENT_FORK */
	__u16 port;   /* EVENT_LISTEN: local port */
	__u16 family; /* EVENT_LISTEN: AF_INET or AF_INET6 */
	__u64 ts;
	__u64 start;  /* start time in clock ticks since boot, as /proc/PID/stat's
	               * starttime: the process's identity together with pid */
	char filename[MAX_FILENAME]; /* EVENT_EXEC only */
};

/* Value of the watched map: which process a tgid was when it was
 * watched, so a reused tgid is never watched under an old identity. */
struct watch_info {
	__u64 start;  /* the leader's start_boottime in clock ticks (USER_HZ), as
	               * /proc/PID/stat field 22 says */
	__u32 flags;  /* enum watch_flags */
	__u32 _pad;
};

enum watch_flags {
	/* A Go program on the register ABI: the goroutine (g) is in a
	 * register of the syscall's saved user registers (R14 on amd64, x28
	 * on arm64), and tasks are goroutines, not threads. */
	WATCH_GO_REGABI = 1 << 0,
	/* Set by the kernel at the process's first SSL_* call (capture_tls.c):
	 * from then on its socket I/O may be an SSL call's ciphertext, which
	 * tls_socket_io looks up. A process that never made one (a plaintext
	 * server, or one whose TLS is Go's crypto/tls) costs no lookup. */
	WATCH_SSL_CALLS = 1 << 1,
};

/* What the Go crypto/tls probes need to know of one executable
 * (uprobe.GoOffsets), keyed by the attach cookie of its probes: the path
 * from a *tls.Conn to its socket's file descriptor. */
struct go_tls_cfg {
	__u64 conn_conn;    /* crypto/tls.Conn.conn: the net.Conn interface (itab, data) */
	__u64 tcpconn_fd;   /* net.TCPConn's *netFD */
	__u64 netfd_pfd;    /* net.netFD.pfd */
	__u64 pollfd_sysfd; /* internal/poll.FD.Sysfd */
	__u64 itab;         /* the (*net.TCPConn, net.Conn) itab; 0: not checked (PIE) */
};

/* Key of the tasks map: one task (thread, or goroutine of a Go process)
 * of one process. */
struct task_key {
	__u32 tgid;
	__u32 _pad;
	__u64 id; /* the tid, or the goroutine's g address */
};

/* What the kernel knows about one task's requests (docs/capture.md,
 * "Client connections"): the captured server request it serves, so that
 * its own calls (client connections) are sent while it does, and how many
 * requests it read that the kernel skipped are still unanswered, so that
 * user space never credits an event loop's call to the wrong request. */
struct task_state {
	__u64 sock;    /* the captured server connection it last read a request from; 0: none */
	__u64 gen;
	__u64 since;   /* bpf_ktime_get_ns of that read */
	__u32 busy;    /* requests the kernel skipped on this task whose response has not started */
	__u32 serial;  /* bumped when the task begins serving another request */
};

/* A goroutine created while its creator (or its creator's creator)
 * served a captured request: its client I/O counts as that root
 * goroutine's while the root still serves that same request. */
struct go_spawn {
	__u64 root;    /* the root goroutine's g */
	__u64 sock;    /* the server connection it served at the creation */
	__u32 serial;  /* and its task_state serial then */
	__u32 _pad;
};

struct route_key {
	__u32 prefixlen; /* in bits, as LPM tries want */
	__u8 data[ROUTE_KEY_LEN]; /* a path prefix, lower-cased */
};

#endif /* AUTHPROBE_TYPES_H */
