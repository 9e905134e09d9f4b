/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The state of the in-kernel proof's scans (proof.h), kept in the
 * per-CPU scratch (maps/capture_scratch.h). */
#ifndef AUTHPROBE_PROOF_SCAN_H
#define AUTHPROBE_PROOF_SCAN_H

#include "common.h"

enum proof_result {
	PROOF_RUNNING = 0,
	PROOF_OK = 1,
	PROOF_FAIL = 2,
};

enum rl_phase {
	RL_METHOD = 0, /* up to the first space: A-Z */
	RL_PATH = 1,   /* from '/' to a space or '?': path bytes */
	RL_QUERY = 2,  /* to the space: visible ASCII */
};

struct rl_scan {
	__u32 len;
	__u32 phase;   /* enum rl_phase */
	__u32 at;      /* where the current phase's bytes continue */
	__u32 path;    /* where the path starts */
	__u32 pathlen;
	__u32 hdr;     /* where the header lines start, when done */
	__u32 slash;   /* the previous word's last path byte was '/' */
	__u32 result;  /* enum proof_result */
	__u32 _pad;
};

struct hdr_scan {
	__u32 len;
	__u32 first;  /* the first word to scan */
	__u32 carry;  /* CARRY_* from the previous word */
	__u32 result; /* enum proof_result */
};

#endif
