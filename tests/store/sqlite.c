/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/sqlite.c: the store interface (tally/store.h) over the SQLite backend, on real
 * files in a temporary directory, with real threads and real processes (tests/store/worker,
 * started with fork + exec). No mock of SQLite anywhere: faults are made by the operating
 * system (permissions, RLIMIT_FSIZE, unlink) or by writing to the file from outside.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tally/store.h>

#include "records.h"
#include "../tap.h"
#include "listeners.h"
#include "../threads.h"

static char tmpdir[256];
static int file_counter;

/* A fresh database path in the test's directory. */
static void new_db(char *path, size_t size, char *url, size_t url_size, const char *options)
{
	snprintf(path, size, "%s/db%d.sqlite", tmpdir, ++file_counter);
	snprintf(url, url_size, "sqlite://%s%s", path, options ? options : "");
}

static struct tally_store *open_store(const char *url, const char *writer_id, int64_t ttl_ms)
{
	struct tally_store_options options = { .writer_id = writer_id, .writer_ttl_ms = ttl_ms,
					       .create_schema = true };
	struct tally_store *store = NULL;
	int err = tally_store_open(&store, url, &options);

	if (err)
		printf("# open %s: %s (%s)\n", url, tally_strerror(err), tally_store_last_error(NULL));
	return store;
}

static int64_t counter(struct tally_store *store, const char *key)
{
	int64_t total = -1;
	int err = tally_store_read_counter(store, key, strlen(key), &total);

	return err == TALLY_OK ? total : -1000 - err;
}

static int64_t gauge(struct tally_store *store, const char *key, int64_t *writers)
{
	int64_t value = -1;

	if (tally_store_read_gauge(store, key, strlen(key), &value, writers))
		return INT64_MIN;
	return value;
}

#define DELTA(k, d) { .key = (k), .key_len = sizeof(k) - 1, .delta = (d) }
#define GAUGE(k, v) { .key = (k), .key_len = sizeof(k) - 1, .value = (v) }

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* ---- basics: flush, re-send, seq rules, argument checks -------------------------------- */

static void test_basics(void)
{
	char path[512], url[600];
	struct tally_store *store;
	struct tally_store_epoch_info info;
	struct tally_store_flush_result result;
	struct tally_store_delta deltas[] = { DELTA("views", 5), DELTA("bytes", 1000) };
	struct tally_store_gauge gauges[] = { GAUGE("listeners", 7) };
	struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 2,
					   .gauges = gauges, .gauge_count = 1 };
	char id[TALLY_STORE_WRITER_ID_MAX + 1];
	uint64_t epoch = 0;
	int64_t writers = -1;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	store = open_store(url, "basic", 0);
	tap_ok(store != NULL, "basics: open creates the schema");
	if (!store)
		return;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_ESTATE, "flush before writer_open: ESTATE");
	tap_eq(tally_store_writer_open(store, &info), TALLY_OK, "writer_open");
	tap_eq(info.epoch, 1, "first epoch is 1");
	tap_eq(info.prior_epoch, 0, "no prior epoch");
	tap_eq(tally_store_writer_open(store, NULL), TALLY_ESTATE, "second writer_open: ESTATE");
	tap_eq(tally_store_writer_identity(store, id, &epoch), TALLY_OK, "identity");
	tap_ok(strcmp(id, "basic") == 0 && epoch == 1, "identity is basic/1");

	batch.seq = 0;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL, "seq 0: EINVAL");
	batch.seq = 2;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL, "seq beyond last + 1: EINVAL");
	tap_ok(strstr(tally_store_last_error(store), "seq") != NULL,
	       "the error text names the seq: %s", tally_store_last_error(store));
	tap_eq(tally_store_read_counter(store, "views", 5, &writers), TALLY_ENOTFOUND,
	       "nothing landed: ENOTFOUND");

	batch.seq = 1;
	tap_eq(tally_store_flush(store, &batch, &result), TALLY_OK, "flush seq 1");
	tap_ok(!result.already_applied && result.rows_written >= 4,
	       "applied, %" PRId64 " rows written", result.rows_written);
	tap_eq(counter(store, "views"), 5, "views = 5");
	tap_eq(counter(store, "bytes"), 1000, "bytes = 1000");
	tap_eq(gauge(store, "listeners", &writers), 7, "gauge = 7");
	tap_eq(writers, 1, "one live writer contributes");

	tap_eq(tally_store_flush(store, &batch, &result), TALLY_OK, "re-send seq 1");
	tap_ok(result.already_applied, "re-send: already_applied");
	tap_eq(counter(store, "views"), 5, "re-send doubled nothing");

	deltas[0].delta = 1;
	gauges[0].value = 3;
	batch.seq = 2;
	batch.counter_count = 1;
	tap_eq(tally_store_flush(store, &batch, &result), TALLY_OK, "flush seq 2");
	tap_eq(counter(store, "views"), 6, "views = 6");
	tap_eq(gauge(store, "listeners", NULL), 3, "a gauge flush sets the writer's value");
	batch.seq = 1;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL,
	       "seq below the last acknowledged: EINVAL");

	tap_eq(tally_store_writer_close(store), TALLY_OK, "writer_close");
	tap_eq(gauge(store, "listeners", &writers), 0, "closed writer's gauge is gone");
	tap_eq(writers, 0, "no live writers");
	tap_eq(counter(store, "views"), 6, "closed writer's counters stay");
	tap_eq(tally_store_writer_identity(store, id, &epoch), TALLY_ESTATE,
	       "no identity after close");
	tap_eq(tally_store_close(store), TALLY_OK, "close");
}

/* ---- fencing: a second epoch of the same id refuses the first ------------------------- */

static void test_fencing(void)
{
	char path[512], url[600];
	struct tally_store *a, *b;
	struct tally_store_epoch_info info;
	struct tally_store_delta deltas[] = { DELTA("hits", 1) };
	struct tally_store_gauge gauges[] = { GAUGE("g", 5) };
	struct tally_store_batch batch = { .counters = deltas, .counter_count = 1,
					   .gauges = gauges, .gauge_count = 1 };

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	a = open_store(url, "twin", 0);
	b = open_store(url, "twin", 0);
	if (!tap_ok(a && b, "fencing: two handles, one writer id"))
		return;
	tally_store_writer_open(a, NULL);
	for (batch.seq = 1; batch.seq <= 2; batch.seq++)
		tally_store_flush(a, &batch, NULL);
	tap_eq(tally_store_writer_open(b, &info), TALLY_OK, "second writer_open of the id");
	tap_eq(info.epoch, 2, "new epoch 2");
	tap_eq(info.prior_epoch, 1, "prior epoch 1");
	tap_eq(info.prior_last_seq, 2, "prior_last_seq = the first epoch's last flush");
	tap_ok(!info.prior_reaped, "prior not reaped");
	tap_eq(gauge(b, "g", NULL), 0, "the old epoch's gauge contribution is removed");
	tap_eq(tally_store_flush(a, &batch, NULL), TALLY_EFENCED, "old epoch's flush: EFENCED");
	tap_ok(strstr(tally_store_last_error(a), "fenced") != NULL, "error text: %s",
	       tally_store_last_error(a));
	tap_eq(counter(b, "hits"), 2, "the refused flush changed nothing");
	tap_eq(tally_store_heartbeat(a), TALLY_ESTATE, "a fenced handle has no writer");
	tap_eq(tally_store_writer_open(a, &info), TALLY_OK, "the fenced handle opens epoch 3");
	tap_eq(info.epoch, 3, "epoch 3");
	batch.seq = 1;
	tap_eq(tally_store_flush(b, &batch, NULL), TALLY_EFENCED, "now epoch 2 is fenced");
	tap_eq(tally_store_flush(a, &batch, NULL), TALLY_OK, "epoch 3 flushes seq 1");
	tap_eq(counter(a, "hits"), 3, "hits = 3");
	tally_store_close(a);
	tally_store_close(b);
}

