/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness_flags.c: the --benchmark_* flags and BENCHMARK_<FLAG> environment variables
 * of Google Benchmark 1.7 (a flag on the command line wins). An unknown flag or a malformed
 * value (flag or environment) prints what is wrong and makes bench_main exit 1 before
 * anything runs; Google Benchmark ignores some of these or prints its usage and exits 0.
 *
 * One flag is tally's own, so it is spelled without the benchmark_ prefix: --bench_threads
 * (environment BENCH_THREADS), the thread counts every threaded benchmark runs at
 * (harness_registry.c applies it), for the scaling run on more threads than registered.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "harness_internal.h"

enum flag_kind {
	FLAG_BOOL, FLAG_INT, FLAG_DOUBLE, FLAG_STRING, FLAG_FORMAT, FLAG_UNIT, FLAG_COLOR,
	FLAG_THREAD_LIST,
};

struct flag_spec {
	const char *name;
	enum flag_kind kind;
	size_t offset;
	size_t size;
};

#define FLAG(name, kind, field) { name, kind, offsetof(struct bench_flags, field), \
				  sizeof(((struct bench_flags *)0)->field) }

static const struct flag_spec flag_specs[] = {
	FLAG("benchmark_list_tests", FLAG_BOOL, list_tests),
	FLAG("benchmark_filter", FLAG_STRING, filter),
	FLAG("benchmark_min_time", FLAG_DOUBLE, min_time),
	FLAG("benchmark_min_warmup_time", FLAG_DOUBLE, min_warmup_time),
	FLAG("benchmark_repetitions", FLAG_INT, repetitions),
	FLAG("benchmark_report_aggregates_only", FLAG_BOOL, report_aggregates_only),
	FLAG("benchmark_display_aggregates_only", FLAG_BOOL, display_aggregates_only),
	FLAG("benchmark_enable_random_interleaving", FLAG_BOOL, random_interleaving),
	FLAG("benchmark_format", FLAG_FORMAT, format),
	FLAG("benchmark_out", FLAG_STRING, out),
	FLAG("benchmark_out_format", FLAG_FORMAT, out_format),
	FLAG("benchmark_time_unit", FLAG_UNIT, time_unit),
	FLAG("benchmark_counters_tabular", FLAG_BOOL, counters_tabular),
	FLAG("benchmark_context", FLAG_STRING, context),
	{ "benchmark_color", FLAG_COLOR, 0, 0 },
	FLAG("bench_threads", FLAG_THREAD_LIST, thread_list),
};

static const char usage[] =
	"benchmark [--benchmark_list_tests={true|false}]\n"
	"          [--benchmark_filter=<regex>]\n"
	"          [--benchmark_min_time=<min_time>]\n"
	"          [--benchmark_min_warmup_time=<min_warmup_time>]\n"
	"          [--benchmark_repetitions=<num_repetitions>]\n"
	"          [--benchmark_report_aggregates_only={true|false}]\n"
	"          [--benchmark_display_aggregates_only={true|false}]\n"
	"          [--benchmark_enable_random_interleaving={true|false}]\n"
	"          [--benchmark_format=<console|json|csv>]\n"
	"          [--benchmark_out=<filename>]\n"
	"          [--benchmark_out_format=<json|console|csv>]\n"
	"          [--benchmark_color={auto|true|false}]\n"
	"          [--benchmark_counters_tabular={true|false}]\n"
	"          [--benchmark_context=<key>=<value>,...]\n"
	"          [--benchmark_time_unit={ns|us|ms|s}]\n"
	"          [--bench_threads=<threads>,...]\n"
	"Each flag can also be set by the environment variable BENCHMARK_<FLAG>\n"
	"(e.g. BENCHMARK_MIN_TIME=0.2); a flag on the command line wins.\n"
	"--bench_threads (tally's own; BENCH_THREADS) replaces the thread counts of every\n"
	"benchmark registered with a count above 1 (e.g. --bench_threads=1,2,4,8,16).\n";

static bool parse_bool(const char *text, bool *value)
{
	static const char *const yes[] = { "true", "yes", "on", "1", "t", "y" };
	static const char *const no[] = { "false", "no", "off", "0", "f", "n" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0)
			return *value = true, true;
		if (strcasecmp(text, no[i]) == 0)
			return *value = false, true;
	}
	return false;
}

