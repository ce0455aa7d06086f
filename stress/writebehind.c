/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/writebehind.c: the flusher under load and faults. Counting threads add to random
 * keys, a session thread joins and leaves listeners, and a fault thread keeps changing the
 * store's faults (tests/store/fault.c: fail before, commit then fail, hang, none) while the
 * flusher writes to a real SQLite file every 5 ms. At the end the faults stop, a final flush
 * runs, and every store total must equal its counter, and the store's connections and
 * listener counts the table's. Every random choice comes from the run's seed (stress.h);
 * --store URL puts the fault wrapper over that store instead of a SQLite file of its own.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tally/counter.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include <tally/writebehind.h>

#include "../tests/store/fault.h"
#include "stress.h"

#define KEYS 256
#define SESSIONS 4
#define LISTENERS 64

static struct stress_run run;
static struct tally_counter counters[KEYS];
static struct tally_session_table *table;
static _Atomic int stop;
static char tag[24]; /* in every key and id: runs sharing one --store never meet */

static void *count(void *arg)
{
	struct stress_rng rng;
	struct stress_pacer pacer;

	stress_rng_init(&rng, run.opt.seed, (uint64_t)(uintptr_t)arg);
	stress_pacer_init(&pacer, &run, run.opt.threads);
	int64_t batch = stress_pace_batch(&pacer, 1000);
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		for (int64_t i = 0; i < batch; i++)
			tally_counter_add(&counters[stress_rng_below(&rng, KEYS)], 1);
		stress_ops(&run, batch);
		stress_pace(&pacer, batch);
	}
	return NULL;
}

static void *churn(void *arg)
{
	struct stress_rng rng;
	char id[64], session[40];

	stress_rng_init(&rng, run.opt.seed, UINT64_C(0xc4012));
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		uint64_t pick = stress_rng_next(&rng);

		snprintf(session, sizeof(session), "%ss%u", tag, (unsigned)(pick % SESSIONS));
		snprintf(id, sizeof(id), "%s-l%u", session, (unsigned)((pick >> 8) % LISTENERS));
		struct tally_connection_params params = { .connection_id = id,
							  .session_id = session,
							  .target_language = "fr" };

		if (tally_session_join(table, &params) == TALLY_EEXIST)
			tally_session_leave(table, id);
	}
	tally_rcu_thread_unregister();
	return NULL;
}

static void *faults(void *arg)
{
	struct stress_rng rng;

	stress_rng_init(&rng, run.opt.seed, UINT64_C(0xfa017));
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct store_fault_plan plan = { .count = 1 + (int)stress_rng_below(&rng, 3),
						 .hang_ms = 20,
						 .calls = STORE_FAULT_FLUSH | STORE_FAULT_HEARTBEAT };
		struct timespec pause = { 0, 30 * 1000000 };

		/* NONE, BEFORE, AFTER, HANG */
		plan.mode = (enum store_fault_mode)stress_rng_below(&rng, 4);
		store_fault_set(&plan);
		nanosleep(&pause, NULL);
	}
	store_fault_set(NULL);
	return NULL;
}

static int connection_row(const struct tally_connection_info *connection,
			  const char *writer_id, uint64_t epoch, void *arg)
{
	(*(int64_t *)arg)++;
	return 0;
}

static int session_row(const struct tally_session_info *session, const char *writer_id,
		       uint64_t epoch, void *arg)
{
	int64_t listeners = -1;

	if (strncmp(session->session_id, tag, strlen(tag)))
		return 0; /* another run's */
	tally_session_listener_count(table, session->session_id, &listeners);
	stress_check(&run, listeners == session->listener_count, "stored session %s counts "
		     "%" PRId64 " listeners, the table %" PRId64, session->session_id,
		     session->listener_count, listeners);
	return 0;
}

