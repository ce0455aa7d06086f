/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/sequence/sequence.c: the sequence allocator (registry, strict and cached issuing,
 * period rollover, reservations, leases with the in-memory provider). Template details are in
 * tests/sequence/format.c, the file provider in tests/sequence/lease_file.c.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <tally/rcu.h>
#include <tally/sequence.h>
#include "../random.h"
#include "../tap.h"
#include "../threads.h"

#define NOV23_2026 INT64_C(1795392000) /* 2026-11-23T00:00:00Z */
#define DAY 86400

static _Atomic int64_t fake_now = NOV23_2026 + 3600;

static int64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load_explicit(&fake_now, memory_order_relaxed);
}

static struct tally_sequence *new_seq(void)
{
	struct tally_sequence_options opts = { .now_s = fake_clock };
	struct tally_sequence *seq = NULL;

	if (tally_sequence_create(&seq, &opts) != TALLY_OK)
		abort();
	return seq;
}

static struct tally_series_config strict_daily(void)
{
	return (struct tally_series_config){ .format = "INV-{date:%Y%m%d}-{counter:06}",
					     .mode = TALLY_SEQ_STRICT,
					     .reset = TALLY_SEQ_RESET_DAILY };
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static uint64_t packed(struct tally_seq_number n)
{
	return ((uint64_t)n.period << 40) | n.counter;
}

static void test_bad_input(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily();
	char long_id[TALLY_SEQ_ID_MAX + 2];
	struct tally_seq_number n;
	struct tally_series *h;

	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	tap_eq(tally_sequence_create(NULL, NULL), TALLY_EINVAL, "create(NULL)");
	tap_eq(tally_sequence_series_create(seq, "", "INV", &cfg, NULL), TALLY_EINVAL, "empty tenant");
	tap_eq(tally_sequence_series_create(seq, "t", "", &cfg, NULL), TALLY_EINVAL, "empty series");
	tap_eq(tally_sequence_series_create(seq, NULL, "INV", &cfg, NULL), TALLY_EINVAL, "NULL tenant");
	tap_eq(tally_sequence_series_create(seq, long_id, "INV", &cfg, NULL), TALLY_ETOOLONG,
	       "over-long tenant");
	tap_eq(tally_sequence_series_create(seq, "t", long_id, &cfg, NULL), TALLY_ETOOLONG,
	       "over-long series");
	long_id[TALLY_SEQ_ID_MAX] = '\0';
	tap_eq(tally_sequence_series_create(seq, long_id, long_id, &cfg, NULL), TALLY_OK,
	       "ids of exactly TALLY_SEQ_ID_MAX bytes are accepted");
	tap_eq(tally_sequence_series_create(seq, "t", "INV", NULL, NULL), TALLY_EINVAL, "NULL config");
	cfg.mode = 7;
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EINVAL, "bad mode");
	cfg = strict_daily();
	cfg.reset = 9;
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EINVAL, "bad reset");
	cfg = strict_daily();
	cfg.utc_offset_minutes = TALLY_SEQ_UTC_OFFSET_MAX + 1;
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EINVAL, "bad offset");
	cfg = strict_daily();
	cfg.cache_block = TALLY_SEQ_CACHE_BLOCK_MAX + 1;
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EINVAL,
	       "cache block too large");
	cfg = strict_daily();
	cfg.format = "INV-{date:%Y}";
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EFORMAT,
	       "template without counter");
	cfg.format = "INV-{counter}-{shop}";
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EFORMAT,
	       "template with unknown field");
	cfg = strict_daily();
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_OK, "valid series");
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EEXIST, "duplicate");
	tap_eq(tally_sequence_next(seq, "t", "GST", &n), TALLY_ENOTFOUND, "next on unknown series");
	tap_eq(tally_sequence_next(seq, "", "INV", &n), TALLY_EINVAL, "next with empty tenant");
	tap_eq(tally_sequence_next(seq, "t", long_id, &n), TALLY_ENOTFOUND, "next on a valid but unknown id");
	tap_eq(tally_sequence_next(seq, "t", "INV", NULL), TALLY_EINVAL, "next(NULL out)");
	tap_eq(tally_sequence_series_find(seq, "x", "INV", &h), TALLY_ENOTFOUND, "find unknown");
	tap_eq(tally_sequence_series_remove(seq, "x", "INV", NULL), TALLY_ENOTFOUND, "remove unknown");
	tap_eq(tally_sequence_destroy(seq), TALLY_OK, "destroy");
}

static void test_strict_basic(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily();
	struct tally_seq_number n = { 0, 0 };
	struct tally_series_stats stats;
	char buf[64];
	int ok = 1;

	tally_sequence_series_create(seq, "acme", "INV", &cfg, NULL);
	tally_sequence_series_create(seq, "globex", "INV", &cfg, NULL);
	tap_eq(tally_sequence_next_text(seq, "acme", "INV", buf, sizeof(buf), &n), TALLY_OK,
	       "first number");
	tap_ok(strcmp(buf, "INV-20261123-000001") == 0, "renders INV-20261123-000001 (%s)", buf);
	for (int i = 2; i <= 100; i++)
		ok &= tally_sequence_next(seq, "acme", "INV", &n) == TALLY_OK && n.counter == (uint64_t)i;
	tap_ok(ok, "strict numbers are consecutive");
	tally_sequence_next_text(seq, "globex", "INV", buf, sizeof(buf), NULL);
	tap_ok(strcmp(buf, "INV-20261123-000001") == 0, "tenants are isolated");
	tap_eq(tally_sequence_next_text(seq, "acme", "INV", buf, 5, &n), TALLY_ETOOLONG,
	       "small buffer: ETOOLONG");
	tap_eq(n.counter, 101, "... the number is still issued and reported");
	tap_eq(buf[0], '\0', "... and the buffer holds an empty string");
	tally_sequence_series_remove(seq, "acme", "INV", &stats);
	tap_eq(stats.last.counter, 101, "final stats report the last number");
	tap_eq(tally_sequence_next(seq, "acme", "INV", &n), TALLY_ENOTFOUND, "removed series");
	tap_eq(tally_sequence_destroy(seq), TALLY_OK, "destroy");
}

/* Many tenants, with and without expected_series: the registry grows as series are created
 * (in the creating call) and every series stays reachable by name, through removals too. */