static bool parse_format(const char *text, enum bench_format *format)
{
	if (strcmp(text, "console") == 0)
		*format = BENCH_FORMAT_CONSOLE;
	else if (strcmp(text, "json") == 0)
		*format = BENCH_FORMAT_JSON;
	else if (strcmp(text, "csv") == 0)
		*format = BENCH_FORMAT_CSV;
	else
		return false;
	return true;
}

static bool parse_unit(const char *text, enum bench_unit *unit)
{
	static const char *const names[] = { "ns", "us", "ms", "s" };

	for (int i = 0; i < 4; i++) {
		if (strcmp(text, names[i]) == 0) {
			*unit = (enum bench_unit)i;
			return true;
		}
	}
	return false;
}

static const char *expected_of(enum flag_kind kind)
{
	switch (kind) {
	case FLAG_BOOL: return "true or false";
	case FLAG_INT: return "an integer >= 1";
	case FLAG_DOUBLE: return "a number of seconds >= 0 (e.g. 0.5)";
	case FLAG_STRING: return "a string";
	case FLAG_FORMAT: return "one of console, json, csv";
	case FLAG_UNIT: return "one of ns, us, ms, s";
	case FLAG_COLOR: return "one of auto, true, false";
	case FLAG_THREAD_LIST: return "distinct thread counts in 1..1024, comma-separated, at most "
				      "16 (e.g. 1,2,4,8,16)";
	}
	return "?";
}

/* --bench_threads: "1,2,4" into flags->thread_list; false (the list unchanged) unless every
 * item is a count in 1..BENCH_THREADS_LIMIT, none repeats and there are at most
 * BENCH_THREAD_LIST_MAX. A repeat is refused rather than run twice: it is a typing slip. */
static bool parse_thread_list(struct bench_flags *flags, const char *text)
{
	int list[BENCH_THREAD_LIST_MAX], count = 0;
	const char *p = text;

	if (strlen(text) >= sizeof(flags->thread_list_text))
		return false;
	for (;;) {
		char *end;
		long value;

		if (*p < '0' || *p > '9' || count == BENCH_THREAD_LIST_MAX)
			return false;
		errno = 0;
		value = strtol(p, &end, 10);
		if (errno || value < 1 || value > BENCH_THREADS_LIMIT)
			return false;
		for (int i = 0; i < count; i++)
			if (list[i] == value)
				return false;
		list[count++] = (int)value;
		if (*end == '\0')
			break;
		if (*end != ',')
			return false;
		p = end + 1;
	}
	memcpy(flags->thread_list, list, (size_t)count * sizeof(list[0]));
	flags->thread_list_count = count;
	memcpy(flags->thread_list_text, text, strlen(text) + 1);
	return true;
}

/* Stores `text` (NULL: a bare --flag) into the field; false on a malformed value. */
static bool set_flag(struct bench_flags *flags, const struct flag_spec *spec, const char *text)
{
	void *field = (char *)flags + spec->offset;
	char *end;

	if (!text) {
		if (spec->kind != FLAG_BOOL)
			return false;
		text = "true";
	}
	switch (spec->kind) {
	case FLAG_BOOL:
		return parse_bool(text, field);
	case FLAG_INT: {
		long value;
		errno = 0;
		value = strtol(text, &end, 10);
		if (errno || end == text || *end || value < 1 || value > 1000000)
			return false;
		*(int *)field = (int)value;
		return true;
	}
	case FLAG_DOUBLE: {
		double value = strtod(text, &end);
		if (end == text || (*end && strcmp(end, "s") != 0) || !(value >= 0) || isinf(value))
			return false;
		*(double *)field = value;
		return true;
	}
	case FLAG_STRING:
		if (strlen(text) >= spec->size)
			return false;
		memcpy(field, text, strlen(text) + 1);
		return true;
	case FLAG_FORMAT:
		return parse_format(text, field);
	case FLAG_UNIT:
		return parse_unit(text, field);
	case FLAG_COLOR: {
		bool ignored;
		/* accepted for compatibility; tally's console output is never coloured */
		return strcmp(text, "auto") == 0 || parse_bool(text, &ignored);
	}
	case FLAG_THREAD_LIST:
		return parse_thread_list(flags, text);
	}
	return false;
}

