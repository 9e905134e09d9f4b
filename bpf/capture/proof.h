/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/* The in-kernel proof that a read holds exactly one request no route can
 * match (docs/capture.md, "Filter, episode, off"):
 *   1. at most PROOF_MAX bytes, an upper-case method, one space, '/';
 *   2. the path (up to a space or '?') has only A-Za-z0-9-._~/, no "//",
 *      no "/." (so no '%', no ';');
 *   3. the lower-cased path matches no route prefix;
 *   4. the request line ends " HTTP/1.d", every line ends in LF (CR only
 *      right before LF), no line starts with SP or HT, no header line
 *      starts with content-length, transfer-encoding (any case, '-' or
 *      '_') or upgrade (an h2c or WebSocket upgrade always goes to user
 *      space: after its 101 the connection speaks another protocol), and the first empty line ends exactly at the end of the read.
 * Anything not proven goes to user space.
 *
 * The read is already in the scratch event (one copy, which an episode
 * then sends as is). It is scanned a word at a time with SWAR masks that
 * hold 0x80 in each byte of a class, so a word costs the same few dozen
 * instructions whatever it holds and the verifier sees few branches. */
#ifndef AUTHPROBE_PROOF_H
#define AUTHPROBE_PROOF_H

#include "common.h"
#include "proof_scan.h"
#include "../maps/capture_scratch.h"
#include "../maps/routes.h"

#define ONES 0x0101010101010101ULL
#define LOW7 0x7f7f7f7f7f7f7f7fULL
#define HIGH 0x8080808080808080ULL

/* eq_bytes marks the bytes of w that equal c. */
static __always_inline __u64 eq_bytes(__u64 w, __u8 c)
{
	__u64 x = w ^ (ONES * c);
	return ~(((x & LOW7) + LOW7) | x | LOW7);
}

/* has_cr_or_lf says whether w holds a CR or an LF: the classic test for a
 * zero byte, exact about whether there is one (not about where). */
static __always_inline bool has_cr_or_lf(__u64 w)
{
	__u64 a = w ^ (ONES * '\n');
	__u64 b = w ^ (ONES * '\r');
	return (((a - ONES) & ~a) | ((b - ONES) & ~b)) & HIGH;
}

/* in_range marks the ASCII bytes of w in [lo, hi]. */
static __always_inline __u64 in_range(__u64 w, __u8 lo, __u8 hi)
{
	__u64 h = w & LOW7;
	return (h + ONES * (0x80 - lo)) & ~(h + ONES * (0x7f - hi)) & ~w & HIGH;
}

/* lower_ascii lower-cases the A-Z bytes of w. */
static __always_inline __u64 lower_ascii(__u64 w)
{
	return w | (in_range(w, 'A', 'Z') >> 2);
}

/* first_byte is the index of the lowest marked byte of a non-zero mask
 * (clang-14 cannot lower ctz for BPF): the lowest mark, moved to bit 8k,
 * times 0x0001020304050607 puts k in the top byte. */
static __always_inline __u32 first_byte(__u64 m)
{
	return (((m & -m) >> 7) * 0x0001020304050607ULL) >> 56;
}

/* below_first marks the bytes before the lowest marked byte of m (all
 * bytes when m is 0). */
static __always_inline __u64 below_first(__u64 m)
{
	return m ? (m & -m) - 1 : ~0ULL;
}

/* from_byte marks the bytes from index k (0..7) on. */
static __always_inline __u64 from_byte(__u32 k)
{
	return ~0ULL << (8 * (k & 7));
}

/* valid_bytes marks the bytes of the word at base that are inside len. */
static __always_inline __u64 valid_bytes(__u32 base, __u32 len)
{
	__u32 n = len - base;
	return n >= 8 ? ~0ULL : (1ULL << (8 * n)) - 1;
}

static __always_inline __u64 load64(const __u8 *p)
{
	return *(const __u64 *)p;
}