static void test_many_tenants(size_t expected)
{
	struct tally_sequence_options options = { .expected_series = expected };
	struct tally_series_config cfg = { .format = "INV-{counter:06}" };
	struct tally_sequence *seq = NULL;
	struct tally_seq_number n;
	int created = 0, first = 0, removed = 0, gone = 0, second = 0;
	char tenant[32];

	tap_eq(tally_sequence_create(&seq, &options), TALLY_OK, "create (expected_series %zu)",
	       expected);
	for (int i = 0; i < 3000; i++) {
		snprintf(tenant, sizeof(tenant), "tenant-%d", i);
		created += tally_sequence_series_create(seq, tenant, "INV", &cfg, NULL) == TALLY_OK;
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(tenant, sizeof(tenant), "tenant-%d", i);
		first += tally_sequence_next(seq, tenant, "INV", &n) == TALLY_OK && n.counter == 1;
	}
	for (int i = 0; i < 3000; i += 2) {
		snprintf(tenant, sizeof(tenant), "tenant-%d", i);
		removed += tally_sequence_series_remove(seq, tenant, "INV", NULL) == TALLY_OK;
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(tenant, sizeof(tenant), "tenant-%d", i);
		if (i % 2 == 0)
			gone += tally_sequence_next(seq, tenant, "INV", &n) == TALLY_ENOTFOUND;
		else
			second += tally_sequence_next(seq, tenant, "INV", &n) == TALLY_OK &&
				  n.counter == 2;
	}
	tap_ok(created == 3000 && first == 3000, "3000 series created, each issues 1 by name");
	tap_ok(removed == 1500 && gone == 1500 && second == 1500,
	       "after removing half, those are gone and the rest issue 2 (%d %d %d)", removed,
	       gone, second);
	tap_eq(tally_sequence_destroy(seq), TALLY_OK, "destroy");
}

static void test_width(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = { .format = "Q{counter:02}", .mode = TALLY_SEQ_STRICT };
	struct tally_seq_number n;
	struct tally_seq_reservation *r;
	struct tally_series_stats stats;
	struct tally_series *h;

	tally_sequence_series_create(seq, "t", "Q", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "Q", &h);
	for (int i = 0; i < 97; i++)
		tally_series_next(h, &n);
	tap_eq(tally_series_reserve(h, 3, &r), TALLY_EWIDTH, "reserve past the width: EWIDTH");
	tap_eq(tally_series_next(h, &n), TALLY_OK, "98 fits");
	tap_eq(tally_series_next(h, &n), TALLY_OK, "99 fits");
	tap_eq(n.counter, 99, "last is 99");
	tap_eq(tally_series_next(h, &n), TALLY_EWIDTH, "100 does not fit: EWIDTH");
	tap_eq(tally_series_next(h, &n), TALLY_EWIDTH, "still EWIDTH");
	tally_series_get_stats(h, &stats);
	tap_eq(stats.last.counter, 99, "nothing was issued past the width");

	cfg = (struct tally_series_config){ .format = "C{counter:03}", .mode = TALLY_SEQ_CACHED,
					    .cache_block = 64 };
	tally_sequence_series_create(seq, "t", "C", &cfg, NULL);
	int issued = 0, err;
	while ((err = tally_sequence_next(seq, "t", "C", &n)) == TALLY_OK && issued < 2000)
		issued++;
	tap_eq(err, TALLY_EWIDTH, "cached mode stops at the width");
	tap_eq(issued, 999, "cached mode issues exactly 1..999 on one thread");
	tally_sequence_destroy(seq);
}

/* ---- one thread, more cached series than its block slots, some removed mid-block ----
 * Each thread caches blocks for TALLY_SEQ_THREAD_CACHE series; blocks of other series, and
 * of removed ones, are moved or evicted. Whatever the shuffling, each series keeps issuing
 * 1, 2, 3, ... on a single thread (its blocks are consecutive) with nothing twice. */
static void test_cached_slots(void)
{
	enum { SERIES = 2 * TALLY_SEQ_THREAD_CACHE + 3, ROUNDS = 300 };
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = { .format = "S{counter:06}", .mode = TALLY_SEQ_CACHED,
					   .cache_block = 16 };
	struct tally_series *handles[SERIES];
	uint64_t expected[SERIES];
	struct tally_seq_number n;
	char name[16];
	int ok = 1;

	/* removed series that leave half-used blocks in this thread's slots */
	for (int i = 0; i < TALLY_SEQ_THREAD_CACHE; i++) {
		snprintf(name, sizeof(name), "gone%d", i);
		ok &= tally_sequence_series_create(seq, "t", name, &cfg, NULL) == TALLY_OK;
		ok &= tally_sequence_next(seq, "t", name, &n) == TALLY_OK;
		ok &= tally_sequence_series_remove(seq, "t", name, NULL) == TALLY_OK;
	}
	for (int i = 0; i < SERIES; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		ok &= tally_sequence_series_create(seq, "t", name, &cfg, NULL) == TALLY_OK;
		ok &= tally_sequence_series_find(seq, "t", name, &handles[i]) == TALLY_OK;
		expected[i] = 1;
	}
	for (int round = 0; round < ROUNDS && ok; round++)
		for (int i = 0; i < SERIES; i++) {
			int k = (i * 7 + round) % SERIES; /* interleaved, in varying order */

			ok &= tally_series_next(handles[k], &n) == TALLY_OK;
			/* a block given up on eviction leaves a gap: never a repeat or a step back */
			ok &= n.counter >= expected[k];
			expected[k] = n.counter + 1;
		}
	tap_ok(ok, "%d cached series interleaved on one thread, beside removed series' blocks: "
	       "each strictly increasing", SERIES);
	tally_sequence_destroy(seq);
}

/* ---- cached blocks grow for a hot thread, up to 16 x cache_block ----
 * A thread issues 1,100 numbers at once (well under a millisecond): its blocks double from
 * 16 to the cap of 256 (16, 32, 64, 128, 256, 256, ...: the last ends at 1,264). Another
 * thread's first number then comes after the hot thread's last block: above 1,105 (where
 * fixed blocks of 16 would end) and at most one capped block past 1,100. */
static void *issue_1100(struct test_thread *self)
{
	struct tally_seq_number n;
	int ok = 1;

	for (int i = 0; i < 1100; i++)
		ok &= tally_series_next(self->shared, &n) == TALLY_OK;
	return (void *)(intptr_t)ok;
}

