/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/store_postgres.c: the PostgreSQL store backend against what a user would otherwise
 * write, in one program and one run, against one local server (TALLY_PG_URL; started by
 * bench/store_postgres.sh). Without TALLY_PG_URL it registers nothing and says so.
 * Families (no underscore, see mk/bench.am):
 *
 * BM_pgflush_{tally,pipeline}/KEYS
 *	flush capacity: one flush of KEYS dirty counter keys per iteration, items = keys.
 *	tally is tally_store_flush (one statement: the writer guard and an unnest upsert of
 *	every key, docs/store-postgres.md); pipeline is the same transaction written with
 *	libpq's pipeline mode: BEGIN, the same guard, one prepared upsert per key, COMMIT,
 *	one Sync, all sent before any reply is read (non-blocking, flushed from a poll loop).
 * BM_pgincr_{tally,seeds}/real_time/threads:2
 *	2 threads incrementing one counter key. tally: tally_counter_inc, with a thread
 *	flushing the drained delta to PostgreSQL every 100 ms (direct tally_store_flush
 *	calls: the write-behind flusher's job, done here by hand so this program needs only
 *	the store); the run ends with a final flush and checks the store total. seeds: one
 *	`UPDATE ... SET v = v + 1` per increment, each its own round trip and commit (the
 *	seeds' design). Counters: flushes_per_s, rows_per_flush, flush_p50_ms, flush_p99_ms.
 * BM_pginvoice_{tally,nextval,rowlock}
 *	invoice numbers: tally strict series with the store's lease provider (lease 1,000,
 *	one committed UPDATE ... RETURNING per 1,000 numbers); nextval() of a PostgreSQL
 *	sequence per number; a row-locked counter, UPDATE ... SET v = v + 1 RETURNING v per
 *	number (the seeds' FR-1 design).
 *
 * Every run checks its result (totals, the store total after the last flush) and reports an
 * error if it is wrong.
 */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tally/counter.h>
#include <tally/sequence.h>
#include <tally/store.h>

#include "harness.h"

#define FLUSH_INTERVAL_MS 100
#define MAX_KEYS 10000
#define MAX_FLUSHES 4096

static const char *url;
static struct tally_store *store;
static char keys[MAX_KEYS][24];
static uint64_t next_seq;

static int64_t now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static void ignore_notice(void *arg, const char *message)
{
}

static PGconn *connect_or_die(void)
{
	PGconn *conn = PQconnectdb(url);

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "store_postgres bench: cannot connect: %s", PQerrorMessage(conn));
		exit(1);
	}
	PQsetNoticeProcessor(conn, ignore_notice, NULL);
	return conn;
}

static bool exec_ok(PGconn *conn, const char *sql)
{
	PGresult *result = PQexec(conn, sql);
	bool ok = PQresultStatus(result) == PGRES_COMMAND_OK ||
		  PQresultStatus(result) == PGRES_TUPLES_OK;

	if (!ok)
		fprintf(stderr, "bench: %s: %s", sql, PQresultErrorMessage(result));
	PQclear(result);
	return ok;
}

/* ---- flush capacity ------------------------------------------------------------------- */

static struct tally_store_delta flush_deltas[MAX_KEYS];
static char writer_id[TALLY_STORE_WRITER_ID_MAX + 1];
static uint64_t writer_epoch;

static void flush_setup(const struct bench_state *state)
{
	struct tally_store_options options = { .writer_id = "bench-flush", .timeout_ms = 60000,
					       .create_schema = true };

	if (tally_store_open(&store, url, &options) || tally_store_writer_open(store, NULL) ||
	    tally_store_writer_identity(store, writer_id, &writer_epoch))
		abort();
	next_seq = 1;
	for (int i = 0; i < MAX_KEYS; i++)
		flush_deltas[i] = (struct tally_store_delta){ keys[i], strlen(keys[i]), 1 };
}

