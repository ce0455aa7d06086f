/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness_registry.c: bench_register and bench_def_* (harness.h), and the instances a
 * --benchmark_filter selects. As Google Benchmark 1.7: every registered function times each
 * argument times each thread count, named
 * name[/arg][/min_time:S][/iterations:N][/real_time][/threads:N], filtered by a POSIX extended
 * regex (a leading '-' negates; "all" or empty selects everything). A registration mistake
 * (bad argument, out of memory) is kept and reported by bench_main, which then exits 1.
 *
 * --bench_threads=LIST replaces the thread counts of every threaded benchmark, one registered
 * with a count above 1, before the filter sees the names: a scaling run selects
 * "threads:16" like any other instance. A benchmark registered with 1 thread only (or with
 * none) measures something that has no threaded form (a file lease, the harness's own
 * overhead) and keeps what it registered.
 */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness_internal.h"

static struct bench_def **defs;
static int def_count;
static char registration_error[BENCH_TEXT_MAX];

static void registration_failed(const char *what, const char *name)
{
	if (!registration_error[0])
		snprintf(registration_error, sizeof(registration_error), "%s (benchmark %s)", what,
			 name ? name : "?");
}

struct bench_def *bench_register(const char *name, bench_fn fn)
{
	struct bench_def *def, **grown;

	if (!name || !*name || !fn) {
		registration_failed("bench_register needs a name and a function", name);
		return NULL;
	}
	def = calloc(1, sizeof(*def));
	grown = realloc(defs, (size_t)(def_count + 1) * sizeof(*defs));
	if (!def || !grown || !(def->name = strdup(name))) {
		free(def);
		if (grown)
			defs = grown;
		registration_failed("out of memory", name);
		return NULL;
	}
	def->fn = fn;
	defs = grown;
	defs[def_count++] = def;
	return def;
}

static bool append_int64(int64_t **array, int *count, int64_t value)
{
	int64_t *grown = realloc(*array, (size_t)(*count + 1) * sizeof(**array));

	if (!grown)
		return false;
	grown[(*count)++] = value;
	*array = grown;
	return true;
}

struct bench_def *bench_def_arg(struct bench_def *def, int64_t arg)
{
	if (def && !append_int64(&def->args, &def->arg_count, arg))
		registration_failed("out of memory", def->name);
	return def;
}

struct bench_def *bench_def_range(struct bench_def *def, int64_t lo, int64_t hi)
{
	if (!def)
		return NULL;
	if (lo < 0 || hi < lo) {
		registration_failed("bench_def_range needs 0 <= lo <= hi", def->name);
		return def;
	}
	bench_def_arg(def, lo);
	for (int64_t power = 1; power < hi; power *= 8) {
		if (power > lo)
			bench_def_arg(def, power);
		if (power > INT64_MAX / 8)
			break;
	}
	if (hi != lo)
		bench_def_arg(def, hi);
	return def;
}

struct bench_def *bench_def_threads(struct bench_def *def, int threads)
{
	int *grown;

	if (!def)
		return NULL;
	if (threads < 1) {
		registration_failed("bench_def_threads needs threads >= 1", def->name);
		return def;
	}
	grown = realloc(def->thread_counts, (size_t)(def->thread_count + 1) * sizeof(*grown));
	if (!grown) {
		registration_failed("out of memory", def->name);
		return def;
	}
	grown[def->thread_count++] = threads;
	def->thread_counts = grown;
	return def;
}

struct bench_def *bench_def_setup(struct bench_def *def, bench_hook setup)
{
	if (def)
		def->setup = setup;
	return def;
}

struct bench_def *bench_def_teardown(struct bench_def *def, bench_hook teardown)
{
	if (def)
		def->teardown = teardown;
	return def;
}

struct bench_def *bench_def_use_real_time(struct bench_def *def)
{
	if (def)
		def->real_time = true;
	return def;
}

struct bench_def *bench_def_iterations(struct bench_def *def, int64_t iterations)
{
	if (def && iterations < 1)
		registration_failed("bench_def_iterations needs iterations >= 1", def->name);
	else if (def)
		def->iterations = iterations;
	return def;
}

