/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness.c: registration, flags, and the runner of tally's Google-Benchmark-compatible
 * harness (the reporters are in bench/report.c). What it copies from Google Benchmark 1.7.1
 * (behaviour, not code):
 *
 * - Instances: every registered function times each argument times each thread count, named
 *   name[/arg][/min_time:S][/iterations:N][/real_time][/threads:N], filtered by a POSIX
 *   extended regex (a leading '-' negates; "all" or empty selects everything).
 * - Iteration growth: start at 1 iteration (or the fixed count); after each try, if the
 *   measured time (CPU summed over threads, or real time for real_time variants) is below
 *   min_time, grow by min_time * 1.4 / measured (by 10x while the try took under 10% of
 *   min_time), never past 1e9 iterations. Only the first repetition searches; the other
 *   repetitions reuse its count, so their aggregates compare like with like.
 * - Threads: thread 0 is the calling thread, the rest are started per try; all wait on a
 *   barrier before the first iteration and after the last. Real time is averaged over the
 *   threads, CPU time summed; counters are summed, then rates divided by the time above.
 * - Repetitions: mean, median, stddev (sample, n - 1) and cv (stddev / mean) aggregates over
 *   the repetitions that did not fail, reported when at least two exist.
 * - Flags and BENCHMARK_<FLAG> environment variables (flags win). Unknown flag, bad value or
 *   an output file that cannot be created: a message on stderr and exit status 1. The
 *   --benchmark_out file is written to a temporary file beside it and renamed into place
 *   only when complete, so a failed run never leaves a half-written file.
 */
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness_internal.h"

#define MAX_ITERATIONS INT64_C(1000000000)

/* ---------------------------------------------------------------- registration */

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

struct bench_instance {
	struct bench_def *def;
	bool has_arg;
	int64_t arg;
	int threads;
	int family_index;
	int per_family_instance_index;
	char name[BENCH_NAME_MAX];
};

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

/* ---------------------------------------------------------------- per-thread state */

struct bench_run;

struct bench_thread {
	struct bench_state pub;       /* first: bench_state * <-> bench_thread * */
	struct bench_run *run;
	int index;
	bool timing;
	double real_start, cpu_start; /* while timing */
	double real_used, cpu_used;   /* seconds, completed timing intervals */
	bool error;
	int64_t iterations_at_error;
	char error_message[BENCH_TEXT_MAX];
	char label[BENCH_TEXT_MAX];
	struct bench_counter_set counters;
};

/* One try: `iterations` per thread on `threads` threads. Results merged under `lock`. */
struct bench_run {
	const struct bench_instance *instance;
	int64_t iterations;
	int threads;
	pthread_barrier_t barrier;
	pthread_mutex_t lock;
	int64_t total_iterations;
	double real_sum, cpu_sum;
	struct bench_counter_set counters;
	char label[BENCH_TEXT_MAX];
	bool error;
	char error_message[BENCH_TEXT_MAX];
};

static double clock_seconds(clockid_t clock)
{
	struct timespec now;

	clock_gettime(clock, &now);
	return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void timer_start(struct bench_thread *thread)
{
	thread->timing = true;
	thread->cpu_start = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
	thread->real_start = clock_seconds(CLOCK_MONOTONIC);
}

static void timer_stop(struct bench_thread *thread)
{
	double real = clock_seconds(CLOCK_MONOTONIC), cpu = clock_seconds(CLOCK_THREAD_CPUTIME_ID);

	thread->real_used += real - thread->real_start;
	thread->cpu_used += cpu - thread->cpu_start;
	thread->timing = false;
}

bool bench__keep_running_slow(struct bench_state *state)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	if (state->bench__phase == 0) {
		state->bench__phase = 1;
		pthread_barrier_wait(&thread->run->barrier);
		if (!thread->error && state->bench__max > 0) {
			state->bench__left = state->bench__max - 1;
			timer_start(thread);
			return true;
		}
	}
	if (state->bench__phase == 1) {
		if (thread->timing)
			timer_stop(thread);
		state->bench__left = 0;
		state->bench__phase = 2;
		pthread_barrier_wait(&thread->run->barrier);
	}
	return false;
}

int64_t bench_iterations(const struct bench_state *state)
{
	const struct bench_thread *thread = (const struct bench_thread *)state;

	if (thread->error)
		return thread->iterations_at_error;
	if (state->bench__phase == 0)
		return 0;
	return state->bench__max - state->bench__left;
}

