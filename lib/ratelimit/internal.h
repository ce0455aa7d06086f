/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/ratelimit/internal.h: what the rate limiter's files share (see tally/ratelimit.h).
 *
 * A key's whole state is one 64-bit word, `rl_entry.word`; each algorithm is a pure function
 * from (word, now, cost) to a decision and the next word (window.c, gcra.c), applied by one
 * CAS in limiter.c. The value RL_DEAD marks an entry a sweep or reset has condemned: no
 * algorithm ever produces it, and once set it never changes.
 */
#ifndef TALLY_RATELIMIT_INTERNAL_H
#define TALLY_RATELIMIT_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "tally/ratelimit.h"
#include "internal/alloc.h"
#include "internal/rcu_map.h"
#include "internal/sweeper.h"

#define RL_DEAD UINT64_MAX

struct rl_params {
	enum tally_ratelimit_algorithm algorithm;
	int64_t limit;        /* window: units per window; GCRA: units per period */
	int64_t period_ns;    /* window length; GCRA: the period of `limit` */
	int64_t burst;        /* GCRA: units at once from idle; window: = limit */
	int64_t idle_ttl_ns;  /* removable this long after the state became fresh */
	/* fixed window packing: word = window index << count_bits | count */
	unsigned count_bits;  /* bit width of limit + 1, so a count never has all ones */
	unsigned newest_words; /* 1: entries keep newest_window (the index can wrap); else 0 */
	/* GCRA */
	int64_t interval_ns;  /* T = ceil(period_ns / limit): the cost of one unit */
	int64_t tolerance_ns; /* tau = burst * T: how far ahead of now the TAT may run */
};

/*
 * One key: a single cache line for keys of up to 32 bytes (24 with newest_window), one
 * 64-byte-aligned allocation of sizeof + the tail, rounded up to 64. Written by: allow (word,
 * by CAS; newest_window), sweep/reset (word -> RL_DEAD, by CAS). A cold lookup then misses on
 * the bucket and on this one line (node, key and word together) instead of three (node, word,
 * key): docs/ratelimit.md has the measurements and the layouts rejected. No RCU head lives
 * here: every byte of the entry may still be read by a reader that found it before its
 * unlink, so the head is a separate record allocated by the unlinker (struct rl_retired,
 * limiter.c).
 */
struct rl_entry {
	struct tally_rcu_map_node node;   /* 24 bytes; its key points into the tail */
	_Atomic uint64_t word;            /* state, or RL_DEAD */
	/* params.newest_words (0 or 1) words of newest_window, then the key bytes (key_len,
	 * immutable). newest_window: a fixed window's highest full window index installed (or
	 * being installed) in `word`, whose index field is truncated; raised before the CAS
	 * that installs it (window.c says why). Kept only when the truncated index can wrap
	 * within the clock's range: otherwise the word's index is the full one. */
	_Atomic uint64_t tail[];
};
struct tally_ratelimit {
	struct rl_params params;          /* immutable after create */
	tally_ratelimit_now_ns_fn now_ns;
	void *clock_arg;
	int64_t max_keys;                 /* 0 = no cap */
	struct tally_rcu_map map;
	_Atomic int64_t key_count;        /* entries reserved (inserted or about to be) and not
					   * yet removed; never above max_keys */
	_Atomic int64_t sweep_horizon;    /* highest clock reading any sweep has killed at */
	/* background sweeper (sweep.c) */
	int64_t sweep_interval_ns;
	struct tally__sweeper sweeper;    /* initialised only when sweep_interval_ns > 0 */
};

static inline char *rl_entry_key(const struct rl_params *params, struct rl_entry *entry)
{
	return (char *)&entry->tail[params->newest_words];
}

/* The fixed window's newest_window, loaded after `word` (see charge_entry in limiter.c):
 * the stored one, or the word's own index when that is never truncated. GCRA: unused. */
static inline uint64_t rl_entry_newest(const struct rl_params *params, struct rl_entry *entry,
				       uint64_t word)
{
	if (params->newest_words)
		return atomic_load_explicit(&entry->tail[0], memory_order_relaxed);
	return word >> params->count_bits;
}

/* Clock readings must lie in [0, RL_CLOCK_MAX): sums with spans stay inside int64. */
#define RL_CLOCK_MAX ((int64_t)1 << 62)

/* Decides `cost` (>= 0; 0 only reports) at `now` against `word` (never RL_DEAD), with
 * *newest the entry's newest_window loaded after the word. Returns true to admit with *next
 * the word to install, and *newest raised to the full index of its window; false to refuse.
 * Fills *result. */
bool tally__ratelimit_window_step(const struct rl_params *params, uint64_t word,
				  uint64_t *newest, int64_t now, int64_t cost, uint64_t *next,
				  struct tally_ratelimit_result *result);
/* The word of a key that has been charged nothing, at `now`, and its full window index. */
uint64_t tally__ratelimit_window_fresh(const struct rl_params *params, int64_t now);
uint64_t rl_window_index(const struct rl_params *params, int64_t now);
/* True if `word` (not RL_DEAD; `newest` loaded after it) behaves as fresh and has for at
 * least idle_ttl_ns. */
bool tally__ratelimit_window_idle(const struct rl_params *params, uint64_t word, uint64_t newest,
		    int64_t now);
/* Precomputes the packing; EINVAL if the config's window fields are out of range. */
int tally__ratelimit_window_configure(struct rl_params *params,
				      const struct tally_ratelimit_config *config);

bool tally__ratelimit_gcra_step(const struct rl_params *params, uint64_t word, int64_t now,
				int64_t cost, uint64_t *next,
				struct tally_ratelimit_result *result);
uint64_t tally__ratelimit_gcra_fresh(const struct rl_params *params, int64_t now);
bool tally__ratelimit_gcra_idle(const struct rl_params *params, uint64_t word, int64_t now);
int tally__ratelimit_gcra_configure(struct rl_params *params,
				    const struct tally_ratelimit_config *config);

/* limiter.c */
int64_t tally__ratelimit_now(const struct tally_ratelimit *limiter);
/* Read lock held; `entry` is already marked RL_DEAD. Unlinks it if nobody has yet, and then
 * retires it. Returns 1 if this call unlinked it, 0 if another did, -1 if no retire record
 * could be allocated: then the entry is left in the map, dead, for a later allow, reset or
 * sweep to unlink (a dead entry decides nothing: whoever finds it only unlinks it). */
int tally__ratelimit_unlink_dead(struct tally_ratelimit *limiter, struct rl_entry *entry);

/* sweep.c: background sweeper. */
int tally__ratelimit_sweeper_start(struct tally_ratelimit *limiter);
void tally__ratelimit_sweeper_stop(struct tally_ratelimit *limiter);
#endif