struct bench_def *bench_def_min_time(struct bench_def *def, double seconds)
{
	if (def && !(seconds > 0))
		registration_failed("bench_def_min_time needs seconds > 0", def->name);
	else if (def)
		def->min_time = seconds;
	return def;
}

const char *bench_registration_error(void)
{
	return registration_error;
}

/* A benchmark whose thread counts --bench_threads replaces. */
static bool is_threaded(const struct bench_def *def)
{
	for (int t = 0; t < def->thread_count; t++)
		if (def->thread_counts[t] > 1)
			return true;
	return false;
}

/* The thread counts an instance of `def` runs at: *count of them, none (count 1, value 1,
 * no threads:N in the name) when it registered none. */
static const int *thread_counts_of(const struct bench_def *def, const struct bench_flags *flags,
				   int *count)
{
	static const int one = 1;

	if (flags->thread_list_count > 0 && is_threaded(def)) {
		*count = flags->thread_list_count;
		return flags->thread_list;
	}
	*count = def->thread_count ? def->thread_count : 1;
	return def->thread_count ? def->thread_counts : &one;
}

int bench_build_instances(const struct bench_flags *flags, struct bench_instance **out,
			   int *count)
{
	const char *pattern = flags->filter;
	bool negative = false;
	regex_t regex;
	int err, family_index = 0;

	*out = NULL;
	*count = 0;
	if (pattern[0] == '-') {
		negative = true;
		pattern++;
	}
	if (!pattern[0] || strcmp(pattern, "all") == 0)
		pattern = ".";
	if ((err = regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB)) != 0) {
		char message[256];
		regerror(err, &regex, message, sizeof(message));
		fprintf(stderr, "%s: error: --benchmark_filter=%s is not a valid regular expression: "
				"%s\n", flags->program, flags->filter, message);
		return 1;
	}
	for (int d = 0; d < def_count; d++) {
		struct bench_def *def = defs[d];
		int per_family = 0;
		int args = def->arg_count ? def->arg_count : 1;
		int thread_variants;
		const int *thread_counts = thread_counts_of(def, flags, &thread_variants);

		for (int a = 0; a < args; a++) {
			for (int t = 0; t < thread_variants; t++) {
				struct bench_instance instance = { .def = def };
				struct bench_instance *grown;
				int length;
				bool match;

				instance.has_arg = def->arg_count > 0;
				instance.arg = instance.has_arg ? def->args[a] : 0;
				instance.threads = thread_counts[t];
				length = snprintf(instance.name, sizeof(instance.name), "%s", def->name);
				if (instance.has_arg)
					length += snprintf(instance.name + length, sizeof(instance.name) - (size_t)length,
							   "/%lld", (long long)instance.arg);
				if (def->min_time > 0)
					length += snprintf(instance.name + length, sizeof(instance.name) - (size_t)length,
							   "/min_time:%0.3f", def->min_time);
				if (def->iterations > 0)
					length += snprintf(instance.name + length, sizeof(instance.name) - (size_t)length,
							   "/iterations:%lld", (long long)def->iterations);
				if (def->real_time)
					length += snprintf(instance.name + length, sizeof(instance.name) - (size_t)length,
							   "/real_time");
				if (def->thread_count)
					snprintf(instance.name + length, sizeof(instance.name) - (size_t)length,
						 "/threads:%d", instance.threads);
				match = regexec(&regex, instance.name, 0, NULL, 0) == 0;
				if (match == negative)
					continue;
				instance.family_index = family_index;
				instance.per_family_instance_index = per_family++;
				grown = realloc(*out, (size_t)(*count + 1) * sizeof(**out));
				if (!grown) {
					regfree(&regex);
					fprintf(stderr, "%s: error: out of memory\n", flags->program);
					return 1;
				}
				*out = grown;
				(*out)[(*count)++] = instance;
			}
		}
		if (per_family > 0)
			family_index++;
	}
	regfree(&regex);
	return 0;
}