static void flush_teardown(const struct bench_state *state)
{
	tally_store_writer_close(store);
	tally_store_close(store);
	store = NULL;
}

static void bm_pgflush_tally(struct bench_state *state)
{
	int64_t count = bench_range(state, 0);

	while (bench_keep_running(state)) {
		struct tally_store_batch batch = { .seq = next_seq++, .counters = flush_deltas,
						   .counter_count = (size_t)count };
		struct tally_store_flush_result result;

		if (tally_store_flush(store, &batch, &result) || result.rows_written != count) {
			bench_skip_with_error(state, "tally_store_flush failed");
			break;
		}
	}
	bench_set_items_processed(state, bench_iterations(state) * count);
}

/* Sends everything, then flushes the output while reading input (so neither side's socket
 * buffer can fill and stall the other: the deadlock the pipeline docs warn of), then reads
 * every result up to the Sync. Returns the number of failed statements, -1 on I/O error. */
static int pipeline_finish(PGconn *conn)
{
	int failures = 0;
	PGresult *result;

	if (!PQpipelineSync(conn))
		return -1;
	for (;;) {
		int pending = PQflush(conn);
		struct pollfd fd = { .fd = PQsocket(conn), .events = POLLIN };

		if (pending < 0)
			return -1;
		if (pending == 0 && !PQisBusy(conn)) {
			result = PQgetResult(conn);
			if (!result)
				continue; /* the end of one statement's results */
			if (PQresultStatus(result) == PGRES_PIPELINE_SYNC) {
				PQclear(result);
				return failures;
			}
			if (PQresultStatus(result) != PGRES_COMMAND_OK &&
			    PQresultStatus(result) != PGRES_TUPLES_OK)
				failures++;
			PQclear(result);
			continue;
		}
		if (pending)
			fd.events |= POLLOUT;
		if (poll(&fd, 1, 10000) <= 0 || !PQconsumeInput(conn))
			return -1;
	}
}

static PGconn *pipeline_conn;

static void pipeline_setup(const struct bench_state *state)
{
	flush_setup(state);
	pipeline_conn = connect_or_die();
	/* The guard: refuses (division by zero aborts the pipeline, hence the transaction)
	 * unless the epoch is current and seq follows; the per-key upsert of the same table. */
	PQclear(PQprepare(pipeline_conn, "guard",
			  "WITH w AS (UPDATE tally_writers SET last_seq = $3,"
			  " expires_at = now() + interval '10 s' WHERE writer_id = $1 AND epoch = $2"
			  " AND NOT reaped AND last_seq = $3 - 1 RETURNING 1)"
			  " SELECT 1 / count(*) FROM w", 0, NULL));
	PQclear(PQprepare(pipeline_conn, "upsert",
			  "INSERT INTO tally_counters AS t VALUES ($1, $2)"
			  " ON CONFLICT (k) DO UPDATE SET v = t.v + EXCLUDED.v", 0, NULL));
	if (PQsetnonblocking(pipeline_conn, 1) || !PQenterPipelineMode(pipeline_conn))
		abort();
}

static void pipeline_teardown(const struct bench_state *state)
{
	PQfinish(pipeline_conn);
	flush_teardown(state);
}

