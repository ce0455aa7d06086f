/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/sequence.c: the sequence allocator under threads, processes and kill -9.
 *
 * Phase 1, processes: `procs` processes (min(threads, 4), at least 2) share one lease file
 *   and one (tenant, series); each issues strict numbers for a third of the run and
 *   appends every number to its own log. No number may appear twice across processes.
 * Phase 2, crashes: incarnations of a child issue numbers (logging each after issue) and
 *   are killed with SIGKILL at a random moment; the next incarnation resumes from the file.
 *   Checked: no duplicates across incarnations, every logged number <= the durable mark
 *   the next incarnation resumes from, and each restart reports an unclean record.
 * Phase 3, threads: in this process (after the forks, so children never inherit RCU
 *   state), `threads` threads issue from a strict and a cached series while thread 0
 *   moves an injected clock across midnight every few thousand numbers and mixes in
 *   reservations and releases. Checked: no duplicates; strict numbers of each day are
 *   1..n with no gap once released numbers are drained; no thread sees a day go back.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <tally/rcu.h>
#include <tally/sequence.h>
#include "../tests/threads.h"
#include "stress.h"

#define RECORD_CAP 1500000
#define DAY 86400
#define START_TIME INT64_C(1795392000)

static char dir[] = "/tmp/tally-seq-stress-XXXXXX";
static _Atomic long violations;

struct path {
	char text[256];
};

/* "<dir>/<name>.<index>", by value so that several can be held at once. */
static struct path path_of(const char *name, int index)
{
	struct path path;

	snprintf(path.text, sizeof(path.text), "%s/%s.%d", dir, name, index);
	return path;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Appends the contents of a log of uint64 numbers to *all. */
static void load_log(const char *path, uint64_t **all, size_t *len, size_t *cap)
{
	int fd = open(path, O_RDONLY);
	uint64_t buf[4096];
	ssize_t got;

	if (fd < 0)
		return;
	while ((got = read(fd, buf, sizeof(buf))) > 0) {
		size_t n = (size_t)got / sizeof(uint64_t);

		if (*len + n > *cap) {
			*cap = (*len + n) * 2;
			*all = realloc(*all, *cap * sizeof(uint64_t));
		}
		memcpy(*all + *len, buf, n * sizeof(uint64_t));
		*len += n;
	}
	close(fd);
}

static size_t duplicates(uint64_t *v, size_t n)
{
	size_t dup = 0;

	qsort(v, n, sizeof(*v), cmp_u64);
	for (size_t i = 1; i < n; i++)
		dup += v[i] == v[i - 1];
	return dup;
}

static const struct tally_series_config *file_config(struct tally_lease_provider *p)
{
	static struct tally_series_config cfg;

	cfg = (struct tally_series_config){ .format = "INV-{counter:012}",
					    .mode = TALLY_SEQ_STRICT, .lease = p,
					    .lease_size = 64 };
	return &cfg;
}

/* A child: issue until the deadline (or forever when deadline is 0), logging each number. */
static void issuing_child(const char *lease_path, const char *log_path, double deadline)
{
	struct tally_lease_provider *p;
	struct tally_sequence *seq;
	struct tally_seq_number n;
	uint64_t buf[256];
	size_t used = 0;
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);

	if (fd < 0 || tally_lease_file_open(&p, lease_path) || tally_sequence_create(&seq, NULL) ||
	    tally_sequence_series_create(seq, "acme", "INV", file_config(p), NULL))
		_exit(2);
	while (deadline == 0 || stress_now() < deadline) {
		if (tally_sequence_next(seq, "acme", "INV", &n))
			_exit(3);
		buf[used++] = n.counter;
		/* Killed children log each number; timed children batch their writes. */
		if (deadline == 0 || used == 256) {
			if (write(fd, buf, used * sizeof(uint64_t)) != (ssize_t)(used * sizeof(uint64_t)))
				_exit(4);
			used = 0;
		}
	}
	if (used && write(fd, buf, used * sizeof(uint64_t)) < 0)
		_exit(4);
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(p);
	tally_rcu_barrier();
	_exit(0);
}

static size_t phase_processes(int procs, double seconds)
{
	struct path lease = path_of("shared", 0);
	double deadline = stress_now() + seconds;
	uint64_t *all = NULL;
	size_t len = 0, cap = 0;
	int status;

	for (int c = 0; c < procs; c++)
		if (fork() == 0)
			issuing_child(lease.text, path_of("proc", c).text, deadline);
	for (int c = 0; c < procs; c++) {
		wait(&status);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			violations++;
	}
	for (int c = 0; c < procs; c++) {
		struct path log = path_of("proc", c);

		load_log(log.text, &all, &len, &cap);
		unlink(log.text);
	}
	violations += (long)duplicates(all, len);
	free(all);
	unlink(lease.text);
	return len;
}

