/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness_internal.h: what the runner (harness.c) hands the reporters (report.c).
 * Private to the harness; bench programs include only harness.h.
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
