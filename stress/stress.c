/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/stress.c: options, progress, summary, randomness, pacing and processes for the
 * stress programs (the contract is in stress/stress.h).
 */
#include "stress.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#define VIOLATIONS_REPORTED_MAX 20
#define PLAIN_PROGRESS_S 10.0
#define TTY_PROGRESS_S 0.25

double stress_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

double stress_elapsed(const struct stress_run *run)
{
	return stress_now() - run->start;
}

bool stress_running(const struct stress_run *run)
{
	return stress_elapsed(run) < run->opt.seconds;
}

void *stress_shared(size_t size)
{
	void *memory = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (memory == MAP_FAILED) {
		perror("stress: mmap");
		exit(2);
	}
	return memory;
}

/* ---- options -------------------------------------------------------------------------- */

static void usage(const char *name, const struct stress_flag *flags, const char *problem)
{
	fprintf(stderr, "%s: %s\nusage: %s [--seconds S] [--threads N] [--processes N] "
		"[--rate N] [--seed N] [--store URL] [--json FILE]", name, problem, name);
	for (const struct stress_flag *f = flags; f && f->name; f++)
		fprintf(stderr, " [--%s N]", f->name);
	fprintf(stderr, "\n       %s SECONDS [THREADS]   (the old positional form)\n", name);
	for (const struct stress_flag *f = flags; f && f->name; f++)
		fprintf(stderr, "  --%s: %s (default %g)\n", f->name, f->help, *f->value);
	exit(2);
}

static double number(const char *name, const struct stress_flag *flags, const char *option,
		     const char *text)
{
	char *end;
	double value;

	errno = 0;
	value = strtod(text, &end);
	if (errno || end == text || *end) {
		char problem[160];

		snprintf(problem, sizeof(problem), "--%s wants a number, not '%s'", option, text);
		usage(name, flags, problem);
	}
	return value;
}

static uint64_t seed_from_clock(void)
{
	struct timespec now;
	struct stress_rng mix;

	clock_gettime(CLOCK_REALTIME, &now);
	stress_rng_init(&mix, (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 30),
			(uint64_t)getpid());
	return stress_rng_next(&mix) >> 1; /* fits a signed 64-bit JSON reader too */
}

/* Applies one option (name without "--") to run; returns false if it is not known. */
static bool apply_option(struct stress_run *run, const struct stress_flag *flags,
			 const char *option, const char *value)
{
	struct stress_options *opt = &run->opt;

	if (!strcmp(option, "seconds"))
		opt->seconds = number(run->name, flags, option, value);
	else if (!strcmp(option, "threads"))
		opt->threads = (int)number(run->name, flags, option, value);
	else if (!strcmp(option, "processes"))
		opt->processes = (int)number(run->name, flags, option, value);
	else if (!strcmp(option, "rate"))
		opt->rate = number(run->name, flags, option, value);
	else if (!strcmp(option, "seed"))
		opt->seed = strtoull(value, NULL, 0);
	else if (!strcmp(option, "store"))
		opt->store = strcmp(value, "none") ? value : NULL;
	else if (!strcmp(option, "json"))
		opt->json = value;
	else {
		for (const struct stress_flag *f = flags; f && f->name; f++)
			if (!strcmp(option, f->name)) {
				*f->value = number(run->name, flags, option, value);
				return true;
			}
		return false;
	}
	return true;
}

