//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* authprobe: HTTP/1.x auth traffic capture from syscall tracepoints.
 *
 * Works without kprobes or fentry: only syscalls/sys_{enter,exit}_* and
 * sched tracepoints plus one raw tracepoint. A watched-tgid map decides in
 * one lookup whether a syscall matters; an LPM trie of "METHOD /prefix"
 * keys decides whether a request is worth capturing. Everything else a
 * watched process does costs a few map lookups and no copy. */

/* -Wpadded is for our own shared structs, not the kernel's. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "headers/vmlinux.h"
#include "headers/bpf_helpers.h"
#include "headers/bpf_core_read.h"
#include "headers/bpf_tracing.h"
#pragma clang diagnostic pop
#include "headers/types.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define IPPROTO_TCP 6
#define SOCK_STREAM 1
/* Reads shorter than this that hold only the start of a request line
 * ("POST /") are captured; the verifier pays for every byte checked. */
#define PARTIAL_LINE_MAX 16

/* Knobs set from Go before load. */
volatile const __u32 capture_bytes = 4096;
volatile const __u32 response_bytes = 1024;
volatile const __u32 agent_tgid = 0;
/* Wake the reader only once this much is waiting; it also drains on its
 * own tick, so a quiet stream is read within that tick. One wakeup per
 * event cost the agent more CPU than decoding the events did. */
volatile const __u64 wakeup_bytes = 65536;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);   /* tgid */
	__type(value, __u32); /* reserved flags */
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn_state);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct route_key);
	__type(value, __u32); /* route index, informational */
} routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized from Go */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct process_event);
} proc_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Keep bpf2go's -type output for these. */
const struct conn_event *unused_conn_event __attribute__((unused));
const struct data_event *unused_data_event __attribute__((unused));
const struct process_event *unused_process_event __attribute__((unused));
const struct route_key *unused_route_key __attribute__((unused));
const struct conn_state *unused_conn_state __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1;
}

/* clamp bounds n to max in a way clang cannot reorder, so the verifier
 * sees the bound right before the copy that needs it. */
static __always_inline __u64 clamp(__u64 n, const __u64 max)
{
	asm volatile("if %[n] <= %[max] goto +1\n\t"
		     "%[n] = %[max]\n\t"
		     : [n] "+r"(n)
		     : [max] "i"(max));
	return n;
}

static __always_inline __u64 wakeup_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ?
		       BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline bool is_watched(__u32 tgid)
{
	return bpf_map_lookup_elem(&watched, &tgid) != NULL;
}

/* sock_of_fd walks the current task's fd table to the socket behind fd.
 * It is how connections that predate the agent (and accepted ones) get
 * their addresses without kprobes. NULL when fd is not a TCP socket. */
static __always_inline struct sock *sock_of_fd(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd < 0)
		return NULL;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if ((unsigned int)fd >= max)
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return NULL;
	struct sock *sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return NULL;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP ||
	    BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return NULL;
	return sk;
}

static __always_inline void read_addrs(struct sock *sk, struct conn_state *st)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	st->peer.family = family;
	st->local.family = family;
	st->peer.port = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	st->local.port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET) {
		BPF_CORE_READ_INTO(&st->peer.addr, sk, __sk_common.skc_daddr);
		BPF_CORE_READ_INTO(&st->local.addr, sk, __sk_common.skc_rcv_saddr);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&st->peer.addr, sk, __sk_common.skc_v6_daddr);
		BPF_CORE_READ_INTO(&st->local.addr, sk, __sk_common.skc_v6_rcv_saddr);
	}
}

/* new_conn records a fresh connection for tgid/fd; NULL if fd is not TCP. */
static __always_inline struct conn_state *new_conn(struct conn_key *key)
{
	struct sock *sk = sock_of_fd(key->fd);
	if (!sk)
		return NULL;
	struct conn_state st = {};
	st.gen = bpf_ktime_get_ns();
	read_addrs(sk, &st);
	if (bpf_map_update_elem(&conns, key, &st, BPF_ANY)) {
		count(CNT_DROP_CONN_STATE);
		return NULL;
	}
	return bpf_map_lookup_elem(&conns, key);
}

/* partial_request_line reports whether a short read holds only the start
 * of a request line ("POST /lo"): a method-like token, maybe a space and a
 * path start, and no line end yet. Such a read may still become an auth
 * request, so it is captured and the decoder decides. */