static void test_cached_growth(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = { .format = "G{counter:06}", .mode = TALLY_SEQ_CACHED,
					   .cache_block = 16 };
	struct tally_series *series;
	struct test_thread thread[1];
	struct tally_seq_number n;

	tally_sequence_series_create(seq, "t", "G", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "G", &series);
	run_threads(1, issue_1100, series, thread);
	tap_ok(thread[0].result == (void *)1, "a hot thread issues 1,100 cached numbers");
	tap_eq(tally_series_next(series, &n), TALLY_OK, "another thread takes a block");
	tap_ok(n.counter > 1105 && n.counter <= 1100 + 16 * 16 + 1,
	       "the hot thread's blocks grew past 16, capped at 256 (next block at %llu)",
	       (unsigned long long)n.counter);
	tally_sequence_destroy(seq);
}

/* ---- the width limit under contention (the fetch_add path overshoots, then clamps) ---- */

struct width_run {
	struct tally_series *series;
	_Atomic int issued[1000]; /* counter -> times issued */
	_Atomic int over, bad_err;
};

static void *width_body(struct test_thread *self)
{
	struct width_run *run = self->shared;
	struct tally_seq_number n;

	for (int i = 0; i < 20000; i++) {
		int err = tally_series_next(run->series, &n);

		if (err == TALLY_OK && n.counter >= 1 && n.counter <= 999 && n.period == 0)
			atomic_fetch_add(&run->issued[n.counter], 1);
		else if (err == TALLY_OK)
			atomic_fetch_add(&run->over, 1);
		else if (err != TALLY_EWIDTH)
			atomic_fetch_add(&run->bad_err, 1);
	}
	return NULL;
}

static void test_width_threads(enum tally_seq_mode mode)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = { .format = "W{counter:03}", .mode = mode,
					   .cache_block = 7 };
	const char *name = mode == TALLY_SEQ_STRICT ? "strict" : "cached";
	static struct width_run run;
	struct tally_series_stats stats;
	struct test_thread th[4];
	int once = 0;

	memset(&run, 0, sizeof(run));
	tally_sequence_series_create(seq, "t", "W", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "W", &run.series);
	run_threads(4, width_body, &run, th);
	for (int c = 1; c <= 999; c++)
		once += atomic_load(&run.issued[c]) == 1;
	tap_eq(once, 999, "%s 4 threads at the width: 1..999 each issued exactly once", name);
	tap_eq(atomic_load(&run.over), 0, "%s: nothing wider or wrapped was issued", name);
	tap_eq(atomic_load(&run.bad_err), 0, "%s: every other call failed with EWIDTH", name);
	tally_series_get_stats(run.series, &stats);
	tap_ok(stats.last.counter == 999 && stats.last.period == 0,
	       "%s: stats stop at 999 in period 0", name);
	tally_sequence_destroy(seq);
}

/* ---- concurrent strict issuing across a midnight rollover ---- */

struct strict_run {
	struct tally_series *series;
	int per_thread;
	uint64_t *numbers; /* per_thread slots per thread */
	_Atomic int issued_total;
	int flip_at;
	int errors;
};

static void *strict_body(struct test_thread *self)
{
	struct strict_run *run = self->shared;
	uint64_t *mine = run->numbers + (size_t)self->index * (size_t)run->per_thread;
	struct tally_seq_number n;

	for (int i = 0; i < run->per_thread; i++) {
		if (tally_series_next(run->series, &n) != TALLY_OK) {
			mine[i] = 0;
			continue;
		}
		mine[i] = packed(n);
		if (atomic_fetch_add(&run->issued_total, 1) == run->flip_at)
			atomic_store(&fake_now, NOV23_2026 + DAY); /* midnight */
	}
	return NULL;
}

static void test_strict_threads(int threads, enum tally_seq_mode mode)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily();
	struct strict_run run = { .per_thread = 20000 };
	struct test_thread th[8];
	size_t total = (size_t)threads * (size_t)run.per_thread;
	int dup = 0, gap = 0, zero = 0, backwards = 0;
	uint64_t expect_counter = 1;
	uint32_t period = 0;
	size_t day1 = 0;
	const char *name = mode == TALLY_SEQ_STRICT ? "strict" : "cached";

	atomic_store(&fake_now, NOV23_2026 + DAY - 1);
	cfg.mode = mode;
	cfg.cache_block = 100;
	tally_sequence_series_create(seq, "t", "INV", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "INV", &run.series);
	run.numbers = calloc(total, sizeof(uint64_t));
	run.flip_at = (int)total / 2;
	run_threads(threads, strict_body, &run, th);
	/* Per thread: once a thread saw the new day it never got the old one. */
	for (int t = 0; t < threads; t++)
		for (int i = 1; i < run.per_thread; i++) {
			uint64_t a = run.numbers[(size_t)t * run.per_thread + i - 1];
			uint64_t b = run.numbers[(size_t)t * run.per_thread + i];

			if ((b >> 40) < (a >> 40))
				backwards++;
		}
	qsort(run.numbers, total, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < total; i++) {
		uint64_t v = run.numbers[i];

		if (v == 0) {
			zero++;
			continue;
		}
		if (i > 0 && v == run.numbers[i - 1])
			dup++;
		if ((uint32_t)(v >> 40) != period) {
			period = (uint32_t)(v >> 40);
			expect_counter = 1;
		}
		if ((v & ((UINT64_C(1) << 40) - 1)) != expect_counter)
			gap++;
		expect_counter = (v & ((UINT64_C(1) << 40) - 1)) + 1;
		if (period == tally_seq_period_of(NOV23_2026, TALLY_SEQ_RESET_DAILY, 0))
			day1++;
	}
	tap_eq(zero, 0, "%s %d threads: every call issued a number", name, threads);
	tap_eq(dup, 0, "%s %d threads: no duplicates among %zu numbers", name, threads, total);
	tap_eq(backwards, 0, "%s %d threads: no thread went back to the old day", name, threads);
	tap_ok(day1 > 0 && day1 < total, "%s %d threads: both days got numbers (%zu/%zu)", name,
	       threads, day1, total);
	if (mode == TALLY_SEQ_STRICT)
		tap_eq(gap, 0, "strict %d threads: each day is 1..n with no gaps", threads);
	free(run.numbers);
	tally_sequence_destroy(seq);
	atomic_store(&fake_now, NOV23_2026 + 3600);
}

