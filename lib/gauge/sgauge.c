/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Sharded floor-guarded gauge (see tally/gauge.h for the contract).
 *
 * Token model. value = floor + sum(above[i]); with a ceiling, also
 * ceiling = value + sum(headroom[i]) + tokens in flight. Every shard holds >= 0 tokens at all
 * times and tokens are only moved by CAS: taken from a shard before they are given to another
 * pool. So a sub that took n "above" tokens cannot have broken the floor, and an add that took
 * n "headroom" tokens cannot break the ceiling, whatever else runs.
 *
 * A thread works on the shard of the CPU it runs on (cpu & (shards - 1), shards a power of
 * two, one per CPU by default), so threads running at the same time on different CPUs work
 * on different shards. (Sharding by tally's thread index instead gives two threads the same
 * shard whenever their indices are equal modulo the shard count, which depends on the order
 * in which threads first touched tally: docs/gauge.md.)
 *
 * Taking n tokens tries, in order: its own shard, any single shard holding n, then gathering
 * parts from every shard. Gathering marks
 * itself in `in_flight` and a failed gather gives its parts back and bumps `returns`; a scan
 * that fails while either moved retries, so a failure that is not linearizable needs tokens
 * to be in flight across TALLY_SGAUGE_RETRIES consecutive scans.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>
#include "tally/gauge.h"
#include "tally/static/thread_index.h"
#include "internal/alloc.h"
#include "internal/backoff.h"

#define SGAUGE_MAGIC 0x746c7973u /* "tlys" */

struct tally_sgauge_shard {
	_Atomic int64_t tokens; /* >= 0; CAS by any thread, mostly by its owner */
	char pad[64 - sizeof(int64_t)];
};

static int check_sgauge(const struct tally_sgauge *gauge)
{
	if (!gauge)
		return TALLY_EINVAL;
	return gauge->magic == SGAUGE_MAGIC ? TALLY_OK : TALLY_EDESTROYED;
}

/* Shard counts are powers of two so a thread finds its shard with a mask, not a division. */
static unsigned round_up_pow2(unsigned n)
{
	unsigned pow2 = 1;

	while (pow2 < n)
		pow2 <<= 1;
	return pow2;
}

static unsigned default_shards(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (cpus < 2)
		return 2;
	return cpus > TALLY_SGAUGE_SHARDS_MAX ? TALLY_SGAUGE_SHARDS_MAX : (unsigned)cpus;
}

int tally_sgauge_init(struct tally_sgauge *gauge, int64_t initial, int64_t floor,
		      int64_t ceiling, unsigned shards)
{
	size_t bytes;
	int64_t span;

	if (!gauge || floor > ceiling || initial < floor || initial > ceiling ||
	    shards > TALLY_SGAUGE_SHARDS_MAX)
		return TALLY_EINVAL;
	/* Token pools are int64: the distance to each bound must fit. */
	if (__builtin_sub_overflow(initial, floor, &span) ||
	    (ceiling != TALLY_GAUGE_NO_CEILING && __builtin_sub_overflow(ceiling, floor, &span)))
		return TALLY_EINVAL;
	shards = round_up_pow2(shards == 0 ? default_shards() : shards);
	bytes = (size_t)shards * sizeof(struct tally_sgauge_shard);
	gauge->above = tally__alloc_aligned(bytes);
	gauge->headroom =
		ceiling == TALLY_GAUGE_NO_CEILING ? NULL : tally__alloc_aligned(bytes);
	if (!gauge->above || (ceiling != TALLY_GAUGE_NO_CEILING && !gauge->headroom)) {
		tally__free_aligned(gauge->above);
		tally__free_aligned(gauge->headroom);
		gauge->magic = 0;
		return TALLY_ENOMEM;
	}
	gauge->shard_count = shards;
	gauge->floor = floor;
	gauge->ceiling = ceiling;
	atomic_init(&gauge->above[0].tokens, initial - floor);
	if (gauge->headroom)
		atomic_init(&gauge->headroom[0].tokens, ceiling - initial);
	atomic_init(&gauge->in_flight, 0);
	atomic_init(&gauge->returns, 0);
	gauge->magic = SGAUGE_MAGIC;
	return TALLY_OK;
}

int tally_sgauge_destroy(struct tally_sgauge *gauge)
{
	int err = check_sgauge(gauge);

	if (err != TALLY_OK)
		return err;
	gauge->magic = 0;
	tally__free_aligned(gauge->above);
	tally__free_aligned(gauge->headroom);
	gauge->above = gauge->headroom = NULL;
	return TALLY_OK;
}

/* sched_getcpu reads the CPU from the thread's rseq area (glibc 2.35+): no system call
 * (docs/gauge.md has its cost). The thread may move right after; that costs a shared line,
 * never correctness. */
static unsigned own_shard(const struct tally_sgauge *gauge)
{
	int cpu = sched_getcpu();

	if (cpu < 0) /* no getcpu: fall back to the thread index */
		cpu = tally_thread_index();
	return cpu < 0 ? 0 : (unsigned)cpu & (gauge->shard_count - 1);
}

/* Takes up to `want` tokens from one shard; returns how many it took. acq_rel orders the
 * caller's earlier writes before the value change, as the single-word gauge does. */
static int64_t take_some(struct tally_sgauge_shard *shard, int64_t want, bool all_or_nothing)
{
	int64_t taken, have = atomic_load_explicit(&shard->tokens, memory_order_relaxed);

	do {
		if (have <= 0 || (all_or_nothing && have < want))
			return 0;
		taken = have < want ? have : want;
	} while (!atomic_compare_exchange_weak_explicit(&shard->tokens, &have, have - taken,
							 memory_order_acq_rel,
							 memory_order_relaxed));
	return taken;
}

