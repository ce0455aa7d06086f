/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Per-key rate limiter: the key table, key lifecycle and the allow loop (see
 * tally/ratelimit.h). The algorithms are in window.c and gcra.c, sweeping in sweep.c.
 *
 * Key lifecycle. An entry is created on the first allow of its key with a fresh word and
 * inserted with insert_unique; the loser of a creation race frees its unpublished entry and
 * uses the winner's. An entry dies by one CAS of its word to RL_DEAD (a sweep, only from a
 * fresh-equivalent word; a reset, from any word); a dead word never changes again. Whoever
 * then sees the dead word (the killer, or an allow that finds it) unlinks it from the map;
 * the map's remove succeeds for exactly one of them, and that one drops key_count and retires
 * the entry (freed after an RCU grace period). An allow that meets a dead entry helps unlink
 * it and starts over with a fresh entry, so an admission is never charged to a dead word.
 *
 * Cap. key_count is reserved (a CAS that never takes it past max_keys) before an entry is
 * inserted and released when it is unlinked (or when the reserving creator loses its race),
 * so neither the map nor the count ever holds more than max_keys; retired entries wait at
 * most one grace period for their free.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ratelimit/internal.h"
#include "internal/backoff.h"

static int64_t monotonic_ns(void *unused)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

int64_t tally__ratelimit_now(const struct tally_ratelimit *limiter)
{
	return limiter->now_ns(limiter->clock_arg);
}

_Static_assert(sizeof(struct rl_entry) == 32,
	       "node, word and a key of up to 32 bytes share one cache line");

size_t tally_ratelimit_entry_size(void)
{
	return sizeof(struct rl_entry);
}

/* *newest: the entry's newest_window, loaded after the word (fixed window only). */
static bool step(const struct rl_params *params, uint64_t word, uint64_t *newest, int64_t now,
		 int64_t cost, uint64_t *next, struct tally_ratelimit_result *result)
{
	if (params->algorithm == TALLY_RATELIMIT_GCRA)
		return tally__ratelimit_gcra_step(params, word, now, cost, next, result);
	return tally__ratelimit_window_step(params, word, newest, now, cost, next, result);
}

/* Raises entry->newest_window to `window` (a max: a stale installer never lowers it).
 * Relaxed: the installing CAS on the word, a release, publishes it (window.c). */
static void raise_newest(const struct rl_params *params, struct rl_entry *entry, uint64_t seen,
			 uint64_t window)
{
	while (params->newest_words && seen < window &&
	       !atomic_compare_exchange_weak_explicit(&entry->tail[0], &seen, window,
						      memory_order_relaxed,
						      memory_order_relaxed))
		;
}

static uint64_t fresh_word(const struct rl_params *params, int64_t now)
{
	if (params->algorithm == TALLY_RATELIMIT_GCRA)
		return tally__ratelimit_gcra_fresh(params, now);
	return tally__ratelimit_window_fresh(params, now);
}

static int check_config(const struct tally_ratelimit_config *config, struct rl_params *params)
{
	if (!config || config->max_keys < 0 || config->expected_keys < 0 ||
	    config->idle_ttl_ns < 0 || config->idle_ttl_ns >= RL_CLOCK_MAX ||
	    config->sweep_interval_ns < 0)
		return TALLY_EINVAL;
	*params = (struct rl_params){
		.algorithm = config->algorithm,
		.limit = config->limit,
		.period_ns = config->period_ns,
		.idle_ttl_ns = config->idle_ttl_ns,
	};
	switch (config->algorithm) {
	case TALLY_RATELIMIT_FIXED_WINDOW:
		return tally__ratelimit_window_configure(params, config);
	case TALLY_RATELIMIT_GCRA:
		return tally__ratelimit_gcra_configure(params, config);
	default:
		return TALLY_EINVAL;
	}
}

/*
 * The bucket count for expected_keys: the power of two nearest to it (0.71 to 1.41 keys per
 * bucket), not the next one up, which doubled the bucket array for counts just past a power
 * of two (65,537 keys: 131,072 buckets, 32 bytes per key) to save a quarter of a chain node
 * per lookup. The map caps the hint (rcu_map.c), so larger counts need no care here.
 */
static size_t bucket_hint(int64_t expected_keys)
{
	const uint64_t expected = expected_keys < (INT64_C(1) << 24) ? (uint64_t)expected_keys
								     : UINT64_C(1) << 24;
	uint64_t buckets = 1;

	if (expected == 0)
		return 0;
	while (buckets < expected)
		buckets <<= 1;
	/* buckets / expected > sqrt(2): the power of two below is nearer (by ratio). */
	if (buckets * buckets > 2 * expected * expected)
		buckets >>= 1;
	return (size_t)buckets;
}

