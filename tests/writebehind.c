/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/writebehind.c: the write-behind flusher (tally/writebehind.h) over real SQLite
 * files, with faults from tests/store/fault.c (a wrapper of our own around the real store):
 * exact totals under many threads and concurrent flushes, every fault exactly once, an
 * outage and its end, fencing, gauges over several writers and their reap, session records
 * written behind and coalesced, the tombstone bound, shutdown.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tally/counter.h>
#include <tally/gauge.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include <tally/writebehind.h>

#include "store/fault.h"
#include "tap.h"
#include "threads.h"

static char tmpdir[256];
static int file_counter;

static void new_url(char *url, size_t size, bool fault)
{
	snprintf(url, size, "%ssqlite://%s/wb%d.sqlite", fault ? "fault:" : "", tmpdir,
		 ++file_counter);
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static struct tally_store *open_store(const char *url, const char *writer_id, int64_t ttl_ms)
{
	struct tally_store_options options = { .writer_id = writer_id, .writer_ttl_ms = ttl_ms,
					       .create_schema = true };
	struct tally_store *store = NULL;
	int err = tally_store_open(&store, url, &options);

	if (err)
		printf("# open %s: %s (%s)\n", url, tally_strerror(err),
		       tally_store_last_error(NULL));
	return store;
}

/* The inner URL of a fault URL (a second, unfaulted handle on the same file). */
static const char *plain(const char *url)
{
	return strncmp(url, "fault:", 6) == 0 ? url + 6 : url;
}

static int64_t store_counter(struct tally_store *store, const char *key)
{
	int64_t total = 0;
	int err = tally_store_read_counter(store, key, strlen(key), &total);

	return err == TALLY_OK ? total : err == TALLY_ENOTFOUND ? 0 : -1000 - err;
}

static int64_t store_gauge(struct tally_store *store, const char *key, int64_t *writers)
{
	int64_t value = 0;

	if (tally_store_read_gauge(store, key, strlen(key), &value, writers))
		return INT64_MIN;
	return value;
}


static struct tally_writebehind_stats stats_of(struct tally_writebehind *wb)
{
	struct tally_writebehind_stats stats;

	tally_writebehind_get_stats(wb, &stats);
	return stats;
}

/* A fast flusher for tests: 5 ms interval, short backoff. */
static struct tally_writebehind *start(struct tally_store *store,
				       struct tally_writebehind_config *config)
{
	struct tally_writebehind_config fast = { .interval_ms = 5, .backoff_base_ms = 2,
						 .backoff_cap_ms = 40, .heartbeat_ms = 50,
						 .shutdown_timeout_ms = 3000 };
	struct tally_writebehind *wb = NULL;
	int err = tally_writebehind_create(&wb, store, config ? config : &fast);

	if (err)
		printf("# writebehind_create: %s\n", tally_strerror(err));
	return wb;
}

/* ---- basics ------------------------------------------------------------------------------ */

static void test_basics(void)
{
	char url[512];
	struct tally_store *store;
	struct tally_writebehind *wb;
	struct tally_counter views;
	struct tally_gauge gauge;
	struct tally_sgauge sgauge;
	struct tally_writebehind_stats stats;
	int64_t amount = -1, writers = 0;

	new_url(url, sizeof(url), false);
	store = open_store(url, "basics", 0);
	wb = start(store, NULL);
	tally_counter_init(&views, 4);
	tally_gauge_init(&gauge, 5, 0, TALLY_GAUGE_NO_CEILING);
	tally_sgauge_init(&sgauge, 9, 0, TALLY_GAUGE_NO_CEILING, 0);
	tap_eq(tally_writebehind_add_counter(wb, "views", 5, &views), TALLY_OK, "add counter");
	tap_eq(tally_writebehind_add_counter(wb, "views", 5, &views), TALLY_EEXIST,
	       "a key twice: EEXIST");
	tap_eq(tally_writebehind_add_gauge(wb, "views", 5, &gauge), TALLY_OK,
	       "gauge keys are their own namespace");
	tap_eq(tally_writebehind_add_sgauge(wb, "listeners", 9, &sgauge), TALLY_OK, "add sgauge");
	tap_eq(tally_writebehind_add_counter(wb, "", 0, &views), TALLY_EINVAL, "empty key");
	tap_eq(tally_writebehind_add_counter(wb, "a\0b", 3, &views), TALLY_EINVAL, "NUL in key");
	{
		char long_key[TALLY_STORE_KEY_MAX + 1];

		memset(long_key, 'k', sizeof(long_key));
		tap_eq(tally_writebehind_add_counter(wb, long_key, sizeof(long_key), &views),
		       TALLY_ETOOLONG, "key over TALLY_STORE_KEY_MAX");
	}
	tap_eq(tally_writebehind_remove_counter(wb, "nope", 4), TALLY_ENOTFOUND,
	       "remove of an unknown key");
	tap_eq(tally_writebehind_flush(wb, -5), TALLY_EINVAL, "negative timeout");
	for (int i = 0; i < 1000; i++)
		tally_counter_inc(&views);
	tally_gauge_add(&gauge, 2, NULL);
	tap_eq(tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER), TALLY_OK, "flush");
	tap_eq(store_counter(store, "views"), 1000, "store total after flush");
	tap_eq(store_gauge(store, "views", &writers), 7, "gauge value in the store");
	tap_eq(writers, 1, "one live writer contributes");
	tap_eq(store_gauge(store, "listeners", NULL), 9, "sgauge value in the store");
	tap_eq(tally_writebehind_unflushed_counter(wb, "views", 5, &amount), TALLY_OK,
	       "unflushed counter");
	tap_eq(amount, 0, "nothing unflushed after a flush");
	tally_counter_add(&views, 42);
	tally_writebehind_unflushed_counter(wb, "views", 5, &amount);
	tap_eq(amount, 42, "unflushed counts the new increments exactly");
	tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER);
	stats = stats_of(wb);
	tap_ok(stats.flushes >= 2 && stats.keys_written >= 4 && stats.rows_written > 0,
	       "stats count flushes, keys and rows (%" PRId64 ", %" PRId64 ", %" PRId64 ")",
	       stats.flushes, stats.keys_written, stats.rows_written);
	tap_ok(stats.writer_open && stats.epoch >= 1 && stats.last_seq >= 2,
	       "stats: writer open, epoch %" PRIu64 ", seq %" PRIu64, stats.epoch, stats.last_seq);
	tap_ok(stats.flush_latency_p50_us > 0 && stats.flush_latency_p99_us >=
						 stats.flush_latency_p50_us,
	       "latency p50 %" PRId64 " us <= p99 %" PRId64 " us", stats.flush_latency_p50_us,
	       stats.flush_latency_p99_us);
	/* removal ships the last delta; the counter is not touched after */
	tally_counter_add(&views, 8);
	tap_eq(tally_writebehind_remove_counter(wb, "views", 5), TALLY_OK, "remove counter");
	tally_counter_add(&views, 1000000); /* not registered any more */
	tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER);
	tap_eq(store_counter(store, "views"), 1050, "the removed counter's last delta landed");
	tap_eq(tally_writebehind_remove_gauge(wb, "views", 5), TALLY_OK, "remove gauge");
	tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER);
	tap_eq(store_gauge(store, "views", NULL), 0, "a removed gauge contributes 0");
	tap_eq(tally_writebehind_destroy(wb), TALLY_OK, "destroy");
	tap_eq(store_gauge(store, "listeners", NULL), 0, "writer closed: its gauges left");
	tally_sgauge_destroy(&sgauge);
	tally_gauge_destroy(&gauge);
	tally_counter_destroy(&views);
	tally_store_close(store);
}

