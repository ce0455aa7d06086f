/*
 * tally/static/sequence.h: the inline fast path of tally_series_next for cached series that
 * never reset (a thread-local block hit: no call, no atomic). Everything here is private:
 * use the calls in tally/sequence.h.
 */
#ifndef TALLY_STATIC_SEQUENCE_H
#define TALLY_STATIC_SEQUENCE_H

#include <stdint.h>
#include <tally/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A thread's block of cached numbers for one series: packed (period << 40 | counter). */
struct tally__seq_block {
	uint64_t series_id; /* never-reused id of the series the block belongs to; 0: empty */
	uint64_t next, end; /* next > end: used up */
};

/* Per-thread block cache, written only by its thread (lib/sequence/sequence.c). */
extern _Thread_local struct tally__seq_block tally__seq_blocks[TALLY_SEQ_THREAD_CACHE]
	__attribute__((tls_model("initial-exec")));

/* The first bytes of every struct tally_series; immutable after create. */
struct tally__series_head {
	uint64_t id;
	/* id for a cached series that never resets (its blocks may be used inline), else
	 * UINT64_MAX, which no block carries: the inline path then always misses, with one
	 * load and one compare instead of a separate mode test per number. */
	uint64_t inline_key;
};

int tally__series_next_slow(struct tally_series *series, struct tally_seq_number *out);

static inline int tally_series_next(struct tally_series *series, struct tally_seq_number *out)
{
	const struct tally__series_head *head = (const struct tally__series_head *)series;

	if (__builtin_expect(series && out, 1)) {
		uint64_t key = head->inline_key;
		struct tally__seq_block *block = &tally__seq_blocks[key % TALLY_SEQ_THREAD_CACHE];
		uint64_t next = block->next;

		if (__builtin_expect(block->series_id == key && next <= block->end, 1)) {
			block->next = next + 1;
			out->period = (uint32_t)(next >> 40);
			out->counter = next & ((UINT64_C(1) << 40) - 1);
			return TALLY_OK;
		}
	}
	return tally__series_next_slow(series, out);
}

#ifdef __cplusplus
}
#endif
#endif /* TALLY_STATIC_SEQUENCE_H */
