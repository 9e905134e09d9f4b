package bpf

import "fmt"

// counterNames names the kernel's counters, indexed by the C enum counter.
// "drop_" names losses, "truncated_" bytes counted but not copied.
func counterNames() [lifecycleCounterCNT_MAX]string {
	return [...]string{
		lifecycleCounterCNT_EVENTS_DATA:          "events_data",
		lifecycleCounterCNT_EVENTS_CLOSE:         "events_close",
		lifecycleCounterCNT_EVENTS_PROC:          "events_process",
		lifecycleCounterCNT_REQUESTS_SKIPPED:     "requests_skipped",
		lifecycleCounterCNT_EPISODES:             "episodes",
		lifecycleCounterCNT_DROP_RINGBUF_FULL:    "drop_ringbuf_full",
		lifecycleCounterCNT_DROP_READ_FAULT:      "drop_read_fault",
		lifecycleCounterCNT_DROP_IOV_TRUNCATED:   "drop_iov_truncated",
		lifecycleCounterCNT_TRUNC_BUDGET:         "truncated_budget",
		lifecycleCounterCNT_TRUNC_RESPONSE:       "truncated_response",
		lifecycleCounterCNT_DROP_CONN_STATE:      "drop_conn_state",
		lifecycleCounterCNT_UNSUPPORTED_SYSCALL:  "unsupported_syscall",
		lifecycleCounterCNT_PEEK:                 "peek_ignored",
		lifecycleCounterCNT_STALE_WATCH:          "stale_watch",
		lifecycleCounterCNT_TLS_SKIPPED:          "tls_skipped",
		lifecycleCounterCNT_VERDICTS_APPLIED:     "verdicts_applied",
		lifecycleCounterCNT_VERDICTS_STALE:       "verdicts_stale",
		lifecycleCounterCNT_TRUNC_SLICES:         "truncated_slices",
		lifecycleCounterCNT_DROP_WATCH_FULL:      "drop_watch_full",
		lifecycleCounterCNT_CLIENT_CAPTURED:      "client_captured",
		lifecycleCounterCNT_CLIENT_OUTSIDE:       "client_outside",
		lifecycleCounterCNT_DROP_TASK_STATE:      "drop_task_state",
		lifecycleCounterCNT_TLS_CONNS:            "tls_connections",
		lifecycleCounterCNT_TLS_IO:               "tls_io",
		lifecycleCounterCNT_TLS_UNATTRIBUTED:     "drop_tls_unattributed",
		lifecycleCounterCNT_TLS_AFTER_CLOSE:      "tls_after_close",
		lifecycleCounterCNT_GO_SPAWNED:           "go_spawned",
		lifecycleCounterCNT_CLIENT_SPAWNED:       "client_spawned",
		lifecycleCounterCNT_PROMPT_WAKES:         "prompt_wakes",
		lifecycleCounterCNT_PROMPT_WAKES_LIMITED: "prompt_wakes_limited",
		lifecycleCounterCNT_TLS_GUESS_REFUSED:    "tls_guess_refused",
	}
}

// CounterNames lists every kernel counter name, in the kernel's order.
func CounterNames() []string {
	names := counterNames()
	return names[:]
}

// Counters sums the kernel's per-CPU counters by name (see CounterNames).
func (p *Probe) Counters() (map[string]uint64, error) {
	names := counterNames()
	out := make(map[string]uint64, len(names))
	var perCPU []uint64
	for i, name := range names {
		if err := p.maps["counters"].Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range perCPU {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}