/* ---- reap: an expired writer's gauges and connections leave, and it is fenced ----------- */

struct collect {
	int count;
	int64_t listener_count;
	char ids[16][TALLY_SESSION_ID_MAX + 1];
	char writer[TALLY_STORE_WRITER_ID_MAX + 1];
	bool live, reaped;
	uint64_t epoch;
};

static void collect_id(struct collect *col, const char *id)
{
	if (col->count < 16)
		strcpy(col->ids[col->count], id);
	col->count++;
}

static int collect_connection(const struct tally_connection_info *c, const char *writer_id,
			      uint64_t epoch, void *arg)
{
	collect_id(arg, c->connection_id);
	return 0;
}

static int collect_session(const struct tally_session_info *s, const char *writer_id,
			   uint64_t epoch, void *arg)
{
	struct collect *col = arg;

	collect_id(col, s->session_id);
	col->listener_count = s->listener_count;
	snprintf(col->writer, sizeof(col->writer), "%s", writer_id);
	col->epoch = epoch;
	return 0;
}

static int find_writer(const struct tally_store_writer_info *w, void *arg)
{
	struct collect *col = arg;

	if (strcmp(w->writer_id, col->writer) == 0) {
		col->count++;
		col->live = w->live;
		col->reaped = w->reaped;
		col->epoch = w->epoch;
	}
	return 0;
}

static void test_reap(void)
{
	char path[512], url[600];
	struct tally_store *mortal, *other;
	struct tally_store_epoch_info info;
	struct tally_store_gauge gauges[] = { GAUGE("listeners", 4) };
	struct tally_store_record records[4];
	struct tally_store_batch batch = { .seq = 1, .gauges = gauges, .gauge_count = 1,
					   .records = records, .record_count = 4 };
	struct collect col = { 0 };
	int64_t writers = -1, reaped = -1;

	records[0] = session_put("s1", 2);
	records[1] = connection_put("c1", "s1", TALLY_ROLE_LISTENER, "fr");
	records[2] = connection_put("c2", "s1", TALLY_ROLE_LISTENER, "de");
	records[3] = connection_put("c-speaker", "s1", TALLY_ROLE_SPEAKER, "");
	new_db(path, sizeof(path), url, sizeof(url), NULL);
	mortal = open_store(url, "mortal", 100);
	other = open_store(url, "other", 0);
	if (!tap_ok(mortal && other, "reap: a writer with a 100 ms lease"))
		return;
	tally_store_writer_open(mortal, NULL);
	tap_eq(tally_store_flush(mortal, &batch, NULL), TALLY_OK, "flush session, 3 connections, gauge");
	tap_eq(tally_store_connections(other, "s1", collect_connection, &col), TALLY_OK,
	       "connections of s1");
	tap_eq(col.count, 3, "3 connections");
	tap_ok(strcmp(col.ids[0], "c-speaker") == 0 && strcmp(col.ids[1], "c2") == 0,
	       "in (session, language) order");
	tap_eq(gauge(other, "listeners", &writers), 4, "gauge 4 while the lease runs");
	tap_eq(tally_store_reap(other, &reaped), TALLY_OK, "reap before the expiry");
	tap_eq(reaped, 0, "nothing to reap");
	sleep_ms(150);
	tap_eq(gauge(other, "listeners", &writers), 0, "expired, unreaped: the read excludes it");
	tap_eq(writers, 0, "no live contributor");
	memset(&col, 0, sizeof(col));
	strcpy(col.writer, "mortal");
	tally_store_writers(other, find_writer, &col);
	tap_ok(col.count == 1 && !col.live && !col.reaped, "writers: mortal expired, not reaped");
	tap_eq(tally_store_reap(other, &reaped), TALLY_OK, "reap");
	tap_eq(reaped, 1, "one writer reaped");
	tap_eq(tally_store_reap(other, &reaped), TALLY_OK, "reap again");
	tap_eq(reaped, 0, "a second reap removes nothing twice");
	memset(&col, 0, sizeof(col));
	tally_store_connections(other, NULL, collect_connection, &col);
	tap_eq(col.count, 0, "its connections are gone");
	memset(&col, 0, sizeof(col));
	tally_store_sessions(other, "mortal", collect_session, &col);
	tap_eq(col.count, 1, "its session stays (to be reloaded)");
	tap_eq(col.listener_count, 0, "with the reaped listeners' count removed");
	memset(&col, 0, sizeof(col));
	strcpy(col.writer, "mortal");
	tally_store_writers(other, find_writer, &col);
	tap_ok(col.reaped && !col.live, "writers: mortal reaped");
	batch.seq = 2;
	batch.record_count = 0;
	tap_eq(tally_store_flush(mortal, &batch, NULL), TALLY_EFENCED, "the reaped writer is fenced");
	tap_eq(tally_store_writer_open(mortal, &info), TALLY_OK, "it re-registers");
	tap_ok(info.epoch == 2 && info.prior_reaped && info.prior_last_seq == 1,
	       "epoch 2, prior reaped, prior_last_seq 1");
	batch.seq = 1;
	tap_eq(tally_store_flush(mortal, &batch, NULL), TALLY_OK, "and republishes its gauge");
	tap_eq(gauge(other, "listeners", NULL), 4, "gauge back to 4");
	tally_store_close(mortal);
	tally_store_close(other);
}

/* ---- listener counts recomputed when a writer's connections leave ---------------------- */

static void test_listener_recount(void)
{
	char path[512], url[600];
	struct tally_store *w, *w_again, *x;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	w = open_store(url, "recount-w", 100);
	w_again = open_store(url, "recount-w", 100);
	x = open_store(url, "recount-x", 0);
	if (tap_ok(w && w_again && x, "recount: three handles"))
		listeners_recount_case("recount", w, w_again, x, 150);
	tally_store_close(w);
	tally_store_close(w_again);
	tally_store_close(x);
}

/* ---- many threads x many keys x concurrent flushes from several handles ---------------- */

#define CONC_HANDLES 4
#define CONC_FLUSHES 30
#define CONC_KEYS 400
#define CONC_BATCH 200

struct conc_shared {
	struct tally_store *stores[CONC_HANDLES];
	int64_t expected[CONC_HANDLES][CONC_KEYS]; /* each flusher's own sums */
	char names[CONC_KEYS][16];
	int failures;
	_Atomic int flushers_left;
};

static void *conc_body(struct test_thread *self)
{
	struct conc_shared *sh = self->shared;
	int h = self->index % CONC_HANDLES;
	struct tally_store *store = sh->stores[h];

	if (self->index >= CONC_HANDLES) {
		/* readers and heartbeats on the same handles, while the flushes run */
		while (sh->flushers_left > 0) {
			int64_t total;
			int err = tally_store_read_counter(store, sh->names[self->index % CONC_KEYS],
							   strlen(sh->names[self->index % CONC_KEYS]),
							   &total);

			if (err && err != TALLY_ENOTFOUND && err != TALLY_EBUSY)
				__atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED);
			err = tally_store_heartbeat(store);
			if (err && err != TALLY_EBUSY)
				__atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED);
		}
		return NULL;
	}
	for (int round = 0; round < CONC_FLUSHES; round++) {
		struct tally_store_delta deltas[CONC_BATCH];
		struct tally_store_batch batch = { .seq = (uint64_t)round + 1, .counters = deltas,
						   .counter_count = CONC_BATCH };
		struct tally_store_flush_result result;
		int err;

		for (int i = 0; i < CONC_BATCH; i++) {
			int key = (round * 37 + h * 101 + i) % CONC_KEYS;

			deltas[i] = (struct tally_store_delta){ sh->names[key], strlen(sh->names[key]),
								h + 1 + round % 3 };
		}
		do
			err = tally_store_flush(store, &batch, &result);
		while (tally_store_err_transient(err));
		if (!err && round % 5 == 0) /* a re-send must be acknowledged without effect */
			err = tally_store_flush(store, &batch, &result) || !result.already_applied;
		if (err) {
			__atomic_add_fetch(&sh->failures, 1, __ATOMIC_RELAXED);
			break;
		}
		for (int i = 0; i < CONC_BATCH; i++)
			sh->expected[h][(round * 37 + h * 101 + i) % CONC_KEYS] += h + 1 + round % 3;
	}
	sh->flushers_left--;
	return NULL;
}