static void parse(struct stress_run *run, int argc, char **argv, const struct stress_flag *flags)
{
	int positional = 0;
	bool seeded = false;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value;
		char option[64];

		if (arg[0] != '-') { /* the old form: SECONDS [THREADS] */
			if (positional == 0)
				run->opt.seconds = number(run->name, flags, "seconds", arg);
			else if (positional == 1)
				run->opt.threads = (int)number(run->name, flags, "threads", arg);
			else
				usage(run->name, flags, "too many positional arguments");
			positional++;
			continue;
		}
		if (strncmp(arg, "--", 2) || !arg[2])
			usage(run->name, flags, "options are spelt --name VALUE");
		const char *equals = strchr(arg, '=');
		size_t len = equals ? (size_t)(equals - arg - 2) : strlen(arg + 2);
		if (len >= sizeof(option))
			usage(run->name, flags, "unknown option");
		memcpy(option, arg + 2, len);
		option[len] = '\0';
		if (!strcmp(option, "help"))
			usage(run->name, flags, "help");
		if (equals)
			value = equals + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			usage(run->name, flags, "an option lacks its value");
		seeded |= !strcmp(option, "seed");
		if (!apply_option(run, flags, option, value)) {
			char problem[96];

			snprintf(problem, sizeof(problem), "unknown option --%s", option);
			usage(run->name, flags, problem);
		}
	}
	if (!seeded)
		run->opt.seed = seed_from_clock();
	if (!(run->opt.seconds > 0))
		usage(run->name, flags, "--seconds must be > 0");
	if (run->opt.threads < 1 || run->opt.threads > STRESS_THREADS_MAX)
		usage(run->name, flags, "--threads must be 1..256");
	if (run->opt.processes < 0 || run->opt.processes > STRESS_PROCESSES_MAX)
		usage(run->name, flags, "--processes must be 0..64");
	if (run->opt.rate < 0)
		usage(run->name, flags, "--rate must be >= 0");
}

/* Copies url into out with any password (scheme://user:PASSWORD@host) replaced by "***":
 * secrets never reach a log line or a JSON file. */