/* ---- many threads x many keys x concurrent flushes --------------------------------------- */

#define KEYS 64
#define ADDERS 3
#define ADDS_PER_THREAD 20000

struct many {
	struct tally_counter counters[KEYS];
	struct tally_writebehind *wb;
	atomic_int adders_left;
	atomic_int flush_errors;
};

/* Adds until ADDS_PER_THREAD are done and at least 10 flushes overlapped the adds (bounded:
 * at most 50 times as many adds). */
static void *adder(struct test_thread *self)
{
	struct many *many = self->shared;
	uint32_t state = 2463534242u + (uint32_t)self->index;
	bool enough = false;

	for (int i = 0; i < 50 * ADDS_PER_THREAD && !(enough && i >= ADDS_PER_THREAD); i++) {
		state ^= state << 13, state ^= state >> 17, state ^= state << 5;
		tally_counter_add(&many->counters[state % KEYS], 1 + (int64_t)(state % 3));
		if (i % 1000 == 0) {
			enough = stats_of(many->wb).flushes >= 10;
			sleep_ms(1);
		}
	}
	atomic_fetch_sub(&many->adders_left, 1);
	return NULL;
}

static void *flush_caller(struct test_thread *self)
{
	struct many *many = self->shared;

	while (atomic_load(&many->adders_left) > 0)
		if (tally_writebehind_flush(many->wb, 5000) != TALLY_OK)
			atomic_fetch_add(&many->flush_errors, 1);
	return NULL;
}

static void *many_body(struct test_thread *self)
{
	return self->index < ADDERS ? adder(self) : flush_caller(self);
}

static void test_many_threads(void)
{
	static struct many many;
	struct test_thread threads[ADDERS + 2];
	char url[512], key[16];
	struct tally_store *store;
	int64_t want, got;
	int wrong = 0;

	new_url(url, sizeof(url), false);
	store = open_store(url, "many", 0);
	many.wb = start(store, NULL);
	atomic_init(&many.adders_left, ADDERS);
	atomic_init(&many.flush_errors, 0);
	for (int k = 0; k < KEYS; k++) {
		tally_counter_init(&many.counters[k], 8);
		snprintf(key, sizeof(key), "k%d", k);
		tally_writebehind_add_counter(many.wb, key, strlen(key), &many.counters[k]);
	}
	run_threads(ADDERS + 2, many_body, &many, threads);
	tap_eq(tally_writebehind_flush(many.wb, TALLY_WRITEBEHIND_FOREVER), TALLY_OK,
	       "final flush");
	tap_eq(atomic_load(&many.flush_errors), 0, "concurrent flushes all succeeded");
	for (int k = 0; k < KEYS; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		tally_counter_read(&many.counters[k], &want);
		got = store_counter(store, key);
		if (got != want) {
			printf("# %s: store %" PRId64 ", counter %" PRId64 "\n", key, got, want);
			wrong++;
		}
	}
	tap_eq(wrong, 0, "%d threads x %d keys x concurrent flushes: every store total exact",
	       ADDERS, KEYS);
	tap_ok(stats_of(many.wb).flushes >= 10, "flushes overlapped the adds (%" PRId64 ")",
	       stats_of(many.wb).flushes);
	tally_writebehind_destroy(many.wb);
	for (int k = 0; k < KEYS; k++)
		tally_counter_destroy(&many.counters[k]);
	tally_store_close(store);
}