int64_t bench_range(const struct bench_state *state, int i)
{
	const struct bench_thread *thread = (const struct bench_thread *)state;

	return (i == 0 && thread->run->instance->has_arg) ? thread->run->instance->arg : 0;
}

int bench_thread_index(const struct bench_state *state)
{
	return ((const struct bench_thread *)state)->index;
}

int bench_threads(const struct bench_state *state)
{
	return ((const struct bench_thread *)state)->run->threads;
}

void bench_set_items_processed(struct bench_state *state, int64_t items)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	bench_counter_set_put(&thread->counters, "items_per_second", (double)items,
			      BENCH_COUNTER_IS_RATE, 1000.0, true);
}

void bench_set_bytes_processed(struct bench_state *state, int64_t bytes)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	bench_counter_set_put(&thread->counters, "bytes_per_second", (double)bytes,
			      BENCH_COUNTER_IS_RATE, 1024.0, true);
}

void bench_set_label(struct bench_state *state, const char *label)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	snprintf(thread->label, sizeof(thread->label), "%s", label ? label : "");
}

void bench_counter(struct bench_state *state, const char *name, double value, unsigned flags)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	if (!name || !bench_counter_set_put(&thread->counters, name, value, flags, 1000.0, true))
		bench_skip_with_error(state, "too many counters or counter name too long");
}

void bench_skip_with_error(struct bench_state *state, const char *message)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	if (thread->error)
		return;
	thread->error = true;
	thread->iterations_at_error =
		state->bench__phase == 0 ? 0 : state->bench__max - state->bench__left;
	snprintf(thread->error_message, sizeof(thread->error_message), "%s",
		 message ? message : "error");
	state->bench__left = 0;
}

void bench_pause_timing(struct bench_state *state)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	if (thread->timing)
		timer_stop(thread);
}

void bench_resume_timing(struct bench_state *state)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	if (!thread->timing && state->bench__phase == 1)
		timer_start(thread);
}

/* ---------------------------------------------------------------- one try */

static void *thread_body(void *arg)
{
	struct bench_thread *thread = arg;
	struct bench_run *run = thread->run;

	thread->run->instance->def->fn(&thread->pub);
	if (thread->pub.bench__phase != 2) {
		/* Returned before the loop ended: keep the barrier counts balanced, then fail. */
		bench_skip_with_error(&thread->pub,
				      "benchmark returned before bench_keep_running() returned false");
		while (bench_keep_running(&thread->pub))
			;
	}
	pthread_mutex_lock(&run->lock);
	run->total_iterations += bench_iterations(&thread->pub);
	run->real_sum += thread->real_used;
	run->cpu_sum += thread->cpu_used;
	for (int i = 0; i < thread->counters.count; i++) {
		const struct bench_counter_value *counter = &thread->counters.items[i];
		bench_counter_set_put(&run->counters, counter->name, counter->value, counter->flags,
				      counter->one_k, false);
	}
	if (thread->label[0])
		snprintf(run->label, sizeof(run->label), "%s", thread->label);
	if (thread->error && !run->error) {
		run->error = true;
		snprintf(run->error_message, sizeof(run->error_message), "%s",
			 thread->error_message);
	}
	pthread_mutex_unlock(&run->lock);
	return NULL;
}

static void thread_init(struct bench_thread *thread, struct bench_run *run, int index)
{
	memset(thread, 0, sizeof(*thread));
	thread->run = run;
	thread->index = index;
	thread->pub.bench__max = run->iterations;
}

/* A state for the setup / teardown hooks: thread 0 of the run, before the loop. */
static void run_hook(bench_hook hook, struct bench_run *run)
{
	struct bench_thread thread;

	if (!hook)
		return;
	thread_init(&thread, run, 0);
	hook(&thread.pub);
}

static void run_try(const struct bench_instance *instance, int64_t iterations,
		    struct bench_run *run)
{
	int threads = instance->threads;
	struct bench_thread *states = calloc((size_t)threads, sizeof(*states));
	pthread_t *handles = calloc((size_t)threads, sizeof(*handles));

