/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/sequence/series.h: the series and registry structs, shared by sequence.c and
 * reserve.c. Field comments say who writes what.
 */
#ifndef TALLY_SEQUENCE_SERIES_H
#define TALLY_SEQUENCE_SERIES_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include "internal/alloc.h"
#include "internal/rcu_map.h"
#include "sequence/internal.h"

/* The series word: (period << SEQ_COUNTER_BITS) | counter. 24 bits of period cover 45,000
 * years of days; 40 bits of counter hold 12 digits plus a maximal lease overshoot. */
#define SEQ_COUNTER_BITS TALLY__SEQ_COUNTER_BITS /* tally/static/sequence.h */
#define SEQ_COUNTER_MASK ((UINT64_C(1) << SEQ_COUNTER_BITS) - 1)
#define SEQ_PACK(period, counter) (((uint64_t)(period) << SEQ_COUNTER_BITS) | (counter))
#define SEQ_PERIOD(word) ((uint32_t)((word) >> SEQ_COUNTER_BITS))
#define SEQ_COUNTER(word) ((word) & SEQ_COUNTER_MASK)

struct tally_sequence {
	struct tally_rcu_map series; /* "tenant\0series" -> struct tally_series */
	_Atomic size_t series_count; /* series in the map: the creation path grows it */
	tally_seq_now_s_fn now_s;    /* immutable after create */
	void *clock_arg;
};

/* Bytes of "tenant\0series" kept on the series word's line; a longer key follows the struct
 * (key_tail). */
#define SERIES_KEY_INLINE 23

struct tally_series {
	/* The head line (immutable or read-mostly, read by the inline fast paths) and the
	 * series word on the next: must stay first (tally/static/sequence.h).
	 * hot.state: CAS/fetch_add, packed (period, last counter handed out).
	 * Everything a by-name issue of a plain strict series reads shares the word's line,
	 * in the padding the static header leaves after it: the registry node (read by every
	 * lookup that passes it), released_count, plain_digits and a short key (read on a
	 * hash match, just before the RMW on the same line). With one line per
	 * series instead of six, a large registry's lookups miss the cache once per issue
	 * rather than on every line (docs/bench.md, by-name sequences); the handle path's
	 * lines are unchanged. The overlay names bytes hot leaves unused; nothing ever stores
	 * to the union as a whole. */
	union {
		struct tally__series_hot hot;
		struct {
			char state_used[offsetof(struct tally__series_hot, state) +
					sizeof(uint64_t)];
			_Atomic uint64_t released_count; /* under release_lock (release) */
			struct tally_rcu_map_node node;
			/* A strict series that never resets and has no lease: its template's
			 * counter digits (the width limit is 10^digits - 1); else 0. */
			uint8_t plain_digits;
			char key_inline[SERIES_KEY_INLINE];
		};
	};

	/* Read by every issuer, written rarely. */
	_Atomic uint64_t lease_hi;       /* written under lease_lock (release) */
	_Atomic int removed;             /* set once by the remover (relaxed, diagnostic) */
	_Atomic uint64_t lease_calls;    /* statistics, relaxed */
	_Atomic uint64_t voided;         /* statistics, relaxed */

	/* Immutable after create. */
	struct tally_sequence *seq;
	enum tally_seq_mode mode;
	enum tally_seq_reset reset;
	int32_t utc_offset_minutes;
	uint32_t cache_block;
	uint64_t lease_size;
	struct tally_lease_provider *lease;
	const char *key; /* "tenant\0series" in key_inline or key_tail; also the lease key */
	size_t key_len, tenant_len;
	struct seq_template tmpl;
	struct tally_rcu_head rcu;    /* retire */

	/* Lock order: lease_lock, then release_lock, then the lease provider's own locks.
	 * extend_lease and tally_series_checkpoint hold lease_lock across the provider call and
	 * take release_lock inside it (issued_watermark, released again before the call); the
	 * release list (reserve.c) takes release_lock alone and never calls the provider. No
	 * path takes lease_lock under release_lock or inside a provider, and a provider must
	 * not call back into the series. */
	pthread_mutex_t lease_lock;   /* serialises lease extensions */
	pthread_mutex_t release_lock; /* guards released[] */
	uint64_t *released;           /* packed numbers, sorted descending (min at the end) */
	size_t released_len, released_cap;
	char key_tail[]; /* a key longer than SERIES_KEY_INLINE */
};

_Static_assert(offsetof(struct tally_series, hot) == 0 &&
		       sizeof(struct tally__series_hot) == 2 * TALLY_CACHE_LINE,
	       "tally/static/sequence.h reads the head and the word at these offsets");
_Static_assert(offsetof(struct tally_series, key_inline) + SERIES_KEY_INLINE ==
		       sizeof(struct tally__series_hot),
	       "the by-name fields fill the word's line after the word, and no more");

/* The period of a clock reading now; TALLY_EOVERFLOW if the clock is out of range. */
int tally__seq_current_period(const struct tally_series *s, uint32_t *period);
/* Takes k fresh numbers (fewer with partial, at the width limit): [*first, +*count). */
int tally__seq_take_fresh(struct tally_series *s, uint32_t now_period, uint64_t k, bool partial,
			  uint64_t *first, uint64_t *count);
/* Pops up to k released numbers of the current period into out[] (smallest first);
 * voids older ones. Returns how many it took. */
size_t tally__seq_take_released(struct tally_series *s, uint32_t now_period, size_t k,
				uint64_t *out);
#endif