static void bm_pgflush_pipeline(struct bench_state *state)
{
	int64_t count = bench_range(state, 0);
	char epoch_text[24], seq_text[24];
	const char *guard[3] = { writer_id, epoch_text, seq_text };
	int formats[2] = { 1, 0 };

	snprintf(epoch_text, sizeof(epoch_text), "%llu", (unsigned long long)writer_epoch);
	while (bench_keep_running(state)) {
		bool sent = true;

		snprintf(seq_text, sizeof(seq_text), "%llu", (unsigned long long)next_seq++);
		sent &= PQsendQueryParams(pipeline_conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
		sent &= PQsendQueryPrepared(pipeline_conn, "guard", 3, guard, NULL, NULL, 0);
		for (int64_t i = 0; i < count; i++) {
			const char *values[2] = { keys[i], "1" };
			int lengths[2] = { (int)strlen(keys[i]), 0 };

			sent &= PQsendQueryPrepared(pipeline_conn, "upsert", 2, values, lengths,
						    formats, 0);
		}
		sent &= PQsendQueryParams(pipeline_conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0);
		if (!sent || pipeline_finish(pipeline_conn) != 0) {
			bench_skip_with_error(state, "pipeline flush failed");
			break;
		}
	}
	bench_set_items_processed(state, bench_iterations(state) * count);
}

/* ---- 2 threads incrementing --------------------------------------------------------- */

static struct tally_counter hot_counter;
static int64_t store_base;            /* the key's store total before the run */
static int64_t flushed;               /* what the flusher has sent (flusher thread only) */
static pthread_t flusher;
static atomic_bool flusher_stop;
static int64_t flush_ns[MAX_FLUSHES];
static int flush_count, flush_rows, flush_failures;

static void flush_drained(void)
{
	int64_t total = 0, start;
	struct tally_store_delta d;
	struct tally_store_batch batch = { .counters = &d, .counter_count = 1 };

	tally_counter_read(&hot_counter, &total);
	if (total == flushed)
		return;
	d = (struct tally_store_delta){ "pgincr/hot", 10, total - flushed };
	batch.seq = next_seq++;
	start = now_ns();
	if (tally_store_flush(store, &batch, NULL)) {
		flush_failures++;
		return;
	}
	if (flush_count < MAX_FLUSHES)
		flush_ns[flush_count] = now_ns() - start;
	flush_count++;
	flush_rows++;
	flushed = total;
}

static void *flusher_main(void *arg)
{
	while (!atomic_load(&flusher_stop)) {
		struct timespec pause = { 0, FLUSH_INTERVAL_MS * 1000000L };

		nanosleep(&pause, NULL);
		flush_drained();
	}
	flush_drained(); /* the final flush, as a shutdown does */
	return NULL;
}

static void incr_tally_setup(const struct bench_state *state)
{
	struct tally_store_options options = { .writer_id = "bench-incr", .timeout_ms = 60000,
					       .create_schema = true };

	if (tally_store_open(&store, url, &options) || tally_store_writer_open(store, NULL))
		abort();
	next_seq = 1;
	store_base = 0;
	tally_store_read_counter(store, "pgincr/hot", 10, &store_base);
	tally_counter_init(&hot_counter, 0);
	flushed = 0;
	flush_count = flush_rows = flush_failures = 0;
	atomic_store(&flusher_stop, false);
	pthread_create(&flusher, NULL, flusher_main, NULL);
}

static void incr_tally_teardown(const struct bench_state *state)
{
	tally_counter_destroy(&hot_counter);
	tally_store_writer_close(store);
	tally_store_close(store);
	store = NULL;
}

static int compare_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

static void report_flushes(struct bench_state *state, double seconds)
{
	int kept = flush_count < MAX_FLUSHES ? flush_count : MAX_FLUSHES;

	qsort(flush_ns, (size_t)kept, sizeof(flush_ns[0]), compare_i64);
	bench_counter(state, "flushes_per_s", seconds > 0 ? flush_count / seconds : 0,
		      BENCH_COUNTER_DEFAULT);
	bench_counter(state, "rows_per_flush", flush_count ? (double)flush_rows / flush_count : 0,
		      BENCH_COUNTER_DEFAULT);
	bench_counter(state, "flush_p50_ms", kept ? flush_ns[kept / 2] / 1e6 : 0,
		      BENCH_COUNTER_DEFAULT);
	bench_counter(state, "flush_p99_ms", kept ? flush_ns[kept * 99 / 100] / 1e6 : 0,
		      BENCH_COUNTER_DEFAULT);
}

static void bm_pgincr_tally(struct bench_state *state)
{
	static int64_t started_ns;
	int failed = 0;

	if (bench_thread_index(state) == 0)
		started_ns = now_ns();
	while (bench_keep_running(state))
		failed |= tally_counter_inc(&hot_counter);
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "tally_counter_inc failed");
	if (bench_thread_index(state) == 0) {
		int64_t total = 0, want = bench_iterations(state) * bench_threads(state);

		atomic_store(&flusher_stop, true);
		pthread_join(flusher, NULL);
		tally_store_read_counter(store, "pgincr/hot", 10, &total);
		if (flush_failures || total - store_base != want)
			bench_skip_with_error(state, "the store total is not the increments' sum");
		report_flushes(state, (double)(now_ns() - started_ns) / 1e9);
	}
}