static __always_inline bool partial_request_line(const __u8 *d, __u64 len)
{
	bool in_method = true;
	for (int i = 0; i < PARTIAL_LINE_MAX; i++) {
		if (i >= len)
			return true;
		__u8 c = d[i];
		if (c == '\n' || c == '\r')
			return false;
		if (in_method) {
			if (c == ' ' && i > 0)
				in_method = false;
			else if (c < 'A' || c > 'Z')
				return false;
		}
	}
	return false;
}

/* route_match reports whether buf starts with a configured
 * "METHOD /prefix", or is too short to tell yet. It reads at most
 * ROUTE_KEY_LEN bytes. */
static __always_inline bool route_match(const void *buf, __u64 n)
{
	struct route_key key = {};
	__u64 len = clamp(n, ROUTE_KEY_LEN);
	if (len == 0)
		return false;
	if (bpf_probe_read_user(key.data, len, buf)) {
		count(CNT_DROP_READ_FAULT);
		return false;
	}
	key.prefixlen = len * 8;
	if (bpf_map_lookup_elem(&routes, &key))
		return true;
	return n < PARTIAL_LINE_MAX && partial_request_line(key.data, len);
}

/* starts_response reports whether a write begins a response head. */
static __always_inline bool starts_response(const void *buf, __u64 n)
{
	char head[5] = {};
	if (n < sizeof(head) || bpf_probe_read_user(head, sizeof(head), buf))
		return false;
	return head[0] == 'H' && head[1] == 'T' && head[2] == 'T' && head[3] == 'P' && head[4] == '/';
}

/* emit sends one chunk of a captured connection. The per-connection seq
 * advances even when the ring buffer is full, so user space sees the gap. */
static __noinline int emit(struct conn_key *key, struct conn_state *st,
			   __u8 dir, const void *buf, __u64 len)
{
	__u32 zero = 0;
	struct data_event *ev = bpf_map_lookup_elem(&scratch, &zero);
	if (!ev)
		return 0;
	__u64 cap = len > st->budget ? st->budget : len;
	if (cap < len)
		count(dir == DIR_INGRESS ? CNT_TRUNC_REQUEST : CNT_TRUNC_RESPONSE);

	ev->hdr.type = EVENT_DATA;
	ev->hdr.dir = dir;
	ev->hdr.seq = st->seq++;
	ev->hdr.tgid = key->tgid;
	ev->hdr.fd = key->fd;
	ev->hdr.gen = st->gen;
	ev->hdr.ts = bpf_ktime_get_ns();
	ev->hdr.len = len > 0xffffffff ? 0xffffffff : (__u32)len;
	ev->hdr.peer = st->peer;
	ev->hdr.local = st->local;
	st->captured = 1;

	cap = clamp(cap, MAX_CAPTURE);
	if (cap > 0 && bpf_probe_read_user(ev->data, cap, buf)) {
		count(CNT_DROP_READ_FAULT);
		cap = 0;
	}
	st->budget -= cap;
	ev->hdr.cap = cap;

	if (bpf_ringbuf_output(&events, ev, sizeof(ev->hdr) + clamp(cap, MAX_CAPTURE), wakeup_flags())) {
		count(CNT_DROP_RINGBUF_FULL);
		return 0;
	}
	count(CNT_EVENTS_DATA);
	return 0;
}

static __always_inline void emit_close(struct conn_key *key, struct conn_state *st)
{
	struct conn_event ev = {};
	ev.type = EVENT_CLOSE;
	ev.seq = st->seq;
	ev.tgid = key->tgid;
	ev.fd = key->fd;
	ev.gen = st->gen;
	ev.ts = bpf_ktime_get_ns();
	ev.peer = st->peer;
	ev.local = st->local;
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), wakeup_flags())) {
		count(CNT_DROP_RINGBUF_FULL);
		return;
	}
	count(CNT_EVENTS_CLOSE);
}

/* on_ingress handles bytes the process read: a request, on a server.
 * A request head is checked against the routes when the connection is
 * not in the middle of capturing one; only a match creates work. */
static __always_inline void on_ingress(struct conn_key *key,
				       const void *buf, __u64 len)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, key);
	if (st && st->phase == PHASE_REQUEST) {
		emit(key, st, DIR_INGRESS, buf, len);
		return;
	}
	if (!route_match(buf, len)) {
		if (st)
			st->phase = PHASE_SKIP;
		count(CNT_REQUESTS_SKIPPED);
		return;
	}
	if (!st) {
		st = new_conn(key);
		if (!st) {
			count(CNT_DROP_NOT_TCP);
			return;
		}
	}
	count(CNT_REQUESTS_MATCHED);
	st->phase = PHASE_REQUEST;
	st->budget = capture_bytes;
	emit(key, st, DIR_INGRESS, buf, len);
}

