/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness_internal.h: what the harness's four parts share. Private to the harness;
 * bench programs include only harness.h.
 *   harness_registry.c    bench_register / bench_def_*, and the instances a filter selects
 *   harness_flags.c       --benchmark_* flags and BENCHMARK_* environment variables
 *   harness_runner.c      threads, tries, repetitions, the schedule, bench_main
 *   harness_statistics.c  a run's finished counters, aggregates over repetitions, CPU per
 *                         real time and run-queue wait, latency histograms and percentiles
 *   harness_report.c      console, JSON and CSV reporters, the machine context
 *
 * A bench_report is Google Benchmark's BenchmarkReporter::Run: one repetition of one
 * benchmark instance, or one aggregate (mean, median, stddev, cv) over its repetitions.
 * Times are accumulated seconds as measured; the reporters divide by the iterations and
 * scale to the time unit, as Google Benchmark does.
 */
#ifndef TALLY_BENCH_HARNESS_INTERNAL_H
#define TALLY_BENCH_HARNESS_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "harness.h"

#define BENCH_NAME_MAX 512
#define BENCH_TEXT_MAX 256
#define BENCH_COUNTERS_MAX 32
#define BENCH_COUNTER_NAME_MAX 64
#define BENCH_CONTEXT_MAX 16
#define BENCH_CACHES_MAX 8

#define BENCH_THREAD_LIST_MAX 16 /* thread counts --bench_threads may name */
#define BENCH_THREADS_LIMIT 1024  /* the largest count it accepts */

#define BENCH_LATENCY_MAX 4      /* named latency histograms per run */
#define BENCH_LATENCY_BUCKETS 960 /* 16 linear buckets per power of two, up to 2^63 ns */

enum bench_unit { BENCH_UNIT_NS, BENCH_UNIT_US, BENCH_UNIT_MS, BENCH_UNIT_S };
enum bench_format { BENCH_FORMAT_CONSOLE, BENCH_FORMAT_JSON, BENCH_FORMAT_CSV };

/* A user counter (or items_per_second / bytes_per_second): raw while a run is in progress,
 * finished (rates divided by time etc.) in a bench_report. */
struct bench_counter_value {
	char name[BENCH_COUNTER_NAME_MAX];
	double value;
	unsigned flags;
	double one_k; /* 1000, or 1024 for bytes */
};

/* Sorted by name, as Google Benchmark's std::map of counters. */
struct bench_counter_set {
	int count;
	struct bench_counter_value items[BENCH_COUNTERS_MAX];
};

/* Sets (replace = true) or adds to the counter `name`; false if the set is full. */
bool bench_counter_set_put(struct bench_counter_set *set, const char *name, double value,
			   unsigned flags, double one_k, bool replace);
const struct bench_counter_value *bench_counter_set_find(const struct bench_counter_set *set,
							 const char *name);

/* --- registration (harness_registry.c) --- */

struct bench_def {
	char *name;
	bench_fn fn;
	int64_t *args;
	int arg_count;
	int *thread_counts;
	int thread_count;
	bench_hook setup;
	bench_hook teardown;
	bool real_time;
	int64_t iterations;  /* 0 = grow to min_time */
	double min_time;     /* 0 = the flag's */
};

/* One selected benchmark: a def with one of its arguments and one of its thread counts. */
struct bench_instance {
	struct bench_def *def;
	bool has_arg;
	int64_t arg;
	int threads;
	int family_index;
	int per_family_instance_index;
	char name[BENCH_NAME_MAX];
};

/* --- flags (harness_flags.c) --- */

struct bench_flags {
	bool list_tests;
	char filter[BENCH_NAME_MAX];
	double min_time;
	double min_warmup_time;
	int repetitions;
	bool report_aggregates_only;
	bool random_interleaving;
	bool display_aggregates_only;
	enum bench_format format;
	char out[4096];
	enum bench_format out_format;
	enum bench_unit time_unit;
	bool counters_tabular;
	char context[4096];
	/* --bench_threads=LIST (tally's own flag): the thread counts that replace those of every
	 * threaded benchmark (one registered with a count above 1); 0 = as registered. */
	int thread_list[BENCH_THREAD_LIST_MAX];
	int thread_list_count;
	char thread_list_text[128]; /* as given, for the context */
	const char *program;
};

/* Each returns 0, 1 after printing what is wrong, or (arguments) -1 after --help. */
int bench_flags_parse_environment(struct bench_flags *flags);
int bench_flags_parse_arguments(struct bench_flags *flags, int argc, char **argv);

struct bench_context;
/* --benchmark_context=k=v,... into the context's user pairs; 0, or 1 after a message. */
int bench_flags_parse_context(struct bench_context *context, const struct bench_flags *flags);