/* ---- faults: every ambiguous case retried, nothing applied twice ------------------------- */

static void run_fault(const char *name, enum store_fault_mode mode, int err, int count)
{
	struct store_fault_plan plan = { .mode = mode, .err = err, .count = count,
					 .hang_ms = 60 };
	struct store_fault_counts counts;
	struct tally_writebehind_stats stats;
	char url[512];
	struct tally_store *store, *reader;
	struct tally_writebehind *wb;
	struct tally_counter counter;
	int64_t total = 0;

	new_url(url, sizeof(url), true);
	store = open_store(url, name, 0);
	reader = open_store(plain(url), "reader", 0);
	wb = start(store, NULL);
	tally_counter_init(&counter, 4);
	tally_writebehind_add_counter(wb, "c", 1, &counter);
	tally_counter_add(&counter, 10);
	tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER); /* writer open, seq 1 */
	store_fault_reset_counts();
	store_fault_set(&plan);
	for (int round = 0; round < 5; round++) {
		tally_counter_add(&counter, 100 + round);
		if (tally_writebehind_flush(wb, 5000) != TALLY_OK)
			printf("# %s: flush round %d failed\n", name, round);
	}
	store_fault_counts(&counts);
	store_fault_set(NULL);
	tally_counter_read(&counter, &total);
	stats = stats_of(wb);
	tap_eq(store_counter(reader, "c"), total, "%s: store total exact after every fault", name);
	tap_eq(counts.faults_left, 0, "%s: every planned fault was hit", name);
	tap_ok(stats.retries >= count, "%s: %d faults, %" PRId64 " re-sends", name, count,
	       stats.retries);
	if (mode != STORE_FAULT_BEFORE)
		tap_ok(stats.already_applied >= 1,
		       "%s: a re-send of a landed flush was acknowledged without effect (%" PRId64
		       ")", name, stats.already_applied);
	tap_eq(counts.flushes_applied, 5, "%s: 5 flushes applied once each (of %" PRId64
	       " passed on)", name, counts.flushes_passed);
	tally_writebehind_destroy(wb);
	tally_counter_destroy(&counter);
	tally_store_close(reader);
	tally_store_close(store);
}

static void test_faults(void)
{
	run_fault("fail before", STORE_FAULT_BEFORE, TALLY_EUNAVAIL, 3);
	run_fault("commit then EUNAVAIL", STORE_FAULT_AFTER, TALLY_EUNAVAIL, 3);
	run_fault("commit then ETIMEDOUT", STORE_FAULT_AFTER, TALLY_ETIMEDOUT, 2);
	run_fault("hang past the timeout", STORE_FAULT_HANG, 0, 2);
	run_fault("busy N times", STORE_FAULT_BEFORE, TALLY_EBUSY, 6);
}

/* A permanent error goes to on_error, flush reports it, and the flusher does not spin. */
static atomic_int errors_seen;

static void count_error(int err, const char *text, void *arg)
{
	if (err == TALLY_EPERM && strstr(text, "fault"))
		atomic_fetch_add(&errors_seen, 1);
}

static void test_permanent(void)
{
	struct store_fault_plan plan = { .mode = STORE_FAULT_BEFORE, .err = TALLY_EPERM,
					 .count = -1 };
	struct tally_writebehind_config config = { .interval_ms = 5, .backoff_base_ms = 2,
						   .backoff_cap_ms = 150, .on_error = count_error };
	char url[512];
	struct tally_store *store;
	struct tally_writebehind *wb;
	struct tally_counter counter;
	struct store_fault_counts counts;

	new_url(url, sizeof(url), true);
	store = open_store(url, "permanent", 0);
	wb = start(store, &config);
	tally_counter_init(&counter, 4);
	tally_writebehind_add_counter(wb, "p", 1, &counter);
	tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER);
	store_fault_reset_counts();
	store_fault_set(&plan);
	tally_counter_add(&counter, 5);
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_EPERM, "flush reports a permanent error");
	sleep_ms(400);
	store_fault_counts(&counts);
	tap_ok(counts.failed_before >= 2 && counts.failed_before <= 5,
	       "retried at the backoff cap, not in a loop (%" PRId64 " tries in ~0.4 s)",
	       counts.failed_before);
	tap_ok(atomic_load(&errors_seen) >= 1, "on_error got EPERM with the store's text");
	tap_eq(stats_of(wb).last_error, TALLY_EPERM, "stats.last_error");
	store_fault_set(NULL);
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "flush succeeds once the store does");
	tap_eq(store_counter(store, "p"), 5, "nothing lost");
	tally_writebehind_destroy(wb);
	tally_counter_destroy(&counter);
	tally_store_close(store);
}