int tally_ratelimit_create(struct tally_ratelimit **limiter_out,
			   const struct tally_ratelimit_config *config)
{
	struct rl_params params;
	struct tally_ratelimit *limiter;
	int err;

	if (!limiter_out)
		return TALLY_EINVAL;
	err = check_config(config, &params);
	if (err != TALLY_OK)
		return err;
	limiter = calloc(1, sizeof(*limiter));
	if (!limiter)
		return TALLY_ENOMEM;
	limiter->params = params;
	limiter->now_ns = config->now_ns ? config->now_ns : monotonic_ns;
	limiter->clock_arg = config->clock_arg;
	limiter->max_keys = config->max_keys;
	limiter->sweep_interval_ns = config->sweep_interval_ns;
	atomic_init(&limiter->key_count, 0);
	atomic_init(&limiter->sweep_horizon, 0);
	err = tally__rcu_map_init_sized(&limiter->map, bucket_hint(config->expected_keys));
	if (err != TALLY_OK) {
		free(limiter);
		return err;
	}
	if (limiter->sweep_interval_ns > 0) {
		err = tally__ratelimit_sweeper_start(limiter);
		if (err != TALLY_OK) {
			tally__rcu_map_destroy(&limiter->map, NULL);
			free(limiter);
			return err;
		}
	}
	*limiter_out = limiter;
	return TALLY_OK;
}

static void free_entry(struct tally_rcu_map_node *node)
{
	tally__free_aligned(caa_container_of(node, struct rl_entry, node));
}

/*
 * What an unlinked entry waits in for its grace period. A separate record rather than an
 * RCU head in the entry: a head written at retire time cannot overlay anything in the
 * entry, since a reader that found the entry before its unlink may still read all of it
 * (the node to walk on, the key to compare, the word and newest_window to load and CAS),
 * and a head kept beside them would cost 24 of the line's 64 bytes for every key, live or
 * not. Allocated only on the unlink paths (sweep, reset, an allow that meets a dead entry).
 */
struct rl_retired {
	struct tally_rcu_head rcu;
	struct rl_entry *entry;
};

static void reclaim_retired(struct tally_rcu_head *rcu)
{
	struct rl_retired *retired = caa_container_of(rcu, struct rl_retired, rcu);

	tally__free_aligned(retired->entry);
	free(retired);
}

int tally_ratelimit_destroy(struct tally_ratelimit *limiter)
{
	int err;

	if (!limiter)
		return TALLY_EINVAL;
	/* Refuse inside a read-side section before anything is stopped. */
	err = tally_rcu_barrier();
	if (err != TALLY_OK)
		return err;
	tally__ratelimit_sweeper_stop(limiter);
	err = tally__rcu_map_destroy(&limiter->map, free_entry);
	if (err != TALLY_OK)
		return err;
	free(limiter);
	return TALLY_OK;
}

int tally__ratelimit_unlink_dead(struct tally_ratelimit *limiter, struct rl_entry *entry)
{
	struct rl_retired *retired;

	if (tally__rcu_map_node_removed(&entry->node))
		return 0; /* the common race: another unlinker won; no record to allocate */
	retired = malloc(sizeof(*retired));
	if (!retired)
		return -1;
	if (tally__rcu_map_remove(&limiter->map, &entry->node) != TALLY_OK) {
		free(retired);
		return 0;
	}
	/* relaxed: a count; the map orders the removal itself. */
	atomic_fetch_sub_explicit(&limiter->key_count, 1, memory_order_relaxed);
	retired->entry = entry;
	tally__rcu_retire(&retired->rcu, reclaim_retired);
	return 1;
}

static int check_key(const struct tally_ratelimit *limiter, const char *key, size_t key_len)
{
	if (!limiter || !key || key_len == 0)
		return TALLY_EINVAL;
	return key_len > TALLY_RATELIMIT_KEY_MAX ? TALLY_ETOOLONG : TALLY_OK;
}

static int read_clock(const struct tally_ratelimit *limiter, int64_t *now)
{
	*now = tally__ratelimit_now(limiter);
	return *now >= 0 && *now < RL_CLOCK_MAX ? TALLY_OK : TALLY_EOVERFLOW;
}

/* Moves *now up to the sweep horizon (see sweep.c). */
static void clamp_to_horizon(struct tally_ratelimit *limiter, int64_t *now)
{
	/* acquire: pairs with the sweep's acq_rel raise, ordered before its release kill. */
	int64_t horizon = atomic_load_explicit(&limiter->sweep_horizon, memory_order_acquire);

	if (horizon > *now)
		*now = horizon;
}

/*
 * Takes a slot for a new key: key_count + 1, unless that would pass max_keys. A CAS loop,
 * not fetch_add and undo: the count never passes the cap even for an instant, so
 * tally_ratelimit_key_count never reports more keys than max_keys. Relaxed: the
 * reservation only counts; the entry is published by the map.
 */