/* ---- reservations ---- */

static void test_reservations(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily();
	const struct tally_seq_number *nums;
	struct tally_seq_reservation *r, *r2;
	struct tally_seq_number n, never = { 999, 0 };
	struct tally_series_stats stats;
	struct tally_series *h;
	uint32_t count;

	tally_sequence_series_create(seq, "t", "INV", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "INV", &h);
	tap_eq(tally_series_reserve(h, 0, &r), TALLY_EINVAL, "reserve 0: EINVAL");
	tap_eq(tally_series_reserve(h, TALLY_SEQ_RESERVE_MAX + 1, &r), TALLY_EINVAL,
	       "reserve above the maximum: EINVAL");
	tally_series_get_stats(h, &stats);
	tap_eq(stats.last.counter, 0, "failed reserves issued nothing");
	tap_eq(tally_series_reserve(h, 10, &r), TALLY_OK, "reserve 10");
	tally_seq_reservation_numbers(r, &nums, &count);
	tap_ok(count == 10 && nums[0].counter == 1 && nums[9].counter == 10, "numbers 1..10");
	n = nums[2];
	tap_eq(tally_seq_reservation_release(r, &n), TALLY_OK, "release 3");
	tap_eq(tally_seq_reservation_release(r, &n), TALLY_ENOTRESERVED, "double release");
	tap_eq(tally_seq_reservation_commit(r, &n), TALLY_ENOTRESERVED, "commit after release");
	tap_eq(tally_seq_reservation_release(r, &never), TALLY_ENOTRESERVED,
	       "release of a number never reserved");
	n = nums[0];
	tap_eq(tally_seq_reservation_commit(r, &n), TALLY_OK, "commit 1");
	tap_eq(tally_seq_reservation_release(r, &n), TALLY_ENOTRESERVED, "release after commit");
	n = nums[6];
	tally_seq_reservation_release(r, &n); /* 7 */
	tally_series_get_stats(h, &stats);
	tap_eq(stats.released_pending, 2, "two numbers wait for reuse");
	tally_series_next(h, &n);
	tap_eq(n.counter, 3, "strict reuses the smallest released number first");
	tally_series_reserve(h, 3, &r2);
	tally_seq_reservation_numbers(r2, &nums, &count);
	tap_ok(count == 3 && nums[0].counter == 7 && nums[1].counter == 11 && nums[2].counter == 12,
	       "a reservation takes released numbers, then fresh ones");
	tap_eq(tally_seq_reservation_finish(r2, true), TALLY_OK, "finish committing the rest");
	tap_eq(tally_seq_reservation_finish(r, false), TALLY_OK, "finish releasing the rest");
	tally_series_get_stats(h, &stats);
	tap_eq(stats.released_pending, 7, "7 released numbers pending (2,4,5,6,8,9,10)");
	/* A new day voids what is left: it would carry yesterday's date. */
	atomic_store(&fake_now, NOV23_2026 + DAY + 5);
	tally_series_next(h, &n);
	tap_ok(n.counter == 1 && n.period == tally_seq_period_of(NOV23_2026 + DAY, 1, 0),
	       "after midnight: counter 1 of the new day");
	tally_series_get_stats(h, &stats);
	tap_eq(stats.voided, 7, "released numbers of the old day were voided");
	atomic_store(&fake_now, NOV23_2026 + 3600);

	cfg.mode = TALLY_SEQ_CACHED;
	tally_sequence_series_create(seq, "t", "CACHED", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "CACHED", &h);
	tally_series_reserve(h, 5, &r);
	tally_seq_reservation_numbers(r, &nums, &count);
	n = nums[1];
	tap_eq(tally_seq_reservation_release(r, &n), TALLY_OK, "cached: release");
	tap_eq(tally_seq_reservation_release(r, &n), TALLY_ENOTRESERVED, "cached: double release");
	tally_seq_reservation_finish(r, true);
	tally_series_next(h, &n);
	tap_ok(n.counter > 5, "cached mode does not reuse released numbers");
	tally_sequence_destroy(seq);
}

/* A strict series that never resets issues inline (one fetch_add); a pending release list
 * must divert it to the slow path, and an empty one must let it back. */
static void test_inline_strict_release(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = { .format = "N{counter:06}", .mode = TALLY_SEQ_STRICT };
	const struct tally_seq_number *nums;
	struct tally_seq_reservation *r;
	struct tally_seq_number n, second, fourth;
	struct tally_series_stats stats;
	struct tally_series *h;
	uint32_t count;
	int ok = 1;

	tally_sequence_series_create(seq, "t", "N", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "N", &h);
	for (uint64_t i = 1; i <= 3; i++)
		ok &= tally_series_next(h, &n) == TALLY_OK && n.counter == i && n.period == 0;
	tap_ok(ok, "inline strict: 1, 2, 3");
	tally_series_reserve(h, 4, &r); /* 4..7 */
	tally_seq_reservation_numbers(r, &nums, &count);
	second = nums[1];
	fourth = nums[3];
	tally_seq_reservation_release(r, &fourth);
	tally_seq_reservation_release(r, &second);
	tally_seq_reservation_finish(r, true);
	tap_ok(tally_series_next(h, &n) == TALLY_OK && n.counter == 5,
	       "inline strict: a pending release list is served first (5)");
	tap_ok(tally_series_next(h, &n) == TALLY_OK && n.counter == 7,
	       "inline strict: then the next released number (7)");
	tally_series_get_stats(h, &stats);
	tap_eq(stats.released_pending, 0, "inline strict: the list is empty");
	tap_ok(tally_series_next(h, &n) == TALLY_OK && n.counter == 8,
	       "inline strict: fresh numbers resume at 8, no gap, no repeat");
	tally_sequence_destroy(seq);
}

/* Threads mix next, reserve, commit and release; at the end every number of 1..last is
 * held exactly once (issued, committed, or pending reuse). */
struct mixed_run {
	struct tally_series *series;
	uint64_t *held[8];
	size_t held_len[8];
	int errors[8];
};