/* ---- the store down, then back -------------------------------------------------------------- */

static void test_outage(void)
{
	struct store_fault_plan down = { .mode = STORE_FAULT_BEFORE, .err = TALLY_EIO,
					 .count = -1, .calls = STORE_FAULT_WRITER_CALLS };
	char url[512];
	struct tally_store *store, *reader;
	struct tally_writebehind *wb;
	struct tally_counter counter;
	struct tally_writebehind_stats stats;
	int64_t amount = 0;

	new_url(url, sizeof(url), true);
	store = open_store(url, "outage", 0);
	reader = open_store(plain(url), "reader", 0);
	wb = start(store, NULL);
	tally_counter_init(&counter, 4);
	tally_writebehind_add_counter(wb, "o", 1, &counter);
	tally_counter_add(&counter, 1);
	tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER);
	store_fault_set(&down);
	for (int i = 0; i < 50; i++) {
		tally_counter_add(&counter, 10);
		sleep_ms(2);
	}
	tap_eq(tally_writebehind_flush(wb, 100), TALLY_ETIMEDOUT, "store down: flush times out");
	tally_writebehind_unflushed_counter(wb, "o", 1, &amount);
	tap_eq(amount, 500, "store down: the exact unflushed amount is kept");
	stats = stats_of(wb);
	tap_ok(stats.lag_ms >= 100, "lag grows while the store is down (%" PRId64 " ms)",
	       stats.lag_ms);
	tap_ok(stats.transient_errors >= 2 && stats.last_error == TALLY_EIO,
	       "transient errors counted (%" PRId64 "), last EIO", stats.transient_errors);
	tap_eq(store_counter(reader, "o"), 1, "store down: nothing new in the store");
	store_fault_set(NULL);
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "store back: flush succeeds");
	tap_eq(store_counter(reader, "o"), 501, "store back: nothing lost, nothing doubled");
	tap_ok(stats_of(wb).lag_ms < 1000, "lag back down");
	tally_writebehind_destroy(wb);
	tally_counter_destroy(&counter);
	tally_store_close(reader);
	tally_store_close(store);
}

/* The store is down before the first writer open: create does not wait, and nothing is lost
 * once it is back. */
static void test_down_at_start(void)
{
	struct store_fault_plan down = { .mode = STORE_FAULT_BEFORE, .err = TALLY_EUNAVAIL,
					 .count = -1, .calls = STORE_FAULT_WRITER_CALLS };
	char url[512];
	struct tally_store *store;
	struct tally_writebehind *wb;
	struct tally_counter counter;

	new_url(url, sizeof(url), true);
	store = open_store(url, "late", 0);
	store_fault_set(&down);
	wb = start(store, NULL);
	tap_ok(wb != NULL, "create with the store down");
	tally_counter_init(&counter, 4);
	tally_writebehind_add_counter(wb, "late", 4, &counter);
	tally_counter_add(&counter, 31);
	tap_eq(tally_writebehind_flush(wb, 60), TALLY_ETIMEDOUT, "no writer yet: flush waits");
	tap_ok(!stats_of(wb).writer_open, "no writer open while the store is down");
	store_fault_set(NULL);
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "the writer opens once it is back");
	tap_eq(store_counter(store, "late"), 31, "nothing lost");
	tally_writebehind_destroy(wb);
	tally_counter_destroy(&counter);
	tally_store_close(store);
}

/* ---- fencing ---------------------------------------------------------------------------- */

static atomic_int fence_reports;

static void note_fence(int err, const char *text, void *arg)
{
	if (err == TALLY_EFENCED && strstr(text, "unresolved"))
		atomic_fetch_add(&fence_reports, 1);
}

enum fencer { BY_INTRUDER, BY_REAP };

/* The writer is fenced while a flush is unresolved (another handle opens its id, or its
 * lease runs out and a reaper takes it): the new epoch counts what landed once, re-sends
 * what did not, and republishes the gauges. */
static void run_fence(const char *name, const struct store_fault_plan *plan,
		      enum fencer fencer, bool landed, const struct store_fault_plan *after_fence)
{
	struct tally_writebehind_config config = { .interval_ms = 5, .backoff_base_ms = 2,
						   .backoff_cap_ms = 40, .heartbeat_ms = 50,
						   .on_error = note_fence };
	char url[512];
	struct tally_store *store, *other;
	struct tally_writebehind *wb;
	struct tally_counter counter;
	struct tally_gauge gauge;
	struct tally_writebehind_stats stats;
	int64_t writers = 0, reaped = 0;

