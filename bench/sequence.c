/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/sequence.c: the sequence allocator against what a user would otherwise write, in one
 * run. Families (no underscore, see mk/bench.am): sequencestrict, sequencedaily,
 * sequencecached, sequencelease; impls tally* are ours, the rest peers.
 *
 * BM_sequencestrict_{tally,tally_byname,mutex}/threads:N
 *	one strict series that never resets, every thread issuing from it. tally uses a
 *	handle (tally_byname: the by-name call, adding SipHash + RCU lookup): with no lease
 *	and no reset that is the inline path, one relaxed load and one fetch_add per number
 *	(tally/static/sequence.h) with the width check; the peer is a counter under one
 *	pthread_mutex_t (lock, ++, unlock). Neither side renders text. Every tally series
 *	here has a 12-digit counter template.
 * BM_sequencedaily_{tally,mutex}/threads:N
 *	a strict daily series: both sides read CLOCK_REALTIME per number (the peer computes
 *	the day and resets its counter under the mutex).
 * BM_sequencecached_{tally,mutex}/threads:N
 *	a cached-mode series (block 64, never resets) against the mutex counter.
 * BM_sequencelease_{tally,roundtrip}
 *	durable numbers with the file provider: tally strict with a lease of 1,000 against a
 *	provider round trip per number (tally_lease_acquire of size 1: what a user calling the
 *	store for every number pays; one fdatasync each).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <tally/rcu.h>
#include <tally/sequence.h>
#include "harness.h"

static struct tally_sequence *seq;
static struct tally_series *series;
static struct tally_lease_provider *lease;
static char lease_path[64];

static pthread_mutex_t mutex_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t mutex_counter;

static uint64_t mutex_day;

static void make_series(enum tally_seq_mode mode, enum tally_seq_reset reset,
			struct tally_lease_provider *provider, uint32_t lease_size)
{
	/* 12 digits: a long run (10^9 numbers at --benchmark_min_time=1 on the cached path)
	 * must not reach the width limit, which fails the call (EWIDTH) and the benchmark. */
	struct tally_series_config cfg = { .format = reset ? "INV-{date}-{counter:012}"
							   : "INV-{counter:012}",
					   .mode = mode, .reset = reset, .cache_block = 64,
					   .lease = provider, .lease_size = lease_size };

	if (tally_sequence_create(&seq, NULL) ||
	    tally_sequence_series_create(seq, "acme", "INV", &cfg, NULL) ||
	    tally_sequence_series_find(seq, "acme", "INV", &series))
		abort();
}

static void strict_setup(const struct bench_state *state)
{
	make_series(TALLY_SEQ_STRICT, TALLY_SEQ_RESET_NEVER, NULL, 0);
}

static void daily_setup(const struct bench_state *state)
{
	make_series(TALLY_SEQ_STRICT, TALLY_SEQ_RESET_DAILY, NULL, 0);
}

static void cached_setup(const struct bench_state *state)
{
	make_series(TALLY_SEQ_CACHED, TALLY_SEQ_RESET_NEVER, NULL, 0);
}

static void open_lease_file(void)
{
	snprintf(lease_path, sizeof(lease_path), "bench-sequence-%d.lease", (int)getpid());
	unlink(lease_path);
	if (tally_lease_file_open(&lease, lease_path))
		abort();
}

static void lease_setup(const struct bench_state *state)
{
	open_lease_file();
	make_series(TALLY_SEQ_STRICT, TALLY_SEQ_RESET_DAILY, lease, 1000);
}

static void roundtrip_setup(const struct bench_state *state)
{
	open_lease_file();
}

static void series_teardown(const struct bench_state *state)
{
	tally_sequence_destroy(seq);
	seq = NULL;
	if (lease) {
		tally_lease_provider_destroy(lease);
		lease = NULL;
		unlink(lease_path);
	}
	tally_rcu_barrier();
}

static void bm_tally(struct bench_state *state)
{
	struct tally_seq_number n;

	while (bench_keep_running(state)) {
		if (tally_series_next(series, &n) != TALLY_OK) {
			bench_skip_with_error(state, "tally_series_next failed");
			break;
		}
		bench_do_not_optimize(n.counter);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_tally_byname(struct bench_state *state)
{
	struct tally_seq_number n;

	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		if (tally_sequence_next(seq, "acme", "INV", &n) != TALLY_OK) {
			bench_skip_with_error(state, "tally_sequence_next failed");
			break;
		}
		bench_do_not_optimize(n.counter);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_mutex(struct bench_state *state)
{
	while (bench_keep_running(state)) {
		uint64_t n;

		pthread_mutex_lock(&mutex_lock);
		n = ++mutex_counter;
		pthread_mutex_unlock(&mutex_lock);
		bench_do_not_optimize(n);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_mutex_daily(struct bench_state *state)
{
	while (bench_keep_running(state)) {
		struct timespec now;
		uint64_t n, day;

		clock_gettime(CLOCK_REALTIME, &now);
		day = (uint64_t)now.tv_sec / 86400;
		pthread_mutex_lock(&mutex_lock);
		if (day > mutex_day) {
			mutex_day = day;
			mutex_counter = 0;
		}
		n = ++mutex_counter;
		pthread_mutex_unlock(&mutex_lock);
		bench_do_not_optimize(n);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_roundtrip(struct bench_state *state)
{
	uint64_t base;

	while (bench_keep_running(state)) {
		if (tally_lease_acquire(lease, "acme\0INV", 8, 0, 1, 0, &base) != TALLY_OK) {
			bench_skip_with_error(state, "tally_lease_acquire failed");
			break;
		}
		bench_do_not_optimize(base);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void threads_1_2_4(struct bench_def *def)
{
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	bench_def_threads(def, 4);
	bench_def_use_real_time(def);
}

int main(int argc, char **argv)
{
	struct bench_def *def;

	def = bench_register("BM_sequencestrict_tally", bm_tally);
	bench_def_setup(def, strict_setup);
	bench_def_teardown(def, series_teardown);
	threads_1_2_4(def);
	def = bench_register("BM_sequencestrict_tally_byname", bm_tally_byname);
	bench_def_setup(def, strict_setup);
	bench_def_teardown(def, series_teardown);
	threads_1_2_4(def);
	threads_1_2_4(bench_register("BM_sequencestrict_mutex", bm_mutex));

	def = bench_register("BM_sequencedaily_tally", bm_tally);
	bench_def_setup(def, daily_setup);
	bench_def_teardown(def, series_teardown);
	threads_1_2_4(def);
	threads_1_2_4(bench_register("BM_sequencedaily_mutex", bm_mutex_daily));

	def = bench_register("BM_sequencecached_tally", bm_tally);
	bench_def_setup(def, cached_setup);
	bench_def_teardown(def, series_teardown);
	threads_1_2_4(def);
	threads_1_2_4(bench_register("BM_sequencecached_mutex", bm_mutex));

	def = bench_register("BM_sequencelease_tally", bm_tally);
	bench_def_setup(def, lease_setup);
	bench_def_teardown(def, series_teardown);
	bench_def_threads(def, 1);
	bench_def_use_real_time(def);
	def = bench_register("BM_sequencelease_roundtrip", bm_roundtrip);
	bench_def_setup(def, roundtrip_setup);
	bench_def_teardown(def, series_teardown);
	bench_def_threads(def, 1);
	bench_def_use_real_time(def);
	return bench_main(argc, argv);
}