static PGconn *seed_conns[2];

static void incr_seeds_setup(const struct bench_state *state)
{
	for (int i = 0; i < 2; i++) {
		seed_conns[i] = connect_or_die();
		PQclear(PQprepare(seed_conns[i], "incr",
				  "UPDATE bench_seed_counters SET v = v + 1 WHERE k = 'hot'", 0, NULL));
	}
	exec_ok(seed_conns[0], "UPDATE bench_seed_counters SET v = 0 WHERE k = 'hot'");
}

static void incr_seeds_teardown(const struct bench_state *state)
{
	for (int i = 0; i < 2; i++)
		PQfinish(seed_conns[i]);
}

static void bm_pgincr_seeds(struct bench_state *state)
{
	PGconn *conn = seed_conns[bench_thread_index(state) % 2];
	int failed = 0;

	while (bench_keep_running(state)) {
		PGresult *result = PQexecPrepared(conn, "incr", 0, NULL, NULL, NULL, 0);

		failed |= PQresultStatus(result) != PGRES_COMMAND_OK;
		PQclear(result);
	}
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "UPDATE failed");
}

/* ---- invoice numbers ---------------------------------------------------------------- */

static struct tally_sequence *sequence;
static struct tally_series *series;
static struct tally_lease_provider *lease;
static PGconn *invoice_conn;
static int invoice_round;

static void invoice_tally_setup(const struct bench_state *state)
{
	struct tally_series_config config = { .format = "INV-{counter:012}",
					      .mode = TALLY_SEQ_STRICT, .lease_size = 1000 };
	char name[32];

	snprintf(name, sizeof(name), "INV%d", invoice_round++); /* a fresh key per run */
	if (tally_store_open(&store, url, &(struct tally_store_options){ .timeout_ms = 60000 }) ||
	    tally_store_lease_provider(store, &lease) || tally_sequence_create(&sequence, NULL))
		abort();
	config.lease = lease;
	if (tally_sequence_series_create(sequence, "acme", name, &config, NULL) ||
	    tally_sequence_series_find(sequence, "acme", name, &series)) {
		fprintf(stderr, "bench: series: %s\n", tally_store_last_error(store));
		abort();
	}
}

static void invoice_tally_teardown(const struct bench_state *state)
{
	tally_sequence_destroy(sequence);
	tally_lease_provider_destroy(lease);
	tally_store_close(store);
	store = NULL;
}

static void bm_pginvoice_tally(struct bench_state *state)
{
	struct tally_seq_number number = { 0 };
	uint64_t last = 0;
	int failed = 0;

	while (bench_keep_running(state)) {
		failed |= tally_series_next(series, &number);
		failed |= last && number.counter != last + 1; /* a resumed key starts higher */
		last = number.counter;
	}
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "numbers not consecutive");
}

static void invoice_sql_setup(const struct bench_state *state)
{
	invoice_conn = connect_or_die();
	PQclear(PQprepare(invoice_conn, "nextval", "SELECT nextval('bench_invoice_seq')", 0, NULL));
	PQclear(PQprepare(invoice_conn, "rowlock",
			  "UPDATE bench_rowlock SET v = v + 1 WHERE k = 'inv' RETURNING v", 0, NULL));
}

static void invoice_sql_teardown(const struct bench_state *state)
{
	PQfinish(invoice_conn);
}

