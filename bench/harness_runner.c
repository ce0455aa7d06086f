/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness_runner.c: the runner of tally's Google-Benchmark-compatible harness: what a
 * benchmark calls on its state, threads, tries, repetitions, the schedule and bench_main.
 * The other parts: harness_registry.c (registration, instances), harness_flags.c,
 * harness_statistics.c (counters, aggregates, latency), harness_report.c (output). What it
 * copies from Google Benchmark 1.7.1 (behaviour, not code):
 *
 * - Iteration growth: start at 1 iteration (or the fixed count); after each try, if the
 *   measured time (CPU summed over threads, or real time for real_time variants) is below
 *   min_time, grow by min_time * 1.4 / measured (by 10x while the try took under 10% of
 *   min_time), never past 1e9 iterations. Only the first repetition searches; the other
 *   repetitions reuse its count, so their aggregates compare like with like.
 * - Threads: thread 0 is the calling thread, the rest are started per try; all wait on a
 *   barrier before the first iteration and after the last. Real time is averaged over the
 *   threads, CPU time summed; counters are summed, then rates divided by the time above.
 * - Output file: --benchmark_out is written to a temporary file beside it and renamed into
 *   place only when complete, so a failed run never leaves a half-written file.
 *
 * Beyond Google Benchmark: each thread also reads its run-queue wait (the kernel's
 * /proc/thread-self/schedstat, time runnable but not running) around the timed loop, so a
 * threaded run reports whether its threads had a CPU (harness_statistics.c), and threads may
 * record latency samples into named histograms (bench_latency_record).
 */
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness_internal.h"

#define MAX_ITERATIONS INT64_C(1000000000)

/* ---------------------------------------------------------------- per-thread state */

struct bench_run;