struct conc_check {
	struct conc_shared *sh;
	int matched, wrong;
};

static int conc_check_counter(const char *key, size_t key_len, int64_t total, void *arg)
{
	struct conc_check *check = arg;
	int index = atoi(key + 1);
	int64_t want = 0;

	for (int h = 0; h < CONC_HANDLES; h++)
		want += check->sh->expected[h][index];
	if (want == total)
		check->matched++;
	else
		check->wrong++;
	return 0;
}

static void test_concurrent(void)
{
	char path[512], url[600];
	static struct conc_shared sh;
	struct test_thread threads[CONC_HANDLES * 2];
	struct conc_check check = { &sh, 0, 0 };

	memset(&sh, 0, sizeof(sh));
	new_db(path, sizeof(path), url, sizeof(url), NULL);
	for (int i = 0; i < CONC_KEYS; i++)
		snprintf(sh.names[i], sizeof(sh.names[i]), "k%d", i);
	for (int h = 0; h < CONC_HANDLES; h++) {
		char id[32];

		snprintf(id, sizeof(id), "conc-%d", h);
		sh.stores[h] = open_store(url, id, 0);
		if (!sh.stores[h] || tally_store_writer_open(sh.stores[h], NULL)) {
			tap_ok(0, "concurrent: open handle %d", h);
			return;
		}
	}
	sh.flushers_left = CONC_HANDLES;
	run_threads(CONC_HANDLES * 2, conc_body, &sh, threads);
	tap_eq(sh.failures, 0, "concurrent: %d handles x %d flushes of %d keys, readers and "
	       "heartbeats beside: no failure", CONC_HANDLES, CONC_FLUSHES, CONC_BATCH);
	tally_store_counters(sh.stores[0], conc_check_counter, &check);
	tap_eq(check.wrong, 0, "every key's total is exact");
	tap_eq(check.matched, CONC_KEYS, "all %d keys present", CONC_KEYS);
	for (int h = 0; h < CONC_HANDLES; h++)
		tally_store_close(sh.stores[h]);
}

/* ---- hostile keys round-trip verbatim; over-long keys are refused ---------------------- */

static const char *const hostile_keys[] = {
	"it's", "back\\slash\\", "\"double\"", "'); DROP TABLE counters; --",
	"\xff\xfe\x80 not UTF-8 \xc3", "日本語 ключ 🎉", "%s%n%x", "tab\there\x01\x1f\x7f",
	"json {\"a\": [1, \"\\u0000\"]}", "?1 ?2 :name @x $y", NULL,
};
#define HOSTILE_COUNT 11 /* the ten above and one of TALLY_STORE_KEY_MAX bytes */

struct hostile_seen {
	const char *keys[HOSTILE_COUNT];
	size_t lens[HOSTILE_COUNT];
	int found[HOSTILE_COUNT];
	int other;
};

static int hostile_counter(const char *key, size_t key_len, int64_t total, void *arg)
{
	struct hostile_seen *seen = arg;

	for (int i = 0; i < HOSTILE_COUNT; i++) {
		if (seen->lens[i] == key_len && memcmp(seen->keys[i], key, key_len) == 0) {
			seen->found[i] += total == i + 1;
			return 0;
		}
	}
	seen->other++;
	return 0;
}

static int hostile_session(const struct tally_session_info *session, const char *writer_id,
			   uint64_t epoch, void *arg)
{
	struct collect *col = arg;

	if (strcmp(session->session_id, hostile_keys[3]) == 0 &&
	    strcmp(session->speaker_user_id, hostile_keys[4]) == 0 &&
	    strcmp(session->quality_tier, "\"q'\\") == 0)
		col->count++;
	return 0;
}

static void test_hostile_keys(void)
{
	char path[512], url[600], long_key[TALLY_STORE_KEY_MAX + 2];
	struct tally_store *store;
	struct tally_store_delta deltas[HOSTILE_COUNT + 1];
	struct tally_store_gauge gauges[HOSTILE_COUNT];
	struct tally_store_record record = session_put(hostile_keys[3], 0);
	struct tally_store_batch batch = { .seq = 1, .counters = deltas,
					   .counter_count = HOSTILE_COUNT, .gauges = gauges,
					   .gauge_count = HOSTILE_COUNT, .records = &record,
					   .record_count = 1 };
	struct hostile_seen seen = { 0 };
	struct collect col = { 0 };
	int exact_reads = 0, exact_gauges = 0;

	snprintf(record.as.session.speaker_user_id, sizeof(record.as.session.speaker_user_id),
		 "%s", hostile_keys[4]);
	strcpy(record.as.session.quality_tier, "\"q'\\");
	memset(long_key, 'x', sizeof(long_key));
	for (int i = 0; i < HOSTILE_COUNT; i++) {
		seen.keys[i] = i < HOSTILE_COUNT - 1 ? hostile_keys[i] : long_key;
		seen.lens[i] = i < HOSTILE_COUNT - 1 ? strlen(hostile_keys[i]) : TALLY_STORE_KEY_MAX;
		deltas[i] = (struct tally_store_delta){ seen.keys[i], seen.lens[i], i + 1 };
		gauges[i] = (struct tally_store_gauge){ seen.keys[i], seen.lens[i], 100 + i };
	}
	new_db(path, sizeof(path), url, sizeof(url), NULL);
	store = open_store(url, "hostile \"writer\" '; --", 0);
	if (!tap_ok(store && !tally_store_writer_open(store, NULL), "hostile: open"))
		return;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_OK, "flush of hostile keys");
	tap_eq(tally_store_counters(store, hostile_counter, &seen), TALLY_OK, "visit counters");
	for (int i = 0; i < HOSTILE_COUNT; i++) {
		int64_t total = -1, value = -1;

		tap_eq(seen.found[i], 1, "key %d comes back verbatim with its total", i);
		tally_store_read_counter(store, seen.keys[i], seen.lens[i], &total);
		tally_store_read_gauge(store, seen.keys[i], seen.lens[i], &value, NULL);
		exact_reads += total == i + 1;
		exact_gauges += value == 100 + i;
	}
	tap_eq(seen.other, 0, "no other key appeared");
	tap_eq(exact_reads, HOSTILE_COUNT, "read_counter finds every key");
	tap_eq(exact_gauges, HOSTILE_COUNT, "read_gauge finds every key");
	tally_store_sessions(store, NULL, hostile_session, &col);
	tap_eq(col.count, 1, "a session with SQL and non-UTF-8 in its fields round-trips");

	batch.seq = 2;
	batch.record_count = 0;
	batch.gauge_count = 0;
	batch.counter_count = 1;
	deltas[0] = (struct tally_store_delta){ long_key, TALLY_STORE_KEY_MAX + 1, 1 };
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_ETOOLONG, "a key of 513 bytes: ETOOLONG");
	tap_ok(strstr(tally_store_last_error(store), "513") != NULL, "the text says so: %s",
	       tally_store_last_error(store));
	deltas[0] = (struct tally_store_delta){ "a\0b", 3, 1 };
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL, "a NUL inside a key: EINVAL");
	deltas[0] = (struct tally_store_delta){ "", 0, 1 };
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL, "an empty key: EINVAL");
	deltas[0] = (struct tally_store_delta){ "dup", 3, 1 };
	deltas[1] = (struct tally_store_delta){ "dup", 3, 2 };
	batch.counter_count = 2;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL, "a key twice in one batch: EINVAL");
	tap_eq(tally_store_read_counter(store, long_key, TALLY_STORE_KEY_MAX + 1, &(int64_t){ 0 }),
	       TALLY_ETOOLONG, "read of a 513-byte key: ETOOLONG");
	tap_eq(counter(store, "dup"), -1000 - TALLY_ENOTFOUND, "refused batches wrote nothing");
	tally_store_close(store);
}