static void run_numbers(struct bench_state *state, const char *statement)
{
	long long last = -1;
	int failed = 0;

	while (bench_keep_running(state)) {
		PGresult *result = PQexecPrepared(invoice_conn, statement, 0, NULL, NULL, NULL, 0);
		long long got = PQresultStatus(result) == PGRES_TUPLES_OK
					? atoll(PQgetvalue(result, 0, 0)) : -1;

		failed |= got < 0 || (last >= 0 && got != last + 1);
		last = got;
		PQclear(result);
	}
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "numbers not consecutive");
}

static void bm_pginvoice_nextval(struct bench_state *state)
{
	run_numbers(state, "nextval");
}

static void bm_pginvoice_rowlock(struct bench_state *state)
{
	run_numbers(state, "rowlock");
}

/* ---- registration ------------------------------------------------------------------- */

static void prepare_server(void)
{
	PGconn *conn = connect_or_die();
	struct tally_store_options options = { .create_schema = true };
	struct tally_store *schema = NULL;

	if (tally_store_open(&schema, url, &options)) {
		fprintf(stderr, "bench: %s\n", tally_store_last_error(NULL));
		exit(1);
	}
	tally_store_close(schema);
	if (!exec_ok(conn, "CREATE TABLE IF NOT EXISTS bench_seed_counters (k text PRIMARY KEY,"
			   " v bigint NOT NULL)") ||
	    !exec_ok(conn, "INSERT INTO bench_seed_counters VALUES ('hot', 0) ON CONFLICT DO NOTHING") ||
	    !exec_ok(conn, "CREATE SEQUENCE IF NOT EXISTS bench_invoice_seq") ||
	    !exec_ok(conn, "CREATE TABLE IF NOT EXISTS bench_rowlock (k text PRIMARY KEY,"
			   " v bigint NOT NULL)") ||
	    !exec_ok(conn, "INSERT INTO bench_rowlock VALUES ('inv', 0) ON CONFLICT DO NOTHING"))
		exit(1);
	PQfinish(conn);
	for (int i = 0; i < MAX_KEYS; i++)
		snprintf(keys[i], sizeof(keys[i]), "pgflush/%d", i);
}

static void add(const char *name, bench_fn fn, bench_hook setup, bench_hook teardown)
{
	struct bench_def *def = bench_register(name, fn);

	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
	bench_def_use_real_time(def); /* the time is the server's: client CPU says little */
	if (!strncmp(name, "BM_pgflush", 10)) {
		bench_def_arg(def, 1000);
		bench_def_arg(def, 10000);
	}
	if (!strncmp(name, "BM_pgincr", 9))
		bench_def_threads(def, 2);
}

int main(int argc, char **argv)
{
	url = getenv("TALLY_PG_URL");
	if (!url) {
		fprintf(stderr, "bench/store_postgres: TALLY_PG_URL unset, nothing to run"
				" (bench/store_postgres.sh starts a server)\n");
		return bench_main(argc, argv);
	}
	prepare_server();
	add("BM_pgflush_tally", bm_pgflush_tally, flush_setup, flush_teardown);
	add("BM_pgflush_pipeline", bm_pgflush_pipeline, pipeline_setup, pipeline_teardown);
	add("BM_pgincr_tally", bm_pgincr_tally, incr_tally_setup, incr_tally_teardown);
	add("BM_pgincr_seeds", bm_pgincr_seeds, incr_seeds_setup, incr_seeds_teardown);
	add("BM_pginvoice_tally", bm_pginvoice_tally, invoice_tally_setup, invoice_tally_teardown);
	add("BM_pginvoice_nextval", bm_pginvoice_nextval, invoice_sql_setup, invoice_sql_teardown);
	add("BM_pginvoice_rowlock", bm_pginvoice_rowlock, invoice_sql_setup, invoice_sql_teardown);
	return bench_main(argc, argv);
}
