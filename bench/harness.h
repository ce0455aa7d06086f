/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness.h: tally's C benchmark harness, behaving like Google Benchmark 1.7 so that its
 * flags, console table and JSON output (and Google Benchmark's compare.py) work unchanged.
 *
 * A benchmark is a function that loops while bench_keep_running() says so:
 *
 *	static void bm_counter_inc(struct bench_state *state)
 *	{
 *		while (bench_keep_running(state))
 *			tally_counter_inc(&counter);
 *		bench_set_items_processed(state, bench_iterations(state));
 *	}
 *
 *	int main(int argc, char **argv)
 *	{
 *		struct bench_def *def = bench_register("BM_counter_inc", bm_counter_inc);
 *		bench_def_threads(def, 1); bench_def_threads(def, 2); bench_def_threads(def, 4);
 *		return bench_main(argc, argv);
 *	}
 *
 * Threads (threads:N): every thread runs the function on the same iteration count, started
 * together behind a barrier (and stopped behind one); iterations are reported as the total
 * over threads and times as in Google Benchmark 1.7: real time averaged over the threads, CPU
 * time summed over them, each divided by the total iterations. A rate counter (items/s) is
 * divided by the summed CPU time, unless the variant uses real time (bench_def_use_real_time),
 * then by the averaged real time: use real time for aggregate throughput over threads.
 * Shared state for a multi-threaded run is made in a setup callback (runs once before each
 * run, on the main thread) and freed in a teardown callback; per-thread state lives on the
 * function's stack, before the loop.
 *
 * Not thread-safe to register from several threads; everything else is called by the
 * benchmark function on its own state.
 */
#ifndef TALLY_BENCH_HARNESS_H
#define TALLY_BENCH_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct bench_def;

/* The part of a run's per-thread state the inline loop test needs. Fields are private to the
 * harness (bench/harness.c keeps the rest of the state behind it). */
struct bench_state {
	int64_t bench__left; /* private: iterations still to run in this thread */
	int64_t bench__max;  /* private: iterations this thread was asked to run */
	int bench__phase;    /* private: 0 before the loop, 1 in it, 2 after it */
};

typedef void (*bench_fn)(struct bench_state *state);
typedef void (*bench_hook)(const struct bench_state *state);

/* --- inside a benchmark function --- */

/* True while the run needs more iterations; the first call waits for the other threads and
 * starts the timer, the last stops it. Inline: one decrement and branch per iteration. */
bool bench__keep_running_slow(struct bench_state *state);
static inline bool bench_keep_running(struct bench_state *state)
{
	if (__builtin_expect(state->bench__left > 0, 1)) {
		state->bench__left--;
		return true;
	}
	return bench__keep_running_slow(state);
}
/* Iterations this thread has run (valid after the loop). */
int64_t bench_iterations(const struct bench_state *state);
/* The i-th argument of this variant (bench_def_arg / bench_def_range), 0 if none. */
int64_t bench_range(const struct bench_state *state, int i);
/* This thread's index in [0, bench_threads) and the number of threads in this run. */
int bench_thread_index(const struct bench_state *state);
int bench_threads(const struct bench_state *state);

void bench_set_items_processed(struct bench_state *state, int64_t items);
void bench_set_bytes_processed(struct bench_state *state, int64_t bytes);
void bench_set_label(struct bench_state *state, const char *label);

/* User counters, flags as Google Benchmark's benchmark::Counter. */
enum bench_counter_flags {
	BENCH_COUNTER_DEFAULT = 0,
	BENCH_COUNTER_IS_RATE = 1 << 0,           /* divided by the run's time */
	BENCH_COUNTER_AVG_THREADS = 1 << 1,       /* divided by the thread count */
	BENCH_COUNTER_AVG_ITERATIONS = 1 << 3,    /* divided by the iterations */
	BENCH_COUNTER_IS_ITERATION_INVARIANT = 1 << 2,
};
/* Sets (thread-locally; summed over threads) a named counter for this run. */
void bench_counter(struct bench_state *state, const char *name, double value, unsigned flags);

/* Latency sampling. Reading a clock around every operation would cost more than many of
 * the operations measured here, so a benchmark times every Nth operation (a power of two,
 * the same N for tally and its peers) with bench_now_ns (CLOCK_MONOTONIC through the vDSO:
 * about 20 ns per reading on a KVM guest, which the sample includes) and records it:
 * the run then reports <name>_p50_ns, <name>_p99_ns, <name>_p999_ns and <name>_samples,
 * percentiles over all threads' samples (harness_statistics.c). Up to 4 names per run. */
static inline int64_t bench_now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}
void bench_latency_record(struct bench_state *state, const char *name, int64_t ns);

/* Marks the run failed with `message` (reported as error_occurred/error_message); the loop
 * ends at the next bench_keep_running. */
void bench_skip_with_error(struct bench_state *state, const char *message);
/* Stop and restart the timer around work that must not be measured. */
void bench_pause_timing(struct bench_state *state);
void bench_resume_timing(struct bench_state *state);

/* --- registration (before bench_main) --- */

struct bench_def *bench_register(const char *name, bench_fn fn);
/* Adds a variant with one argument: name/arg. Repeat for more variants. */
struct bench_def *bench_def_arg(struct bench_def *def, int64_t arg);
/* Variants for lo..hi by powers of 8 (Google Benchmark's Range). */
struct bench_def *bench_def_range(struct bench_def *def, int64_t lo, int64_t hi);
/* Adds a thread count: name/threads:N. Repeat for more. Default: 1 thread (no threads:N in
 * the name). A benchmark registered with a count above 1 is "threaded": the flag
 * --bench_threads=LIST (tally's own; environment BENCH_THREADS; up to 16 distinct counts in
 * 1..1024, e.g. 1,2,4,8,16) replaces all its counts at run time, so a scaling run needs no
 * rebuild; one registered with 1 thread only keeps it. Names stay name/threads:N, so the
 * output stays Google Benchmark's; the JSON context then carries "bench_threads". */
struct bench_def *bench_def_threads(struct bench_def *def, int threads);
struct bench_def *bench_def_setup(struct bench_def *def, bench_hook setup);
struct bench_def *bench_def_teardown(struct bench_def *def, bench_hook teardown);
/* Report real time rather than CPU time (name/real_time), as UseRealTime(). */
struct bench_def *bench_def_use_real_time(struct bench_def *def);
/* Fixed iteration count (name/iterations:N), as Iterations(n). */
struct bench_def *bench_def_iterations(struct bench_def *def, int64_t iterations);
/* Per-benchmark min time in seconds (name/min_time:S), as MinTime(s). */
struct bench_def *bench_def_min_time(struct bench_def *def, double seconds);

/* Parses the --benchmark_* flags and BENCHMARK_* environment (and --bench_threads /
 * BENCH_THREADS), runs the selected benchmarks, reports. Returns the process exit status (0, or 1 on a bad flag or unwritable output). */
int bench_main(int argc, char **argv);

/* Keeps a value from being optimised away (DoNotOptimize) and a compiler barrier
 * (ClobberMemory). */
#define bench_do_not_optimize(value) __asm__ volatile("" : : "g"(value) : "memory")
#define bench_clobber_memory() __asm__ volatile("" : : : "memory")

#endif
