/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store_sqlite.c: the store interface (tally/store.h) over the SQLite backend, on real
 * files in a temporary directory, with real threads and real processes (tests/store_worker,
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

#include "tap.h"
#include "threads.h"

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

static int collect_connection(const struct tally_connection_info *c, const char *writer_id,
			      uint64_t epoch, void *arg)
{
	struct collect *col = arg;

	if (col->count < 16)
		strcpy(col->ids[col->count], c->connection_id);
	col->count++;
	return 0;
}

static int collect_session(const struct tally_session_info *s, const char *writer_id,
			   uint64_t epoch, void *arg)
{
	struct collect *col = arg;

	if (col->count < 16)
		strcpy(col->ids[col->count], s->session_id);
	col->count++;
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

static struct tally_store_record session_put(const char *id, int64_t listeners)
{
	struct tally_store_record r = { .kind = TALLY_STORE_SESSION, .op = TALLY_STORE_PUT };

	snprintf(r.as.session.session_id, sizeof(r.as.session.session_id), "%s", id);
	strcpy(r.as.session.speaker_connection_id, "c-speaker");
	strcpy(r.as.session.source_language, "en");
	strcpy(r.as.session.quality_tier, "premium");
	r.as.session.created_at = 1700000000000;
	r.as.session.listener_count = listeners;
	r.as.session.active = 1;
	return r;
}

static struct tally_store_record connection_put(const char *id, const char *session, int role,
						const char *language)
{
	struct tally_store_record r = { .kind = TALLY_STORE_CONNECTION, .op = TALLY_STORE_PUT };

	snprintf(r.as.connection.connection_id, sizeof(r.as.connection.connection_id), "%s", id);
	snprintf(r.as.connection.session_id, sizeof(r.as.connection.session_id), "%s", session);
	snprintf(r.as.connection.target_language, sizeof(r.as.connection.target_language), "%s",
		 language);
	strcpy(r.as.connection.client_address, "[::1]:4242");
	r.as.connection.role = role;
	r.as.connection.connected_at = 1700000000001;
	return r;
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
	int64_t sum_expected = 0;

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
	for (int h = 0; h < CONC_HANDLES; h++)
		for (int k = 0; k < CONC_KEYS; k++)
			sum_expected += sh.expected[h][k] != 0;
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
	tally_store_close(store);
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/tally-store-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_basics();
	test_fencing();
	test_reap();
	test_concurrent();
	test_hostile_keys();
	test_take();
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
	return tap_done();
}