/* ---- take / give and overflow --------------------------------------------------------- */

static void test_take(void)
{
	char path[512], url[600];
	struct tally_store *store;
	struct tally_store_delta deltas[] = { DELTA("pool", 10), DELTA("other", 1) };
	struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 2 };
	int64_t left = -1;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	store = open_store(url, "taker", 0);
	if (!tap_ok(store && !tally_store_writer_open(store, NULL), "take: open"))
		return;
	tally_store_flush(store, &batch, NULL);
	tap_eq(tally_store_take(store, "pool", 4, 4, &left), TALLY_OK, "take 4 of 10");
	tap_eq(left, 6, "6 remain");
	tap_eq(tally_store_take(store, "pool", 4, 7, &left), TALLY_EFLOOR, "take 7 of 6: EFLOOR");
	tap_eq(counter(store, "pool"), 6, "a refused take changes nothing");
	tap_eq(tally_store_give(store, "pool", 4, 3, &left), TALLY_OK, "give 3");
	tap_eq(left, 9, "9");
	tap_eq(tally_store_take(store, "never", 5, 1, NULL), TALLY_EFLOOR,
	       "take from a never-flushed key: EFLOOR");
	tap_eq(tally_store_take(store, "pool", 4, 0, NULL), TALLY_EINVAL, "take 0: EINVAL");
	tap_eq(tally_store_give(store, "pool", 4, INT64_MAX, NULL), TALLY_EOVERFLOW,
	       "give past INT64_MAX: EOVERFLOW");
	tap_eq(counter(store, "pool"), 9, "unchanged");
	deltas[0].delta = INT64_MAX;
	deltas[1].delta = 5;
	batch.seq = 2;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EOVERFLOW,
	       "a flush that would overflow a total: EOVERFLOW");
	tap_ok(counter(store, "pool") == 9 && counter(store, "other") == 1,
	       "the whole flush was rolled back");
	deltas[0].delta = -9;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_OK, "seq 2 is still free");
	tap_eq(counter(store, "pool"), 0, "pool 0");
	{
		/* 40 keys: the first 32 go as one multi-row statement, the rest row by row */
		struct tally_store_delta many[40];
		char names[40][8];
		struct tally_store_batch big = { .seq = 3, .counters = many, .counter_count = 40 };
		int exact = 0;

		for (int i = 0; i < 40; i++) {
			snprintf(names[i], sizeof(names[i]), "m%02d", i);
			many[i] = (struct tally_store_delta){ names[i], 3, i == 5 ? INT64_MAX : i };
		}
		tap_eq(tally_store_flush(store, &big, NULL), TALLY_OK, "40 deltas, one is INT64_MAX");
		for (int i = 0; i < 40; i++) {
			many[i].delta = i == 5 ? 1 : 1000;
			exact += counter(store, names[i]) == (i == 5 ? INT64_MAX : i ? i : -1000 -
							      TALLY_ENOTFOUND);
		}
		tap_eq(exact, 40, "each total exact (a zero delta writes no row)");
		big.seq = 4;
		tap_eq(tally_store_flush(store, &big, NULL), TALLY_EOVERFLOW,
		       "an overflow inside a multi-row chunk: EOVERFLOW");
		tap_ok(strstr(tally_store_last_error(store), "counters[0..31]") != NULL, "text: %s",
		       tally_store_last_error(store));
		tap_ok(counter(store, "m39") == 39 && counter(store, "m01") == 1,
		       "the whole flush rolled back (rows before and after the chunk)");
		many[5].delta = -1;
		many[39].delta = INT64_MAX;
		tap_eq(tally_store_flush(store, &big, NULL), TALLY_EOVERFLOW,
		       "an overflow in the row-by-row tail: EOVERFLOW");
		tap_ok(counter(store, "m05") == INT64_MAX && counter(store, "m00") ==
		       -1000 - TALLY_ENOTFOUND, "rolled back");
	}
	tally_store_close(store);
}

/* ---- faults: clear errors, nothing lost -------------------------------------------------- */

/* Runs SQL on the file from outside (an operator, a damaged deployment). */
static int outside_sql(const char *path, const char *sql)
{
	sqlite3 *db;
	int rc = sqlite3_open(path, &db);

	if (rc == SQLITE_OK) {
		sqlite3_busy_timeout(db, 2000);
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	}
	sqlite3_close(db);
	return rc;
}

static int try_open(const char *url, bool create)
{
	struct tally_store_options options = { .create_schema = create };
	struct tally_store *store = NULL;
	int err = tally_store_open(&store, url, &options);

	tally_store_close(store);
	return err;
}

static void test_open_errors(void)
{
	char path[512], url[600];
	FILE *f;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	f = fopen(path, "wb");
	for (int i = 0; f && i < 4096; i++)
		fputc((i * 7919) & 0xff, f);
	if (f)
		fclose(f);
	tap_eq(try_open(url, true), TALLY_ECORRUPT, "a garbage file: ECORRUPT");
	tap_ok(strstr(tally_store_last_error(NULL), "not a database") != NULL, "text: %s",
	       tally_store_last_error(NULL));

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	tap_eq(try_open(url, false), TALLY_EIO, "a missing file without create_schema: EIO");
	tap_eq(try_open(url, true), TALLY_OK, "created");
	tap_eq(outside_sql(path, "UPDATE meta SET value = 99 WHERE name = 'schema_version'"),
	       SQLITE_OK, "an outside change of the schema version");
	tap_eq(try_open(url, true), TALLY_ECORRUPT, "schema version 99: ECORRUPT");
	tap_ok(strstr(tally_store_last_error(NULL), "99") != NULL, "text: %s",
	       tally_store_last_error(NULL));

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	outside_sql(path, "CREATE TABLE unrelated(x)");
	tap_eq(try_open(url, false), TALLY_ECORRUPT, "a database without tally's schema: ECORRUPT");
	tap_eq(outside_sql(path, "CREATE TABLE meta(name TEXT PRIMARY KEY, value INTEGER);"
			   "INSERT INTO meta VALUES('schema_version', 1), "
			   "('lease_generation', 7)"), SQLITE_OK, "a half schema");
	tap_eq(try_open(url, true), TALLY_ECORRUPT, "tables missing: ECORRUPT");

	{
		struct tally_store_options huge = { .writer_ttl_ms = INT64_MAX, .create_schema = true };
		struct tally_store *store = NULL;

		tap_eq(tally_store_open(&store, url, &huge), TALLY_EINVAL,
		       "writer_ttl_ms INT64_MAX (now + ttl would overflow): EINVAL");
		huge = (struct tally_store_options){ .timeout_ms = -1 };
		tap_eq(tally_store_open(&store, url, &huge), TALLY_EINVAL, "timeout_ms -1: EINVAL");
		huge = (struct tally_store_options){ .timeout_ms = TALLY_STORE_DURATION_MAX_MS,
						     .create_schema = true };
		new_db(path, sizeof(path), url, sizeof(url), NULL);
		tap_eq(tally_store_open(&store, url, &huge), TALLY_OK,
		       "timeout_ms at the ceiling (busy timeout clamped to INT32_MAX)");
		tally_store_close(store);
	}
	tap_eq(try_open("sqlite://relative.db", true), TALLY_EINVAL, "relative path: EINVAL");
	tap_eq(try_open("nosuch:///x", true), TALLY_EINVAL, "unknown scheme: EINVAL");
	tap_eq(try_open("sqlite:///tmp/x.db?synchronous=sometimes", true), TALLY_EINVAL,
	       "bad synchronous: EINVAL");
	tap_eq(try_open("sqlite:///tmp/x.db?busy_timeout_ms=-3", true), TALLY_EINVAL,
	       "bad busy_timeout_ms: EINVAL");
	tap_eq(try_open("sqlite:///tmp/x.db?colour=red", true), TALLY_EINVAL,
	       "unknown option: EINVAL");
	tap_eq(try_open("sqlite://admin:hunter2@/tmp/x.db", true), TALLY_EINVAL,
	       "a URL with a password: EINVAL for sqlite");
	tap_ok(strstr(tally_store_last_error(NULL), "hunter2") == NULL,
	       "the password is not in the error text: %s", tally_store_last_error(NULL));
	tap_eq(try_open("sqlite:///tmp/x%zz.db", true), TALLY_EINVAL, "bad percent escape: EINVAL");
}