static void *mixed_body(struct test_thread *self)
{
	struct mixed_run *run = self->shared;
	uint64_t *held = run->held[self->index];
	size_t len = 0;
	unsigned seed = (unsigned)self->index * 7919u + 1;

	for (int i = 0; i < 3000; i++) {
		struct tally_seq_number n;

		test_random(&seed);
		if ((seed >> 16) % 4) {
			if (tally_series_next(run->series, &n) == TALLY_OK)
				held[len++] = packed(n);
			else
				run->errors[self->index]++;
		} else {
			struct tally_seq_reservation *r;
			const struct tally_seq_number *nums;
			uint32_t count;

			if (tally_series_reserve(run->series, 1 + (seed >> 20) % 8, &r) != TALLY_OK) {
				run->errors[self->index]++;
				continue;
			}
			tally_seq_reservation_numbers(r, &nums, &count);
			for (uint32_t k = 0; k < count; k++) {
				struct tally_seq_number one = nums[k];

				if (k % 2 == 0) {
					tally_seq_reservation_commit(r, &one);
					held[len++] = packed(one);
				}
			}
			tally_seq_reservation_finish(r, false);
		}
	}
	run->held_len[self->index] = len;
	return NULL;
}

static void test_mixed_threads(int threads, enum tally_seq_reset reset)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily();
	const char *how = reset == TALLY_SEQ_RESET_NEVER ? "inline path" : "daily";
	struct mixed_run run = { 0 };
	struct test_thread th[8];
	struct tally_series_stats stats;
	struct tally_seq_number n;
	uint64_t *all;
	size_t total = 0, bad = 0;
	int errors = 0;

	if (reset == TALLY_SEQ_RESET_NEVER)
		cfg = (struct tally_series_config){ .format = "INV-{counter:06}",
						    .mode = TALLY_SEQ_STRICT };
	tally_sequence_series_create(seq, "t", "INV", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "INV", &run.series);
	for (int t = 0; t < threads; t++)
		run.held[t] = calloc(3000 * 8, sizeof(uint64_t));
	run_threads(threads, mixed_body, &run, th);
	all = calloc((size_t)threads * 3000 * 8 + 1, sizeof(uint64_t));
	for (int t = 0; t < threads; t++) {
		memcpy(all + total, run.held[t], run.held_len[t] * sizeof(uint64_t));
		total += run.held_len[t];
		errors += run.errors[t];
		free(run.held[t]);
	}
	tally_series_get_stats(run.series, &stats);
	uint64_t last = stats.last.counter;
	/* Drain the release list: each pending number comes back exactly once. */
	while (tally_series_get_stats(run.series, &stats) == TALLY_OK && stats.released_pending > 0 &&
	       tally_series_next(run.series, &n) == TALLY_OK && n.counter <= last)
		all[total++] = packed(n);
	qsort(all, total, sizeof(uint64_t), cmp_u64);
	for (size_t i = 0; i < total; i++)
		if ((all[i] & ((UINT64_C(1) << 40) - 1)) != i + 1)
			bad++;
	tap_eq(errors, 0, "mixed %d threads (%s): no call failed", threads, how);
	tap_eq(bad, 0,
	       "mixed %d threads (%s): issued + committed + reissued = 1..%llu exactly once",
	       threads, how, (unsigned long long)last);
	tap_eq(total, last, "mixed %d threads (%s): no gaps", threads, how);
	free(all);
	tally_sequence_destroy(seq);
}

/* ---- leases (in-memory provider) ---- */

/* Numbers waiting in the release list at a crash are inside the crash report once a lease
 * extension or a checkpoint stored the watermark after their release. */
static void test_lease_released(void)
{
	struct tally_lease_provider *mem;
	struct tally_sequence *seq = new_seq(), *seq2 = new_seq();
	struct tally_series_config cfg = strict_daily();
	const struct tally_seq_number *nums;
	struct tally_seq_reservation *r, *r2;
	struct tally_seq_recovery rec;
	struct tally_lease_record lr;
	struct tally_seq_number n, four;
	struct tally_series *h;
	uint32_t count;

	tally_lease_memory_create(&mem);
	cfg.lease = mem;
	cfg.lease_size = 10;
	tally_sequence_series_create(seq, "t", "R", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "R", &h);
	tally_series_reserve(h, 5, &r); /* 1..5 under the lease (0, 10] */
	tally_seq_reservation_numbers(r, &nums, &count);
	four = nums[3];
	for (int i = 0; i < 5; i++)
		tally_series_next(h, &n); /* 6..10 */
	tally_series_reserve(h, 2, &r2); /* 11, 12: the extension stores issued 10 */
	tally_seq_reservation_finish(r2, true);
	tally_seq_reservation_release(r, &four); /* 4 waits for reuse */
	tally_seq_reservation_finish(r, true);
	tally_lease_read(mem, "t\0R", 3, &lr);
	tap_eq(lr.issued & 0xffffffffff, 10,
	       "4, released after the last write, is not covered yet (issued 10)");
	tap_eq(tally_series_checkpoint(h), TALLY_OK, "checkpoint after the release");
	tally_lease_read(mem, "t\0R", 3, &lr);
	tap_eq(lr.issued & 0xffffffffff, 3,
	       "the checkpoint stores the watermark below the pending 4 (3, not 12)");
	/* "Crash": seq never closes the key; a new owner reads the report. */
	tally_sequence_series_create(seq2, "t", "R", &cfg, &rec);
	tap_ok(rec.unclean && rec.first_counter == 4 && rec.last_counter == 20,
	       "the report 4..20 includes the released, never reissued 4 (%llu..%llu)",
	       (unsigned long long)rec.first_counter, (unsigned long long)rec.last_counter);
	/* Once reissued, a checkpoint moves the watermark back up to the word. */
	tally_series_next(h, &n);
	tap_eq(n.counter, 4, "the old owner reissues 4 first");
	tally_series_checkpoint(h);
	tally_lease_read(mem, "t\0R", 3, &lr);
	tap_eq(lr.issued & 0xffffffffff, 12, "with the list empty the watermark is the word (12)");
	tally_sequence_destroy(seq2);
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(mem);
}