/* on_egress handles bytes the process wrote: the response to a captured
 * request. Writes on other connections were filtered at syscall enter. */
static __always_inline void on_egress(struct conn_key *key,
				      const void *buf, __u64 len)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, key);
	if (!st)
		return;
	if (st->phase == PHASE_REQUEST) {
		st->phase = PHASE_RESPONSE;
		st->budget = response_bytes;
	} else if (st->phase != PHASE_RESPONSE) {
		return;
	} else if (starts_response(buf, len)) {
		/* Pipelined responses: each gets its own budget. */
		st->budget = response_bytes;
	}
	emit(key, st, DIR_EGRESS, buf, len);
}

static __noinline void handle(struct conn_key *key, __u8 dir,
				   const void *buf, __u64 len)
{
	if (dir == DIR_INGRESS)
		on_ingress(key, buf, len);
	else
		on_egress(key, buf, len);
}

/* ---- syscall exit: the bytes are there now ----
 *
 * Only exits are hooked for data. The syscall's arguments are still in the
 * task's saved user registers when sys_exit fires (the return value goes
 * to its own register), so no enter program has to keep them: that halves
 * the programs every syscall runs, needs no per-thread map, and also sees
 * reads that were already blocked when the agent attached (a keep-alive
 * connection of a thread-per-connection server). */

struct args {
	__u64 fd;
	__u64 buf;   /* buffer, iovec array or msghdr */
	__u64 count; /* length or iovec count */
};

static __always_inline void syscall_args(struct args *a)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	a->fd = PT_REGS_PARM1_CORE_SYSCALL(regs);
	a->buf = PT_REGS_PARM2_CORE_SYSCALL(regs);
	a->count = PT_REGS_PARM3_CORE_SYSCALL(regs);
}

/* capturing says whether a write matters: only on a connection that is
 * capturing a request or its response. (Any read of a watched process
 * matters: a request may start there.) */
static __always_inline bool capturing(struct conn_key *key)
{
	struct conn_state *st = bpf_map_lookup_elem(&conns, key);
	return st && (st->phase == PHASE_REQUEST || st->phase == PHASE_RESPONSE);
}

static __always_inline int finish(long ret, __u8 dir)
{
	if (ret <= 0)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (dir == DIR_INGRESS && !is_watched(tgid))
		return 0;
	struct args a;
	syscall_args(&a);
	struct conn_key key = {.tgid = tgid, .fd = a.fd};
	if (dir == DIR_EGRESS && !capturing(&key))
		return 0;
	handle(&key, dir, (void *)a.buf, ret);
	return 0;
}

struct iov_walk {
	struct conn_key key;
	struct iovec *iov;
	__u64 count;
	__u64 left;
	__u8 dir;
	__u8 _pad[7];
};

/* iov_step handles one iovec. One event per iovec keeps every copy at
 * offset 0 of the scratch buffer, which the verifier can bound; the
 * decoder joins them. Run through bpf_loop, so it is verified once. */
static long iov_step(__u32 i, void *data)
{
	struct iov_walk *w = data;
	if (w->left == 0 || i >= w->count)
		return 1;
	struct iovec v = {};
	if (bpf_probe_read_user(&v, sizeof(v), &w->iov[i])) {
		count(CNT_DROP_READ_FAULT);
		return 1;
	}
	__u64 n = v.iov_len < w->left ? v.iov_len : w->left;
	if (n > 0) {
		handle(&w->key, w->dir, v.iov_base, n);
		w->left -= n;
	}
	return 0;
}

/* finish_iov walks the iovecs of readv/writev (msg = false) or of the
 * msghdr of recvmsg/sendmsg (msg = true). */