struct bench_thread {
	struct bench_state pub;       /* first: bench_state * <-> bench_thread * */
	struct bench_run *run;
	int index;
	bool timing;
	double real_start, cpu_start; /* while timing */
	double real_used, cpu_used;   /* seconds, completed timing intervals */
	int schedstat;                /* /proc/thread-self/schedstat, -1 if unreadable */
	double runqueue_start, runqueue_used;
	struct bench_latency_set latency;
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
	struct bench_measure measure; /* summed over threads (real time: averaged at the end) */
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

/* The calling thread's run-queue wait in seconds (the second field of schedstat), or -1. */
static double runqueue_seconds(int fd)
{
	char text[128];
	ssize_t length;
	unsigned long long run_ns, wait_ns;

	if (fd < 0 || (length = pread(fd, text, sizeof(text) - 1, 0)) <= 0)
		return -1;
	text[length] = '\0';
	if (sscanf(text, "%llu %llu", &run_ns, &wait_ns) != 2)
		return -1;
	return (double)wait_ns * 1e-9;
}

/* Reads the real and CPU clocks and the run-queue wait as of one moment. The kernel adds a
 * wait to schedstat when the thread gets its CPU back, so a preemption between the clock
 * reads and the schedstat read would count a wait (tens of milliseconds on an oversubscribed
 * machine) in the run-queue time but not in the real time, or the reverse: the reads are
 * repeated (up to 3 more times) until schedstat is the same before and after the clocks.
 * The second schedstat read is inside the timed interval: one pread, about a microsecond
 * per try. */
static void read_clocks(const struct bench_thread *thread, double *real, double *cpu,
			double *runqueue)
{
	for (int tries = 0;; tries++) {
		double before = runqueue_seconds(thread->schedstat);

		*cpu = clock_seconds(CLOCK_THREAD_CPUTIME_ID);
		*real = clock_seconds(CLOCK_MONOTONIC);
		*runqueue = runqueue_seconds(thread->schedstat);
		if (*runqueue == before || tries == 3)
			return;
	}
}

static void timer_start(struct bench_thread *thread)
{
	thread->timing = true;
	read_clocks(thread, &thread->real_start, &thread->cpu_start, &thread->runqueue_start);
}

static void timer_stop(struct bench_thread *thread)
{
	double real, cpu, runqueue;

	read_clocks(thread, &real, &cpu, &runqueue);

	thread->real_used += real - thread->real_start;
	thread->cpu_used += cpu - thread->cpu_start;
	if (runqueue >= 0 && thread->runqueue_start >= 0)
		thread->runqueue_used += runqueue - thread->runqueue_start;
	else
		thread->runqueue_used = -1e300; /* unknown from now on */
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

void bench_latency_record(struct bench_state *state, const char *name, int64_t ns)
{
	struct bench_thread *thread = (struct bench_thread *)state;

	if (!name || !bench_latency_add(&thread->latency, name, ns))
		bench_skip_with_error(state, "too many latency histograms or out of memory");
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
	struct bench_measure *measure = &run->measure;

	thread->schedstat = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	thread->run->instance->def->fn(&thread->pub);
	if (thread->pub.bench__phase != 2) {
		/* Returned before the loop ended: keep the barrier counts balanced, then fail. */
		bench_skip_with_error(&thread->pub,
				      "benchmark returned before bench_keep_running() returned false");
		while (bench_keep_running(&thread->pub))
			;
	}
	if (thread->schedstat >= 0)
		close(thread->schedstat);
	else
		thread->runqueue_used = -1e300;
	pthread_mutex_lock(&run->lock);
	measure->total_iterations += bench_iterations(&thread->pub);
	measure->real_seconds += thread->real_used;
	measure->cpu_seconds += thread->cpu_used;
	measure->runqueue_seconds += thread->runqueue_used;
	for (int i = 0; i < thread->counters.count; i++) {
		const struct bench_counter_value *counter = &thread->counters.items[i];
		bench_counter_set_put(&measure->counters, counter->name, counter->value,
				      counter->flags, counter->one_k, false);
	}
	if (!bench_latency_merge(&measure->latency, &thread->latency) && !thread->error) {
		thread->error = true;
		snprintf(thread->error_message, sizeof(thread->error_message),
			 "out of memory merging latency histograms");
	}
	bench_latency_free(&thread->latency);
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
	thread->schedstat = -1;
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

	bench_latency_free(&run->measure.latency); /* a previous try's */
	memset(run, 0, sizeof(*run));
	run->instance = instance;
	run->iterations = iterations;
	run->threads = threads;
	run->measure.threads = threads;
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
	run->measure.real_seconds /= threads;
	free(states);
	free(handles);
}

/* ---------------------------------------------------------------- repetitions */

static void finish_report(const struct bench_instance *instance, const struct bench_run *run,
			  const struct bench_flags *flags, int repetition, struct bench_report *report)
{
	const struct bench_measure *measure = &run->measure;

	memset(report, 0, sizeof(*report));
	snprintf(report->name, sizeof(report->name), "%s", instance->name);
	snprintf(report->run_name, sizeof(report->run_name), "%s", instance->name);
	report->family_index = instance->family_index;
	report->per_family_instance_index = instance->per_family_instance_index;
	report->repetitions = flags->repetitions;
	report->repetition_index = repetition;
	report->threads = instance->threads;
	report->iterations = measure->total_iterations;
	report->real_seconds = measure->real_seconds;
	report->cpu_seconds = measure->cpu_seconds;
	report->unit = flags->time_unit;
	snprintf(report->label, sizeof(report->label), "%s", run->label);
	report->error = run->error;
	snprintf(report->error_message, sizeof(report->error_message), "%s", run->error_message);
	if (run->error)
		report->iterations = run->iterations * instance->threads;
	bench_finish_counters(report, measure, instance->def->real_time);
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
	struct bench_run run = { .instance = NULL };

	if (repetition == 0 && flags->min_warmup_time > 0 && def->iterations == 0) {
		/* Warm-up: grow as for a measurement, discard the results. */
		for (int64_t warm = 1;;) {
			run_try(instance, warm, &run);
			double seconds = def->real_time ? run.measure.real_seconds : run.measure.cpu_seconds;
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
		seconds = def->real_time ? run.measure.real_seconds : run.measure.cpu_seconds;
		if (repetition > 0 || def->iterations > 0 || run.error ||
		    *iterations >= MAX_ITERATIONS || seconds >= min_time ||
		    run.measure.real_seconds >= 5 * min_time)
			break;
		*iterations = predict_iterations(min_time, seconds, *iterations);
	}
	finish_report(instance, &run, flags, repetition, report);
	bench_latency_free(&run.measure.latency);
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
	int aggregates = bench_compute_aggregates(runs, reps, runs + reps);

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

	if (bench_flags_parse_context(&context, flags))
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

	status = bench_flags_parse_environment(&flags);
	if (!status)
		status = bench_flags_parse_arguments(&flags, argc, argv);
	if (status)
		return status < 0 ? 0 : status;
	if (bench_registration_error()[0]) {
		fprintf(stderr, "%s: error: %s\n", flags.program, bench_registration_error());
		return 1;
	}
	if (bench_build_instances(&flags, &instances, &count))
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