static void test_busy(void)
{
	char path[512], url[600];
	struct tally_store *store;
	struct tally_store_delta deltas[] = { DELTA("busy", 1) };
	struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 1 };
	sqlite3 *holder;

	new_db(path, sizeof(path), url, sizeof(url), "?busy_timeout_ms=50&synchronous=normal");
	store = open_store(url, "busy", 0);
	if (!tap_ok(store && !tally_store_writer_open(store, NULL), "busy: open"))
		return;
	sqlite3_open(path, &holder);
	tap_eq(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK,
	       "another process holds the write lock");
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EBUSY, "flush: EBUSY after 50 ms");
	tap_ok(tally_store_err_transient(TALLY_EBUSY), "EBUSY is transient");
	sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(holder);
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_OK, "the same batch, re-sent, lands");
	tap_eq(counter(store, "busy"), 1, "once");
	tally_store_close(store);
}

static void test_deleted_file(void)
{
	char path[512], url[600], saved[2400], side[600];
	struct tally_store *store;
	struct tally_store_delta deltas[] = { DELTA("kept", 1) };
	struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 1 };

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	store = open_store(url, "orphan", 0);
	if (!tap_ok(store && !tally_store_writer_open(store, NULL), "deleted file: open"))
		return;
	tally_store_flush(store, &batch, NULL);
	snprintf(saved, sizeof(saved), "%s.saved", path);
	tap_eq(link(path, saved), 0, "an operator keeps a hard link");
	tap_eq(unlink(path), 0, "and deletes the file under the running writer");
	batch.seq = 2;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EIO, "flush: EIO, not success");
	tap_ok(strstr(tally_store_last_error(store), "gone") != NULL, "text: %s",
	       tally_store_last_error(store));
	tap_eq(tally_store_heartbeat(store), TALLY_EIO, "heartbeat: EIO");
	tap_eq(rename(saved, path), 0, "the file comes back (same inode)");
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_OK, "the kept batch lands");
	tap_eq(counter(store, "kept"), 2, "nothing lost, nothing doubled");

	snprintf(side, sizeof(side), "%s.copy", path);
	snprintf(saved, sizeof(saved), "cp '%s' '%s' && mv '%s' '%s'", path, side, side, path);
	tap_eq(system(saved), 0, "the file is replaced by a copy");
	batch.seq = 3;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EIO, "flush into a replaced file: EIO");
	tap_ok(strstr(tally_store_last_error(store), "replaced") != NULL, "text: %s",
	       tally_store_last_error(store));
	tally_store_close(store);
}

/* Child-side checks report the first failure as the exit status. */
#define CHILD_CHECK(n, cond) do { if (!(cond)) _exit(n); } while (0)

static int wait_child(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_unwritable(void)
{
	char path[512], url[600];
	struct tally_store *store;
	pid_t pid;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	store = open_store(url, "setup", 0);
	tally_store_close(store);
	chmod(tmpdir, 0755);
	chmod(path, 0444);
	pid = fork();
	if (pid == 0) {
		struct tally_store_delta deltas[] = { DELTA("ro", 1) };
		struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 1 };
		struct tally_store_options options = { .writer_id = "ro" };
		int err;

		/* root ignores file modes: drop to nobody to make the file really unwritable */
		if (getuid() == 0)
			CHILD_CHECK(10, setgid(65534) == 0 && setuid(65534) == 0);
		err = tally_store_open(&store, url, &options);
		printf("# unwritable: open %s (%s)\n", tally_strerror(err),
		       tally_store_last_error(NULL));
		fflush(stdout);
		if (err) /* read-only WAL may refuse to open at all: a clear permanent error */
			_exit(err == TALLY_EPERM &&
			      strstr(tally_store_last_error(NULL), "readonly") ? 0 : 11);
		err = tally_store_writer_open(store, NULL);
		printf("# unwritable: writer_open %s (%s)\n", tally_strerror(err),
		       tally_store_last_error(store));
		fflush(stdout);
		CHILD_CHECK(12, err == TALLY_EPERM);
		CHILD_CHECK(13, strstr(tally_store_last_error(store), "readonly") ||
				strstr(tally_store_last_error(store), "read-only") ||
				strstr(tally_store_last_error(store), "read only"));
		CHILD_CHECK(14, !tally_store_err_transient(err));
		(void)batch;
		tally_store_close(store);
		_exit(0);
	}
	tap_eq(wait_child(pid), 0, "unwritable file: EPERM (permanent) with a clear text");
	chmod(path, 0644);
	chmod(tmpdir, 0700);
}

static void test_disk_full(void)
{
	char path[512], url[600];
	pid_t pid;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	pid = fork();
	if (pid == 0) {
		enum { KEYS = 4000 };
		static struct tally_store_delta deltas[KEYS];
		static char names[KEYS][300];
		struct tally_store_batch batch = { .seq = 1, .counters = deltas,
						   .counter_count = KEYS };
		struct rlimit small = { 64 * 1024, RLIM_INFINITY }, restored;
		struct tally_store *store = open_store(url, "full", 0);
		int64_t total = 0;
		int err;

		CHILD_CHECK(20, store && !tally_store_writer_open(store, NULL));
		for (int i = 0; i < KEYS; i++) {
			memset(names[i], 'a' + i % 26, sizeof(names[i]) - 1);
			snprintf(names[i], 16, "%06d", i);
			names[i][6] = '-';
			deltas[i] = (struct tally_store_delta){ names[i], sizeof(names[i]) - 1, 1 };
		}
		signal(SIGXFSZ, SIG_IGN);
		getrlimit(RLIMIT_FSIZE, &restored);
		CHILD_CHECK(21, setrlimit(RLIMIT_FSIZE, &small) == 0);
		err = tally_store_flush(store, &batch, NULL);
		CHILD_CHECK(22, err == TALLY_EIO);
		CHILD_CHECK(23, tally_store_err_transient(err));
		CHILD_CHECK(24, tally_store_last_error(store)[0] != '\0');
		CHILD_CHECK(25, setrlimit(RLIMIT_FSIZE, &restored) == 0);
		err = tally_store_flush(store, &batch, NULL);
		CHILD_CHECK(26, err == TALLY_OK);
		CHILD_CHECK(27, !tally_store_read_counter(store, names[KEYS - 1],
							  sizeof(names[0]) - 1, &total));
		CHILD_CHECK(28, total == 1);
		tally_store_close(store);
		_exit(0);
	}
	tap_eq(wait_child(pid), 0, "disk full (RLIMIT_FSIZE): EIO, then the kept batch lands once");
}