static int bad_value(const struct bench_flags *flags, const char *source, const char *name,
		     enum flag_kind kind, const char *text)
{
	fprintf(stderr, "%s: error: %s %s has the malformed value \"%s\"; expected %s\n",
		flags->program, source, name, text ? text : "(none)", expected_of(kind));
	return 1;
}

int bench_flags_parse_environment(struct bench_flags *flags)
{
	for (size_t i = 0; i < sizeof(flag_specs) / sizeof(flag_specs[0]); i++) {
		char variable[64];
		const char *text;

		snprintf(variable, sizeof(variable), "%s", flag_specs[i].name);
		for (char *p = variable; *p; p++)
			*p = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
		text = getenv(variable);
		if (text && !set_flag(flags, &flag_specs[i], text))
			return bad_value(flags, "environment variable", variable, flag_specs[i].kind,
					 text);
	}
	return 0;
}

int bench_flags_parse_arguments(struct bench_flags *flags, int argc, char **argv)
{
	for (int a = 1; a < argc; a++) {
		const char *arg = argv[a], *name, *value;
		size_t length;
		bool known = false;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(usage, stdout);
			return -1;
		}
		name = arg[0] == '-' ? arg + 1 + (arg[1] == '-') : NULL;
		if (!name) {
			fprintf(stderr, "%s: error: unrecognized command-line argument: %s "
					"(flags are --benchmark_<name>=<value>; see --help)\n",
				flags->program, arg);
			return 1;
		}
		value = strchr(name, '=');
		length = value ? (size_t)(value - name) : strlen(name);
		for (size_t i = 0; i < sizeof(flag_specs) / sizeof(flag_specs[0]); i++) {
			const struct flag_spec *spec = &flag_specs[i];
			if (strlen(spec->name) != length || strncmp(spec->name, name, length) != 0)
				continue;
			known = true;
			if (!set_flag(flags, spec, value ? value + 1 : NULL))
				return bad_value(flags, "flag", arg, spec->kind, value ? value + 1 : NULL);
		}
		if (!known) {
			fprintf(stderr, "%s: error: unrecognized command-line flag: %s (see --help)\n",
				flags->program, arg);
			return 1;
		}
	}
	return 0;
}

/* A run under --bench_threads says so in its context ("bench_threads": "1,2,4"), so that a
 * JSON file whose thread counts differ from the program's registrations explains itself. */
static int add_thread_list_context(struct bench_context *context,
				   const struct bench_flags *flags)
{
	if (flags->thread_list_count == 0)
		return 0;
	if (context->user_count == BENCH_CONTEXT_MAX) {
		fprintf(stderr, "%s: error: --benchmark_context has too many pairs to add "
				"bench_threads\n", flags->program);
		return 1;
	}
	snprintf(context->user_key[context->user_count], sizeof(context->user_key[0]),
		 "bench_threads");
	snprintf(context->user_value[context->user_count], sizeof(context->user_value[0]), "%s",
		 flags->thread_list_text);
	context->user_count++;
	return 0;
}

int bench_flags_parse_context(struct bench_context *context, const struct bench_flags *flags)
{
	char copy[sizeof(flags->context)], *save = NULL;

	snprintf(copy, sizeof(copy), "%s", flags->context);
	for (char *pair = strtok_r(copy, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
		char *equals = strchr(pair, '=');
		if (!equals || equals == pair || context->user_count == BENCH_CONTEXT_MAX ||
		    (size_t)(equals - pair) >= sizeof(context->user_key[0])) {
			fprintf(stderr, "%s: error: --benchmark_context takes key=value[,key=value...], "
					"not \"%s\"\n", flags->program, flags->context);
			return 1;
		}
		*equals = '\0';
		snprintf(context->user_key[context->user_count], sizeof(context->user_key[0]), "%s",
			 pair);
		snprintf(context->user_value[context->user_count], sizeof(context->user_value[0]),
			 "%s", equals + 1);
		context->user_count++;
	}
	return add_thread_list_context(context, flags);
}