	memset(run, 0, sizeof(*run));
	run->instance = instance;
	run->iterations = iterations;
	run->threads = threads;
	if (!states || !handles) {
		fprintf(stderr, "bench: out of memory starting %d threads\n", threads);
		exit(1);
	}
	pthread_barrier_init(&run->barrier, NULL, (unsigned)threads);
	pthread_mutex_init(&run->lock, NULL);
	run_hook(instance->def->setup, run);
	for (int i = 0; i < threads; i++)
		thread_init(&states[i], run, i);
	for (int i = 1; i < threads; i++) {
		int err = pthread_create(&handles[i], NULL, thread_body, &states[i]);
		if (err) {
			/* Started threads wait on the barrier for ever: nothing sane to report. */
			fprintf(stderr, "bench: cannot start thread %d of %s: %s\n", i, instance->name,
				strerror(err));
			exit(1);
		}
	}
	thread_body(&states[0]);
	for (int i = 1; i < threads; i++)
		pthread_join(handles[i], NULL);
	run_hook(instance->def->teardown, run);
	pthread_barrier_destroy(&run->barrier);
	pthread_mutex_destroy(&run->lock);
	run->real_sum /= threads;
	free(states);
	free(handles);
}

/* ---------------------------------------------------------------- flags */

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
	const char *program;
};

enum flag_kind { FLAG_BOOL, FLAG_INT, FLAG_DOUBLE, FLAG_STRING, FLAG_FORMAT, FLAG_UNIT, FLAG_COLOR };

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
	"Each flag can also be set by the environment variable BENCHMARK_<FLAG>\n"
	"(e.g. BENCHMARK_MIN_TIME=0.2); a flag on the command line wins.\n";

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
	}
	return "?";
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

static int parse_environment(struct bench_flags *flags)
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

static int parse_arguments(struct bench_flags *flags, int argc, char **argv)
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

static int parse_context(struct bench_context *context, const struct bench_flags *flags)
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
	return 0;
}

/* ---------------------------------------------------------------- instances */