static void test_lease_reset(void)
{
	char path[512], url[600];
	struct tally_store *store, *fresh;
	struct tally_lease_provider *lease, *fresh_lease;
	struct tally_lease_record record;
	uint64_t base = 99;

	new_db(path, sizeof(path), url, sizeof(url), "?synchronous=normal");
	store = open_store(url, "leases", 0);
	if (!tap_ok(store && !tally_store_lease_provider(store, &lease), "leases: provider"))
		return;
	tap_eq(tally_lease_read(lease, "inv", 3, &record), TALLY_ENOTFOUND,
	       "a key never acquired: ENOTFOUND");
	tap_eq(tally_lease_acquire(lease, "inv", 3, 0, 100, 0, &base), TALLY_OK, "acquire 100");
	tap_eq(base, 0, "base 0");
	tap_eq(tally_lease_acquire(lease, "inv", 3, 0, 100, 40, &base), TALLY_OK, "acquire 100");
	tap_eq(base, 100, "base 100");
	tap_eq(tally_lease_close(lease, "inv", 3, 200, 150), TALLY_OK, "close at 150");
	tally_lease_read(lease, "inv", 3, &record);
	tap_ok(record.mark == 150 && record.issued == 150 && record.flags == TALLY_LEASE_CLEAN,
	       "the unused rest is given back, clean");
	tap_eq(tally_lease_acquire(lease, "inv", 3, 0, 10, 150, &base), TALLY_OK, "acquire");
	tap_eq(base, 150, "continues at 150");
	tap_eq(tally_lease_acquire(lease, "b", 1, UINT64_MAX - 5, 10, 0, &base), TALLY_EINVAL,
	       "mark out of range: EINVAL");
	tap_eq(tally_lease_read(lease, "b", 1, &record), TALLY_ENOTFOUND,
	       "and the failed acquire wrote nothing (issue 17 item 3)");

	tap_eq(outside_sql(path, "DELETE FROM leases"), SQLITE_OK, "the lease table is emptied");
	tap_eq(tally_lease_acquire(lease, "inv", 3, 0, 10, 0, &base), TALLY_ECORRUPT,
	       "acquire after a reset: ECORRUPT, never base 0");
	tap_ok(strstr(tally_store_last_error(store), "reset") != NULL, "text: %s",
	       tally_store_last_error(store));
	tap_eq(tally_lease_read(lease, "inv", 3, &record), TALLY_ECORRUPT,
	       "read after a reset: ECORRUPT, not ENOTFOUND");
	fresh = open_store(url, "leases2", 0);
	tally_store_lease_provider(fresh, &fresh_lease);
	tap_eq(tally_lease_acquire(fresh_lease, "new", 3, 0, 10, 0, &base), TALLY_ECORRUPT,
	       "a new process sees the reset too, for any key");
	tally_lease_provider_destroy(fresh_lease);
	tally_store_close(fresh);

	tap_eq(outside_sql(path, "UPDATE meta SET value = 0 WHERE name = 'lease_rows'"),
	       SQLITE_OK, "an operator repairs the row count deliberately");
	tap_eq(tally_lease_acquire(lease, "new", 3, 0, 10, 0, &base), TALLY_OK, "leases work again");
	tap_eq(outside_sql(path, "UPDATE meta SET value = value + 1 WHERE name = 'lease_generation'"),
	       SQLITE_OK, "the generation changes (a re-created table)");
	tap_eq(tally_lease_acquire(lease, "new", 3, 0, 10, 0, &base), TALLY_ECORRUPT,
	       "a provider that saw the old generation: ECORRUPT");
	tally_lease_provider_destroy(lease);
	tally_store_close(store);
}

/* ---- several writer processes (fork + exec), SIGKILL mid-flush, restarts ---------------- */

static char worker_path[512];

struct worker {
	pid_t pid;
	int fd;              /* the worker's stdout */
	char line[256];
	size_t used;
	bool eof, done, error;
	uint64_t acked;      /* last "acked S" */
	uint64_t open[4];    /* the "open" line: epoch, prior epoch, prior last seq, reaped */
	uint64_t *numbers;   /* lease mode: every "n N" */
	size_t number_count, number_capacity;
};

