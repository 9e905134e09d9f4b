/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* What every authprobe BPF object includes: the kernel's types, libbpf's
 * helpers, the structs shared with Go and the kernel constants vmlinux.h
 * has no macros for. */
#ifndef AUTHPROBE_COMMON_H
#define AUTHPROBE_COMMON_H

/* -Wpadded is for our own shared structs, not the kernel's. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpadded"
#include "../headers/vmlinux.h"
#include "../headers/bpf_helpers.h"
#include "../headers/bpf_core_read.h"
#pragma clang diagnostic pop
#include "../headers/types.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define SOCK_STREAM 1

#define MSG_OOB 0x1
#define MSG_PEEK 0x2
#define MSG_TRUNC 0x20
#define MSG_ERRQUEUE 0x2000

#define PF_IO_WORKER 0x00000010
#define PF_KTHREAD 0x00200000

/* /proc/PID/stat reports start times in clock ticks: USER_HZ is 100 on
 * every architecture Linux runs containers on. */
#define NSEC_PER_TICK (1000000000ULL / 100)

/* clamp bounds n to max in a way clang cannot reorder, so the verifier
 * sees the bound right before the access that needs it. */
static __always_inline __u64 clamp(__u64 n, const __u64 max)
{
	asm volatile("if %[n] <= %[max] goto +1\n\t"
		     "%[n] = %[max]\n\t"
		     : [n] "+r"(n)
		     : [max] "i"(max));
	return n;
}

static __always_inline __u64 min64(__u64 a, __u64 b)
{
	return a < b ? a : b;
}

#endif /* AUTHPROBE_COMMON_H */