static __always_inline int finish_iov(long ret, __u8 dir, bool msg)
{
	if (ret <= 0)
		return 0;
	struct iov_walk w = {
		.key = {.tgid = bpf_get_current_pid_tgid() >> 32},
		.left = ret,
		.dir = dir,
	};
	if (dir == DIR_INGRESS && !is_watched(w.key.tgid))
		return 0;
	struct args a;
	syscall_args(&a);
	w.key.fd = a.fd;
	if (dir == DIR_EGRESS && !capturing(&w.key))
		return 0;
	w.iov = (struct iovec *)a.buf;
	w.count = a.count;
	if (msg) {
		struct user_msghdr m = {};
		if (bpf_probe_read_user(&m, sizeof(m), (void *)a.buf)) {
			count(CNT_DROP_READ_FAULT);
			return 0;
		}
		w.iov = m.msg_iov;
		w.count = m.msg_iovlen;
	}
	bpf_loop(MAX_IOV, iov_step, &w, 0);
	if (w.left > 0)
		count(CNT_DROP_IOV_TRUNCATED);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_read")
int authprobe_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return finish(ctx->ret, DIR_INGRESS);
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int authprobe_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return finish(ctx->ret, DIR_INGRESS);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int authprobe_exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return finish_iov(ctx->ret, DIR_INGRESS, false);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int authprobe_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return finish_iov(ctx->ret, DIR_INGRESS, true);
}

SEC("tracepoint/syscalls/sys_exit_write")
int authprobe_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return finish(ctx->ret, DIR_EGRESS);
}

SEC("tracepoint/syscalls/sys_exit_sendto")
int authprobe_exit_sendto(struct trace_event_raw_sys_exit *ctx)
{
	return finish(ctx->ret, DIR_EGRESS);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int authprobe_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return finish_iov(ctx->ret, DIR_EGRESS, false);
}

SEC("tracepoint/syscalls/sys_exit_sendmsg")
int authprobe_exit_sendmsg(struct trace_event_raw_sys_exit *ctx)
{
	return finish_iov(ctx->ret, DIR_EGRESS, true);
}

/* ---- connection lifecycle ---- */

static __always_inline int on_accept_exit(long ret)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (ret < 0 || !is_watched(tgid))
		return 0;
	struct conn_key key = {.tgid = tgid, .fd = ret};
	new_conn(&key);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int authprobe_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int authprobe_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept_exit(ctx->ret);
}

/* A connect makes the fd a new (client) connection: forget the old state
 * so a later request on it gets a new generation. */
SEC("tracepoint/syscalls/sys_enter_connect")
int authprobe_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	struct conn_key key = {.tgid = bpf_get_current_pid_tgid() >> 32,
			       .fd = ctx->args[0]};
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int authprobe_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	struct conn_key key = {.tgid = bpf_get_current_pid_tgid() >> 32,
			       .fd = ctx->args[0]};
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return 0;
	if (st->captured)
		emit_close(&key, st);
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

/* ---- process discovery ---- */

static __always_inline struct process_event *proc_event(__u8 type, __u32 pid)
{
	__u32 zero = 0;
	struct process_event *ev = bpf_map_lookup_elem(&proc_scratch, &zero);
	if (!ev)
		return NULL;
	ev->type = type;
	ev->pid = pid;
	ev->ppid = 0;
	ev->ts = bpf_ktime_get_ns();
	ev->filename[0] = 0;
	return ev;
}

static __always_inline void send_proc(struct process_event *ev, __u64 size)
{
	if (bpf_ringbuf_output(&events, ev, size, wakeup_flags()))
		count(CNT_DROP_RINGBUF_FULL);
	else
		count(CNT_EVENTS_PROC);
}

SEC("tracepoint/sched/sched_process_exec")
int authprobe_sched_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct process_event *ev = proc_event(EVENT_EXEC, tgid);
	if (!ev)
		return 0;
	unsigned int off = ctx->__data_loc_filename & 0xFFFF;
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), (void *)ctx + off);
	send_proc(ev, sizeof(*ev));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int authprobe_sched_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	if ((__u32)id != tgid || !is_watched(tgid))
		return 0;
	bpf_map_delete_elem(&watched, &tgid);
	struct process_event *ev = proc_event(EVENT_EXIT, tgid);
	if (ev)
		send_proc(ev, offsetof(struct process_event, filename));
	return 0;
}

/* Children of watched processes (pre-fork servers, workers) are watched
 * from their first instruction; threads share the tgid and need nothing. */
SEC("raw_tracepoint/sched_process_fork")
int authprobe_sched_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ptgid == ctgid || ptgid == agent_tgid || !is_watched(ptgid))
		return 0;
	__u32 flags = 0;
	bpf_map_update_elem(&watched, &ctgid, &flags, BPF_ANY);
	struct process_event *ev = proc_event(EVENT_FORK, ctgid);
	if (!ev)
		return 0;
	ev->ppid = ptgid;
	send_proc(ev, offsetof(struct process_event, filename));
	return 0;
}
