/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/counter.c: tally's counter and gauges against the peers a user would otherwise write,
 * side by side in one program and one run, at 1, 2 and 4 threads.
 *
 * Names follow the convention of mk/bench.am: BM_<family>_<impl>/real_time/threads:N, so
 * bench/summary.py prints tally* / peer ratios per family and thread count.
 *
 * counter family (one increment per iteration):
 *   tally       tally_counter_inc: a relaxed load + store on the thread's own cache line
 *   atomic_faa  one shared _Atomic int64_t, atomic_fetch_add (relaxed)
 *   mutex       one int64_t behind a pthread_mutex_t
 *   ck_faa      Concurrency Kit's ck_pr_faa_64 on one shared word
 *   striped     LongAdder-style: 16 cache-line-padded atomics, the thread's stripe chosen by
 *               its index (the perfect hash LongAdder converges to after rehashing), fetch_add
 *   private     each thread increments its own plain int64_t in its own cache line: the
 *               physical limit. A compiler barrier (bench_clobber_memory) after each
 *               increment keeps the compiler from hoisting the loop into one add: the value
 *               is loaded and stored every iteration, as tally's slot is (no volatile, which
 *               would also forbid what tally's relaxed atomics allow).
 * gauge family (each iteration: one increment then one decrement, floor 0, from 1000):
 *   tally          tally_gauge (single word, CAS loop with backoff)
 *   tally_sharded  tally_sgauge (token shards, one per CPU)
 *   cas_loop       one shared _Atomic int64_t, CAS loop refusing to go below the floor
 *   mutex          int64_t behind a pthread_mutex_t with the floor check
 * harness family: the harness's own cost per iteration (empty loop; loop with a compiler
 *   barrier, which is what a loop body that touches memory pays).
 *
 * Every multi-thread variant uses real time, so items_per_second is the aggregate throughput
 * of all threads. Each run checks its result (exact total, value back at its start, no floor
 * failure) after the loop and reports an error if it is wrong: a fast wrong answer never
 * shows up as a throughput.
 */
#include <ck_pr.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include <tally/counter.h>
#include <tally/gauge.h>

#include "harness.h"

#define CACHE_LINE 64
#define STRIPES 16
#define MAX_THREADS 64
#define GAUGE_START 1000

struct padded_atomic {
	alignas(CACHE_LINE) _Atomic int64_t value;
};

struct padded_plain {
	alignas(CACHE_LINE) int64_t value;
};

static struct tally_counter tally_counter;
static struct tally_gauge tally_gauge;
static struct tally_sgauge tally_sgauge;
static struct padded_atomic shared_atomic;
static struct padded_atomic stripes[STRIPES];
static struct padded_plain private_slots[MAX_THREADS];
static alignas(CACHE_LINE) uint64_t ck_word;
static alignas(CACHE_LINE) pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static int64_t mutex_value;

/* ---------------------------------------------------------------- setup / checks */

static void reset_all(const struct bench_state *state)
{
	atomic_store(&shared_atomic.value, 0);
	for (int i = 0; i < STRIPES; i++)
		atomic_store(&stripes[i].value, 0);
	for (int i = 0; i < MAX_THREADS; i++)
		private_slots[i].value = 0;
	ck_pr_store_64(&ck_word, 0);
	mutex_value = 0;
}

static void counter_setup(const struct bench_state *state)
{
	reset_all(state);
	tally_counter_init(&tally_counter, 0);
}

static void counter_teardown(const struct bench_state *state)
{
	tally_counter_destroy(&tally_counter);
}

static void gauge_setup(const struct bench_state *state)
{
	reset_all(state);
	atomic_store(&shared_atomic.value, GAUGE_START);
	mutex_value = GAUGE_START;
	tally_gauge_init(&tally_gauge, GAUGE_START, 0, TALLY_GAUGE_NO_CEILING);
	tally_sgauge_init(&tally_sgauge, GAUGE_START, 0, TALLY_GAUGE_NO_CEILING, 0);
}