	new_url(url, sizeof(url), true);
	store = open_store(url, "fenced", fencer == BY_REAP ? 150 : 0);
	other = open_store(plain(url), "fenced", 0);
	wb = start(store, &config);
	atomic_store(&fence_reports, 0);
	tally_counter_init(&counter, 4);
	tally_gauge_init(&gauge, 7, 0, TALLY_GAUGE_NO_CEILING);
	tally_writebehind_add_counter(wb, "f", 1, &counter);
	tally_writebehind_add_gauge(wb, "g", 1, &gauge);
	tally_counter_add(&counter, 3);
	tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER);
	store_fault_set(plan);
	tally_counter_add(&counter, 40);
	tap_eq(tally_writebehind_flush(wb, 80), TALLY_ETIMEDOUT, "%s: flush unresolved", name);
	if (fencer == BY_INTRUDER) {
		tap_eq(tally_store_writer_open(other, NULL), TALLY_OK,
		       "%s: another handle opens the same writer id", name);
	} else {
		sleep_ms(250); /* past the 150 ms lease: no call renews it while it fails */
		tally_store_reap(other, &reaped);
		tap_eq(reaped, 1, "%s: the writer's lease ran out and it was reaped", name);
	}
	tap_eq(store_gauge(other, "g", NULL), 0, "%s: its gauge left the store", name);
	store_fault_set(after_fence);
	tally_counter_add(&counter, 500);
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "%s: flush after the fence", name);
	stats = stats_of(wb);
	tap_ok(stats.fenced >= 1 && stats.epochs >= 2, "%s: fenced %" PRId64 ", epochs %" PRId64,
	       name, stats.fenced, stats.epochs);
	if (fencer == BY_INTRUDER && landed) {
		/* store.h keeps no seq of a superseded epoch: reported, not silent */
		tap_eq(stats.fence_unresolved, 1, "%s: the unknown outcome is counted", name);
		tap_eq(atomic_load(&fence_reports), 1, "%s: ... and reported to on_error", name);
		tap_ok(store_counter(other, "f") == 543 || store_counter(other, "f") == 583,
		       "%s: total %" PRId64 " is exact or one batch over", name,
		       store_counter(other, "f"));
	} else {
		tap_eq(store_counter(other, "f"), 543, "%s: total exact (no double count, no loss)",
		       name);
		tap_eq(stats.resent_after_fence, landed ? 0 : 1, "%s: re-sent only if lost", name);
		tap_eq(stats.fence_unresolved, 0, "%s: nothing unresolved", name);
	}
	tap_eq(store_gauge(other, "g", &writers), 7, "%s: gauge republished", name);
	tap_eq(writers, 1, "%s: one live contribution", name);
	tally_writebehind_destroy(wb);
	tally_store_close(other);
	tally_gauge_destroy(&gauge);
	tally_counter_destroy(&counter);
	tally_store_close(store);
}

static void test_fencing(void)
{
	const struct store_fault_plan lost = { .mode = STORE_FAULT_BEFORE, .err = TALLY_EIO,
					       .count = -1 };
	const struct store_fault_plan lost_ambiguous = { .mode = STORE_FAULT_BEFORE,
							 .count = -1 };
	const struct store_fault_plan landed = { .mode = STORE_FAULT_AFTER, .count = 1,
						 .then_down = true };

	/* the new epoch's open commits but its reply is lost: the retry opens yet another
	 * epoch, whose prior is the lost one, so only the look before the first open can
	 * tell that the fenced batch landed */
	const struct store_fault_plan open_reply_lost = { .mode = STORE_FAULT_AFTER, .count = 1,
							  .calls = STORE_FAULT_WRITER_OPEN };

	run_fence("intruder, batch lost", &lost, BY_INTRUDER, false, NULL);
	run_fence("intruder, outcome unknown", &landed, BY_INTRUDER, true, NULL);
	run_fence("reaped, batch lost", &lost_ambiguous, BY_REAP, false, NULL);
	run_fence("reaped, batch landed", &landed, BY_REAP, true, NULL);
	run_fence("reaped, batch landed, open reply lost", &landed, BY_REAP, true,
		  &open_reply_lost);
	run_fence("reaped, batch lost, open reply lost", &lost_ambiguous, BY_REAP, false,
		  &open_reply_lost);
}

/* ---- gauges over several writers --------------------------------------------------------- */

static void test_gauges_writers(void)
{
	struct store_fault_plan b_down = { .mode = STORE_FAULT_BEFORE, .count = -1,
					   .calls = STORE_FAULT_WRITER_CALLS };
	struct tally_writebehind_config config = { .interval_ms = 5, .backoff_base_ms = 2,
						   .backoff_cap_ms = 40, .heartbeat_ms = 50,
						   .shutdown_timeout_ms = 100 };
	char url[512];
	struct tally_store *a_store, *b_store;
	struct tally_writebehind *a, *b;
	struct tally_gauge a_gauge, b_gauge;
	int64_t writers = 0, reaped = 0;

	new_url(url, sizeof(url), true);
	a_store = open_store(plain(url), "writer-a", 0);
	b_store = open_store(url, "writer-b", 300);
	a = start(a_store, NULL);
	b = start(b_store, &config);
	tally_gauge_init(&a_gauge, 3, 0, TALLY_GAUGE_NO_CEILING);
	tally_gauge_init(&b_gauge, 4, 0, TALLY_GAUGE_NO_CEILING);
	tally_writebehind_add_gauge(a, "room", 4, &a_gauge);
	tally_writebehind_add_gauge(b, "room", 4, &b_gauge);
	tally_writebehind_flush(a, TALLY_WRITEBEHIND_FOREVER);
	tally_writebehind_flush(b, TALLY_WRITEBEHIND_FOREVER);
	tap_eq(store_gauge(a_store, "room", &writers), 7, "global gauge: the sum of two writers");
	tap_eq(writers, 2, "two live writers");
	tally_gauge_dec(&b_gauge, NULL);
	tally_writebehind_flush(b, TALLY_WRITEBEHIND_FOREVER);
	tap_eq(store_gauge(a_store, "room", NULL), 6, "a writer's new value replaces its old one");
	store_fault_set(&b_down); /* b is cut off: its lease (300 ms) runs out */
	sleep_ms(450);
	tap_eq(tally_store_reap(a_store, &reaped), TALLY_OK, "reap");
	tap_eq(reaped, 1, "the dead writer was reaped");
	tap_eq(store_gauge(a_store, "room", &writers), 3, "its contribution left the global value");
	tap_eq(writers, 1, "one live writer");
	store_fault_set(NULL);
	tap_eq(tally_writebehind_flush(b, 5000), TALLY_OK, "the reaped writer flushes again");
	tap_ok(stats_of(b).fenced >= 1, "... after a fence (new epoch)");
	tap_eq(store_gauge(a_store, "room", &writers), 6, "... and republished its gauge");
	tally_writebehind_destroy(b);
	tally_writebehind_destroy(a);
	tally_gauge_destroy(&a_gauge);
	tally_gauge_destroy(&b_gauge);
	tally_store_close(b_store);
	tally_store_close(a_store);
}

