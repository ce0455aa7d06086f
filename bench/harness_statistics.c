/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness_statistics.c: the numbers the harness computes from what it measured.
 *
 * - A run's counters, as Google Benchmark 1.7: rates divided by the run's time (real time for
 *   real_time variants, else CPU time summed over threads), then averaged over threads or
 *   iterations as their flags say.
 * - For a threaded run, two counters Google Benchmark does not have: cpu_per_real, the CPU
 *   time summed over the threads divided by the real time (how many CPUs the threads had on
 *   average: 2.0 for two threads that never left their CPUs), and runqueue_per_real, the
 *   time the threads were runnable but waiting for a CPU (the kernel's schedstat run_delay),
 *   summed, over the real time. A thread that sleeps in a lock lowers the first and not the
 *   second; a machine busy with other work raises the second. bench/summary.py uses both to
 *   flag repetitions whose threads did not all get a CPU.
 * - Latency histograms: log-linear buckets (exact below 16 ns, then 16 per power of two, so
 *   a percentile is within 6.25 % of the true value), merged over threads, reported as
 *   <name>_p50_ns, <name>_p99_ns, <name>_p999_ns and <name>_samples.
 * - Aggregates over repetitions: mean, median, stddev (sample, n - 1) and cv (stddev / mean)
 *   over the repetitions that did not fail, reported when at least two exist.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_internal.h"

/* ---------------------------------------------------------------- latency */

static int latency_bucket(int64_t ns)
{
	uint64_t value = ns > 0 ? (uint64_t)ns : 0;
	int msb;

	if (value < 16)
		return (int)value;
	msb = 63 - __builtin_clzll(value);
	return (msb - 3) * 16 + (int)((value >> (msb - 4)) & 15);
}

/* The middle of bucket `index`. */
static double latency_value(int index)
{
	int msb = index / 16 + 3, sub = index % 16;

	if (index < 16)
		return index;
	return ((double)(16 + sub) + 0.5) * ldexp(1.0, msb - 4);
}

static struct bench_latency *latency_find(struct bench_latency_set *set, const char *name)
{
	struct bench_latency *latency;

	for (int i = 0; i < set->count; i++)
		if (strcmp(set->items[i]->name, name) == 0)
			return set->items[i];
	if (set->count == BENCH_LATENCY_MAX || strlen(name) >= sizeof(latency->name))
		return NULL;
	latency = calloc(1, sizeof(*latency));
	if (!latency)
		return NULL;
	snprintf(latency->name, sizeof(latency->name), "%s", name);
	set->items[set->count++] = latency;
	return latency;
}

bool bench_latency_add(struct bench_latency_set *set, const char *name, int64_t ns)
{
	struct bench_latency *latency = latency_find(set, name);

	if (!latency)
		return false;
	latency->buckets[latency_bucket(ns)]++;
	latency->samples++;
	return true;
}

bool bench_latency_merge(struct bench_latency_set *into, const struct bench_latency_set *from)
{
	for (int i = 0; i < from->count; i++) {
		struct bench_latency *latency = latency_find(into, from->items[i]->name);

		if (!latency)
			return false;
		for (int b = 0; b < BENCH_LATENCY_BUCKETS; b++)
			latency->buckets[b] += from->items[i]->buckets[b];
		latency->samples += from->items[i]->samples;
	}
	return true;
}

void bench_latency_free(struct bench_latency_set *set)
{
	for (int i = 0; i < set->count; i++)
		free(set->items[i]);
	set->count = 0;
}

double bench_latency_percentile(const struct bench_latency *latency, double fraction)
{
	uint64_t rank = (uint64_t)ceil(fraction * (double)latency->samples), seen = 0;

	if (rank == 0)
		rank = 1;
	for (int b = 0; b < BENCH_LATENCY_BUCKETS; b++) {
		seen += latency->buckets[b];
		if (seen >= rank)
			return latency_value(b);
	}
	return 0;
}

/* ---------------------------------------------------------------- a run's counters */

static void put_latency_counters(struct bench_report *report, const struct bench_latency *latency)
{
	static const struct {
		const char *suffix;
		double fraction;
	} percentiles[] = { { "p50_ns", 0.5 }, { "p99_ns", 0.99 }, { "p999_ns", 0.999 } };
	char name[BENCH_COUNTER_NAME_MAX];

	if (latency->samples == 0)
		return;
	for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++) {
		snprintf(name, sizeof(name), "%s_%s", latency->name, percentiles[i].suffix);
		bench_counter_set_put(&report->counters, name,
				      bench_latency_percentile(latency, percentiles[i].fraction),
				      BENCH_COUNTER_DEFAULT, 1000.0, true);
	}
	snprintf(name, sizeof(name), "%s_samples", latency->name);
	bench_counter_set_put(&report->counters, name, (double)latency->samples,
			      BENCH_COUNTER_DEFAULT, 1000.0, true);
}