static void test_leases(void)
{
	struct tally_lease_provider *mem;
	struct tally_sequence *seq = new_seq(), *seq2 = new_seq(), *seq3 = new_seq();
	struct tally_series_config cfg = strict_daily();
	struct tally_seq_recovery rec;
	struct tally_lease_record lr;
	struct tally_series_stats stats;
	struct tally_seq_number n;
	struct tally_series *h;
	uint32_t today = tally_seq_period_of(NOV23_2026 + 3600, TALLY_SEQ_RESET_DAILY, 0);
	uint64_t key_mark;

	tally_lease_memory_create(&mem);
	cfg.lease = mem;
	cfg.lease_size = 10;
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, &rec), TALLY_OK, "leased series");
	tap_ok(!rec.resumed && rec.count == 0, "fresh key: nothing to resume");
	tally_sequence_series_find(seq, "t", "INV", &h);
	for (int i = 0; i < 25; i++)
		tally_series_next(h, &n);
	tally_series_get_stats(h, &stats);
	tap_eq(stats.lease_calls, 3, "25 numbers with lease 10: three provider calls");
	tally_lease_read(mem, "t\0INV", 5, &lr);
	key_mark = ((uint64_t)today << 40) | 30;
	tap_ok(lr.mark == key_mark && !(lr.flags & TALLY_LEASE_CLEAN), "mark 30, not clean");
	tap_eq(lr.issued & 0xffffffffff, 20, "issued watermark recorded at the last extension");
	/* A second owner after a "crash" (seq never closed the key). */
	tap_eq(tally_sequence_series_create(seq2, "t", "INV", &cfg, &rec), TALLY_OK, "resume");
	tap_ok(rec.resumed && rec.unclean, "resumed from an unclean record");
	tap_ok(rec.period == today && rec.first_counter == 21 && rec.last_counter == 30 &&
	       rec.count == 10, "report: 21..30 issued after the checkpoint or lost (%llu..%llu)",
	       (unsigned long long)rec.first_counter, (unsigned long long)rec.last_counter);
	tally_sequence_next(seq2, "t", "INV", &n);
	tap_eq(n.counter, 31, "restart resumes above the mark");
	/* Checkpoint tightens the report. */
	for (int i = 0; i < 4; i++)
		tally_sequence_next(seq2, "t", "INV", &n); /* 35 */
	tally_sequence_series_find(seq2, "t", "INV", &h);
	tap_eq(tally_series_checkpoint(h), TALLY_OK, "checkpoint");
	tally_sequence_series_create(seq3, "t", "INV", &cfg, &rec);
	tap_ok(rec.first_counter == 36 && rec.last_counter == 40 && rec.count == 5,
	       "after a checkpoint: report 36..40");
	tally_sequence_series_remove(seq3, "t", "INV", NULL);
	tally_sequence_destroy(seq3);
	tally_sequence_destroy(seq);
	/* seq's close is a no-op (seq2 leased after it); seq2 closes cleanly and gives the
	 * unused rest back, so the next owner continues at 36 without a gap. */
	tap_eq(tally_sequence_destroy(seq2), TALLY_OK, "clean close");
	seq = new_seq();
	tally_sequence_series_create(seq, "t", "INV", &cfg, &rec);
	tap_ok(rec.resumed && !rec.unclean && rec.count == 0, "clean record: nothing to report");
	tally_sequence_next(seq, "t", "INV", &n);
	tap_eq(n.counter, 36, "after a clean close the next owner continues at 36");
	/* Midnight: the lease moves to the new day. */
	atomic_store(&fake_now, NOV23_2026 + DAY + 1);
	tally_sequence_next(seq, "t", "INV", &n);
	tap_ok(n.period == today + 1 && n.counter == 1, "rollover with a lease: day 2, number 1");
	tally_lease_read(mem, "t\0INV", 5, &lr);
	tap_eq(lr.mark >> 40, today + 1, "the mark moved to the new day");
	atomic_store(&fake_now, NOV23_2026 + 3600);
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(mem);
}

/* A refused acquire of a new key stores nothing: the key stays never-acquired. */
static void test_lease_refused_new_key(void)
{
	struct tally_lease_provider *mem;
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily();
	struct tally_seq_recovery rec;
	struct tally_lease_record lr;
	uint64_t base = 7;

	tally_lease_memory_create(&mem);
	tap_eq(tally_lease_acquire(mem, "t\0INV", 5, UINT64_MAX - 5, 10, 0, &base), TALLY_EINVAL,
	       "memory provider: acquire past UINT64_MAX on a new key: EINVAL");
	tap_eq(base, 7, "... no base reported");
	tap_eq(tally_lease_read(mem, "t\0INV", 5, &lr), TALLY_ENOTFOUND,
	       "... and the key is still never acquired (ENOTFOUND)");
	cfg.lease = mem;
	cfg.lease_size = 10;
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, &rec), TALLY_OK,
	       "a series on that key");
	tap_ok(!rec.resumed && !rec.unclean && rec.count == 0,
	       "... starts fresh, no false crash report");
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(mem);
}

/* A provider that fails on demand. */
static int failing;
static struct tally_lease_provider *inner;

static int flaky_acquire(void *impl, const char *key, size_t key_len, uint64_t min_start,
			 uint64_t size, uint64_t issued, uint64_t *base)
{
	(void)impl;
	if (failing)
		return TALLY_EIO;
	return tally_lease_acquire(inner, key, key_len, min_start, size, issued, base);
}

static int flaky_close(void *impl, const char *key, size_t key_len, uint64_t hi, uint64_t issued)
{
	(void)impl;
	return failing ? TALLY_EIO : tally_lease_close(inner, key, key_len, hi, issued);
}

static int flaky_read(void *impl, const char *key, size_t key_len, struct tally_lease_record *out)
{
	(void)impl;
	return failing ? TALLY_EIO : tally_lease_read(inner, key, key_len, out);
}

static const struct tally_lease_ops flaky_ops = { flaky_acquire, flaky_close, flaky_read, NULL };