/* ---- session records ---------------------------------------------------------------------- */

struct visit_count {
	int64_t rows, listeners;
	bool active;
	char speaker[TALLY_SESSION_ID_MAX + 1];
};

static int count_session(const struct tally_session_info *session, const char *writer_id,
			 uint64_t epoch, void *arg)
{
	struct visit_count *count = arg;

	count->rows++;
	count->listeners = session->listener_count;
	count->active = session->active;
	snprintf(count->speaker, sizeof(count->speaker), "%s", session->speaker_connection_id);
	return 0;
}

static int count_connection(const struct tally_connection_info *connection,
			    const char *writer_id, uint64_t epoch, void *arg)
{
	((struct visit_count *)arg)->rows++;
	return 0;
}

static struct visit_count sessions_in(struct tally_store *store)
{
	struct visit_count count = { 0 };

	tally_store_sessions(store, NULL, count_session, &count);
	return count;
}

static int64_t connections_in(struct tally_store *store, const char *session_id)
{
	struct visit_count count = { 0 };

	tally_store_connections(store, session_id, count_connection, &count);
	return count.rows;
}

static int join(struct tally_session_table *table, const char *session, int i)
{
	char id[32];
	struct tally_connection_params params = { .connection_id = id, .session_id = session,
						  .target_language = i % 2 ? "fr" : "de" };

	snprintf(id, sizeof(id), "%s-l%d", session, i);
	return tally_session_join(table, &params);
}

static int leave(struct tally_session_table *table, const char *session, int i)
{
	char id[32];

	snprintf(id, sizeof(id), "%s-l%d", session, i);
	return tally_session_leave(table, id);
}

static void create_session(struct tally_session_table *table, const char *id)
{
	struct tally_session_params params = { .session_id = id, .speaker_connection_id = "spk",
					       .source_language = "en" };

	tally_session_create(table, &params);
}

static void test_sessions(void)
{
	char url[512];
	struct tally_store *store;
	struct tally_writebehind *wb;
	struct tally_session_table *table;
	struct visit_count seen;
	int64_t keys_before, flushes_before, flushes, records;

	new_url(url, sizeof(url), false);
	store = open_store(url, "sessions", 0);
	wb = start(store, NULL);
	tally_session_table_create(&table, NULL);
	create_session(table, "early"); /* before the attach: found by its walk */
	tap_eq(tally_writebehind_add_sessions(wb, table), TALLY_OK, "attach a session table");
	tap_eq(tally_writebehind_add_sessions(wb, table), TALLY_EEXIST, "attach twice: EEXIST");
	tap_eq(tally_session_table_destroy(table), TALLY_EBUSY,
	       "a table cannot be destroyed while attached");
	create_session(table, "s1");
	for (int i = 0; i < 50; i++)
		join(table, "s1", i);
	for (int i = 0; i < 20; i++)
		leave(table, "s1", i);
	tally_session_set_speaker(table, "s1", "spk2");
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "flush records");
	seen = sessions_in(store);
	tap_eq(seen.rows, 2, "both sessions written");
	tap_eq(connections_in(store, "s1"), 30, "30 connections written (50 joins, 20 leaves)");
	tap_eq(connections_in(store, "early"), 0, "none for the early session");
	seen = sessions_in(store);
	tap_ok(strcmp(seen.speaker, "spk2") == 0 || strcmp(seen.speaker, "spk") == 0,
	       "the speaker change is in the store");
	/* coalescing: 500 join/leave cycles of one id, the count moving each time: every
	 * flush that ran meanwhile wrote at most the two keys (the session, the connection) */
	tally_writebehind_flush(wb, 5000);
	keys_before = stats_of(wb).keys_written;
	flushes_before = stats_of(wb).flushes;
	for (int round = 0; round < 500; round++) {
		join(table, "s1", 1000);
		leave(table, "s1", 1000);
	}
	tally_writebehind_flush(wb, 5000);
	flushes = stats_of(wb).flushes - flushes_before;
	records = stats_of(wb).keys_written - keys_before;
	tap_ok(records <= 2 * flushes && flushes < 100,
	       "1000 changes coalesce to %" PRId64 " records in %" PRId64 " flushes", records,
	       flushes);
	tap_eq(connections_in(store, "s1"), 30, "the churned connection is not in the store");
	tally_session_speaker_disconnect(table, "s1", NULL, NULL, NULL);
	tally_writebehind_flush(wb, 5000);
	tap_eq(connections_in(store, "s1"), 0, "speaker disconnect: connections deleted");
	tally_session_delete(table, "s1", NULL);
	tally_session_delete(table, "early", NULL);
	tally_writebehind_flush(wb, 5000);
	tap_eq(sessions_in(store).rows, 0, "deleted sessions deleted from the store");
	tap_eq(tally_writebehind_remove_sessions(wb, table), TALLY_OK, "detach");
	tap_eq(tally_writebehind_remove_sessions(wb, table), TALLY_ENOTFOUND, "detach twice");
	tally_writebehind_destroy(wb);
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "destroy the detached table");
	tally_store_close(store);
}