static size_t phase_crashes(int incarnations, double seconds, int *unclean_reports)
{
	struct path lease_path = path_of("crash", 0), log_path = path_of("crashlog", 0);
	const char *lease = lease_path.text, *log = log_path.text;
	uint64_t *all = NULL;
	size_t len = 0, cap = 0;
	unsigned seed = (unsigned)getpid();

	for (int i = 0; i < incarnations; i++) {
		struct tally_lease_provider *p;
		struct tally_lease_record rec;
		pid_t child = fork();
		useconds_t life;

		if (child == 0)
			issuing_child(lease, log, 0);
		/* Kill only after the child issued its first number (slow starts under TSan). */
		for (double give_up = stress_now() + 10; stress_now() < give_up;) {
			struct stat st;

			if (stat(log, &st) == 0 && (size_t)st.st_size > len * sizeof(uint64_t))
				break;
			usleep(1000);
		}
		test_random(&seed);
		life = (useconds_t)(seconds * 1e6 / incarnations * (0.3 + (seed >> 16) % 70 / 100.0));
		usleep(life);
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		/* Every number logged so far must be at or below the durable mark. */
		len = 0;
		load_log(log, &all, &len, &cap);
		if (tally_lease_file_open(&p, lease) == TALLY_OK) {
			if (tally_lease_read(p, "acme\0INV", 8, &rec) == TALLY_OK) {
				for (size_t k = 0; k < len; k++)
					violations += all[k] > (rec.mark & ((UINT64_C(1) << 40) - 1));
				*unclean_reports += !(rec.flags & TALLY_LEASE_CLEAN);
			}
			tally_lease_provider_destroy(p);
		} else {
			violations++;
		}
	}
	violations += (long)duplicates(all, len);
	free(all);
	unlink(lease);
	unlink(log);
	return len;
}

/* ---- threads ---- */

static _Atomic int64_t fake_now = START_TIME;

static int64_t fake_clock(void *arg)
{
	(void)arg;
	return atomic_load_explicit(&fake_now, memory_order_relaxed);
}

struct thread_run {
	struct tally_series *strict, *cached;
	double deadline;
	uint64_t *strict_log[256], *cached_log[256];
	size_t strict_len[256], cached_len[256];
	long backwards;
};

static uint64_t pack(struct tally_seq_number n)
{
	return ((uint64_t)n.period << 40) | n.counter;
}

static void *thread_body(struct test_thread *self)
{
	struct thread_run *run = self->shared;
	uint64_t *slog = run->strict_log[self->index], *clog = run->cached_log[self->index];
	size_t sl = 0, cl = 0;
	uint32_t last_period = 0;
	unsigned seed = (unsigned)self->index + 17;
	struct tally_seq_number n;

	while (sl < RECORD_CAP - 16 && cl < RECORD_CAP && stress_now() < run->deadline) {
		for (int burst = 0; burst < 64 && sl < RECORD_CAP - 16; burst++) {
			test_random(&seed);
			if ((seed >> 16) % 32 == 0) {
				struct tally_seq_reservation *r;
				const struct tally_seq_number *nums;
				uint32_t count;

				if (tally_series_reserve(run->strict, 1 + (seed >> 24) % 8, &r)) {
					violations++;
					continue;
				}
				tally_seq_reservation_numbers(r, &nums, &count);
				for (uint32_t k = 0; k < count; k += 2) {
					n = nums[k];
					tally_seq_reservation_commit(r, &n);
					slog[sl++] = pack(n);
				}
				tally_seq_reservation_finish(r, false);
				continue;
			}
			if (tally_series_next(run->strict, &n) == TALLY_OK) {
				slog[sl++] = pack(n);
				if (n.period < last_period)
					run->backwards++;
				last_period = n.period;
			}
			if (tally_series_next(run->cached, &n) == TALLY_OK)
				clog[cl++] = pack(n);
		}
		if (self->index == 0 && (seed >> 12) % 64 == 0)
			atomic_fetch_add_explicit(&fake_now, DAY, memory_order_relaxed);
	}
	run->strict_len[self->index] = sl;
	run->cached_len[self->index] = cl;
	return NULL;
}

/* Strict numbers, sorted: each day 1..n. Days whose released numbers were voided at the
 * rollover may miss those (counted by the series as voided). */
static long strict_gaps(const uint64_t *v, size_t n)
{
	long gaps = 0;
	uint64_t expect = 1;
	uint32_t period = UINT32_MAX;

	for (size_t i = 0; i < n; i++) {
		uint32_t p = (uint32_t)(v[i] >> 40);
		uint64_t c = v[i] & ((UINT64_C(1) << 40) - 1);

		if (p != period) {
			period = p;
			expect = 1;
		}
		if (c != expect)
			gaps += (long)(c - expect);
		expect = c + 1;
	}
	return gaps;
}