/* The store against the counters and the table. */
static void check(struct tally_store *store)
{
	int64_t total, want, rows, listeners;
	char key[40];

	for (int k = 0; k < KEYS; k++) {
		snprintf(key, sizeof(key), "%sk%d", tag, k);
		total = 0;
		tally_store_read_counter(store, key, strlen(key), &total);
		tally_counter_read(&counters[k], &want);
		stress_check(&run, total == want, "%s: store %" PRId64 ", counter %" PRId64, key,
			     total, want);
	}
	for (int s = 0; s < SESSIONS; s++) {
		snprintf(key, sizeof(key), "%ss%d", tag, s);
		rows = 0;
		tally_store_connections(store, key, connection_row, &rows);
		tally_session_listener_count(table, key, &listeners);
		stress_check(&run, rows == listeners, "session %s: %" PRId64 " stored connections, "
			     "%" PRId64 " listeners in the table", key, rows, listeners);
	}
	tally_store_sessions(store, NULL, session_row, NULL);
}

int main(int argc, char **argv)
{
	struct tally_writebehind_config config = { .interval_ms = 5, .backoff_base_ms = 2,
						   .backoff_cap_ms = 50 };
	struct tally_store_options options = { .writer_id = "stress", .create_schema = true };
	char url[TALLY_STORE_URL_MAX + 8], writer_id[40];
	pthread_t threads[STRESS_THREADS_MAX + 2];
	struct tally_writebehind *wb;
	struct tally_writebehind_stats stats;
	struct tally_store *store;
	int err;

	stress_init(&run, "writebehind", argc, argv, NULL);
	config.jitter_seed = run.opt.seed;
	snprintf(tag, sizeof(tag), "wb%d-", (int)getpid());
	snprintf(writer_id, sizeof(writer_id), "%swriter", tag);
	options.writer_id = writer_id;
	if (run.opt.store)
		snprintf(url, sizeof(url), "fault:%s", run.opt.store);
	else
		snprintf(url, sizeof(url), "fault:sqlite://%s/stress.sqlite", stress_tmpdir(&run));
	if (store_fault_register() != TALLY_OK || tally_store_open(&store, url, &options) != TALLY_OK ||
	    tally_writebehind_create(&wb, store, &config) != TALLY_OK) {
		stress_violation(&run, "setup failed: %s", tally_store_last_error(NULL));
		return stress_finish(&run);
	}
	tally_session_table_create(&table, NULL);
	for (int s = 0; s < SESSIONS; s++) {
		char id[40];
		struct tally_session_params params = { .session_id = id,
						       .speaker_connection_id = "speaker",
						       .source_language = "en" };

		snprintf(id, sizeof(id), "%ss%d", tag, s);
		tally_session_create(table, &params);
	}
	tally_writebehind_add_sessions(wb, table);
	for (int k = 0; k < KEYS; k++) {
		char key[40];

		snprintf(key, sizeof(key), "%sk%d", tag, k);
		tally_counter_init(&counters[k], 0);
		tally_writebehind_add_counter(wb, key, strlen(key), &counters[k]);
	}
	for (int t = 0; t < run.opt.threads; t++)
		pthread_create(&threads[t], NULL, count, (void *)(uintptr_t)(t + 1));
	pthread_create(&threads[run.opt.threads], NULL, churn, NULL);
	pthread_create(&threads[run.opt.threads + 1], NULL, faults, NULL);
	stress_wait(&run, NULL);
	atomic_store(&stop, 1);
	for (int t = 0; t < run.opt.threads + 2; t++)
		pthread_join(threads[t], NULL);
	store_fault_set(NULL);
	err = tally_writebehind_flush(wb, 30000);
	stress_check(&run, err == TALLY_OK, "final flush: %s", tally_strerror(err));
	check(store);
	tally_writebehind_get_stats(wb, &stats);
	stress_field_int(&run, "flushes", stats.flushes);
	stress_field_int(&run, "retries", stats.retries);
	stress_field_int(&run, "already_applied", stats.already_applied);
	stress_field_int(&run, "fenced", stats.fenced);
	stress_field_int(&run, "keys_written", stats.keys_written);
	tally_writebehind_destroy(wb);
	tally_session_table_destroy(table);
	for (int k = 0; k < KEYS; k++)
		tally_counter_destroy(&counters[k]);
	tally_store_close(store);
	tally_rcu_barrier();
	stress_tmpdir_remove(&run);
	return stress_finish(&run);
}