static void redact_url(const char *url, char *out, size_t size)
{
	const char *scheme_end = strstr(url, "://"), *at, *colon;

	snprintf(out, size, "%s", url);
	if (!scheme_end)
		return;
	at = strchr(scheme_end + 3, '@');
	colon = strchr(scheme_end + 3, ':');
	if (at && colon && colon < at)
		snprintf(out, size, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

static void append(char *out, size_t size, const char *format, ...)
	__attribute__((format(printf, 3, 4)));
static void append(char *out, size_t size, const char *format, ...)
{
	size_t used = strlen(out);
	va_list ap;

	if (used >= size - 1)
		return;
	va_start(ap, format);
	vsnprintf(out + used, size - used, format, ap);
	va_end(ap);
}

/* The program as the user runs it: libtool's wrapper execs "dir/.libs/[lt-]name", which
 * does not run on its own; the reproducing command names "dir/name". */
static void program_path(const char *argv0, char *out, size_t size)
{
	const char *libs = strstr(argv0, ".libs/");
	const char *base = libs ? libs + 6 : NULL;

	if (!libs) {
		snprintf(out, size, "%s", argv0);
		return;
	}
	if (!strncmp(base, "lt-", 3))
		base += 3;
	snprintf(out, size, "%.*s%s", (int)(libs - argv0), argv0, base);
}

static void build_command(struct stress_run *run, const char *argv0,
			  const struct stress_flag *flags)
{
	const struct stress_options *opt = &run->opt;
	char *out = run->command, program[512];
	size_t size = sizeof(run->command);

	program_path(argv0, program, sizeof(program));
	snprintf(out, size, "%s --seconds %g --threads %d", program, opt->seconds, opt->threads);
	if (opt->processes)
		append(out, size, " --processes %d", opt->processes);
	if (opt->rate > 0)
		append(out, size, " --rate %.0f", opt->rate);
	append(out, size, " --seed %llu", (unsigned long long)opt->seed);
	if (opt->store) {
		char url[512];

		redact_url(opt->store, url, sizeof(url));
		append(out, size, " --store '%s'", url);
	}
	for (const struct stress_flag *f = flags; f && f->name; f++)
		append(out, size, " --%s %g", f->name, *f->value);
}

void stress_init(struct stress_run *run, const char *name, int argc, char **argv,
		 const struct stress_flag *flags)
{
	memset(run, 0, sizeof(*run));
	run->name = name;
	run->opt.seconds = 5.0;
	run->opt.threads = 4;
	parse(run, argc, argv, flags);
	build_command(run, argc > 0 ? argv[0] : name, flags);
	run->totals = stress_shared(sizeof(*run->totals));
	run->tty = isatty(STDOUT_FILENO);
	run->start = stress_now();
	run->last_time = run->start;
	run->next_progress = run->start + (run->tty ? TTY_PROGRESS_S : PLAIN_PROGRESS_S);
	setvbuf(stdout, NULL, _IOLBF, 0);
}

/* ---- counting ------------------------------------------------------------------------- */

void stress_ops(struct stress_run *run, int64_t n)
{
	atomic_fetch_add_explicit(&run->totals->ops, n, memory_order_relaxed);
}

void stress_checked(struct stress_run *run, int64_t n)
{
	atomic_fetch_add_explicit(&run->totals->checks, n, memory_order_relaxed);
}

int64_t stress_violations(const struct stress_run *run)
{
	return atomic_load(&run->totals->violations);
}

static void report_violation(struct stress_run *run, const char *format, va_list ap)
{
	char message[512];

	atomic_fetch_add(&run->totals->violations, 1);
	if (atomic_fetch_add(&run->totals->reported, 1) >= VIOLATIONS_REPORTED_MAX)
		return;
	vsnprintf(message, sizeof(message), format, ap);
	fprintf(stderr, "%s%s: VIOLATION (seed %llu): %s\n", run->tty ? "\r\033[K" : "", run->name,
		(unsigned long long)run->opt.seed, message);
}

void stress_violation(struct stress_run *run, const char *format, ...)
{
	va_list ap;

	va_start(ap, format);
	report_violation(run, format, ap);
	va_end(ap);
}

bool stress_check(struct stress_run *run, bool ok, const char *format, ...)
{
	va_list ap;

	stress_checked(run, 1);
	if (ok)
		return true;
	va_start(ap, format);
	report_violation(run, format, ap);
	va_end(ap);
	return false;
}

/* ---- progress ------------------------------------------------------------------------- */

static void draw_progress(struct stress_run *run, double now)
{
	int64_t ops = atomic_load_explicit(&run->totals->ops, memory_order_relaxed);
	double rate = (double)(ops - run->last_ops) / (now - run->last_time);
	long long checks = (long long)atomic_load(&run->totals->checks);
	long long violations = (long long)stress_violations(run);

	if (run->tty) {
		printf("\r\033[K%s: %6.1f s  %12.0f ops/s  %lld invariants checked  "
		       "%lld violations", run->name, now - run->start, rate, checks, violations);
		fflush(stdout);
		run->drew = true;
	} else {
		printf("%s: progress t=%.0fs ops=%lld ops_per_s=%.0f checks=%lld violations=%lld "
		       "(running)\n", run->name, now - run->start, (long long)ops, rate, checks,
		       violations);
	}
	run->last_ops = ops;
	run->last_time = now;
}

void stress_progress(struct stress_run *run)
{
	double now;

	if (run->child)
		return;
	now = stress_now();
	if (now < run->next_progress)
		return;
	run->next_progress = now + (run->tty ? TTY_PROGRESS_S : PLAIN_PROGRESS_S);
	draw_progress(run, now);
}

static void nap(double seconds)
{
	struct timespec pause;

	if (seconds <= 0)
		return;
	pause.tv_sec = (time_t)seconds;
	pause.tv_nsec = (long)((seconds - (double)pause.tv_sec) * 1e9);
	nanosleep(&pause, NULL);
}

void stress_sleep(struct stress_run *run, double seconds)
{
	double end = stress_now() + seconds;

	for (double left = seconds; left > 0; left = end - stress_now()) {
		nap(left < 0.05 ? left : 0.05);
		stress_progress(run);
	}
}

void stress_wait(struct stress_run *run, _Atomic int *stop)
{
	while (stress_running(run) && !(stop && atomic_load(stop))) {
		double left = run->opt.seconds - stress_elapsed(run);

		nap(left < 0.05 ? left : 0.05);
		stress_progress(run);
	}
}

/* ---- summary -------------------------------------------------------------------------- */

static struct stress_field *new_field(struct stress_run *run, const char *name)
{
	struct stress_field *field;

	if (run->field_count == STRESS_FIELDS_MAX)
		return NULL;
	field = &run->fields[run->field_count++];
	snprintf(field->name, sizeof(field->name), "%s", name);
	field->quoted = false;
	return field;
}

void stress_field_int(struct stress_run *run, const char *name, int64_t value)
{
	struct stress_field *field = new_field(run, name);

	if (field)
		snprintf(field->text, sizeof(field->text), "%lld", (long long)value);
}

void stress_field_real(struct stress_run *run, const char *name, double value)
{
	struct stress_field *field = new_field(run, name);

	if (field)
		snprintf(field->text, sizeof(field->text), "%.6g", value);
}

void stress_field_text(struct stress_run *run, const char *name, const char *value)
{
	struct stress_field *field = new_field(run, name);

	if (field) {
		snprintf(field->text, sizeof(field->text), "%s", value);
		field->quoted = true;
	}
}

static void json_string(FILE *out, const char *text)
{
	fputc('"', out);
	for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(out, "\\%c", *c);
		else if (*c < 0x20)
			fprintf(out, "\\u%04x", *c);
		else
			fputc(*c, out);
	}
	fputc('"', out);
}

static void write_json(struct stress_run *run, double elapsed, int64_t ops)
{
	FILE *out = fopen(run->opt.json, "w");
	char url[512] = "none";

	if (!out) {
		fprintf(stderr, "%s: cannot write %s: %s\n", run->name, run->opt.json,
			strerror(errno));
		return;
	}
	if (run->opt.store)
		redact_url(run->opt.store, url, sizeof(url));
	fprintf(out, "{\"program\": ");
	json_string(out, run->name);
	fprintf(out, ", \"seed\": %llu, \"seconds\": %.3f, \"threads\": %d, \"processes\": %d, "
		"\"rate\": %.0f, \"store\": ", (unsigned long long)run->opt.seed, elapsed,
		run->opt.threads, run->opt.processes, run->opt.rate);
	json_string(out, url);
	fprintf(out, ", \"ops\": %lld, \"ops_per_s\": %.0f, \"checks\": %lld", (long long)ops,
		(double)ops / elapsed, (long long)atomic_load(&run->totals->checks));
	for (int i = 0; i < run->field_count; i++) {
		fprintf(out, ", ");
		json_string(out, run->fields[i].name);
		fprintf(out, ": ");
		if (run->fields[i].quoted)
			json_string(out, run->fields[i].text);
		else
			fputs(run->fields[i].text, out);
	}
	fprintf(out, ", \"violations\": %lld, \"command\": ", (long long)stress_violations(run));
	json_string(out, run->command);
	fprintf(out, "}\n");
	fclose(out);
}

int stress_finish(struct stress_run *run)
{
	double elapsed = stress_elapsed(run);
	int64_t ops = atomic_load(&run->totals->ops), violations = stress_violations(run);

	if (run->drew)
		printf("\r\033[K");
	printf("%s: seconds=%.1f threads=%d", run->name, elapsed, run->opt.threads);
	if (run->opt.processes)
		printf(" processes=%d", run->opt.processes);
	if (run->opt.rate > 0)
		printf(" rate=%.0f", run->opt.rate);
	printf(" seed=%llu ops=%lld ops_per_s=%.0f checks=%lld", (unsigned long long)run->opt.seed,
	       (long long)ops, (double)ops / elapsed, (long long)atomic_load(&run->totals->checks));
	for (int i = 0; i < run->field_count; i++)
		printf(" %s=%s", run->fields[i].name, run->fields[i].text);
	printf(" violations=%lld\n", (long long)violations);
	if (violations)
		fprintf(stderr, "%s: FAILED with seed %llu; the same random choices again: %s\n",
			run->name, (unsigned long long)run->opt.seed, run->command);
	if (run->opt.json)
		write_json(run, elapsed, ops);
	fflush(stdout);
	return violations ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ---- randomness and pacing ------------------------------------------------------------ */

void stress_rng_init(struct stress_rng *rng, uint64_t seed, uint64_t stream)
{
	struct stress_rng mix = { seed ^ (stream * UINT64_C(0xd1342543de82ef95)) };

	rng->state = stress_rng_next(&mix) ^ stream;
}

void stress_pacer_init(struct stress_pacer *pacer, const struct stress_run *run, int share)
{
	pacer->per_second = run->opt.rate > 0 ? run->opt.rate / (share > 0 ? share : 1) : 0;
	pacer->start = stress_now();
	pacer->done = 0;
}

int64_t stress_pace_batch(const struct stress_pacer *pacer, int64_t most)
{
	int64_t batch;

	if (pacer->per_second <= 0)
		return most;
	batch = (int64_t)(pacer->per_second / 1000);
	return batch < 1 ? 1 : batch > most ? most : batch;
}

void stress_pace(struct stress_pacer *pacer, int64_t n)
{
	double due, now;

	if (pacer->per_second <= 0)
		return;
	pacer->done += n;
	due = pacer->start + (double)pacer->done / pacer->per_second;
	now = stress_now();
	if (due > now)
		nap(due - now);
	else if (now - due > 1.0) { /* stalled (descheduled, store slow): start afresh */
		pacer->start = now;
		pacer->done = 0;
	}
}

/* ---- processes and files -------------------------------------------------------------- */

pid_t stress_spawn(struct stress_run *run, int (*body)(struct stress_run *, void *, int),
		   void *arg, int index)
{
	pid_t pid, parent = getpid();

	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		perror("stress: fork");
		exit(2);
	}
	if (pid == 0) {
		/* a worker never outlives its parent (a parent stopped by a signal leaves no
		 * orphans behind that wait for it forever) */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(2);
		run->child = true;
		int status = body(run, arg, index);
		fflush(NULL);
		_exit(status);
	}
	return pid;
}

const char *stress_tmpdir(struct stress_run *run)
{
	if (!run->dir[0]) {
		snprintf(run->dir, sizeof(run->dir), "/tmp/tally-%s-XXXXXX", run->name);
		if (!mkdtemp(run->dir)) {
			perror("stress: mkdtemp");
			exit(2);
		}
	}
	return run->dir;
}

void stress_tmpdir_remove(struct stress_run *run)
{
	DIR *dir;
	struct dirent *entry;
	char path[512];

	if (!run->dir[0] || !(dir = opendir(run->dir)))
		return;
	while ((entry = readdir(dir)))
		if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", run->dir, entry->d_name);
			unlink(path);
		}
	closedir(dir);
	rmdir(run->dir);
	run->dir[0] = '\0';
}

size_t stress_log_load(const char *path, uint64_t **values, size_t *len, size_t *cap)
{
	int fd = open(path, O_RDONLY);
	uint64_t buf[4096];
	ssize_t got;
	size_t before = *len;

	if (fd < 0)
		return 0;
	while ((got = read(fd, buf, sizeof(buf))) > 0) {
		size_t n = (size_t)got / sizeof(uint64_t);

		if (*len + n > *cap) {
			*cap = (*len + n) * 2;
			*values = realloc(*values, *cap * sizeof(uint64_t));
			if (!*values) {
				perror("stress: realloc");
				exit(2);
			}
		}
		memcpy(*values + *len, buf, n * sizeof(uint64_t));
		*len += n;
	}
	close(fd);
	return *len - before;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

size_t stress_duplicates(uint64_t *values, size_t len)
{
	size_t duplicates = 0;

	qsort(values, len, sizeof(*values), compare_u64);
	for (size_t i = 1; i < len; i++)
		duplicates += values[i] == values[i - 1];
	return duplicates;
}
