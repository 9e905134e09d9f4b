//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* Lifecycle and discovery, loaded with every capture backend: the ends of
 * connections, listeners, client connects (sock:inet_sock_set_state), and
 * process exec, fork and exit (sched). */

#include "capture/common.h"
#include "capture/conn.h"
#include "maps/conns.h"
#include "maps/counters.h"
#include "maps/events.h"
#include "maps/verdicts.h"
#include "maps/watched.h"
#include "maps/tls.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct process_event);
} proc_scratch SEC(".maps");

/* Keep bpf2go's -type output for the structs and enums Go decodes. */
const struct conn_event *unused_conn_event __attribute__((unused));
const struct data_event *unused_data_event __attribute__((unused));
const struct process_event *unused_process_event __attribute__((unused));
const struct route_key *unused_route_key __attribute__((unused));
const struct conn_state *unused_conn_state __attribute__((unused));
const struct verdict *unused_verdict __attribute__((unused));
const struct watch_info *unused_watch_info __attribute__((unused));
const enum counter *unused_counter __attribute__((unused));
const enum event_type *unused_event_type __attribute__((unused));
const enum watch_flags *unused_watch_flags __attribute__((unused));

/* ---- connections ---- */

static __always_inline void emit_close(__u64 sk, struct conn_state *st)
{
	struct conn_event ev = {};
	ev.type = EVENT_CLOSE;
	ev.role = st->role;
	ev.source = st->source;
	ev.sock = sk;
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

/* conn_end forgets a socket that reached TCP_CLOSE: every end of a TCP
 * connection passes there, whoever closed it. */
static __always_inline void conn_end(struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct conn_state *st = bpf_map_lookup_elem(&conns, &key);
	if (!st)
		return;
	if (st->captured) {
		emit_close(key, st);
		bpf_map_delete_elem(&verdicts, &key);
	}
	if (st->source == SRC_TLS)
		bpf_map_delete_elem(&tls_sock_owner, &key);
	bpf_map_delete_elem(&conns, &key);
}

/* ---- processes ---- */

static __always_inline struct process_event *proc_event(__u8 type, __u32 pid, __u64 start)
{
	__u32 zero = 0;
	struct process_event *ev = bpf_map_lookup_elem(&proc_scratch, &zero);
	if (!ev)
		return NULL;
	ev->type = type;
	ev->pid = pid;
	ev->ppid = 0;
	ev->port = 0;
	ev->family = 0;
	ev->ts = bpf_ktime_get_ns();
	ev->start = start;
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

#define PROC_HEAD offsetof(struct process_event, filename)

/* listen_event reports a TCP listener of any process: port targets are
 * found without polling /proc. listen() runs in the listener's context. */
static __always_inline void listen_event(struct sock *sk)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return;
	struct task_struct *task = bpf_get_current_task_btf();
	struct process_event *ev =
		proc_event(EVENT_LISTEN, task->tgid, start_ticks(task->group_leader));
	if (!ev)
		return;
	ev->port = BPF_CORE_READ(sk, __sk_common.skc_num);
	ev->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	send_proc(ev, PROC_HEAD);
}

SEC("raw_tp/inet_sock_set_state")
int authprobe_inet_sock_set_state(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	int oldstate = ctx->args[1];
	int newstate = ctx->args[2];
	switch (newstate) {
	case TCP_CLOSE:
		conn_end(sk);
		break;
	case TCP_LISTEN:
		listen_event(sk);
		break;
	case TCP_SYN_SENT:
		/* connect() runs in the connecting process's context. */
		if (oldstate == TCP_CLOSE && current_watched(bpf_get_current_pid_tgid() >> 32))
			conn_new_client(sk);
		break;
	}
	return 0;
}

SEC("raw_tp/sched_process_exec")
int authprobe_sched_process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx->args[2];
	struct task_struct *task = bpf_get_current_task_btf();
	struct process_event *ev =
		proc_event(EVENT_EXEC, task->tgid, start_ticks(task->group_leader));
	if (!ev)
		return 0;
	bpf_probe_read_kernel_str(ev->filename, sizeof(ev->filename), BPF_CORE_READ(bprm, filename));
	send_proc(ev, sizeof(*ev));
	return 0;
}

/* A watched process is forgotten when its last thread exits, not its
 * leader: a server whose main thread exits while workers serve is still
 * watched. signal->live drops to 0 before this tracepoint fires for the
 * group's last thread. */
SEC("raw_tp/sched_process_exit")
int authprobe_sched_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid;
	struct watch_info *w = bpf_map_lookup_elem(&watched, &tgid);
	if (!w || task->signal->live.counter != 0)
		return 0;
	__u64 start = start_ticks(task->group_leader);
	bool same = w->start == start;
	bpf_map_delete_elem(&watched, &tgid);
	if (!same) {
		count(CNT_STALE_WATCH);
		return 0;
	}
	struct process_event *ev = proc_event(EVENT_EXIT, tgid, start);
	if (ev)
		send_proc(ev, PROC_HEAD);
	return 0;
}

/* Children of watched processes (pre-fork servers, workers) are watched
 * from their first instruction, under their own start time; threads
 * share the tgid and need nothing. */
SEC("raw_tp/sched_process_fork")
int authprobe_sched_process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ptgid = bpf_get_current_pid_tgid() >> 32;
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ptgid == ctgid || ptgid == agent_tgid)
		return 0;
	struct watch_info *pw = current_watch(ptgid);
	if (!pw)
		return 0;
	/* The child runs the parent's program until it execs. */
	struct watch_info w = {.start = BPF_CORE_READ(child, start_boottime) / NSEC_PER_TICK,
			       .flags = pw->flags};
	if (bpf_map_update_elem(&watched, &ctgid, &w, BPF_ANY)) {
		count(CNT_DROP_WATCH_FULL);
		return 0;
	}
	struct process_event *ev = proc_event(EVENT_FORK, ctgid, w.start);
	if (!ev)
		return 0;
	ev->ppid = ptgid;
	send_proc(ev, PROC_HEAD);
	return 0;
}
