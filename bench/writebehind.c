/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/writebehind.c: counting with tally's write-behind flusher against the designs a user
 * would otherwise write, side by side in one program and one run, on the same SQLite file.
 *
 * BM_writebehind_<impl>/<keys>/real_time/threads:2, each iteration one increment of a key
 * drawn at random among <keys> (1 or 10,000):
 *   tally      tally_counter_inc on the key's counter, the flusher on (SQLite, every 100 ms)
 *   noflusher  the same counters, no flusher: what the flusher may cost (target: <= 5%)
 *   mutexmap   what a good engineer writes in a day: one mutex over a map of pending deltas
 *              per key (open addressing on a precomputed hash: no string hashing on the hot
 *              path, the strongest form of it), a thread that swaps the deltas out every
 *              100 ms and upserts them in one transaction (at-least-once)
 *   naive      one `UPDATE ... SET v = v + 1` per increment on the same file (WAL,
 *              synchronous FULL as tally's store), one connection per thread
 * BM_writebehindcapacity_tally/10000/real_time: one iteration = 10,000 dirty keys flushed
 *   (an increment of each, then tally_writebehind_flush): items/s = dirty keys per second
 *   one flusher writes to SQLite (target >= 200,000/s).
 *
 * BM_writebehindjoin_<impl>/1/real_time/threads:N: a listener join + leave pair on one session
 *   (as bench/session.c's BM_sessionjoin_tally), each thread its own connection id:
 *   tally      the table attached to a flusher (the change feed on: a push per connection
 *              create and delete, an OR on the session per change), SQLite every 100 ms
 *   nofeed     the same table, no flusher attached (the feed's cost when off: one load)
 *
 * Counters reported: tally: flushes_per_s, rows_per_flush, flush_p50_us, flush_p99_us (the
 * flusher's own stats); every variant: cpu_share, each thread's CPU time over its real time
 * (averaged over the threads: 1.0 means both threads had a CPU the whole run). Each run
 * checks its result (the store's totals equal the increments) and fails if it is wrong.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tally/counter.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include <tally/store.h>
#include <tally/writebehind.h>

#include "harness.h"
#include "internal/hash.h"
#include "../tests/random.h"

#define MAX_KEYS 10000
#define INTERVAL_MS 100
#define KEY_LEN 16

static char tmpdir[256];
static int run_number;
static char db_path[320];
static char keys[MAX_KEYS][KEY_LEN];
static int64_t key_count;

/* ---- shared helpers ------------------------------------------------------------------ */

static int64_t now_ns(clockid_t clock)
{
	struct timespec now;

	clock_gettime(clock, &now);
	return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static uint32_t next_random(uint32_t *state)
{
	return test_random(state);
}

/* A key index in [0, key_count) without a division. */
static uint32_t pick_key(uint32_t *state)
{
	return (uint32_t)(((uint64_t)next_random(state) * (uint64_t)key_count) >> 32);
}

static uint32_t thread_seed(const struct bench_state *state)
{
	return 2654435761u * (uint32_t)(bench_thread_index(state) + 1);
}

static void new_db(const struct bench_state *state)
{
	snprintf(db_path, sizeof(db_path), "%s/run%d.sqlite", tmpdir, ++run_number);
	key_count = bench_range(state, 0);
	for (int64_t i = 0; i < key_count; i++)
		snprintf(keys[i], KEY_LEN, "views:%05d", (int)i);
}

static void remove_db(void)
{
	char path[400];

	unlink(db_path);
	snprintf(path, sizeof(path), "%s-wal", db_path);
	unlink(path);
	snprintf(path, sizeof(path), "%s-shm", db_path);
	unlink(path);
}

/* Per-thread CPU share of the loop (see the top comment). */
struct cpu_clock {
	int64_t cpu, real;
};

static void cpu_start(struct cpu_clock *clock)
{
	clock->cpu = now_ns(CLOCK_THREAD_CPUTIME_ID);
	clock->real = now_ns(CLOCK_MONOTONIC);
}

static void cpu_report(struct bench_state *state, const struct cpu_clock *clock)
{
	double cpu = (double)(now_ns(CLOCK_THREAD_CPUTIME_ID) - clock->cpu);
	double real = (double)(now_ns(CLOCK_MONOTONIC) - clock->real);

	bench_counter(state, "cpu_share", real > 0 ? cpu / real : 0, BENCH_COUNTER_AVG_THREADS);
}

static void fail_run(struct bench_state *state, const char *what, int64_t got, int64_t want)
{
	static char message[160];

	snprintf(message, sizeof(message), "%s: got %lld, want %lld", what, (long long)got,
		 (long long)want);
	bench_skip_with_error(state, message);
}

/* ---- tally: counters, with or without the flusher --------------------------------------- */

static struct tally_counter counters[MAX_KEYS];
static struct tally_store *store;
static struct tally_writebehind *flusher;
static struct tally_writebehind_stats stats_at_start;
static int64_t started_ns;

static void counters_setup(const struct bench_state *state, bool with_flusher)
{
	struct tally_store_options options = { .writer_id = "bench", .create_schema = true };
	struct tally_writebehind_config config = { .interval_ms = INTERVAL_MS };
	char url[400];

	new_db(state);
	for (int64_t i = 0; i < key_count; i++)
		tally_counter_init(&counters[i], 4);
	if (!with_flusher)
		return;
	snprintf(url, sizeof(url), "sqlite://%s", db_path);
	if (tally_store_open(&store, url, &options) != TALLY_OK ||
	    tally_writebehind_create(&flusher, store, &config) != TALLY_OK) {
		fprintf(stderr, "bench: store or flusher: %s\n", tally_store_last_error(NULL));
		exit(1);
	}
	for (int64_t i = 0; i < key_count; i++)
		tally_writebehind_add_counter(flusher, keys[i], strlen(keys[i]), &counters[i]);
	tally_writebehind_flush(flusher, TALLY_WRITEBEHIND_FOREVER); /* writer open */
	tally_writebehind_get_stats(flusher, &stats_at_start);
	started_ns = now_ns(CLOCK_MONOTONIC);
}

static void flusher_setup(const struct bench_state *state)
{
	counters_setup(state, true);
}

static void noflusher_setup(const struct bench_state *state)
{
	counters_setup(state, false);
}

static void counters_teardown(const struct bench_state *state)
{
	if (flusher) {
		tally_writebehind_destroy(flusher);
		tally_store_close(store);
		flusher = NULL;
		store = NULL;
	}
	for (int64_t i = 0; i < key_count; i++)
		tally_counter_destroy(&counters[i]);
	remove_db();
}

static void increment_loop(struct bench_state *state)
{
	uint32_t seed = thread_seed(state);
	struct cpu_clock clock;
	int failed = 0;

	cpu_start(&clock);
	if (key_count == 1) {
		while (bench_keep_running(state))
			failed |= tally_counter_inc(&counters[0]);
	} else {
		while (bench_keep_running(state))
			failed |= tally_counter_inc(&counters[pick_key(&seed)]);
	}
	cpu_report(state, &clock);
	if (failed)
		bench_skip_with_error(state, "tally_counter_inc failed");
	bench_set_items_processed(state, bench_iterations(state));
}

/* Thread 0, after the loop: the sum of the counters is what every thread added. */
static int64_t counters_sum(void)
{
	int64_t sum = 0, value;

	for (int64_t i = 0; i < key_count; i++) {
		tally_counter_read(&counters[i], &value);
		sum += value;
	}
	return sum;
}

static void report_flusher(struct bench_state *state)
{
	struct tally_writebehind_stats stats;
	double seconds = (double)(now_ns(CLOCK_MONOTONIC) - started_ns) / 1e9;
	int64_t flushes, total = 0, value;

	tally_writebehind_flush(flusher, TALLY_WRITEBEHIND_FOREVER);
	tally_writebehind_get_stats(flusher, &stats);
	flushes = stats.flushes - stats_at_start.flushes;
	bench_counter(state, "flushes_per_s", seconds > 0 ? (double)flushes / seconds : 0, 0);
	bench_counter(state, "rows_per_flush",
		      flushes ? (double)(stats.keys_written - stats_at_start.keys_written) /
					(double)flushes
			      : 0,
		      0);
	bench_counter(state, "flush_p50_us", (double)stats.flush_latency_p50_us, 0);
	bench_counter(state, "flush_p99_us", (double)stats.flush_latency_p99_us, 0);
	for (int64_t i = 0; i < key_count; i++)
		if (tally_store_read_counter(store, keys[i], strlen(keys[i]), &value) == TALLY_OK)
			total += value;
	if (total != counters_sum())
		fail_run(state, "store total", total, counters_sum());
}

static void bm_tally(struct bench_state *state)
{
	increment_loop(state);
	if (bench_thread_index(state) == 0)
		report_flusher(state);
}

static void bm_noflusher(struct bench_state *state)
{
	increment_loop(state);
	if (bench_thread_index(state) == 0 &&
	    counters_sum() != bench_iterations(state) * bench_threads(state))
		fail_run(state, "counter total", counters_sum(),
			 bench_iterations(state) * bench_threads(state));
}

/* ---- the peers' SQLite side ---------------------------------------------------------------- */

static sqlite3 *open_db(void)
{
	sqlite3 *db = NULL;

	if (sqlite3_open(db_path, &db) != SQLITE_OK) {
		fprintf(stderr, "bench: sqlite3_open %s: %s\n", db_path, sqlite3_errmsg(db));
		exit(1);
	}
	sqlite3_busy_timeout(db, 10000);
	sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			 "CREATE TABLE IF NOT EXISTS peer(k TEXT PRIMARY KEY, v INTEGER NOT NULL)"
			 " WITHOUT ROWID;",
		     NULL, NULL, NULL);
	return db;
}

static int64_t peer_total(sqlite3 *db)
{
	sqlite3_stmt *st;
	int64_t total = -1;

	sqlite3_prepare_v2(db, "SELECT coalesce(sum(v), 0) FROM peer", -1, &st, NULL);
	if (sqlite3_step(st) == SQLITE_ROW)
		total = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return total;
}

static void seed_rows(sqlite3 *db)
{
	sqlite3_stmt *st;

	sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO peer(k, v) VALUES(?1, 0)", -1, &st, NULL);
	for (int64_t i = 0; i < key_count; i++) {
		sqlite3_bind_text(st, 1, keys[i], -1, SQLITE_STATIC);
		sqlite3_step(st);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

/* ---- mutexmap: one mutex over a map of pending deltas, a flushing thread ----------------- */

#define MAP_SLOTS 32768 /* a power of two, over 3x the keys */

struct map_slot {
	const char *key; /* interned: the keys[] entry */
	uint64_t hash;
	int64_t delta;
};

static struct {
	pthread_mutex_t lock;
	struct map_slot slots[MAP_SLOTS];
	uint64_t hashes[MAX_KEYS]; /* each key's hash, computed once (the caller keeps it) */
	pthread_t thread;
	bool stop;                 /* under lock */
	pthread_cond_t wake;
	sqlite3 *db;
} map = { .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

static uint64_t fnv1a(const char *key)
{
	return tally__fnv1a64(TALLY__FNV1A64_BASIS, key, strlen(key));
}

/* Lock held: adds delta to the key's pending slot (linear probing). */
static void map_add(const char *key, uint64_t hash, int64_t delta)
{
	size_t i = hash & (MAP_SLOTS - 1);

	while (map.slots[i].key && map.slots[i].key != key)
		i = (i + 1) & (MAP_SLOTS - 1);
	map.slots[i].key = key;
	map.slots[i].hash = hash;
	map.slots[i].delta += delta;
}

/* Swaps the pending deltas out under the lock, writes them in one transaction. */
static void map_flush(struct map_slot *taken, sqlite3_stmt *upsert)
{
	size_t count = 0;

	pthread_mutex_lock(&map.lock);
	for (size_t i = 0; i < MAP_SLOTS; i++)
		if (map.slots[i].key && map.slots[i].delta) {
			taken[count++] = map.slots[i];
			map.slots[i].delta = 0;
		}
	pthread_mutex_unlock(&map.lock);
	if (!count)
		return;
	sqlite3_exec(map.db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	for (size_t i = 0; i < count; i++) {
		sqlite3_bind_text(upsert, 1, taken[i].key, -1, SQLITE_STATIC);
		sqlite3_bind_int64(upsert, 2, taken[i].delta);
		sqlite3_step(upsert);
		sqlite3_reset(upsert);
	}
	sqlite3_exec(map.db, "COMMIT", NULL, NULL, NULL);
}

static void *map_thread(void *unused)
{
	struct map_slot *taken = malloc(sizeof(map.slots));
	sqlite3_stmt *upsert;
	struct timespec at;
	bool stop = false;

	sqlite3_prepare_v2(map.db,
			   "INSERT INTO peer(k, v) VALUES(?1, ?2) "
			   "ON CONFLICT(k) DO UPDATE SET v = v + excluded.v",
			   -1, &upsert, NULL);
	while (!stop) {
		pthread_mutex_lock(&map.lock);
		clock_gettime(CLOCK_REALTIME, &at);
		at.tv_nsec += INTERVAL_MS * 1000000L;
		at.tv_sec += at.tv_nsec / 1000000000L;
		at.tv_nsec %= 1000000000L;
		if (!map.stop)
			pthread_cond_timedwait(&map.wake, &map.lock, &at);
		stop = map.stop;
		pthread_mutex_unlock(&map.lock);
		map_flush(taken, upsert); /* the last one after stop: everything pending */
	}
	sqlite3_finalize(upsert);
	free(taken);
	return NULL;
}

static void mutexmap_setup(const struct bench_state *state)
{
	new_db(state);
	memset(map.slots, 0, sizeof(map.slots));
	for (int64_t i = 0; i < key_count; i++)
		map.hashes[i] = fnv1a(keys[i]);
	map.db = open_db();
	map.stop = false;
	pthread_create(&map.thread, NULL, map_thread, NULL);
}

static void mutexmap_teardown(const struct bench_state *state)
{
	sqlite3_close(map.db);
	remove_db();
}

static void bm_mutexmap(struct bench_state *state)
{
	uint32_t seed = thread_seed(state);
	struct cpu_clock clock;
	int64_t want;

	cpu_start(&clock);
	while (bench_keep_running(state)) {
		uint32_t k = key_count == 1 ? 0 : pick_key(&seed);

		pthread_mutex_lock(&map.lock);
		map_add(keys[k], map.hashes[k], 1);
		pthread_mutex_unlock(&map.lock);
	}
	cpu_report(state, &clock);
	bench_set_items_processed(state, bench_iterations(state));
	if (bench_thread_index(state) != 0)
		return;
	pthread_mutex_lock(&map.lock);
	map.stop = true;
	pthread_cond_signal(&map.wake);
	pthread_mutex_unlock(&map.lock);
	pthread_join(map.thread, NULL);
	want = bench_iterations(state) * bench_threads(state);
	if (peer_total(map.db) != want)
		fail_run(state, "peer total", peer_total(map.db), want);
}

/* ---- naive: one UPDATE per increment ------------------------------------------------------ */

static void naive_setup(const struct bench_state *state)
{
	sqlite3 *db;

	new_db(state);
	db = open_db();
	seed_rows(db);
	sqlite3_close(db);
}

static void naive_teardown(const struct bench_state *state)
{
	remove_db();
}

static void bm_naive(struct bench_state *state)
{
	uint32_t seed = thread_seed(state);
	sqlite3 *db = open_db();
	sqlite3_stmt *update;
	struct cpu_clock clock;
	int failed = 0;
	int64_t want;

	sqlite3_prepare_v2(db, "UPDATE peer SET v = v + 1 WHERE k = ?1", -1, &update, NULL);
	cpu_start(&clock);
	while (bench_keep_running(state)) {
		uint32_t k = key_count == 1 ? 0 : pick_key(&seed);

		sqlite3_bind_text(update, 1, keys[k], -1, SQLITE_STATIC);
		failed |= sqlite3_step(update) != SQLITE_DONE;
		sqlite3_reset(update);
	}
	cpu_report(state, &clock);
	sqlite3_finalize(update);
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "UPDATE failed");
	want = bench_iterations(state) * bench_threads(state);
	if (bench_thread_index(state) == 0 && peer_total(db) != want)
		fail_run(state, "naive total", peer_total(db), want);
	sqlite3_close(db);
}

/* ---- flush capacity ---------------------------------------------------------------------- */

static void bm_capacity(struct bench_state *state)
{
	int64_t flushed = 0;

	while (bench_keep_running(state)) {
		for (int64_t i = 0; i < key_count; i++)
			tally_counter_inc(&counters[i]);
		if (tally_writebehind_flush(flusher, TALLY_WRITEBEHIND_FOREVER) != TALLY_OK)
			bench_skip_with_error(state, "flush failed");
		flushed += key_count;
	}
	bench_set_items_processed(state, flushed);
	report_flusher(state);
}

/* ---- join/leave with the change feed on and off ------------------------------------------ */

static struct tally_session_table *table;

static void table_setup(const struct bench_state *state, bool attached)
{
	struct tally_session_params session = { .session_id = "talk",
						.speaker_connection_id = "speaker",
						.source_language = "en" };

	counters_setup(state, attached);
	tally_session_table_create(&table, NULL);
	tally_session_create(table, &session);
	if (attached)
		tally_writebehind_add_sessions(flusher, table);
}

static void feed_setup(const struct bench_state *state)
{
	table_setup(state, true);
}

static void nofeed_setup(const struct bench_state *state)
{
	table_setup(state, false);
}

static void table_teardown(const struct bench_state *state)
{
	if (flusher)
		tally_writebehind_remove_sessions(flusher, table);
	tally_session_table_destroy(table);
	counters_teardown(state);
}

static void bm_join(struct bench_state *state)
{
	char id[32];
	struct tally_connection_params params = { id, "talk", "fr", 0, "192.0.2.1", 0 };
	struct cpu_clock clock;
	int64_t failed = 0;

	snprintf(id, sizeof(id), "listener-%d", bench_thread_index(state));
	tally_rcu_thread_register();
	cpu_start(&clock);
	while (bench_keep_running(state)) {
		failed += tally_session_join(table, &params) != TALLY_OK;
		failed += tally_session_leave(table, id) != TALLY_OK;
	}
	cpu_report(state, &clock);
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "a join or leave failed");
	if (flusher && bench_thread_index(state) == 0)
		tally_writebehind_flush(flusher, TALLY_WRITEBEHIND_FOREVER);
}

/* ---- registration ------------------------------------------------------------------------ */

static void add(const char *name, bench_fn fn, bench_hook setup, bench_hook teardown)
{
	struct bench_def *def = bench_register(name, fn);

	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
	bench_def_arg(def, 1);
	bench_def_arg(def, MAX_KEYS);
	bench_def_use_real_time(def);
	bench_def_threads(def, 2);
}

int main(int argc, char **argv)
{
	struct bench_def *def;
	char cmd[300];
	int status;

	snprintf(tmpdir, sizeof(tmpdir), "%s/tally-wbbench-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	add("BM_writebehind_tally", bm_tally, flusher_setup, counters_teardown);
	add("BM_writebehind_noflusher", bm_noflusher, noflusher_setup, counters_teardown);
	add("BM_writebehind_mutexmap", bm_mutexmap, mutexmap_setup, mutexmap_teardown);
	add("BM_writebehind_naive", bm_naive, naive_setup, naive_teardown);
	for (int attached = 1; attached >= 0; attached--) {
		def = bench_register(attached ? "BM_writebehindjoin_tally"
					      : "BM_writebehindjoin_nofeed", bm_join);
		bench_def_setup(def, attached ? feed_setup : nofeed_setup);
		bench_def_teardown(def, table_teardown);
		bench_def_arg(def, 1);
		bench_def_use_real_time(def);
		bench_def_threads(def, 1);
		bench_def_threads(def, 2);
	}
	def = bench_register("BM_writebehindcapacity_tally", bm_capacity);
	bench_def_setup(def, flusher_setup);
	bench_def_teardown(def, counters_teardown);
	bench_def_arg(def, MAX_KEYS);
	bench_def_use_real_time(def);
	status = bench_main(argc, argv);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench: could not remove %s\n", tmpdir);
	return status;
}