#define STR8(a, b, c, d, e, f, g, h)                                                     \
	((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24 |             \
	 (__u64)(e) << 32 | (__u64)(f) << 40 | (__u64)(g) << 48 | (__u64)(h) << 56)

/* A bound for positions in the buffer that the verifier can see. */
#define POS(p) ((p) & (2 * PROOF_MAX - 1))

/* rl_version checks "HTTP/1.d" and LF or CRLF at v, right after the
 * target, and notes where the header lines start. */
static __always_inline void rl_version(struct rl_scan *r, const __u8 *buf, __u32 v)
{
	r->result = PROOF_FAIL;
	if (v + 9 > r->len)
		return;
	__u64 w = load64(buf + POS(v));
	__u8 minor = w >> 56;
	if ((w & 0x00ffffffffffffffULL) != STR8('H', 'T', 'T', 'P', '/', '1', '.', 0) ||
	    minor < '0' || minor > '9')
		return;
	__u8 c = buf[POS(v + 8)];
	if (c == '\n')
		r->hdr = v + 9;
	else if (c == '\r' && v + 10 <= r->len && buf[POS(v + 9)] == '\n')
		r->hdr = v + 10;
	else
		return;
	r->result = PROOF_OK;
}

/* rl_word scans the word at base of the request line; a phase may end in
 * it and the next begin, so it goes round at most once per phase. It
 * returns 1 when the scan is over. */
static __always_inline int rl_word(struct rl_scan *r, const __u8 *buf, __u32 base)
{
	if (base >= r->len) {
		r->result = PROOF_FAIL; /* the read ends inside the request line */
		return 1;
	}
	__u64 w = load64(buf + (base & (PROOF_MAX - 1)));
	__u64 valid = valid_bytes(base, r->len);
	__u64 sp = eq_bytes(w, ' ');
	__u64 slash = eq_bytes(w, '/');
	for (int t = 0; t < 3; t++) {
		if (r->at >= base + 8)
			return 0;
		__u64 from = r->at > base ? from_byte(r->at - base) : ~0ULL;
		__u64 cls, end;
		if (r->phase == RL_METHOD) {
			cls = in_range(w, 'A', 'Z');
			end = sp;
		} else if (r->phase == RL_PATH) {
			cls = in_range(w, 'A', 'Z') | in_range(w, 'a', 'z') | in_range(w, '0', '9') |
			      in_range(w, '-', '/') | eq_bytes(w, '_') | eq_bytes(w, '~');
			end = sp | eq_bytes(w, '?');
		} else {
			cls = in_range(w, '!', '~');
			end = sp;
		}
		end &= from & valid;
		__u64 span = from & valid & below_first(end) & HIGH;
		if (span & ~cls) {
			r->result = PROOF_FAIL;
			return 1;
		}
		if (r->phase == RL_PATH) {
			/* "//" or "/." anywhere in the path, also across words. */
			__u64 pair = slash & ((slash | eq_bytes(w, '.')) >> 8);
			__u64 first = span & -span;
			bool carried = r->slash && (first & 0x80) && (first & (slash | eq_bytes(w, '.')));
			if ((pair & span & (span >> 8)) || carried) {
				r->result = PROOF_FAIL;
				return 1;
			}
			r->slash = !end && (slash & span & (1ULL << 63));
		}
		if (!end) {
			if (~valid) {
				r->result = PROOF_FAIL; /* the read ends inside the request line */
				return 1;
			}
			return 0;
		}
		__u32 e = base + first_byte(end);
		if (r->phase == RL_METHOD) {
			if (e == 0 || e + 1 >= r->len || buf[POS(e + 1)] != '/') {
				r->result = PROOF_FAIL;
				return 1;
			}
			r->phase = RL_PATH;
			r->path = e + 1;
			r->at = e + 1;
			r->slash = 0;
		} else if (r->phase == RL_PATH && buf[POS(e)] == '?') {
			r->pathlen = e - r->path;
			r->phase = RL_QUERY;
			r->at = e + 1;
		} else {
			if (r->phase == RL_PATH)
				r->pathlen = e - r->path;
			rl_version(r, buf, e + 1);
			return 1;
		}
	}
	return 0;
}

/* Words one call of a block scan takes: a call per word would cost more
 * than the word. */
#define BLOCK_WORDS 8

/* capture_rl_block scans block i of the request line. A global function,
 * so that the verifier checks it once for any scan state instead of
 * following the state from block to block. */
__noinline int capture_rl_block(struct rl_scan *r, struct capture_scratch *s, __u32 i)
{
	if (!r || !s)
		return 1;
	for (int k = 0; k < BLOCK_WORDS; k++)
		if (rl_word(r, s->ev.data, (i * BLOCK_WORDS + k) * 8))
			return 1;
	return 0;
}

/* scan_loop is what a block callback gets: the scratch that holds the
 * read and the scan state, so that no block looks the scratch up again. */
struct scan_loop {
	struct capture_scratch *s;
};

static long rl_step(__u32 i, void *data)
{
	struct scan_loop *l = data;
	return capture_rl_block(&l->s->rl, l->s, i) ? 1 : 0;
}

#define CARRY_LF 1 /* the previous word ended in LF: a line starts at byte 0 */
#define CARRY_CR 2 /* the previous word ended in CR: byte 0 must be LF */

/* frames_body says whether the header line at p names content-length,
 * transfer-encoding or upgrade. Bytes are OR-ed with 0x20, which lower-cases letters
 * and maps '_' to 0x7f; it may turn other bytes into matches, which only
 * sends a request to user space. */
static __always_inline bool frames_body(const __u8 *buf, __u32 p)
{
	__u64 a = load64(buf + POS(p)) | ONES * 0x20;
	__u64 b = load64(buf + POS(p) + 8) | ONES * 0x20;
	__u8 dash = a >> 56;
	if ((a & 0x00ffffffffffffffULL) == STR8('c', 'o', 'n', 't', 'e', 'n', 't', 0) &&
	    (dash == '-' || dash == 0x7f) &&
	    (b & 0x0000ffffffffffffULL) == STR8('l', 'e', 'n', 'g', 't', 'h', 0, 0))
		return true;
	if ((a & 0x00ffffffffffffffULL) == STR8('u', 'p', 'g', 'r', 'a', 'd', 'e', 0))
		return true;
	dash = b;
	return a == STR8('t', 'r', 'a', 'n', 's', 'f', 'e', 'r') && (dash == '-' || dash == 0x7f) &&
	       (load64(buf + POS(p) + 9) | ONES * 0x20) == STR8('e', 'n', 'c', 'o', 'd', 'i', 'n', 'g');
}

/* hdr_word checks the word w at base of the header lines, which holds a
 * CR, an LF or a line start; it returns 1 when the scan is over. */
static __always_inline int hdr_word(struct hdr_scan *h, const __u8 *buf, __u32 base, __u64 w)
{
	__u64 valid = valid_bytes(base, h->len) & HIGH;
	__u64 lf = eq_bytes(w, '\n') & valid;
	__u64 cr = eq_bytes(w, '\r') & valid;
	if ((h->carry & CARRY_CR) && !(lf & 0x80)) {
		h->result = PROOF_FAIL;
		return 1;
	}
	/* Line starts: after every LF, and byte 0 after a word ending in LF. */
	__u64 starts = ((lf << 8) | (h->carry & CARRY_LF ? 0x80 : 0)) & valid;
	__u64 empty = starts & (lf | cr);
	__u64 before = below_first(empty);
	__u64 ws = eq_bytes(w, ' ') | eq_bytes(w, '\t');
	/* A CR not followed by LF (byte 7 is settled by the next word). */
	__u64 bare = cr & ~(lf >> 8) & ~(0x80ULL << 56);
	if ((bare | (starts & ws)) & before) {
		h->result = PROOF_FAIL;
		return 1;
	}
	__u64 lines = starts & before;
	for (int k = 0; k < 4 && lines; k++) {
		if (frames_body(buf, base + first_byte(lines))) {
			h->result = PROOF_FAIL;
			return 1;
		}
		lines &= lines - 1;
	}
	if (lines) {
		/* More than four header lines start in one word: a head no
		 * real client sends; not worth proving. */
		h->result = PROOF_FAIL;
		return 1;
	}
	if (empty) {
		/* The empty line: LF, or CR LF; it must end the read. */
		__u32 p = base + first_byte(empty);
		__u32 end = p + 1;
		if (buf[POS(p)] == '\r')
			end = buf[POS(p + 1)] == '\n' ? p + 2 : 0;
		h->result = end == h->len ? PROOF_OK : PROOF_FAIL;
		return 1;
	}
	h->carry = (lf >> 63 ? CARRY_LF : 0) | (cr >> 63 ? CARRY_CR : 0);
	return 0;
}

/* capture_hdr_block scans block i of the header lines; it returns 1 when
 * the scan is over. Global, like capture_rl_block. */
__noinline int capture_hdr_block(struct hdr_scan *h, struct capture_scratch *s, __u32 i)
{
	if (!h || !s)
		return 1;
	__u32 len = h->len;
	__u32 at = (h->first + i * BLOCK_WORDS) * 8;
	__u32 carry = h->carry;
	for (int k = 0; k < BLOCK_WORDS; k++, at += 8) {
		if (at >= len) {
			h->result = PROOF_FAIL; /* no empty line */
			return 1;
		}
		__u32 base = at & (PROOF_MAX - 1);
		__u64 w = load64(s->ev.data + base);
		/* Most words of a head are inside a line: no CR, no LF, no
		 * line start; nothing to check. */
		if (!carry && at + 8 <= len && !has_cr_or_lf(w))
			continue;
		if (hdr_word(h, s->ev.data, base, w))
			return 1;
		carry = h->carry;
	}
	return 0;
}

static long hdr_step(__u32 i, void *data)
{
	struct scan_loop *l = data;
	return capture_hdr_block(&l->s->hdr, l->s, i) ? 1 : 0;
}

/* route_may_match looks the lower-cased path up in the route trie. */
static __always_inline bool route_may_match(struct capture_scratch *s, __u32 path, __u32 pathlen)
{
	const __u8 *p = s->ev.data + (path & (PROOF_MAX - 1));
	__u64 *key = (__u64 *)s->key.data;
#pragma unroll
	for (int k = 0; k < ROUTE_KEY_LEN / 8; k++)
		key[k] = lower_ascii(load64(p + 8 * k));
	s->key.prefixlen = (pathlen < ROUTE_KEY_LEN ? pathlen : ROUTE_KEY_LEN) * 8;
	return bpf_map_lookup_elem(&routes, &s->key) != NULL;
}

/* capture_prove says whether the len bytes in the scratch event are
 * exactly one request that no route can match. A global function: the
 * verifier checks it once, not once per path of its callers. The scan
 * state lives in the scratch, not on the stack: this is the deepest call
 * chain of the capture (backend → capture_handle → capture_prove → a
 * bpf_loop callback → a block scan), and verifiers before 6.9 round
 * every frame of it up to 32 bytes against the 512 they allow
 * (bpf/stack_test.go). */
__noinline int capture_prove(__u32 len)
{
	if (len == 0 || len > PROOF_MAX)
		return 0;
	struct capture_scratch *s = scratch_get();
	if (!s)
		return 0;
	s->rl = (struct rl_scan){.len = len};
	struct scan_loop l = {.s = s};
	bpf_loop(PROOF_MAX / 8 / BLOCK_WORDS, rl_step, &l, 0);
	if (s->rl.result != PROOF_OK || route_may_match(s, s->rl.path, s->rl.pathlen))
		return 0;
	/* Start at the word holding the request line's LF, so that a line
	 * start right after it is seen. */
	s->hdr = (struct hdr_scan){.len = len, .first = (s->rl.hdr - 1) / 8};
	bpf_loop(PROOF_MAX / 8 / BLOCK_WORDS + 1, hdr_step, &l, 0);
	return s->hdr.result == PROOF_OK;
}

#endif