static void gauge_teardown(const struct bench_state *state)
{
	tally_gauge_destroy(&tally_gauge);
	tally_sgauge_destroy(&tally_sgauge);
}

/* After the loop (all threads are past the closing barrier): thread 0 checks `got`. */
static void check_total(struct bench_state *state, int64_t got, int64_t want, const char *what)
{
	static char message[128];

	bench_set_items_processed(state, bench_iterations(state));
	if (bench_thread_index(state) == 0 && got != want) {
		snprintf(message, sizeof(message), "%s: got %lld, want %lld", what, (long long)got,
			 (long long)want);
		bench_skip_with_error(state, message);
	}
}

static int64_t counter_want(struct bench_state *state)
{
	return bench_iterations(state) * bench_threads(state);
}

/* ---------------------------------------------------------------- counter family */

static void bm_counter_tally(struct bench_state *state)
{
	int64_t total = 0;
	int failed = 0;

	while (bench_keep_running(state))
		failed |= tally_counter_inc(&tally_counter);
	if (failed)
		bench_skip_with_error(state, "tally_counter_inc failed");
	tally_counter_read(&tally_counter, &total);
	check_total(state, total, counter_want(state), "tally_counter total");
}

/* The same counter through a per-thread handle bound once before the loop. */
static void bm_counter_tally_local(struct bench_state *state)
{
	struct tally_counter_local local;
	int64_t total = 0;
	int failed = tally_counter_local_init(&tally_counter, &local);

	while (bench_keep_running(state))
		failed |= tally_counter_local_inc(&local);
	if (failed)
		bench_skip_with_error(state, "tally_counter_local_inc failed");
	tally_counter_read(&tally_counter, &total);
	check_total(state, total, counter_want(state), "tally_counter total");
}

static void bm_counter_atomic_faa(struct bench_state *state)
{
	while (bench_keep_running(state))
		atomic_fetch_add_explicit(&shared_atomic.value, 1, memory_order_relaxed);
	check_total(state, atomic_load(&shared_atomic.value), counter_want(state), "total");
}

static void bm_counter_mutex(struct bench_state *state)
{
	while (bench_keep_running(state)) {
		pthread_mutex_lock(&mutex);
		mutex_value++;
		pthread_mutex_unlock(&mutex);
	}
	check_total(state, mutex_value, counter_want(state), "total");
}

static void bm_counter_ck_faa(struct bench_state *state)
{
	while (bench_keep_running(state))
		ck_pr_faa_64(&ck_word, 1);
	check_total(state, (int64_t)ck_pr_load_64(&ck_word), counter_want(state), "total");
}

static void bm_counter_striped(struct bench_state *state)
{
	_Atomic int64_t *stripe = &stripes[bench_thread_index(state) % STRIPES].value;
	int64_t total = 0;

	while (bench_keep_running(state))
		atomic_fetch_add_explicit(stripe, 1, memory_order_relaxed);
	for (int i = 0; i < STRIPES; i++)
		total += atomic_load(&stripes[i].value);
	check_total(state, total, counter_want(state), "total");
}

static void bm_counter_private(struct bench_state *state)
{
	int64_t *mine = &private_slots[bench_thread_index(state)].value;
	int64_t total = 0;

	while (bench_keep_running(state)) {
		(*mine)++;
		bench_clobber_memory();
	}
	for (int i = 0; i < bench_threads(state); i++)
		total += private_slots[i].value;
	check_total(state, total, counter_want(state), "total");
}

/* ---------------------------------------------------------------- gauge family */

static void gauge_result(struct bench_state *state, int64_t value, int failures)
{
	if (failures)
		bench_skip_with_error(state, "a decrement failed with the value above the floor");
	check_total(state, value, GAUGE_START, "gauge value after equal incs and decs");
	/* Two operations per iteration. */
	bench_set_items_processed(state, 2 * bench_iterations(state));
}