/* Listener count and fields as the store holds them after concurrent joins and leaves. */
struct churn {
	struct tally_session_table *table;
};

static void *churner(struct test_thread *self)
{
	struct churn *churn = self->shared;

	for (int round = 0; round < 300; round++) {
		int i = self->index * 1000 + round % 40;

		if (join(churn->table, "hot", i) != TALLY_OK)
			leave(churn->table, "hot", i);
	}
	return NULL;
}

static void test_sessions_concurrent(void)
{
	char url[512];
	struct tally_store *store;
	struct tally_writebehind *wb;
	struct tally_session_table *table;
	struct test_thread threads[3];
	struct churn churn;
	struct visit_count seen;
	int64_t listeners = 0;

	new_url(url, sizeof(url), false);
	store = open_store(url, "churn", 0);
	wb = start(store, NULL);
	tally_session_table_create(&table, NULL);
	tally_writebehind_add_sessions(wb, table);
	create_session(table, "hot");
	churn.table = table;
	run_threads(3, churner, &churn, threads);
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "flush after concurrent churn");
	tally_session_listener_count(table, "hot", &listeners);
	seen = sessions_in(store);
	tap_eq(seen.listeners, listeners, "store listener count = the table's (%" PRId64 ")",
	       listeners);
	tap_eq(connections_in(store, "hot"), listeners, "store connections = the table's");
	tally_session_delete(table, "hot", NULL);
	tally_writebehind_destroy(wb); /* detaches, flushing the delete first */
	tap_eq(sessions_in(store).rows, 0, "destroy flushed the last delete");
	tally_session_table_destroy(table);
	tally_store_close(store);
}

/* A table detached (and destroyed) while its changes wait for a store that is down: they
 * were copied out at the detach and still reach the store. */
static void test_detach_pending(void)
{
	struct store_fault_plan down = { .mode = STORE_FAULT_BEFORE, .count = -1,
					 .calls = STORE_FAULT_WRITER_CALLS };
	char url[512];
	struct tally_store *store, *reader;
	struct tally_writebehind *wb;
	struct tally_session_table *table;

	new_url(url, sizeof(url), true);
	store = open_store(url, "detached", 0);
	reader = open_store(plain(url), "reader", 0);
	wb = start(store, NULL);
	tally_writebehind_flush(wb, 5000); /* writer open */
	tally_session_table_create(&table, NULL);
	tally_writebehind_add_sessions(wb, table);
	store_fault_set(&down);
	create_session(table, "gone");
	for (int i = 0; i < 3; i++)
		join(table, "gone", i);
	tap_eq(tally_writebehind_remove_sessions(wb, table), TALLY_OK, "detach with the store down");
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "destroy the detached table");
	store_fault_set(NULL);
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "flush once the store is back");
	tap_eq(sessions_in(reader).rows, 1, "the detached table's session reached the store");
	tap_eq(sessions_in(reader).listeners, 3, "... with its listener count");
	tap_eq(connections_in(reader, "gone"), 3, "... and its connections");
	tally_writebehind_destroy(wb);
	tally_store_close(reader);
	tally_store_close(store);
}

/* ---- the tombstone bound ---------------------------------------------------------------- */

static atomic_int backpressure_calls;

static void note_backpressure(size_t tombstones, void *arg)
{
	atomic_fetch_add(&backpressure_calls, 1);
}