/* Adds n tokens to the caller's shard, or to the next one that has room. Returns false if
 * every shard would overflow (the pool would exceed int64, only without a ceiling). */
static bool give_tokens(struct tally_sgauge *gauge, struct tally_sgauge_shard *pool,
			unsigned start, int64_t n)
{
	for (unsigned k = 0; k < gauge->shard_count; k++) {
		struct tally_sgauge_shard *shard = &pool[(start + k) & (gauge->shard_count - 1)];
		int64_t sum, have = atomic_load_explicit(&shard->tokens, memory_order_relaxed);
		bool fits;

		while ((fits = !__builtin_add_overflow(have, n, &sum)) &&
		       !atomic_compare_exchange_weak_explicit(&shard->tokens, &have, sum,
							      memory_order_acq_rel,
							      memory_order_relaxed))
			;
		if (fits)
			return true;
	}
	return false;
}

/* One attempt to take n from a single shard, own shard first. */
static bool take_whole(struct tally_sgauge *gauge, struct tally_sgauge_shard *pool,
		       unsigned start, int64_t n)
{
	for (unsigned k = 0; k < gauge->shard_count; k++)
		if (take_some(&pool[(start + k) & (gauge->shard_count - 1)], n, true) == n)
			return true;
	return false;
}

/* Gathers n from several shards; on shortfall gives the parts back. */
static bool take_gathered(struct tally_sgauge *gauge, struct tally_sgauge_shard *pool,
			  unsigned start, int64_t n)
{
	int64_t got = 0;

	atomic_fetch_add_explicit(&gauge->in_flight, 1, memory_order_acq_rel);
	for (unsigned k = 0; k < gauge->shard_count && got < n; k++)
		got += take_some(&pool[(start + k) & (gauge->shard_count - 1)], n - got, false);
	if (got < n && got > 0) {
		give_tokens(gauge, pool, start, got); /* cannot overflow: these tokens fit before */
		atomic_fetch_add_explicit(&gauge->returns, 1, memory_order_acq_rel);
	}
	atomic_fetch_sub_explicit(&gauge->in_flight, 1, memory_order_acq_rel);
	return got == n;
}

static bool take_tokens(struct tally_sgauge *gauge, struct tally_sgauge_shard *pool, int64_t n)
{
	unsigned start = own_shard(gauge);
	tally_backoff_t backoff = TALLY_BACKOFF_INITIALIZER;

	if (take_some(&pool[start], n, true) == n)
		return true;
	for (int attempt = 0; attempt <= TALLY_SGAUGE_RETRIES; attempt++) {
		uint64_t returns_before = atomic_load_explicit(&gauge->returns, memory_order_acquire);
		bool others_in_flight;

		if (take_whole(gauge, pool, start, n) || take_gathered(gauge, pool, start, n))
			return true;
		others_in_flight = atomic_load_explicit(&gauge->in_flight, memory_order_acquire) > 0;
		if (!others_in_flight &&
		    atomic_load_explicit(&gauge->returns, memory_order_acquire) == returns_before)
			return false; /* nothing moved under the scan: the value really was short */
		tally__backoff(&backoff);
	}
	return false;
}

/* Moves n tokens from `from` to `to` (`to` may be NULL: no ceiling). */
static int transfer(struct tally_sgauge *gauge, struct tally_sgauge_shard *from,
		    struct tally_sgauge_shard *to, int64_t n, int shortfall_error)
{
	if (!take_tokens(gauge, from, n))
		return shortfall_error;
	if (to && !give_tokens(gauge, to, own_shard(gauge), n)) {
		give_tokens(gauge, from, own_shard(gauge), n);
		return TALLY_EOVERFLOW;
	}
	return TALLY_OK;
}

int tally_sgauge_add(struct tally_sgauge *gauge, int64_t n)
{
	int err = check_sgauge(gauge);

	if (err != TALLY_OK)
		return err;
	if (n <= 0)
		return TALLY_EINVAL;
	if (gauge->headroom)
		return transfer(gauge, gauge->headroom, gauge->above, n, TALLY_ECEILING);
	return give_tokens(gauge, gauge->above, own_shard(gauge), n) ? TALLY_OK : TALLY_EOVERFLOW;
}

int tally_sgauge_sub(struct tally_sgauge *gauge, int64_t n)
{
	int err = check_sgauge(gauge);

	if (err != TALLY_OK)
		return err;
	if (n <= 0)
		return TALLY_EINVAL;
	return transfer(gauge, gauge->above, gauge->headroom, n, TALLY_EFLOOR);
}

int tally_sgauge_inc(struct tally_sgauge *gauge)
{
	return tally_sgauge_add(gauge, 1);
}

int tally_sgauge_dec(struct tally_sgauge *gauge)
{
	return tally_sgauge_sub(gauge, 1);
}

int tally_sgauge_read(const struct tally_sgauge *gauge, int64_t *value)
{
	int err = check_sgauge(gauge);
	__int128 total;

	if (err != TALLY_OK)
		return err;
	if (!value)
		return TALLY_EINVAL;
	total = gauge->floor;
	for (unsigned i = 0; i < gauge->shard_count; i++)
		total += atomic_load_explicit(&gauge->above[i].tokens, memory_order_acquire);
	if (total > INT64_MAX)
		return TALLY_EOVERFLOW;
	/* Shards are read one by one: a sum can pair a shard read before a sub with one read
	 * after the add that used the freed room, and show more than the ceiling. No real
	 * state ever did, so the estimate is clamped (each shard >= 0 already keeps it >= floor). */
	if (total > gauge->ceiling)
		total = gauge->ceiling;
	*value = (int64_t)total;
	return TALLY_OK;
}