static int start_worker(struct worker *w, const char *url, const char *id, const char *mode,
			const char *a, const char *b, const char *c)
{
	int fds[2];

	memset(w, 0, sizeof(*w));
	if (pipe(fds) != 0)
		return -1;
	w->pid = fork();
	if (w->pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execl(worker_path, worker_path, url, id, mode, a, b, c, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	w->fd = fds[0];
	fcntl(w->fd, F_SETFL, O_NONBLOCK);
	return w->pid > 0 ? 0 : -1;
}

static void worker_line(struct worker *w, const char *line)
{
	unsigned long long a, b, c, d;

	if (sscanf(line, "acked %llu", &a) == 1) {
		w->acked = a;
	} else if (sscanf(line, "n %llu", &a) == 1) {
		if (w->number_count == w->number_capacity) {
			w->number_capacity = w->number_capacity ? w->number_capacity * 2 : 256;
			w->numbers = realloc(w->numbers, w->number_capacity * sizeof(*w->numbers));
		}
		w->numbers[w->number_count++] = a;
	} else if (sscanf(line, "open %llu %llu %llu %llu", &a, &b, &c, &d) == 4) {
		w->open[0] = a, w->open[1] = b, w->open[2] = c, w->open[3] = d;
	} else if (strcmp(line, "done") == 0) {
		w->done = true;
	} else {
		w->error = true;
		printf("# worker %d: %s\n", (int)w->pid, line);
	}
}

/* Reads what the worker wrote so far; returns false at EOF. */
static bool worker_read(struct worker *w)
{
	char buf[4096];
	ssize_t got;

	while (!w->eof && (got = read(w->fd, buf, sizeof(buf))) != 0) {
		if (got < 0)
			return errno == EAGAIN || errno == EINTR;
		for (ssize_t i = 0; i < got; i++) {
			if (buf[i] != '\n') {
				if (w->used < sizeof(w->line) - 1)
					w->line[w->used++] = buf[i];
				continue;
			}
			w->line[w->used] = '\0';
			worker_line(w, w->line);
			w->used = 0;
		}
	}
	w->eof = true;
	return false;
}

/* Reads every worker's output for ms, or until until(w) holds for `target`. */
static void pump(struct worker *workers, int count, int ms, struct worker *target,
		 bool (*until)(const struct worker *))
{
	for (int waited = 0; waited < ms; waited += 2) {
		for (int i = 0; i < count; i++)
			worker_read(&workers[i]);
		if (target && until(target))
			return;
		sleep_ms(2);
	}
}

static int reap_worker(struct worker *w, int sig)
{
	int status;

	if (sig)
		kill(w->pid, sig);
	while (worker_read(w))
		sleep_ms(1);
	close(w->fd);
	waitpid(w->pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool acked_15(const struct worker *w) { return w->acked >= 15 || w->eof; }
static bool finished(const struct worker *w) { return w->eof; }

struct last_seqs {
	char ids[3][8];
	uint64_t last_seq[3], epoch[3];
};

static int note_last_seq(const struct tally_store_writer_info *info, void *arg)
{
	struct last_seqs *seqs = arg;

	for (int i = 0; i < 3; i++) {
		if (strcmp(info->writer_id, seqs->ids[i]) == 0) {
			seqs->last_seq[i] = info->last_seq;
			seqs->epoch[i] = info->epoch;
		}
	}
	return 0;
}

#define PROC_KEYS 20

static void test_processes(void)
{
	char path[512], url[600];
	struct worker w[3], restarted;
	struct last_seqs seqs = { .ids = { "p0", "p1", "p2" } };
	struct tally_store *store;
	int64_t reaped = -1, live = -1, exact = 0, expected;
	uint64_t killed_acked;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	store = open_store(url, "observer", 0);
	/* p1 (killed) has a 400 ms lease; p0 and p2 a long one, so that a process starved of
	 * the write lock for a while (SQLite's lock is not fair, and TSan is slow) is never
	 * reaped while alive here */
	for (int i = 0; i < 3; i++)
		start_worker(&w[i], url, seqs.ids[i], "flush", i == 1 ? "400" : "30000", "20", "0");
	for (int i = 0; i < 3; i++) /* every process has flushed (and set its gauge) */
		pump(w, 3, 20000, &w[i], acked_15);
	tap_ok(w[0].acked >= 15 && w[1].acked >= 15 && w[2].acked >= 15,
	       "processes: p1 acknowledged %" PRIu64 " flushes, p0 and p2 at least 15", w[1].acked);
	tap_eq(reap_worker(&w[1], SIGKILL), 128 + SIGKILL, "p1 SIGKILLed mid-run");
	killed_acked = w[1].acked;
	pump(w, 3, 600, NULL, NULL); /* p1's 400 ms lease runs out; p0, p2 keep flushing */
	tap_eq(tally_store_reap(store, &reaped), TALLY_OK, "reap");
	tap_eq(reaped, 1, "only the dead writer is reaped");
	tap_eq(gauge(store, "live", &live), 2, "its gauge contribution left the global value");
	tap_eq(live, 2, "two live contributors");

	start_worker(&restarted, url, "p1", "flush", "400", "20", "10");
	pump(&restarted, 1, 20000, &restarted, finished);
	tap_eq(reap_worker(&restarted, 0), 0, "p1 restarted: 10 flushes, clean close");
	tap_ok(restarted.done, "restarted p1 finished");
	tap_eq(restarted.open[0], 2, "new epoch 2");
	tap_eq(restarted.open[1], 1, "prior epoch 1");
	tap_ok(restarted.open[2] == killed_acked || restarted.open[2] == killed_acked + 1,
	       "prior_last_seq %" PRIu64 " is the acked %" PRIu64 " (or one more, in flight)",
	       restarted.open[2], killed_acked);
	tap_eq(restarted.open[3], 1, "prior reaped");
	for (int i = 0; i < 3; i += 2)
		reap_worker(&w[i], SIGKILL);
	tally_store_writers(store, note_last_seq, &seqs);
	tap_ok(seqs.last_seq[0] - w[0].acked <= 1 && seqs.last_seq[2] - w[2].acked <= 1,
	       "p0, p2: the store's last seq is the acked one or one more");
	expected = (int64_t)(restarted.open[2] + seqs.last_seq[1] + seqs.last_seq[0] +
			     seqs.last_seq[2]);
	for (int k = 0; k < PROC_KEYS; k++) {
		char key[16];

		snprintf(key, sizeof(key), "k%d", k);
		exact += counter(store, key) == expected;
	}
	tap_eq(exact, PROC_KEYS, "every key's total = the flushes the store applied (%" PRId64 "), "
	       "each once", expected);
	tap_ok(expected >= (int64_t)(killed_acked + 10 + w[0].acked + w[2].acked),
	       "and includes every acknowledged flush");
	tap_eq(gauge(store, "live", &live), 2,
	       "killed p0, p2 still count until their leases expire (p1 closed cleanly)");
	tap_eq(tally_store_reap(store, &reaped), TALLY_OK, "reap");
	tap_eq(reaped, 0, "nothing to reap before the expiry");
	tally_store_close(store);
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Every number the workers printed, sorted: how many appear more than once. Frees them. */
static size_t count_duplicates(struct worker *w, int count, size_t *total)
{
	uint64_t *all;
	size_t duplicates = 0;

	*total = 0;
	for (int i = 0; i < count; i++)
		*total += w[i].number_count;
	all = malloc(*total * sizeof(*all) + 1);
	*total = 0;
	for (int i = 0; i < count; i++) {
		if (w[i].number_count)
			memcpy(all + *total, w[i].numbers, w[i].number_count * sizeof(*all));
		*total += w[i].number_count;
		free(w[i].numbers);
	}
	qsort(all, *total, sizeof(*all), compare_u64);
	for (size_t i = 1; i < *total; i++)
		duplicates += all[i] == all[i - 1];
	free(all);
	return duplicates;
}

static bool numbers_100(const struct worker *w) { return w->number_count >= 100 || w->eof; }

/* Several processes open one new file at once: each may be the one that creates the schema
 * and switches the file to WAL, and the others must wait for it (busy_timeout_ms), never
 * fail with "database is locked". */
static void test_open_race(void)
{
	enum { ROUNDS = 5, WORKERS = 8 };
	int opened = 0, total = 0;

	for (int round = 0; round < ROUNDS; round++) {
		char path[512], url[600], id[16];
		struct worker workers[WORKERS];

		new_db(path, sizeof(path), url, sizeof(url), "?synchronous=normal");
		for (int i = 0; i < WORKERS; i++) {
			snprintf(id, sizeof(id), "race%d", i);
			start_worker(&workers[i], url, id, "flush", "10000", "1", "1");
		}
		for (int i = 0; i < WORKERS; i++) {
			int status = reap_worker(&workers[i], 0);

			total++;
			opened += status == 0 && workers[i].done;
			free(workers[i].numbers);
		}
	}
	tap_eq(opened, total, "open race: %d processes x %d new files, every open and flush "
	       "succeeded", WORKERS, ROUNDS);
}

static void test_lease_processes(void)
{
	char path[512], url[600];
	struct worker w[4];
	size_t total = 0, duplicates = 0;
	bool ok = true;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	for (int i = 0; i < 3; i++)
		start_worker(&w[i], url, "lease", "lease", "inv", "10", "300");
	pump(w, 3, 20000, &w[1], numbers_100);
	tap_eq(reap_worker(&w[1], SIGKILL), 128 + SIGKILL, "leases: one process SIGKILLed");
	start_worker(&w[3], url, "lease", "lease", "inv", "10", "30");
	for (int i = 0; i < 4; i++)
		if (i != 1)
			ok &= reap_worker(&w[i], 0) == 0 && w[i].done;
	tap_ok(ok, "the others and the restarted one finish");
	duplicates = count_duplicates(w, 4, &total);
	tap_ok(total >= 100 + 2 * 2995 + 295, "%zu numbers from 4 incarnations", total);
	tap_eq(duplicates, 0, "zero duplicates");
}

/* Strict and cached tally_sequence series over the store's lease provider, 3 processes of
 * 2 threads each on one tenant, one SIGKILLed and restarted: no number twice. */
static void test_series_processes(const char *mode)
{
	char path[512], url[600];
	struct worker w[4];
	size_t total = 0, duplicates = 0;
	bool ok = true;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	for (int i = 0; i < 3; i++)
		start_worker(&w[i], url, "seq", "series", "acme", mode, "2000");
	pump(w, 3, 20000, &w[1], numbers_100);
	reap_worker(&w[1], SIGKILL);
	start_worker(&w[3], url, "seq", "series", "acme", mode, "200");
	for (int i = 0; i < 4; i++)
		if (i != 1)
			ok &= reap_worker(&w[i], 0) == 0 && w[i].done;
	tap_ok(ok, "%s series: 3 processes, one SIGKILLed and restarted", mode);
	duplicates = count_duplicates(w, 4, &total);
	tap_ok(total >= 100 + 2 * 2000 + 200, "%s: %zu numbers", mode, total);
	tap_eq(duplicates, 0, "%s: zero duplicates across processes and incarnations", mode);
}

/* ---- the backend registry, generated writer ids, error classes -------------------------- */

/* A backend that is always down: enough to see the scheme dispatch reach it. */
static int down_open(const char *url, const struct tally_store_options *options, void **impl,
		     char *error, size_t error_size)
{
	snprintf(error, error_size, "down: the custom backend is down");
	return TALLY_EUNAVAIL;
}

static void down_close(void *impl) { }
static int down_writer_open(void *i, const char *w, int64_t t, struct tally_store_epoch_info *e)
{ return TALLY_EUNAVAIL; }
static int down_heartbeat(void *i, const char *w, uint64_t e, int64_t t) { return TALLY_EUNAVAIL; }
static int down_flush(void *i, const char *w, uint64_t e, int64_t t,
		      const struct tally_store_batch *b, struct tally_store_flush_result *r)
{ return TALLY_EUNAVAIL; }
static int down_writer_close(void *i, const char *w, uint64_t e) { return TALLY_EUNAVAIL; }
static int down_read(void *i, const char *k, size_t l, int64_t *t) { return TALLY_EUNAVAIL; }
static int down_gauge(void *i, const char *k, size_t l, int64_t *v, int64_t *n)
{ return TALLY_EUNAVAIL; }
static int down_counters(void *i, tally_store_counter_fn f, void *a) { return TALLY_EUNAVAIL; }
static int down_writers(void *i, tally_store_writer_fn f, void *a) { return TALLY_EUNAVAIL; }
static int down_sessions(void *i, const char *w, tally_store_session_fn f, void *a)
{ return TALLY_EUNAVAIL; }
static int down_connections(void *i, const char *s, tally_store_connection_fn f, void *a)
{ return TALLY_EUNAVAIL; }
static int down_reap(void *i, int64_t *r) { return TALLY_EUNAVAIL; }
static int down_take(void *i, const char *k, size_t l, int64_t n, int64_t *r)
{ return TALLY_EUNAVAIL; }

#define DOWN_OPS(name) { .scheme = (name), .open = down_open, .close = down_close, \
	.writer_open = down_writer_open, .heartbeat = down_heartbeat, .flush = down_flush, \
	.writer_close = down_writer_close, .read_counter = down_read, .read_gauge = down_gauge, \
	.counters = down_counters, .writers = down_writers, .sessions = down_sessions, \
	.connections = down_connections, .reap = down_reap, .take = down_take, .give = down_take }

static void test_registry(void)
{
	static const struct tally_store_ops down = DOWN_OPS("down");
	static const struct tally_store_ops clash = DOWN_OPS("sqlite");
	static struct tally_store_ops more[16];
	static char names[16][16];
	struct tally_store_ops incomplete = DOWN_OPS("half");
	struct tally_store *store = NULL;
	int full = TALLY_OK, added = 0;

	incomplete.flush = NULL;
	tap_eq(tally_store_register_backend(&down), TALLY_OK, "registry: register \"down\"");
	tap_eq(try_open("down://somewhere", true), TALLY_EUNAVAIL, "its scheme reaches its open");
	tap_ok(strcmp(tally_store_last_error(NULL), "down: the custom backend is down") == 0,
	       "with its error text: %s", tally_store_last_error(NULL));
	tap_eq(tally_store_register_backend(&down), TALLY_EEXIST, "the same scheme again: EEXIST");
	tap_eq(tally_store_register_backend(&clash), TALLY_EEXIST, "a built-in scheme: EEXIST");
	tap_eq(tally_store_register_backend(&incomplete), TALLY_EINVAL, "ops without flush: EINVAL");
	tap_eq(tally_store_register_backend(NULL), TALLY_EINVAL, "NULL: EINVAL");
	for (int i = 0; i < 16 && !full; i++) {
		snprintf(names[i], sizeof(names[i]), "extra%d", i);
		more[i] = (struct tally_store_ops)DOWN_OPS(names[i]);
		full = tally_store_register_backend(&more[i]);
		added += full == TALLY_OK;
	}
	tap_eq(added, 15, "15 more fit (16 in all)");
	tap_eq(full, TALLY_EFULL, "the 17th: EFULL");
	tap_eq(tally_store_open(&store, NULL, NULL), TALLY_EINVAL, "open with a NULL URL: EINVAL");
}

static void test_generated_id(void)
{
	char path[512], url[600], id[TALLY_STORE_WRITER_ID_MAX + 1], host[64] = "";
	char prefix[TALLY_STORE_WRITER_ID_MAX + 1];
	struct tally_store *a, *b;
	uint64_t epoch;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	a = open_store(url, NULL, 0);
	b = open_store(url, NULL, 0);
	if (!tap_ok(a && b && !tally_store_writer_open(a, NULL) && !tally_store_writer_open(b, NULL),
		    "generated ids: two handles without a writer id"))
		return;
	tally_store_writer_identity(a, id, &epoch);
	gethostname(host, sizeof(host) - 1);
	snprintf(prefix, sizeof(prefix), "%s-%ld-", host, (long)getpid());
	tap_ok(strncmp(id, prefix, strlen(prefix)) == 0 && strlen(id) == strlen(prefix) + 16,
	       "host-pid-16hex: %s", id);
	tap_eq(epoch, 1, "a new id starts at epoch 1");
	tally_store_writer_identity(b, prefix, &epoch);
	tap_ok(strcmp(id, prefix) != 0 && epoch == 1, "two handles get two ids (random bits)");
	tally_store_close(a);
	tally_store_close(b);

	for (int err = 0, wrong = 0; err <= TALLY_ERR_COUNT; err++) {
		bool want = err == TALLY_EUNAVAIL || err == TALLY_EBUSY || err == TALLY_ETIMEDOUT ||
			    err == TALLY_EIO;

		wrong += tally_store_err_transient(err) != want;
		if (err == TALLY_ERR_COUNT)
			tap_eq(wrong, 0, "err_transient: exactly EUNAVAIL, EBUSY, ETIMEDOUT, EIO");
	}
}

int main(int argc, char **argv)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/tally-store-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	snprintf(worker_path, sizeof(worker_path), "%s", argc > 0 ? argv[0] : "tests/x");
	snprintf(strrchr(worker_path, '/') ? strrchr(worker_path, '/') + 1 : worker_path,
		 sizeof(worker_path) - (size_t)(strrchr(worker_path, '/') ? strrchr(worker_path, '/') + 1 - worker_path : 0),
		 "worker");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_basics();
	test_registry();
	test_generated_id();
	test_fencing();
	test_reap();
	test_listener_recount();
	test_concurrent();
	test_hostile_keys();
	test_take();
	test_open_errors();
	test_busy();
	test_deleted_file();
	test_unwritable();
	test_disk_full();
	test_lease_reset();
	test_processes();
	test_open_race();
	test_lease_processes();
	test_series_processes("strict");
	test_series_processes("cached");
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
	return tap_done();
}