static void bm_gauge_tally(struct bench_state *state)
{
	int failures = 0;
	int64_t value = 0;

	while (bench_keep_running(state)) {
		failures |= tally_gauge_inc(&tally_gauge, NULL);
		failures |= tally_gauge_dec(&tally_gauge, NULL);
	}
	tally_gauge_read(&tally_gauge, &value);
	gauge_result(state, value, failures);
}

static void bm_gauge_tally_sharded(struct bench_state *state)
{
	int failures = 0;
	int64_t value = 0;

	while (bench_keep_running(state)) {
		failures |= tally_sgauge_inc(&tally_sgauge);
		failures |= tally_sgauge_dec(&tally_sgauge);
	}
	tally_sgauge_read(&tally_sgauge, &value);
	gauge_result(state, value, failures);
}

/* What a user writes: load, check the floor, CAS, retry on failure. */
static int cas_loop_add(_Atomic int64_t *word, int64_t delta, int64_t floor)
{
	int64_t old = atomic_load_explicit(word, memory_order_relaxed);

	do {
		if (old + delta < floor)
			return -1;
		/* acq_rel / relaxed: the same ordering tally_gauge offers. */
	} while (!atomic_compare_exchange_weak_explicit(word, &old, old + delta,
							memory_order_acq_rel, memory_order_relaxed));
	return 0;
}

static void bm_gauge_cas_loop(struct bench_state *state)
{
	int failures = 0;

	while (bench_keep_running(state)) {
		failures |= cas_loop_add(&shared_atomic.value, 1, 0);
		failures |= cas_loop_add(&shared_atomic.value, -1, 0);
	}
	gauge_result(state, atomic_load(&shared_atomic.value), failures);
}

static void bm_gauge_mutex(struct bench_state *state)
{
	int failures = 0;

	while (bench_keep_running(state)) {
		pthread_mutex_lock(&mutex);
		mutex_value++;
		pthread_mutex_unlock(&mutex);
		pthread_mutex_lock(&mutex);
		if (mutex_value - 1 >= 0)
			mutex_value--;
		else
			failures = 1;
		pthread_mutex_unlock(&mutex);
	}
	gauge_result(state, mutex_value, failures);
}

/* ---------------------------------------------------------------- harness overhead */

static void bm_harness_empty(struct bench_state *state)
{
	while (bench_keep_running(state))
		;
}

static void bm_harness_clobber(struct bench_state *state)
{
	while (bench_keep_running(state))
		bench_clobber_memory();
}

static void add(const char *name, bench_fn fn, bench_hook setup, bench_hook teardown)
{
	struct bench_def *def = bench_register(name, fn);

	bench_def_use_real_time(def);
	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	bench_def_threads(def, 4);
}

int main(int argc, char **argv)
{
	add("BM_counter_tally", bm_counter_tally, counter_setup, counter_teardown);
	add("BM_counter_tally_local", bm_counter_tally_local, counter_setup, counter_teardown);
	add("BM_counter_atomic_faa", bm_counter_atomic_faa, counter_setup, counter_teardown);
	add("BM_counter_mutex", bm_counter_mutex, counter_setup, counter_teardown);
	add("BM_counter_ck_faa", bm_counter_ck_faa, counter_setup, counter_teardown);
	add("BM_counter_striped", bm_counter_striped, counter_setup, counter_teardown);
	add("BM_counter_private", bm_counter_private, counter_setup, counter_teardown);
	add("BM_gauge_tally", bm_gauge_tally, gauge_setup, gauge_teardown);
	add("BM_gauge_tally_sharded", bm_gauge_tally_sharded, gauge_setup, gauge_teardown);
	add("BM_gauge_cas_loop", bm_gauge_cas_loop, gauge_setup, gauge_teardown);
	add("BM_gauge_mutex", bm_gauge_mutex, gauge_setup, gauge_teardown);
	bench_register("BM_harness_empty", bm_harness_empty);
	bench_register("BM_harness_clobber", bm_harness_clobber);
	return bench_main(argc, argv);
}