static size_t phase_threads(int threads, double seconds, long *gaps_out, uint64_t *voided)
{
	struct tally_sequence_options opts = { .now_s = fake_clock };
	struct tally_series_config strict = { .format = "INV-{date}-{counter:08}",
					      .mode = TALLY_SEQ_STRICT,
					      .reset = TALLY_SEQ_RESET_DAILY };
	struct tally_series_config cached = strict;
	struct test_thread *th = calloc((size_t)threads, sizeof(*th));
	static struct thread_run run;
	struct tally_series_stats stats;
	struct tally_sequence *seq;
	struct tally_seq_number n;
	uint64_t *all;
	size_t len = 0, clen = 0;
	long gaps;

	cached.mode = TALLY_SEQ_CACHED;
	tally_sequence_create(&seq, &opts);
	tally_sequence_series_create(seq, "acme", "INV", &strict, NULL);
	tally_sequence_series_create(seq, "acme", "CACHED", &cached, NULL);
	tally_sequence_series_find(seq, "acme", "INV", &run.strict);
	tally_sequence_series_find(seq, "acme", "CACHED", &run.cached);
	run.deadline = stress_now() + seconds;
	for (int t = 0; t < threads; t++) {
		run.strict_log[t] = malloc(RECORD_CAP * sizeof(uint64_t));
		run.cached_log[t] = malloc(RECORD_CAP * sizeof(uint64_t));
	}
	run_threads(threads, thread_body, &run, th);
	violations += run.backwards;
	for (int t = 0; t < threads; t++) {
		len += run.strict_len[t];
		clen += run.cached_len[t];
	}
	all = malloc((len + 64 * 256 + clen + 1) * sizeof(uint64_t));
	len = 0;
	for (int t = 0; t < threads; t++) {
		memcpy(all + len, run.strict_log[t], run.strict_len[t] * sizeof(uint64_t));
		len += run.strict_len[t];
	}
	/* Drain released numbers: they come back before any fresh one. */
	while (tally_series_get_stats(run.strict, &stats) == TALLY_OK && stats.released_pending > 0 &&
	       tally_series_next(run.strict, &n) == TALLY_OK)
		all[len++] = pack(n);
	violations += (long)duplicates(all, len);
	gaps = strict_gaps(all, len);
	tally_series_get_stats(run.strict, &stats);
	*voided = stats.voided;
	/* Gaps are allowed only where released numbers were voided at a rollover. */
	if (gaps > (long)stats.voided)
		violations++;
	*gaps_out = gaps;
	clen = 0;
	for (int t = 0; t < threads; t++) {
		memcpy(all + clen, run.cached_log[t], run.cached_len[t] * sizeof(uint64_t));
		clen += run.cached_len[t];
	}
	violations += (long)duplicates(all, clen);
	for (int t = 0; t < threads; t++) {
		free(run.strict_log[t]);
		free(run.cached_log[t]);
	}
	free(all);
	free(th);
	tally_sequence_destroy(seq);
	tally_rcu_barrier();
	return len + clen;
}

int main(int argc, char **argv)
{
	struct stress_args args = stress_parse(argc, argv);
	int procs = args.threads < 2 ? 2 : args.threads > 4 ? 4 : args.threads;
	int unclean = 0;
	size_t proc_issued, crash_issued, thread_issued;
	long gaps;
	uint64_t voided;

	if (!mkdtemp(dir))
		return 1;
	proc_issued = phase_processes(procs, args.seconds / 3);
	if (getenv("STRESS_DEBUG"))
		fprintf(stderr, "after processes: %ld\n", (long)violations);
	crash_issued = phase_crashes(4, args.seconds / 3, &unclean);
	if (unclean != 4)
		violations++;
	if (getenv("STRESS_DEBUG"))
		fprintf(stderr, "after crashes: %ld\n", (long)violations);
	thread_issued = phase_threads(args.threads, args.seconds / 3, &gaps, &voided);
	if (getenv("STRESS_DEBUG"))
		fprintf(stderr, "gaps %ld voided %llu\n", gaps, (unsigned long long)voided);
	rmdir(dir);
	printf("sequence: threads=%d processes=%d process_numbers=%zu incarnations=4 "
	       "crash_numbers=%zu unclean_reports=%d thread_numbers=%zu voided=%llu "
	       "violations=%ld\n",
	       args.threads, procs, proc_issued, crash_issued, unclean, thread_issued,
	       (unsigned long long)voided, (long)violations);
	return violations ? 1 : 0;
}