/* The registration error, if any ("" if none). */
const char *bench_registration_error(void);
/* The instances the filter selects, in registration order; 0, or 1 after a message. */
int bench_build_instances(const struct bench_flags *flags, struct bench_instance **out,
			  int *count);

/* --- latency histograms (harness_statistics.c) --- */

/* Log-linear: values below 16 ns exact, above them 16 buckets per power of two (within
 * 6.25 % of the value). */
struct bench_latency {
	char name[BENCH_COUNTER_NAME_MAX - 16];
	uint64_t samples;
	uint64_t buckets[BENCH_LATENCY_BUCKETS];
};

struct bench_latency_set {
	int count;
	struct bench_latency *items[BENCH_LATENCY_MAX]; /* heap, made on first use */
};

/* Adds one sample of `ns` to the histogram `name`; false if the set is full or out of
 * memory. */
bool bench_latency_add(struct bench_latency_set *set, const char *name, int64_t ns);
/* Adds every histogram of `from` into `into`; false if out of room or memory. */
bool bench_latency_merge(struct bench_latency_set *into, const struct bench_latency_set *from);
void bench_latency_free(struct bench_latency_set *set);
/* The value below which `fraction` (0.5, 0.99, 0.999) of the samples lie (bucket middle). */
double bench_latency_percentile(const struct bench_latency *latency, double fraction);

/* --- statistics over runs (harness_statistics.c) --- */

/* What one try measured, summed over its threads (the runner fills it). */
struct bench_measure {
	int threads;
	int64_t total_iterations;
	double real_seconds;      /* averaged over threads */
	double cpu_seconds;       /* summed over threads */
	double runqueue_seconds;  /* summed over threads; < 0 when the kernel does not say */
	struct bench_counter_set counters;
	struct bench_latency_set latency;
};

struct bench_report;

/* Finishes the counters of a report from a try: rates divided by the time, averages, and for
 * threaded runs cpu_per_real and runqueue_per_real; then latency percentiles. */
void bench_finish_counters(struct bench_report *report, const struct bench_measure *measure,
			   bool real_time);
/* Appends the aggregates (mean, median, stddev, cv) of runs[0..count) to `aggregates`;
 * returns how many (0 when fewer than two runs succeeded). */
int bench_compute_aggregates(const struct bench_report *runs, int count,
			     struct bench_report *aggregates);

struct bench_report {
	char name[BENCH_NAME_MAX];     /* run_name, or run_name + "_" + aggregate_name */
	char run_name[BENCH_NAME_MAX];
	int family_index;
	int per_family_instance_index;
	bool aggregate;
	const char *aggregate_name;    /* "mean", "median", "stddev", "cv" */
	bool percentage;               /* aggregate unit: percentage (cv) rather than time */
	int repetitions;
	int repetition_index;
	int threads;
	int64_t iterations;            /* total over threads; repetitions for an aggregate */
	double real_seconds;           /* accumulated real time (averaged over threads) */
	double cpu_seconds;            /* accumulated CPU time (summed over threads) */
	enum bench_unit unit;
	struct bench_counter_set counters;
	char label[BENCH_TEXT_MAX];
	bool error;
	char error_message[BENCH_TEXT_MAX];
};

struct bench_cache {
	char type[32];
	int level;
	int64_t size; /* bytes */
	int num_sharing;
};

struct bench_context {
	const char *executable;
	char date[64];
	char host_name[256];
	int num_cpus;
	double mhz;
	bool scaling_enabled;
	int cache_count;
	struct bench_cache caches[BENCH_CACHES_MAX];
	int load_count;
	double load_avg[3];
	bool debug_build;
	int name_width;                /* console name column */
	int user_count;                /* --benchmark_context=key=value,... */
	char user_key[BENCH_CONTEXT_MAX][64];
	char user_value[BENCH_CONTEXT_MAX][BENCH_TEXT_MAX];
};

void bench_context_collect(struct bench_context *context, const char *executable);

struct bench_reporter {
	enum bench_format format;
	FILE *out;                     /* table / JSON / CSV */
	FILE *err;                     /* console and CSV context lines */
	bool tabular;                  /* --benchmark_counters_tabular */
	int name_width;
	/* console */
	bool printed_header;
	struct bench_counter_set header_counters;
	/* JSON */
	bool first_batch;
	/* CSV */
	int csv_name_count;
	char csv_names[BENCH_COUNTERS_MAX][BENCH_COUNTER_NAME_MAX];
};

void bench_reporter_init(struct bench_reporter *reporter, enum bench_format format, FILE *out,
			 FILE *err, bool tabular);
void bench_report_context(struct bench_reporter *reporter, const struct bench_context *context);
void bench_report_runs(struct bench_reporter *reporter, const struct bench_report *runs,
		       int count);
void bench_report_finish(struct bench_reporter *reporter);

double bench_unit_multiplier(enum bench_unit unit);
const char *bench_unit_name(enum bench_unit unit);

#endif
