/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/bench_harness.c: a small bench program for tests/bench_compat.sh, which checks the
 * harness's flags, exit statuses and output formats and feeds its JSON to Google Benchmark's
 * compare.py. The benchmarks are cheap and follow the BM_<family>_<impl> convention.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "../bench/harness.h"

static _Atomic int64_t shared;

static void bm_selftest_tally(struct bench_state *state)
{
	int64_t mine = 0;

	while (bench_keep_running(state)) {
		mine++;
		bench_clobber_memory();
	}
	bench_do_not_optimize(mine);
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_selftest_atomic(struct bench_state *state)
{
	while (bench_keep_running(state))
		atomic_fetch_add_explicit(&shared, 1, memory_order_relaxed);
	bench_set_items_processed(state, bench_iterations(state));
	bench_counter(state, "ops", (double)bench_iterations(state), BENCH_COUNTER_IS_RATE);
	bench_counter(state, "threads_seen", 1, BENCH_COUNTER_DEFAULT);
}

static void bm_selftest_arg(struct bench_state *state)
{
	int64_t sum = 0;

	while (bench_keep_running(state))
		for (int64_t i = 0; i < bench_range(state, 0); i++)
			bench_do_not_optimize(sum += i);
	bench_set_bytes_processed(state, bench_iterations(state) * bench_range(state, 0));
	bench_set_label(state, "label text");
}

/* Paused time is not measured: 2 ms of sleep per iteration outside the timer. */
static void bm_selftest_paused(struct bench_state *state)
{
	while (bench_keep_running(state)) {
		bench_pause_timing(state);
		nanosleep(&(struct timespec){ .tv_nsec = 2000000 }, NULL);
		bench_resume_timing(state);
	}
}

/* Known latency samples: 0..999 ns, each equally often, so p50, p99 and p99.9 are near
 * 500, 990 and 999 (within the histogram's 6.25 %). */
static void bm_selftest_latency(struct bench_state *state)
{
	int64_t i = 0;

	while (bench_keep_running(state))
		bench_latency_record(state, "op", i++ % 1000);
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_selftest_error(struct bench_state *state)
{
	bench_skip_with_error(state, "deliberate \"error\"");
	while (bench_keep_running(state))
		;
}

int main(int argc, char **argv)
{
	struct bench_def *def = bench_register("BM_selftest_tally", bm_selftest_tally);
	bench_def_use_real_time(def);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	def = bench_register("BM_selftest_atomic", bm_selftest_atomic);
	bench_def_use_real_time(def);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	/* registered with 1 thread only: --bench_threads leaves it as it is */
	def = bench_register("BM_selftest_single", bm_selftest_tally);
	bench_def_use_real_time(def);
	bench_def_threads(def, 1);
	bench_def_range(bench_register("BM_selftest_arg", bm_selftest_arg), 8, 512);
	bench_def_iterations(bench_register("BM_selftest_paused", bm_selftest_paused), 5);
	bench_def_iterations(bench_register("BM_selftest_latency", bm_selftest_latency), 100000);
	bench_register("BM_selftest_error", bm_selftest_error);
	return bench_main(argc, argv);
}
