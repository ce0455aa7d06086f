/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/writebehind.c: the flusher under load and faults. Counting threads add to random
 * keys, a session thread joins and leaves listeners, and a fault thread keeps changing the
 * store's faults (tests/store_fault.c: fail before, commit then fail, hang, none) while the
 * flusher writes to a real SQLite file every 5 ms. At the end the faults stop, a final flush
 * runs, and every store total must equal its counter, and the store's connections and
 * listener counts the table's. Prints one line; exits 0 iff there are no violations.
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

#include "../tests/store_fault.h"
#include "stress.h"

#define KEYS 256
#define SESSIONS 4
#define LISTENERS 64

static struct tally_counter counters[KEYS];
static struct tally_session_table *table;
static atomic_bool stop;
static double deadline;

static void *count(void *arg)
{
	uint32_t state = 2463534242u * (uint32_t)(uintptr_t)arg + 1;

	while (!atomic_load_explicit(&stop, memory_order_relaxed))
		for (int i = 0; i < 1000; i++) {
			state ^= state << 13, state ^= state >> 17, state ^= state << 5;
			tally_counter_add(&counters[state % KEYS], 1);
		}
	return NULL;
}

static void *churn(void *arg)
{
	uint32_t state = 88172645u;
	char id[32], session[16];

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		state ^= state << 13, state ^= state >> 17, state ^= state << 5;
		snprintf(session, sizeof(session), "s%u", state % SESSIONS);
		snprintf(id, sizeof(id), "%s-l%u", session, (state >> 8) % LISTENERS);
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
	uint32_t state = 362436069u;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct store_fault_plan plan = { .count = 1 + (int)(state % 3), .hang_ms = 20,
						 .calls = STORE_FAULT_FLUSH | STORE_FAULT_HEARTBEAT };
		struct timespec pause = { 0, 30 * 1000000 };

		state ^= state << 13, state ^= state >> 17, state ^= state << 5;
		plan.mode = (enum store_fault_mode)(state % 4); /* NONE, BEFORE, AFTER, HANG */
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

	tally_session_listener_count(table, session->session_id, &listeners);
	if (listeners != session->listener_count)
		(*(int64_t *)arg)++;
	return 0;
}

/* The store against the counters and the table; returns the violations. */
static int64_t check(struct tally_store *store)
{
	int64_t violations = 0, total, want, rows, listeners;
	char key[16];

	for (int k = 0; k < KEYS; k++) {
		snprintf(key, sizeof(key), "k%d", k);
		total = 0;
		tally_store_read_counter(store, key, strlen(key), &total);
		tally_counter_read(&counters[k], &want);
		if (total != want) {
			fprintf(stderr, "writebehind: %s store %" PRId64 " counter %" PRId64 "\n",
				key, total, want);
			violations++;
		}
	}
	for (int s = 0; s < SESSIONS; s++) {
		snprintf(key, sizeof(key), "s%d", s);
		rows = 0;
		tally_store_connections(store, key, connection_row, &rows);
		tally_session_listener_count(table, key, &listeners);
		violations += rows != listeners;
	}
	tally_store_sessions(store, NULL, session_row, &violations);
	return violations;
}

int main(int argc, char **argv)
{
	struct stress_args args = stress_parse(argc, argv);
	struct tally_writebehind_config config = { .interval_ms = 5, .backoff_base_ms = 2,
						   .backoff_cap_ms = 50 };
	struct tally_store_options options = { .writer_id = "stress", .create_schema = true };
	char dir[256], url[400], cmd[300];
	pthread_t threads[256 + 2];
	struct tally_writebehind *wb;
	struct tally_writebehind_stats stats;
	struct tally_store *store;
	int64_t violations;
	int err;

	snprintf(dir, sizeof(dir), "%s/tally-wbstress-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir) || store_fault_register() != TALLY_OK)
		return 1;
	snprintf(url, sizeof(url), "fault:sqlite://%s/stress.sqlite", dir);
	if (tally_store_open(&store, url, &options) != TALLY_OK ||
	    tally_writebehind_create(&wb, store, &config) != TALLY_OK)
		return 1;
	tally_session_table_create(&table, NULL);
	for (int s = 0; s < SESSIONS; s++) {
		char id[16];
		struct tally_session_params params = { .session_id = id,
						       .speaker_connection_id = "speaker",
						       .source_language = "en" };

		snprintf(id, sizeof(id), "s%d", s);
		tally_session_create(table, &params);
	}
	tally_writebehind_add_sessions(wb, table);
	for (int k = 0; k < KEYS; k++) {
		char key[16];

		snprintf(key, sizeof(key), "k%d", k);
		tally_counter_init(&counters[k], 0);
		tally_writebehind_add_counter(wb, key, strlen(key), &counters[k]);
	}
	deadline = stress_now() + args.seconds;
	for (int t = 0; t < args.threads; t++)
		pthread_create(&threads[t], NULL, count, (void *)(uintptr_t)(t + 1));
	pthread_create(&threads[args.threads], NULL, churn, NULL);
	pthread_create(&threads[args.threads + 1], NULL, faults, NULL);
	while (stress_now() < deadline) {
		struct timespec pause = { 0, 50 * 1000000 };

		nanosleep(&pause, NULL);
	}
	atomic_store(&stop, true);
	for (int t = 0; t < args.threads + 2; t++)
		pthread_join(threads[t], NULL);
	store_fault_set(NULL);
	err = tally_writebehind_flush(wb, 30000);
	violations = (err != TALLY_OK) + check(store);
	tally_writebehind_get_stats(wb, &stats);
	printf("writebehind: %.1fs threads=%d flushes=%" PRId64 " retries=%" PRId64
	       " already_applied=%" PRId64 " fenced=%" PRId64 " keys_written=%" PRId64
	       " violations=%" PRId64 "\n",
	       args.seconds, args.threads, stats.flushes, stats.retries, stats.already_applied,
	       stats.fenced, stats.keys_written, violations);
	tally_writebehind_destroy(wb);
	tally_session_table_destroy(table);
	for (int k = 0; k < KEYS; k++)
		tally_counter_destroy(&counters[k]);
	tally_store_close(store);
	tally_rcu_barrier();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "writebehind: could not remove %s\n", dir);
	return violations == 0 ? 0 : 1;
}