static void test_lease_failure(void)
{
	struct tally_lease_provider flaky = { &flaky_ops, NULL };
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily();
	struct tally_series_stats stats;
	struct tally_seq_number n;
	struct tally_seq_reservation *r;
	struct tally_series *h;

	tally_lease_memory_create(&inner);
	cfg.lease = &flaky;
	cfg.lease_size = 5;
	failing = 1;
	tap_eq(tally_sequence_series_create(seq, "t", "INV", &cfg, NULL), TALLY_EIO,
	       "create: provider read fails -> EIO, no series");
	failing = 0;
	tally_sequence_series_create(seq, "t", "INV", &cfg, NULL);
	tally_sequence_series_find(seq, "t", "INV", &h);
	for (int i = 0; i < 5; i++)
		tally_series_next(h, &n);
	failing = 1;
	tap_eq(tally_series_next(h, &n), TALLY_EIO, "next above the mark with a failing provider");
	tap_eq(tally_series_reserve(h, 2, &r), TALLY_EIO, "reserve likewise");
	tally_series_get_stats(h, &stats);
	tap_eq(stats.last.counter, 5, "nothing issued above the durable mark");
	failing = 0;
	tally_series_next(h, &n);
	tap_eq(n.counter, 6, "provider back: continues at 6");
	failing = 1;
	tap_eq(tally_sequence_series_remove(seq, "t", "INV", NULL), TALLY_EIO,
	       "remove reports the failed close");
	tap_eq(tally_sequence_next(seq, "t", "INV", &n), TALLY_ENOTFOUND, "... but the series is gone");
	failing = 0;
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(inner);
}

/* By-name issuers race a remove: every number issued before the remove took effect is
 * counted in the final stats (remove waits for calls in flight), later calls get ENOTFOUND. */
struct remove_run {
	struct tally_sequence *seq;
	_Atomic int go;
	long issued[4];
	int bad[4];
	int remove_err;
	struct tally_series_stats final;
};

static void *remove_body(struct test_thread *self)
{
	struct remove_run *run = self->shared;
	struct tally_seq_number n;
	int err;

	if (self->index == 0) { /* the remover */
		while (!atomic_load(&run->go))
			;
		run->remove_err = tally_sequence_series_remove(run->seq, "t", "INV", &run->final);
		return NULL;
	}
	for (;;) {
		err = tally_sequence_next(run->seq, "t", "INV", &n);
		if (err == TALLY_ENOTFOUND)
			break;
		if (err == TALLY_OK)
			run->issued[self->index]++;
		else
			run->bad[self->index]++;
		if (run->issued[self->index] == 2000)
			atomic_store(&run->go, 1);
	}
	return NULL;
}

static void test_remove_race(void)
{
	static struct remove_run run;
	struct tally_series_config cfg = strict_daily();
	struct test_thread th[4];
	long total = 0;
	int bad = 0;

	run.seq = new_seq();
	tally_sequence_series_create(run.seq, "t", "INV", &cfg, NULL);
	run_threads(4, remove_body, &run, th);
	for (int t = 1; t < 4; t++) {
		total += run.issued[t];
		bad += run.bad[t];
	}
	tap_eq(run.remove_err, TALLY_OK, "remove under by-name load");
	tap_eq(bad, 0, "racing calls got only OK or ENOTFOUND");
	tap_eq(run.final.last.counter, total, "final stats count every number issued (%ld)", total);
	tally_sequence_destroy(run.seq);
}

/*
 * A clock outside [1970-01-01, 10000-01-01) in the series' offset (a milliseconds value
 * passed as seconds, a negative one) is refused: EOVERFLOW, nothing issued. Never a period
 * pinned at its field's maximum and rendered as a 9-digit "date".
 */
static void test_clock_range(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = strict_daily(), never = strict_daily(), cached;
	struct tally_seq_reservation *r = NULL;
	struct tally_seq_number n = { 0, 0 };
	char buf[64] = "untouched";
	const int64_t year_10000 = INT64_C(253402300800); /* 10000-01-01T00:00:00Z */
	int ok = 1;

	never.format = "N-{counter}";
	never.reset = TALLY_SEQ_RESET_NEVER;
	cached = cfg;
	cached.mode = TALLY_SEQ_CACHED;
	tally_sequence_series_create(seq, "t", "D", &cfg, NULL);
	tally_sequence_series_create(seq, "t", "N", &never, NULL);
	tally_sequence_series_create(seq, "t", "C", &cached, NULL);
	cfg.utc_offset_minutes = 60;
	tally_sequence_series_create(seq, "t", "E", &cfg, NULL);
	atomic_store(&fake_now, NOV23_2026 * 1000); /* milliseconds, read as seconds */
	tap_eq(tally_sequence_next_text(seq, "t", "D", buf, sizeof(buf), &n), TALLY_EOVERFLOW,
	       "a clock in ms (tens of millennia ahead): EOVERFLOW");
	tap_ok(n.counter == 0 && strcmp(buf, "untouched") == 0, "... nothing issued or rendered");
	tap_eq(tally_sequence_next(seq, "t", "C", &n), TALLY_EOVERFLOW, "... cached mode too");
	{
		struct tally_series *h;

		tally_sequence_series_find(seq, "t", "D", &h);
		tap_eq(tally_series_reserve(h, 3, &r), TALLY_EOVERFLOW, "... and reserve");
	}
	tap_eq(tally_sequence_next(seq, "t", "N", &n), TALLY_OK,
	       "a series that never resets does not read the clock");
	atomic_store(&fake_now, -1);
	tap_eq(tally_sequence_next(seq, "t", "D", &n), TALLY_EOVERFLOW, "a clock before 1970");
	atomic_store(&fake_now, NOV23_2026 + 3600);
	ok = tally_sequence_next_text(seq, "t", "D", buf, sizeof(buf), &n) == TALLY_OK;
	tap_ok(ok && n.counter == 1 && strcmp(buf, "INV-20261123-000001") == 0,
	       "a good clock again: the series starts where it would have (%s)", buf);
	atomic_store(&fake_now, year_10000 - 1);
	ok = tally_sequence_next_text(seq, "t", "D", buf, sizeof(buf), &n) == TALLY_OK;
	tap_ok(ok && strcmp(buf, "INV-99991231-000001") == 0,
	       "the last second of 9999 is in range: %s", buf);
	tap_eq(tally_sequence_next(seq, "t", "E", &n), TALLY_EOVERFLOW,
	       "... but not at +60 minutes (10000-01-01 there)");
	atomic_store(&fake_now, year_10000);
	tap_eq(tally_sequence_next(seq, "t", "D", &n), TALLY_EOVERFLOW, "10000-01-01: EOVERFLOW");
	atomic_store(&fake_now, NOV23_2026 + 3600);
	tally_sequence_destroy(seq);
}