static bool reserve_key(struct tally_ratelimit *limiter)
{
	int64_t held = atomic_load_explicit(&limiter->key_count, memory_order_relaxed);

	do {
		if (limiter->max_keys > 0 && held >= limiter->max_keys)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&limiter->key_count, &held, held + 1,
						       memory_order_relaxed,
						       memory_order_relaxed));
	return true;
}

/*
 * Read lock held. The live-or-dead entry for `key`, created if absent, or NULL with *err.
 * A new entry's word is built from *now clamped to the horizon read after the missed lookup,
 * but that word may still be stale: between that read and our insert, another caller can
 * create the key, charge it, and a sweep kill and unlink it at a newer reading. The caller
 * therefore clamps again after this returns (see tally_ratelimit_allow_result).
 */
static struct rl_entry *find_or_create(struct tally_ratelimit *limiter, const char *key,
				       size_t key_len, int64_t *now, int *err)
{
	struct tally_rcu_map_node *node = tally__rcu_map_lookup(&limiter->map, key, key_len);
	struct rl_entry *entry;

	if (node)
		return caa_container_of(node, struct rl_entry, node);
	/* acquire fence: if the lookup missed because a sweep's entry was unlinked (the
	 * map's remove is a full-barrier cmpxchg after the release kill), the horizon that
	 * sweep raised is visible to the load below. */
	atomic_thread_fence(memory_order_acquire);
	clamp_to_horizon(limiter, now);
	if (!reserve_key(limiter)) {
		/* The slot may be held by a racing creator of this very key: use its entry if
		 * it is in by now (else EFULL: the key was not in the map at our lookups). */
		node = tally__rcu_map_lookup(&limiter->map, key, key_len);
		if (node)
			return caa_container_of(node, struct rl_entry, node);
		*err = TALLY_EFULL;
		return NULL;
	}
	entry = tally__alloc_packed(sizeof(*entry) + limiter->params.newest_words * 8 + key_len);
	if (!entry) {
		atomic_fetch_sub_explicit(&limiter->key_count, 1, memory_order_relaxed);
		*err = TALLY_ENOMEM;
		return NULL;
	}
	memcpy(rl_entry_key(&limiter->params, entry), key, key_len);
	atomic_init(&entry->word, fresh_word(&limiter->params, *now));
	if (limiter->params.newest_words)
		atomic_init(&entry->tail[0], rl_window_index(&limiter->params, *now));
	tally__rcu_map_node_init(&entry->node, rl_entry_key(&limiter->params, entry), key_len);
	node = tally__rcu_map_insert_unique(&limiter->map, &entry->node);
	if (node != &entry->node) {
		/* Lost the creation race: ours was never published. */
		tally__free_aligned(entry);
		atomic_fetch_sub_explicit(&limiter->key_count, 1, memory_order_relaxed);
	}
	return caa_container_of(node, struct rl_entry, node);
}

/* Read lock held. Charges `cost` to a live entry: TALLY_OK, TALLY_ELIMITED, or -1 if the
 * entry is dead (the caller unlinks it and starts over). */
static int charge_entry(struct tally_ratelimit *limiter, struct rl_entry *entry, int64_t now,
			int64_t cost, struct tally_ratelimit_result *result)
{
	tally_backoff_t backoff = TALLY_BACKOFF_INITIALIZER;
	/* The word carries no other data: the count/TAT invariants need only the atomicity
	 * of the CAS (one modification order per word). Acquire loads and release CAS only
	 * for the fixed window's newest_window, raised before the CAS and loaded after the
	 * word (window.c); plain loads and a locked CAS on x86 either way. */
	uint64_t word = atomic_load_explicit(&entry->word, memory_order_acquire), next;

	for (;;) {
		uint64_t newest, window;

		if (word == RL_DEAD) {
			/* acquire: pairs with the killing sweep's release CAS, so the caller
			 * then sees that sweep's sweep_horizon (see sweep.c). */
			(void)atomic_load_explicit(&entry->word, memory_order_acquire);
			return -1;
		}
		newest = rl_entry_newest(&limiter->params, entry, word);
		window = newest;
		if (!step(&limiter->params, word, &window, now, cost, &next, result))
			return TALLY_ELIMITED;
		raise_newest(&limiter->params, entry, newest, window);
		if (atomic_compare_exchange_weak_explicit(&entry->word, &word, next,
							  memory_order_release,
							  memory_order_acquire))
			return TALLY_OK;
		tally__backoff(&backoff);
	}
}

int tally_ratelimit_allow_result(struct tally_ratelimit *limiter, const char *key,
				 size_t key_len, int64_t cost,
				 struct tally_ratelimit_result *result)
{
	struct tally_ratelimit_result scratch;
	int64_t now, reading;
	int err = check_key(limiter, key, key_len);