static void test_backpressure(void)
{
	struct store_fault_plan down = { .mode = STORE_FAULT_BEFORE, .count = -1,
					 .calls = STORE_FAULT_WRITER_CALLS };
	struct tally_writebehind_config config = { .interval_ms = 5, .backoff_base_ms = 2,
						   .backoff_cap_ms = 40, .heartbeat_ms = 50,
						   .max_pending_tombstones = 10,
						   .on_backpressure = note_backpressure };
	char url[512];
	struct tally_store *store, *reader;
	struct tally_writebehind *wb;
	struct tally_session_table *table;
	struct tally_writebehind_stats stats;
	int waited = 0;

	new_url(url, sizeof(url), true);
	store = open_store(url, "bounded", 0);
	reader = open_store(plain(url), "reader", 0);
	wb = start(store, &config);
	tally_session_table_create(&table, NULL);
	tally_writebehind_add_sessions(wb, table);
	create_session(table, "b");
	for (int i = 0; i < 60; i++)
		join(table, "b", i);
	tally_writebehind_flush(wb, 5000);
	tap_eq(connections_in(reader, "b"), 60, "60 connections in the store");
	store_fault_set(&down);
	for (int i = 0; i < 60; i++)
		leave(table, "b", i);
	sleep_ms(50);
	stats = stats_of(wb);
	tap_ok(stats.pending_tombstones <= 10, "pending tombstones stay within the bound (%" PRId64
	       ")", stats.pending_tombstones);
	tap_ok(stats.backpressure && stats.backpressure_events == 1,
	       "backpressure reported in stats");
	tap_eq(atomic_load(&backpressure_calls), 1, "on_backpressure called once");
	store_fault_set(NULL);
	while (stats_of(wb).backpressure && waited++ < 500)
		sleep_ms(10);
	tap_ok(!stats_of(wb).backpressure, "the reconcile ended the episode");
	tap_eq(tally_writebehind_flush(wb, 5000), TALLY_OK, "flush after the outage");
	tap_eq(connections_in(reader, "b"), 0, "every deleted connection left the store");
	tap_eq(sessions_in(reader).listeners, 0, "listener count 0 in the store");
	tally_writebehind_destroy(wb);
	tally_session_table_destroy(table);
	tally_store_close(reader);
	tally_store_close(store);
}

/* ---- shutdown ------------------------------------------------------------------------------ */

static void test_shutdown(void)
{
	char url[512];
	struct tally_store *store;
	struct tally_writebehind *wb;
	struct tally_counter counter;
	struct tally_writebehind_config slow = { .interval_ms = 60000 }; /* only shutdown flushes */

	new_url(url, sizeof(url), false);
	store = open_store(url, "shutdown", 0);
	wb = start(store, &slow);
	tally_counter_init(&counter, 4);
	tally_writebehind_add_counter(wb, "s", 1, &counter);
	tally_counter_add(&counter, 77);
	tap_eq(tally_writebehind_destroy(wb), TALLY_OK, "destroy with an interval of a minute");
	tap_eq(store_counter(store, "s"), 77, "shutdown flushed everything");
	tally_counter_destroy(&counter);
	tally_store_close(store);
}

/* ---- a crash (kill -9) --------------------------------------------------------------------- */

#define CRASH_STEP 500

/* The child: counts, and after every CRASH_STEP adds waits for a flush and reports how many
 * adds are acknowledged. Killed by the parent at some point. */
static void crash_child(const char *url, int report_fd)
{
	struct tally_store *store = open_store(url, "crash", 0);
	struct tally_writebehind *wb = start(store, NULL);
	struct tally_counter counter;

	tally_counter_init(&counter, 4);
	tally_writebehind_add_counter(wb, "crash", 5, &counter);
	for (int64_t added = 1; added <= 100000000; added++) {
		tally_counter_inc(&counter);
		if (added % CRASH_STEP == 0 &&
		    tally_writebehind_flush(wb, TALLY_WRITEBEHIND_FOREVER) == TALLY_OK &&
		    write(report_fd, &added, sizeof(added)) != sizeof(added))
			_exit(2);
	}
	_exit(3); /* not reached within the test's time */
}

/* Forks before any RCU use in this process (tally/rcu.h's rule for fork without exec). */
static void test_crash(void)
{
	char url[512];
	int fds[2];
	int64_t acked = 0, value, reports = 0, total;
	struct tally_store *store;
	pid_t child;

	new_url(url, sizeof(url), false);
	if (pipe(fds) != 0 || (child = fork()) < 0) {
		tap_ok(0, "crash: pipe/fork");
		return;
	}
	if (child == 0) {
		close(fds[0]);
		crash_child(url, fds[1]);
	}
	close(fds[1]);
	while (reports < 8 && read(fds[0], &value, sizeof(value)) == sizeof(value))
		acked = value, reports++;
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	while (read(fds[0], &value, sizeof(value)) == sizeof(value))
		acked = value; /* reports written before the kill */
	close(fds[0]);
	store = open_store(url, "reader", 0);
	total = store_counter(store, "crash");
	tap_ok(reports == 8, "crash: the child acknowledged flushes (%" PRId64 " adds)", acked);
	tap_ok(total >= acked && total <= acked + CRASH_STEP,
	       "kill -9: store total %" PRId64 " keeps every acknowledged add (%" PRId64
	       ") and loses at most what came after (< %d)", total, acked, CRASH_STEP);
	tally_store_close(store);
}

int main(void)
{
	char cmd[300];

	snprintf(tmpdir, sizeof(tmpdir), "%s/tally-wb-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp failed\n");
		return 1;
	}
	if (store_fault_register() != TALLY_OK) {
		printf("Bail out! fault backend\n");
		return 1;
	}
	test_crash(); /* first: it forks */
	test_basics();
	test_many_threads();
	test_faults();
	test_permanent();
	test_outage();
	test_down_at_start();
	test_fencing();
	test_gauges_writers();
	test_sessions();
	test_sessions_concurrent();
	test_detach_pending();
	test_backpressure();
	test_shutdown();
	tally_rcu_barrier();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	return tap_done();
}