static void test_periods(void)
{
	/* 2026-11-23T23:30Z is 2026-11-24 at +60 minutes, and still the 23rd at -60. */
	int64_t t = NOV23_2026 + 23 * 3600 + 1800;
	uint32_t d23 = tally_seq_period_of(NOV23_2026, TALLY_SEQ_RESET_DAILY, 0);

	tap_eq(tally_seq_period_of(t, TALLY_SEQ_RESET_DAILY, 60), d23 + 1, "offset +60 crosses");
	tap_eq(tally_seq_period_of(t, TALLY_SEQ_RESET_DAILY, -60), d23, "offset -60 does not");
	tap_eq(tally_seq_period_of(t, TALLY_SEQ_RESET_MONTHLY, 0), (2026 - 1970) * 12 + 10, "month");
	tap_eq(tally_seq_period_of(t, TALLY_SEQ_RESET_YEARLY, 0), 2026 - 1970, "year");
	tap_eq(tally_seq_period_of(t, TALLY_SEQ_RESET_NEVER, 0), 0, "never");
	tap_eq(tally_seq_period_of(-5, TALLY_SEQ_RESET_DAILY, 0), 0, "before 1970 clamps to 0");
	tap_eq(tally_seq_period_of(NOV23_2026 * 1000, TALLY_SEQ_RESET_DAILY, 0), 2932896,
	       "past 9999 clamps to 9999-12-31 (day 2932896)");
	tap_eq(tally_seq_period_of(INT64_MAX, TALLY_SEQ_RESET_YEARLY, 60), 9999 - 1970,
	       "INT64_MAX with an offset: year 9999, no overflow");
}

/* The by-name issue of a plain strict series (word's line only, lib/sequence/sequence.c):
 * the width limit, released numbers first, and keys on and past the inline boundary. */
static void test_by_name_plain_strict(void)
{
	struct tally_sequence *seq = new_seq();
	struct tally_series_config cfg = { .format = "{tenant}/{series}/{counter:02}",
					   .mode = TALLY_SEQ_STRICT };
	/* "tenant\0series" of 23 bytes (inline), 24 and 129 (after the struct) */
	const char *tenants[] = { "tenant-0000000001", "tenant-00000000012", NULL };
	const struct tally_seq_number *nums;
	struct tally_seq_reservation *r;
	char long_tenant[TALLY_SEQ_ID_MAX + 1], long_series[TALLY_SEQ_ID_MAX + 1], buf[200];
	char want[200];
	struct tally_seq_number n, third;
	struct tally_series *h;
	uint32_t count;
	int ok = 1, err;

	memset(long_tenant, 't', TALLY_SEQ_ID_MAX);
	long_tenant[TALLY_SEQ_ID_MAX] = '\0';
	memset(long_series, 's', TALLY_SEQ_ID_MAX);
	long_series[TALLY_SEQ_ID_MAX] = '\0';
	tenants[2] = long_tenant;
	for (int t = 0; t < 3; t++) {
		const char *series = t == 2 ? long_series : "INV-2";

		ok &= tally_sequence_series_create(seq, tenants[t], series, &cfg, NULL) == TALLY_OK;
		for (uint64_t i = 1; i <= 3; i++)
			ok &= tally_sequence_next_text(seq, tenants[t], series, buf, sizeof(buf),
						       &n) == TALLY_OK && n.counter == i;
		snprintf(want, sizeof(want), "%s/%s/03", tenants[t], series);
		ok &= strcmp(buf, want) == 0;
		/* a near miss in either name, or the names split differently, finds nothing */
		ok &= tally_sequence_next(seq, tenants[t], "INV-3", &n) == TALLY_ENOTFOUND;
		ok &= tally_sequence_next(seq, "tenant-0000000002", series, &n) ==
		      TALLY_ENOTFOUND;
	}
	tap_ok(ok, "by name: keys of 23, 24 and 129 bytes issue 1, 2, 3 and render their names");
	tap_eq(tally_sequence_next(seq, "tenant-0000000001I", "NV-2", &n), TALLY_ENOTFOUND,
	       "by name: the same bytes split at another place are another key");

	tally_sequence_series_find(seq, tenants[0], "INV-2", &h);
	tally_series_reserve(h, 3, &r); /* 4..6 */
	tally_seq_reservation_numbers(r, &nums, &count);
	third = nums[2];
	tally_seq_reservation_release(r, &third);
	tally_seq_reservation_finish(r, true);
	tap_ok(tally_sequence_next(seq, tenants[0], "INV-2", &n) == TALLY_OK && n.counter == 6,
	       "by name: a released number is served first (6)");
	tap_ok(tally_sequence_next(seq, tenants[0], "INV-2", &n) == TALLY_OK && n.counter == 7,
	       "by name: then fresh numbers again (7)");
	while ((err = tally_sequence_next(seq, tenants[0], "INV-2", &n)) == TALLY_OK)
		ok &= n.counter <= 99;
	tap_eq(err, TALLY_EWIDTH, "by name: 100 does not fit two digits: EWIDTH");
	tap_ok(ok && n.counter == 99, "by name: the last number issued is 99");
	tap_eq(tally_sequence_next(seq, tenants[0], "INV-2", &n), TALLY_EWIDTH,
	       "by name: still EWIDTH, nothing carried into the period");
	tap_eq(tally_sequence_destroy(seq), TALLY_OK, "destroy");
}

int main(void)
{
	static const int counts[] = { 2, 4, 8 };

	test_bad_input();
	test_strict_basic();
	test_many_tenants(0);
	test_many_tenants(3000);
	test_width();
	test_width_threads(TALLY_SEQ_STRICT);
	test_width_threads(TALLY_SEQ_CACHED);
	test_cached_slots();
	test_cached_growth();
	for (int i = 0; i < 3; i++)
		test_strict_threads(counts[i], TALLY_SEQ_STRICT);
	for (int i = 0; i < 3; i++)
		test_strict_threads(counts[i], TALLY_SEQ_CACHED);
	test_reservations();
	test_inline_strict_release();
	test_by_name_plain_strict();
	for (int i = 0; i < 3; i++) {
		test_mixed_threads(counts[i], TALLY_SEQ_RESET_DAILY);
		test_mixed_threads(counts[i], TALLY_SEQ_RESET_NEVER);
	}
	test_leases();
	test_lease_released();
	test_lease_refused_new_key();
	test_lease_failure();
	test_remove_race();
	test_clock_range();
	test_periods();
	tally_rcu_barrier();
	return tap_done();
}