void bench_finish_counters(struct bench_report *report, const struct bench_measure *measure,
			   bool real_time)
{
	double seconds = real_time ? measure->real_seconds : measure->cpu_seconds;

	report->counters = measure->counters;
	for (int i = 0; i < report->counters.count; i++) {
		struct bench_counter_value *counter = &report->counters.items[i];
		if (counter->flags & BENCH_COUNTER_IS_RATE)
			counter->value /= seconds;
		if (counter->flags & BENCH_COUNTER_AVG_THREADS)
			counter->value /= measure->threads;
		if (counter->flags & BENCH_COUNTER_IS_ITERATION_INVARIANT)
			counter->value *= (double)measure->total_iterations;
		if (counter->flags & BENCH_COUNTER_AVG_ITERATIONS)
			counter->value /= (double)measure->total_iterations;
	}
	if (measure->threads > 1 && measure->real_seconds > 0) {
		bench_counter_set_put(&report->counters, "cpu_per_real",
				      measure->cpu_seconds / measure->real_seconds,
				      BENCH_COUNTER_DEFAULT, 1000.0, true);
		if (measure->runqueue_seconds >= 0)
			bench_counter_set_put(&report->counters, "runqueue_per_real",
					      measure->runqueue_seconds / measure->real_seconds,
					      BENCH_COUNTER_DEFAULT, 1000.0, true);
	}
	for (int i = 0; i < measure->latency.count; i++)
		put_latency_counters(report, measure->latency.items[i]);
}

/* ---------------------------------------------------------------- repetitions */

static double stat_mean(const double *v, int n)
{
	double sum = 0;

	for (int i = 0; i < n; i++)
		sum += v[i];
	return n ? sum / n : 0;
}

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double stat_median(const double *v, int n)
{
	double sorted[n > 0 ? n : 1];

	if (n < 3)
		return stat_mean(v, n);
	memcpy(sorted, v, (size_t)n * sizeof(*v));
	qsort(sorted, (size_t)n, sizeof(*sorted), compare_doubles);
	return n % 2 ? sorted[n / 2] : (sorted[n / 2] + sorted[n / 2 - 1]) / 2.0;
}

/* As Google Benchmark: sqrt(n / (n - 1) * (mean of squares - square of mean)). */
static double stat_stddev(const double *v, int n)
{
	double mean = stat_mean(v, n), squares = 0, variance;

	if (n < 2)
		return n ? 0.0 : mean;
	for (int i = 0; i < n; i++)
		squares += v[i] * v[i];
	variance = n / (n - 1.0) * (squares / n - mean * mean);
	return variance > 0 ? sqrt(variance) : 0.0;
}

static double stat_cv(const double *v, int n)
{
	return n < 2 ? 0.0 : stat_stddev(v, n) / stat_mean(v, n);
}

static const struct {
	const char *name;
	double (*compute)(const double *, int);
	bool percentage;
} statistics[] = {
	{ "mean", stat_mean, false },
	{ "median", stat_median, false },
	{ "stddev", stat_stddev, false },
	{ "cv", stat_cv, true },
};

/* Appends the aggregates of runs[0..count) to `aggregates`; returns how many. */
int bench_compute_aggregates(const struct bench_report *runs, int count,
			      struct bench_report *aggregates)
{
	double real[count], cpu[count], values[count];
	int n = 0, made = 0;
	const struct bench_report *first = NULL;

	for (int i = 0; i < count; i++) {
		if (runs[i].error)
			continue;
		if (!first)
			first = &runs[i];
		real[n] = runs[i].real_seconds;
		cpu[n] = runs[i].cpu_seconds;
		n++;
	}
	if (n < 2)
		return 0;
	for (size_t s = 0; s < sizeof(statistics) / sizeof(statistics[0]); s++) {
		struct bench_report *aggregate = &aggregates[made++];
		double rescale = (double)count / (double)first->iterations;

		*aggregate = *first;
		aggregate->aggregate = true;
		aggregate->aggregate_name = statistics[s].name;
		aggregate->percentage = statistics[s].percentage;
		aggregate->repetition_index = -1;
		aggregate->iterations = count;
		snprintf(aggregate->name, sizeof(aggregate->name), "%.*s_%s",
			 (int)sizeof(aggregate->name) - 8, first->run_name, statistics[s].name);
		aggregate->real_seconds = statistics[s].compute(real, n);
		aggregate->cpu_seconds = statistics[s].compute(cpu, n);
		if (!statistics[s].percentage) {
			aggregate->real_seconds *= rescale;
			aggregate->cpu_seconds *= rescale;
		}
		for (int c = 0; c < first->counters.count; c++) {
			const char *name = first->counters.items[c].name;
			int m = 0;
			for (int i = 0; i < count; i++) {
				const struct bench_counter_value *value;
				if (runs[i].error)
					continue;
				value = bench_counter_set_find(&runs[i].counters, name);
				values[m++] = value ? value->value : 0.0;
			}
			aggregate->counters.items[c].value = statistics[s].compute(values, m);
		}
	}
	return made;
}