static int build_instances(const struct bench_flags *flags, struct bench_instance **out,
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
		int thread_variants = def->thread_count ? def->thread_count : 1;

		for (int a = 0; a < args; a++) {
			for (int t = 0; t < thread_variants; t++) {
				struct bench_instance instance = { .def = def };
				struct bench_instance *grown;
				int length;
				bool match;

				instance.has_arg = def->arg_count > 0;
				instance.arg = instance.has_arg ? def->args[a] : 0;
				instance.threads = def->thread_count ? def->thread_counts[t] : 1;
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
static int compute_aggregates(const struct bench_report *runs, int count,
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

static void finish_report(const struct bench_instance *instance, const struct bench_run *run,
			  const struct bench_flags *flags, int repetition, struct bench_report *report)
{
	double seconds = instance->def->real_time ? run->real_sum : run->cpu_sum;

	memset(report, 0, sizeof(*report));
	snprintf(report->name, sizeof(report->name), "%s", instance->name);
	snprintf(report->run_name, sizeof(report->run_name), "%s", instance->name);
	report->family_index = instance->family_index;
	report->per_family_instance_index = instance->per_family_instance_index;
	report->repetitions = flags->repetitions;
	report->repetition_index = repetition;
	report->threads = instance->threads;
	report->iterations = run->total_iterations;
	report->real_seconds = run->real_sum;
	report->cpu_seconds = run->cpu_sum;
	report->unit = flags->time_unit;
	snprintf(report->label, sizeof(report->label), "%s", run->label);
	report->error = run->error;
	snprintf(report->error_message, sizeof(report->error_message), "%s", run->error_message);
	if (run->error)
		report->iterations = run->iterations * instance->threads;
	report->counters = run->counters;
	for (int i = 0; i < report->counters.count; i++) {
		struct bench_counter_value *counter = &report->counters.items[i];
		if (counter->flags & BENCH_COUNTER_IS_RATE)
			counter->value /= seconds;
		if (counter->flags & BENCH_COUNTER_AVG_THREADS)
			counter->value /= instance->threads;
		if (counter->flags & BENCH_COUNTER_IS_ITERATION_INVARIANT)
			counter->value *= (double)run->total_iterations;
		if (counter->flags & BENCH_COUNTER_AVG_ITERATIONS)
			counter->value /= (double)run->total_iterations;
	}
}

static int64_t predict_iterations(double min_time, double seconds, int64_t iterations)
{
	double multiplier = min_time * 1.4 / (seconds > 1e-9 ? seconds : 1e-9);
	double next;

	if (seconds / min_time <= 0.1)
		multiplier = 10.0;
	next = round(fmax(multiplier * (double)iterations, (double)iterations + 1.0));
	return next > (double)MAX_ITERATIONS ? MAX_ITERATIONS : (int64_t)next;
}

/* Runs repetition `repetition` of one instance into *report. The first repetition warms
 * up and searches the iteration count into *iterations; later ones reuse it. */
static void run_repetition(const struct bench_instance *instance, const struct bench_flags *flags,
			   int repetition, int64_t *iterations, struct bench_report *report)
{
	const struct bench_def *def = instance->def;
	double min_time = def->min_time > 0 ? def->min_time : flags->min_time;
	struct bench_run run;

	if (repetition == 0 && flags->min_warmup_time > 0 && def->iterations == 0) {
		/* Warm-up: grow as for a measurement, discard the results. */
		for (int64_t warm = 1;;) {
			run_try(instance, warm, &run);
			double seconds = def->real_time ? run.real_sum : run.cpu_sum;
			if (run.error || seconds >= flags->min_warmup_time || warm >= MAX_ITERATIONS)
				break;
			warm = predict_iterations(flags->min_warmup_time, seconds, warm);
		}
	}
	if (repetition == 0)
		*iterations = def->iterations > 0 ? def->iterations : 1;
	for (;;) {
		double seconds;

		run_try(instance, *iterations, &run);
		seconds = def->real_time ? run.real_sum : run.cpu_sum;
		if (repetition > 0 || def->iterations > 0 || run.error ||
		    *iterations >= MAX_ITERATIONS || seconds >= min_time ||
		    run.real_sum >= 5 * min_time)
			break;
		*iterations = predict_iterations(min_time, seconds, *iterations);
	}
	finish_report(instance, &run, flags, repetition, report);
}

/* ---------------------------------------------------------------- output file */

struct out_file {
	char path[4096];
	char temp[4096 + 16];
	FILE *stream;
};

static int out_open(struct out_file *file, const char *path, const char *program)
{
	int fd;
	mode_t mask;

	snprintf(file->path, sizeof(file->path), "%s", path);
	snprintf(file->temp, sizeof(file->temp), "%s.tmp-XXXXXX", path);
	fd = mkstemp(file->temp);
	if (fd < 0 || !(file->stream = fdopen(fd, "w"))) {
		fprintf(stderr, "%s: error: cannot write --benchmark_out file '%s': %s\n", program,
			path, strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(file->temp);
		}
		return 1;
	}
	mask = umask(0);
	umask(mask);
	fchmod(fd, 0666 & ~mask);
	return 0;
}

static void out_discard(struct out_file *file)
{
	if (file->stream) {
		fclose(file->stream);
		unlink(file->temp);
		file->stream = NULL;
	}
}

static int out_commit(struct out_file *file, const char *program)
{
	bool failed = fflush(file->stream) != 0 || ferror(file->stream) ||
		      fsync(fileno(file->stream)) != 0;
	int saved = errno;

	if (fclose(file->stream) != 0 && !failed) {
		failed = true;
		saved = errno;
	}
	file->stream = NULL;
	if (!failed && rename(file->temp, file->path) != 0) {
		failed = true;
		saved = errno;
	}
	if (failed) {
		unlink(file->temp);
		fprintf(stderr, "%s: error: writing --benchmark_out file '%s' failed: %s\n", program,
			file->path, strerror(saved));
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- main */

/* Reports one instance's repetitions and their aggregates (runs has reps + 4 slots). */
static void report_instance(const struct bench_flags *flags, struct bench_report *runs,
			    struct bench_reporter *display, struct bench_reporter *file)
{
	int reps = flags->repetitions;
	int aggregates = compute_aggregates(runs, reps, runs + reps);

	if (aggregates > 0 && (flags->report_aggregates_only || flags->display_aggregates_only))
		bench_report_runs(display, runs + reps, aggregates);
	else
		bench_report_runs(display, runs, reps + aggregates);
	if (file) {
		if (aggregates > 0 && flags->report_aggregates_only)
			bench_report_runs(file, runs + reps, aggregates);
		else
			bench_report_runs(file, runs, reps + aggregates);
	}
}

/* The order of the count * repetitions runs: instance by instance, or (as Google Benchmark's
 * --benchmark_enable_random_interleaving) shuffled, so that a burst of load from elsewhere on
 * a shared machine falls on several benchmarks' repetitions instead of all of one's. */
static void schedule_order(const struct bench_flags *flags, int count, int *order)
{
	int total = count * flags->repetitions;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();

	for (int i = 0; i < total; i++)
		order[i] = i / flags->repetitions;
	if (!flags->random_interleaving)
		return;
	for (int i = total - 1; i > 0; i--) {
		int j = (int)(rand_r(&seed) % (unsigned)(i + 1)), swap = order[i];
		order[i] = order[j];
		order[j] = swap;
	}
}

/* Runs every repetition of every instance; each instance is reported when its last
 * repetition ends (Google Benchmark's order under interleaving too). */
static int run_schedule(const struct bench_flags *flags, struct bench_instance *instances,
			int count, struct bench_reporter *display, struct bench_reporter *file)
{
	int reps = flags->repetitions, total = count * reps;
	int *order = calloc((size_t)total, sizeof(*order));
	int *done = calloc((size_t)count, sizeof(*done));
	int64_t *iterations = calloc((size_t)count, sizeof(*iterations));
	struct bench_report *runs = calloc((size_t)count * (size_t)(reps + 4), sizeof(*runs));
	int status = 0;

	if (!order || !done || !iterations || !runs) {
		fprintf(stderr, "%s: error: out of memory\n", flags->program);
		status = 1;
	} else {
		schedule_order(flags, count, order);
		for (int k = 0; k < total; k++) {
			int i = order[k];
			struct bench_report *mine = runs + (size_t)i * (size_t)(reps + 4);

			run_repetition(&instances[i], flags, done[i], &iterations[i], &mine[done[i]]);
			if (++done[i] == reps)
				report_instance(flags, mine, display, file);
		}
	}
	free(order);
	free(done);
	free(iterations);
	free(runs);
	return status;
}

static int run_all(const struct bench_flags *flags, struct bench_instance *instances,
		   int count, struct out_file *out_file)
{
	struct bench_context context = { 0 };
	struct bench_reporter display, file;
	bool file_reporting = out_file->stream != NULL;
	int width = 10, status;

	if (parse_context(&context, flags))
		return 1;
	for (int i = 0; i < count; i++)
		if ((int)strlen(instances[i].name) > width)
			width = (int)strlen(instances[i].name);
	if (flags->repetitions > 1)
		width += 1 + 6; /* "_" + the longest statistic name ("median", "stddev") */
	bench_context_collect(&context, flags->program);
	context.name_width = width;
	bench_reporter_init(&display, flags->format, stdout, stderr, flags->counters_tabular);
	bench_report_context(&display, &context);
	if (file_reporting) {
		bench_reporter_init(&file, flags->out_format, out_file->stream, out_file->stream,
				    flags->counters_tabular);
		bench_report_context(&file, &context);
	}
	status = run_schedule(flags, instances, count, &display, file_reporting ? &file : NULL);
	bench_report_finish(&display);
	if (file_reporting)
		bench_report_finish(&file);
	return status;
}

int bench_main(int argc, char **argv)
{
	struct bench_flags flags = {
		.min_time = 0.5,
		.repetitions = 1,
		.format = BENCH_FORMAT_CONSOLE,
		.out_format = BENCH_FORMAT_JSON,
		.time_unit = BENCH_UNIT_NS,
		.program = argc > 0 && argv[0] ? argv[0] : "bench",
	};
	struct out_file out_file = { .stream = NULL };
	struct bench_instance *instances = NULL;
	int count = 0, status;

	status = parse_environment(&flags);
	if (!status)
		status = parse_arguments(&flags, argc, argv);
	if (status)
		return status < 0 ? 0 : status;
	if (registration_error[0]) {
		fprintf(stderr, "%s: error: %s\n", flags.program, registration_error);
		return 1;
	}
	if (build_instances(&flags, &instances, &count))
		return 1;
	if (flags.list_tests) {
		for (int i = 0; i < count; i++)
			printf("%s\n", instances[i].name);
		free(instances);
		return fflush(stdout) == 0 ? 0 : 1;
	}
	if (count == 0) {
		fprintf(stderr, "Failed to match any benchmarks against regex: %s\n", flags.filter);
		free(instances);
		return 0;
	}
	if (flags.out[0] && out_open(&out_file, flags.out, flags.program)) {
		free(instances);
		return 1;
	}
	status = run_all(&flags, instances, count, &out_file);
	free(instances);
	fflush(stdout);
	if (status) {
		out_discard(&out_file);
		return status;
	}
	if (out_file.stream)
		return out_commit(&out_file, flags.program);
	return 0;
}
