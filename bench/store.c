/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/store.c: flush capacity of the SQLite store backend: dirty keys per second that one
 * handle writes in batches of 1,000 and 10,000 keys per flush (issue 13's target: >= 200,000
 * keys/s), against what a good engineer would write in a day, in the same program and run.
 *
 * storeflush family (one iteration = one flush of N counter deltas, N = the argument; items
 * are keys, so items_per_second is dirty keys per second):
 *   tally          tally_store_flush, synchronous=FULL (the default): argument checks, the
 *                  duplicate-key check, fencing and the writer row (exactly once), one
 *                  BEGIN IMMEDIATE transaction and one WAL fsync per flush
 *   tally_normal   the same with synchronous=normal (no fsync per commit; see docs/store.md)
 *   sqlite_upsert  the peer: the same file settings (WAL, FULL), one prepared
 *                  INSERT ... ON CONFLICT DO UPDATE SET total = total + excluded.total per
 *                  key inside BEGIN IMMEDIATE / COMMIT, with no validation, no fencing and no
 *                  exactly-once bookkeeping (at-least-once: a retried batch doubles)
 * Every flush writes the same N keys (a flusher's dirty set recurs), each +1, so after the
 * run every key's total must equal the flush count: checked, or the run reports an error.
 * Counters: rows_per_flush, and flush latency p50_us / p99_us measured per flush.
 */
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tally/store.h>

#include "harness.h"

#define MAX_FLUSHES 100000

static char dir[256];
static char path[320];
static char (*names)[40];
static struct tally_store_delta *deltas;
static double *latencies_us;

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void report(struct bench_state *state, int64_t keys, int64_t flushes)
{
	qsort(latencies_us, (size_t)flushes, sizeof(double), compare_double);
	bench_set_items_processed(state, keys * flushes);
	bench_counter(state, "rows_per_flush", (double)keys, BENCH_COUNTER_DEFAULT);
	bench_counter(state, "p50_us", latencies_us[flushes / 2], BENCH_COUNTER_DEFAULT);
	bench_counter(state, "p99_us", latencies_us[flushes * 99 / 100], BENCH_COUNTER_DEFAULT);
}

static void setup(const struct bench_state *state)
{
	int64_t keys = bench_range(state, 0);
	static int run;

	snprintf(path, sizeof(path), "%s/run%d.db", dir, ++run);
	names = calloc((size_t)keys, sizeof(*names));
	deltas = calloc((size_t)keys, sizeof(*deltas));
	latencies_us = calloc(MAX_FLUSHES, sizeof(*latencies_us));
	for (int64_t i = 0; i < keys; i++) {
		snprintf(names[i], sizeof(names[i]), "tenant-%03d/views/%06" PRId64,
			 (int)(i % 100), i);
		deltas[i] = (struct tally_store_delta){ names[i], strlen(names[i]), 1 };
	}
}

static void teardown(const struct bench_state *state)
{
	char side[400];

	free(names);
	free(deltas);
	free(latencies_us);
	unlink(path);
	snprintf(side, sizeof(side), "%s-wal", path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", path);
	unlink(side);
}

/* Every key's total equals the number of flushes. */
struct exact_check {
	int64_t want, wrong, seen;
};

static int check_total(const char *key, size_t key_len, int64_t total, void *arg)
{
	struct exact_check *check = arg;

	check->seen++;
	check->wrong += total != check->want;
	return 0;
}

static void run_tally(struct bench_state *state, const char *options)
{
	struct tally_store_options opts = { .writer_id = "bench", .create_schema = true };
	int64_t keys = bench_range(state, 0), flushes = 0;
	struct tally_store_batch batch = { .counters = deltas, .counter_count = (size_t)keys };
	struct exact_check check = { 0 };
	struct tally_store *store;
	char url[400];

	snprintf(url, sizeof(url), "sqlite://%s%s", path, options);
	if (tally_store_open(&store, url, &opts) || tally_store_writer_open(store, NULL)) {
		bench_skip_with_error(state, "cannot open the store");
		return;
	}
	while (bench_keep_running(state)) {
		double start = now_us();

		batch.seq = (uint64_t)flushes + 1;
		if (flushes == MAX_FLUSHES || tally_store_flush(store, &batch, NULL)) {
			bench_skip_with_error(state, "flush failed");
			break;
		}
		latencies_us[flushes++] = now_us() - start;
	}
	check.want = flushes;
	tally_store_counters(store, check_total, &check);
	if (check.wrong || check.seen != keys)
		bench_skip_with_error(state, "store totals are not exact");
	tally_store_close(store);
	report(state, keys, flushes);
}

static void bm_storeflush_tally(struct bench_state *state)
{
	run_tally(state, "");
}

static void bm_storeflush_tally_normal(struct bench_state *state)
{
	run_tally(state, "?synchronous=normal");
}

/* The peer's one flush: a transaction of prepared upserts. */
static int peer_flush(sqlite3 *db, sqlite3_stmt *upsert, int64_t keys)
{
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	for (int64_t i = 0; i < keys; i++) {
		sqlite3_bind_text(upsert, 1, deltas[i].key, (int)deltas[i].key_len, SQLITE_STATIC);
		sqlite3_bind_int64(upsert, 2, deltas[i].delta);
		if (sqlite3_step(upsert) != SQLITE_DONE) {
			sqlite3_reset(upsert);
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		sqlite3_reset(upsert);
	}
	return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static sqlite3 *peer_open(sqlite3_stmt **upsert)
{
	sqlite3 *db;

	if (sqlite3_open(path, &db) != SQLITE_OK ||
	    sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			 "CREATE TABLE IF NOT EXISTS counters(key TEXT PRIMARY KEY,"
			 " total INTEGER NOT NULL) WITHOUT ROWID", NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO counters(key, total) VALUES(?1, ?2) "
			       "ON CONFLICT(key) DO UPDATE SET total = total + excluded.total",
			       -1, upsert, NULL) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static int64_t peer_wrong_totals(sqlite3 *db, int64_t want)
{
	sqlite3_stmt *st;
	int64_t wrong = -1;

	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM counters WHERE total != ?1", -1, &st,
			       NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, want);
		if (sqlite3_step(st) == SQLITE_ROW)
			wrong = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	return wrong;
}

static void bm_storeflush_sqlite_upsert(struct bench_state *state)
{
	int64_t keys = bench_range(state, 0), flushes = 0;
	sqlite3_stmt *upsert;
	sqlite3 *db = peer_open(&upsert);

	if (!db) {
		bench_skip_with_error(state, "cannot open the peer's database");
		return;
	}
	while (bench_keep_running(state)) {
		double start = now_us();

		if (flushes == MAX_FLUSHES || peer_flush(db, upsert, keys)) {
			bench_skip_with_error(state, "peer flush failed");
			break;
		}
		latencies_us[flushes++] = now_us() - start;
	}
	if (peer_wrong_totals(db, flushes) != 0)
		bench_skip_with_error(state, "peer totals are not exact");
	sqlite3_finalize(upsert);
	sqlite3_close(db);
	report(state, keys, flushes);
}

static void add(const char *name, bench_fn fn)
{
	struct bench_def *def = bench_register(name, fn);

	bench_def_arg(def, 1000);
	bench_def_arg(def, 10000);
	bench_def_use_real_time(def);
	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
}

int main(int argc, char **argv)
{
	int status;

	snprintf(dir, sizeof(dir), "%s/tally-bench-store-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	add("BM_storeflush_tally", bm_storeflush_tally);
	add("BM_storeflush_tally_normal", bm_storeflush_tally_normal);
	add("BM_storeflush_sqlite_upsert", bm_storeflush_sqlite_upsert);
	status = bench_main(argc, argv);
	rmdir(dir);
	return status;
}
