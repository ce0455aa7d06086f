/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/static/sequence.h: the inline fast paths of tally_series_next. Everything here is
 * private: use the calls in tally/sequence.h.
 * - strict series that never reset and have no lease: one fetch_add on the series word,
 *   after one relaxed load of a read-mostly word (released numbers pending / removed);
 * - cached series that never reset: a thread-local block hit (no call, no atomic).
 * Anything else (a rollover, the width limit, a release list to serve, a lease, a block to
 * take) calls tally__series_next_slow.
 */
#ifndef TALLY_STATIC_SEQUENCE_H
#define TALLY_STATIC_SEQUENCE_H

#include <stdint.h>
#include <tally/error.h>
#include <tally/sequence.h>
#include <tally/static/compat.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The series word's low bits hold the counter, the high bits the period. */
#define TALLY__SEQ_COUNTER_BITS 40
#define TALLY__SEQ_COUNTER_MASK ((UINT64_C(1) << TALLY__SEQ_COUNTER_BITS) - 1)

/* A thread's block of cached numbers for one series, packed as the series word. */
struct tally__seq_block {
	uint64_t series_id; /* never-reused id of the series the block belongs to; 0: empty */
	uint64_t next, end; /* next > end: used up */
	uint32_t size;      /* this thread's block size for the series (grows when hot) */
	uint32_t taken_ms;  /* low 32 bits of the coarse monotonic ms clock at the last take:
			     * compared by difference, so the wrap (49 days) costs nothing; 32
			     * bits keep the block at 32 bytes, an index a shift, not two LEAs */
};

/* Per-thread block cache, written only by its thread (lib/sequence/sequence.c). */
extern TALLY__THREAD_LOCAL struct tally__seq_block tally__seq_blocks[TALLY_SEQ_THREAD_CACHE]
	__attribute__((tls_model("initial-exec")));

/* Bits of tally__series_head.divert. */
#define TALLY__SEQ_DIVERT_RELEASED 1u /* the strict release list is not empty */
#define TALLY__SEQ_DIVERT_REMOVED 2u  /* the series was removed (late-handle diagnostic) */

/* The first line of every struct tally_series: read by every inline issue, written never
 * (id, inline_key, strict_max) or rarely (divert), so it stays shared in every core's
 * cache. The series word follows alone on the next line (struct tally__series_hot). */
struct tally__series_head {
	uint64_t id;
	/* id for a cached series that never resets (its blocks may be used inline), else
	 * UINT64_MAX, which no block carries: the inline path then always misses, with one
	 * load and one compare instead of a separate mode test per number. */
	uint64_t inline_key;
	/* For a strict series that never resets and has no lease: the template's largest
	 * counter (>= 1), else 0, which turns the inline fetch_add path off. */
	uint64_t strict_max;
	/* TALLY__SEQ_DIVERT_* bits; 0 in the steady state. Set and cleared by the release
	 * list (under its mutex) and the remover; the inline strict path reads it relaxed: a
	 * release or removal that happens-before the issue is seen by coherence, a concurrent
	 * one is ordered after the issue, which then linearizes before it. */
	TALLY__ATOMIC(uint32_t) divert;
};

/* Layout prefix of struct tally_series (lib/sequence/series.h asserts it). */
struct tally__series_hot {
	struct tally__series_head head;
	char head_pad[64 - sizeof(struct tally__series_head)];
	/* (period << TALLY__SEQ_COUNTER_BITS) | last counter handed out; every issuer writes it: alone on its line. */
	TALLY__ATOMIC(uint64_t) state;
	char state_pad[64 - sizeof(uint64_t)];
};

int tally__series_next_slow(struct tally_series *series, struct tally_seq_number *out);
/* The inline fetch_add returned `old` at or past strict_max: undoes the overshoot and
 * returns TALLY_EWIDTH. */
int tally__series_next_width(struct tally_series *series, uint64_t old);

#if TALLY__INLINE_BODIES
TALLY__INLINE int tally_series_next(struct tally_series *series, struct tally_seq_number *out)
{
	struct tally__series_hot *hot = (struct tally__series_hot *)series;

	if (TALLY_LIKELY(series && out)) {
		/* The block hit first: it is the cheapest path, and a series that may not use
		 * it (strict, resetting) has inline_key UINT64_MAX, which no block carries, so
		 * the test costs the strict path one load from this thread's block cache and a
		 * compare in front of its fetch_add, and saves the cached path the strict_max
		 * test. */
		uint64_t key = hot->head.inline_key;
		struct tally__seq_block *blocks = tally__seq_blocks;
		struct tally__seq_block *block = blocks + key % TALLY_SEQ_THREAD_CACHE;
		uint64_t next = block->next;
		uint64_t max;

		if (TALLY_LIKELY(block->series_id == key && next <= block->end)) {
			block->next = next + 1;
			out->period = (uint32_t)(next >> TALLY__SEQ_COUNTER_BITS);
			out->counter = next & TALLY__SEQ_COUNTER_MASK;
			return TALLY_OK;
		}
		max = hot->head.strict_max;
		if (max) {
			uint64_t old;

			/* Relaxed: see divert. */
			if (TALLY_UNLIKELY(TALLY__ATOMIC_LOAD(&hot->head.divert, TALLY__RELAXED)))
				goto slow;
			/* Relaxed: numbers publish nothing; the RMW itself decides ownership
			 * (lib/sequence/sequence.c, take_fresh_add, says why no rollover or
			 * lease can interleave on such a series). */
			old = TALLY__ATOMIC_FETCH_ADD(&hot->state, 1, TALLY__RELAXED);
			if (TALLY_UNLIKELY((old & TALLY__SEQ_COUNTER_MASK) >= max))
				return tally__series_next_width(series, old);
			out->period = (uint32_t)((old + 1) >> TALLY__SEQ_COUNTER_BITS);
			out->counter = (old + 1) & TALLY__SEQ_COUNTER_MASK;
			return TALLY_OK;
		}
	}
slow:
	return tally__series_next_slow(series, out);
}
#endif /* TALLY__INLINE_BODIES */

#ifdef __cplusplus
}
#endif
#endif /* TALLY_STATIC_SEQUENCE_H */