	if (err != TALLY_OK)
		return err;
	if (cost <= 0 || cost > limiter->params.burst)
		return TALLY_EINVAL;
	err = read_clock(limiter, &now);
	if (err != TALLY_OK)
		return err;
	reading = now;
	if (!result)
		result = &scratch;
	tally_rcu_read_lock();
	for (;;) {
		struct rl_entry *entry = find_or_create(limiter, key, key_len, &now, &err);
		if (!entry)
			break;
		/* Charge no earlier than the horizon as of now, after the entry was found or
		 * inserted. The entry's word may have been built from an older reading (ours,
		 * or a racing creator's, see find_or_create) than a sweep that killed an
		 * earlier entry of this key; charged at that reading, it would recount a window
		 * the killed entry filled, or restart a TAT below the killed one's. Every
		 * earlier entry of the key was killed, so the horizon raised, before it was
		 * unlinked, and unlinked before this entry was inserted; so this load sees
		 * that horizon. Acquire fence: the lookup or insert that gave us the entry
		 * (liburcu, full-barrier cmpxchg on the chain) comes before the load. */
		atomic_thread_fence(memory_order_acquire);
		clamp_to_horizon(limiter, &now);
		err = charge_entry(limiter, entry, now, cost, result);
		if (err >= 0)
			break;
		/* A sweep killed it at a reading that may be newer than ours: charge the
		 * fresh entry no earlier than that (see sweep.c). */
		clamp_to_horizon(limiter, &now);
		if (tally__ratelimit_unlink_dead(limiter, entry) < 0) {
			err = TALLY_ENOMEM; /* the dead entry stays; nothing was charged */
			break;
		}
	}
	tally_rcu_read_unlock();
	if (now != reading && (err == TALLY_OK || err == TALLY_ELIMITED)) {
		/* Report times from the caller's own reading. */
		result->reset_ns += now - reading;
		if (result->retry_after_ns)
			result->retry_after_ns += now - reading;
	}
	return err;
}

int tally_ratelimit_allow(struct tally_ratelimit *limiter, const char *key, size_t key_len,
			  int64_t cost, int64_t *retry_after_ns)
{
	struct tally_ratelimit_result result;
	int err = tally_ratelimit_allow_result(limiter, key, key_len, cost, &result);

	if (retry_after_ns && (err == TALLY_OK || err == TALLY_ELIMITED))
		*retry_after_ns = result.retry_after_ns;
	return err;
}

int tally_ratelimit_peek(struct tally_ratelimit *limiter, const char *key, size_t key_len,
			 struct tally_ratelimit_result *result)
{
	struct tally_rcu_map_node *node;
	uint64_t word = RL_DEAD, newest = 0, unused;
	int64_t now;
	int err = check_key(limiter, key, key_len);

	if (err == TALLY_OK && !result)
		err = TALLY_EINVAL;
	if (err == TALLY_OK)
		err = read_clock(limiter, &now);
	if (err != TALLY_OK)
		return err;
	tally_rcu_read_lock();
	node = tally__rcu_map_lookup(&limiter->map, key, key_len);
	if (node) { /* acquire, then newest_window: see charge_entry */
		struct rl_entry *entry = caa_container_of(node, struct rl_entry, node);

		word = atomic_load_explicit(&entry->word, memory_order_acquire);
		if (word != RL_DEAD)
			newest = rl_entry_newest(&limiter->params, entry, word);
	}
	tally_rcu_read_unlock();
	if (word == RL_DEAD)
		return TALLY_ENOTFOUND;
	step(&limiter->params, word, &newest, now, 0, &unused, result);
	return TALLY_OK;
}

int tally_ratelimit_reset(struct tally_ratelimit *limiter, const char *key, size_t key_len)
{
	struct tally_rcu_map_node *node;
	int err = check_key(limiter, key, key_len);

	if (err != TALLY_OK)
		return err;
	err = TALLY_ENOTFOUND;
	tally_rcu_read_lock();
	node = tally__rcu_map_lookup(&limiter->map, key, key_len);
	if (node) {
		struct rl_entry *entry = caa_container_of(node, struct rl_entry, node);
		/* relaxed: see charge_entry; the exchange is the reset's linearization point. */
		if (atomic_exchange_explicit(&entry->word, RL_DEAD, memory_order_relaxed) !=
		    RL_DEAD)
			err = TALLY_OK;
		tally__ratelimit_unlink_dead(limiter, entry);
	}
	tally_rcu_read_unlock();
	return err;
}

int tally_ratelimit_key_count(const struct tally_ratelimit *limiter, int64_t *count)
{
	if (!limiter || !count)
		return TALLY_EINVAL;
	/* relaxed: a count, no data behind it. */
	*count = atomic_load_explicit(&limiter->key_count, memory_order_relaxed);
	return TALLY_OK;
}
