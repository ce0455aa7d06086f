/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/sequence.c: the sequence allocator under processes, kill -9 and threads.
 *
 * Phase 1, processes and kills: `processes` worker slots (--processes, default
 *   min(threads, 4), at least 2) share one lease store and one (tenant, series) in strict
 *   mode; every worker appends each number it is handed to its own log (one file per
 *   process incarnation). The parent SIGKILLs workers at seeded random moments and starts
 *   new incarnations in their slots. Checked: zero duplicates across every process and
 *   incarnation.
 * Phase 2, strict gaps across crashes: one process at a time issues strict numbers, logging
 *   each, and is killed at a random moment; the next incarnation writes down the crash range
 *   its series creation reports and resumes. Checked: no duplicates; every logged number is
 *   at or below the durable mark read after the kill; each restart reports an unclean
 *   record; and 1..max is gap-free apart from the crash ranges the reports name.
 * Phase 3, threads: in this process (after the forks, so children never inherit RCU
 *   state), in rounds (a fresh registry each, so the logs stay bounded), `threads` threads
 *   issue from a strict and a cached series while thread 0
 *   moves an injected clock across midnight and mixes in reservations and releases.
 *   Checked: no duplicates; strict numbers of each day are 1..n with no gap once released
 *   numbers are drained (voided ones excepted); no thread sees a day go back.
 * With --store URL the lease store is the store's lease provider (write-through) instead of
 *   the lease file, and at the end the lease keys' marks in the store cover every number
 *   issued (stress/sequence_store.c).
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
#include <tally/store.h>
#include "store_proxy.h"
#include "../tests/threads.h"
#include "stress.h"

#define RECORD_CAP 1500000
#define DAY 86400
#define START_TIME INT64_C(1795392000)
#define COUNTER_MASK ((UINT64_C(1) << 40) - 1)
#define CRASH_INCARNATIONS 4

static struct stress_run stress;
static char tenant_processes[32], tenant_crashes[32];

struct path {
	char text[256];
};

/* "<dir>/<name>.<index>", by value so that several can be held at once. */
static struct path path_of(const char *name, int index)
{
	struct path path;

	snprintf(path.text, sizeof(path.text), "%s/%s.%d", stress_tmpdir(&stress), name, index);
	return path;
}

/* ---- the lease store: a lease file per phase, or the store's provider (--store) ---- */

struct lease_store {
	struct tally_store *store; /* NULL: the lease file */
	struct tally_lease_provider *provider;
};

static int lease_open(struct lease_store *lease, const char *path)
{
	int err;

	lease->store = NULL;
	if (!stress.opt.store)
		return tally_lease_file_open(&lease->provider, path);
	if ((err = store_proxy_open_reader(stress.opt.store, &lease->store)) != TALLY_OK)
		return err;
	if ((err = tally_store_lease_provider(lease->store, &lease->provider)) != TALLY_OK)
		tally_store_close(lease->store);
	return err;
}

static void lease_close(struct lease_store *lease)
{
	tally_lease_provider_destroy(lease->provider);
	tally_store_close(lease->store);
}

/* The durable record of the phase's series (tenant, "INV"). */
static int lease_read(const char *path, const char *tenant, struct tally_lease_record *record)
{
	struct lease_store lease;
	char key[TALLY_SEQ_ID_MAX * 2 + 2];
	size_t len = strlen(tenant);
	int err;

	memcpy(key, tenant, len);
	memcpy(key + len, "\0INV", 4);
	if ((err = lease_open(&lease, path)) != TALLY_OK)
		return err;
	err = tally_lease_read(lease.provider, key, len + 4, record);
	lease_close(&lease);
	return err;
}

/* The lease marks must cover every number issued (sorted). */
static void check_marks(const char *path, const char *tenant, const uint64_t *sorted,
			size_t len)
{
	struct tally_lease_record record;

	if (!len)
		return;
	if (!stress_check(&stress, lease_read(path, tenant, &record) == TALLY_OK,
			  "lease record of %s unreadable", tenant))
		return;
	stress_check(&stress, sorted[len - 1] <= (record.mark & COUNTER_MASK), "number %llu "
		     "issued above the lease mark %llu", (unsigned long long)sorted[len - 1],
		     (unsigned long long)(record.mark & COUNTER_MASK));
}

static const struct tally_series_config *strict_config(struct tally_lease_provider *p)
{
	static struct tally_series_config cfg;

	cfg = (struct tally_series_config){ .format = "INV-{counter:012}",
					    .mode = TALLY_SEQ_STRICT, .lease = p,
					    .lease_size = 64 };
	return &cfg;
}

/* Writes the crash range a series creation reported: (first, last, count). */
static void write_recovery(const char *path, const struct tally_seq_recovery *recovery)
{
	uint64_t range[3] = { recovery->first_counter, recovery->last_counter, recovery->count };
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, range, sizeof(range)) != (ssize_t)sizeof(range))
		_exit(5);
	close(fd);
}

struct issuing {
	const char *lease_path;
	const char *tenant;
	const char *log_path;
	const char *recovery_path; /* NULL: not wanted */
	double deadline;           /* 0: until killed */
};

/* A worker process: issues until the deadline (or until killed), logging each number. */
static int issuing_child(struct stress_run *run, void *arg, int index)
{
	struct issuing *job = arg;
	struct lease_store lease;
	struct tally_sequence *seq;
	struct tally_seq_recovery recovery;
	struct tally_seq_number n;
	uint64_t buf[256];
	size_t used = 0;
	int fd = open(job->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);

	if (fd < 0 || lease_open(&lease, job->lease_path) || tally_sequence_create(&seq, NULL) ||
	    tally_sequence_series_create(seq, job->tenant, "INV", strict_config(lease.provider),
					 &recovery))
		return 2;
	if (job->recovery_path)
		write_recovery(job->recovery_path, &recovery);
	while (job->deadline == 0 || stress_now() < job->deadline) {
		if (tally_sequence_next(seq, job->tenant, "INV", &n))
			return 3;
		buf[used++] = n.counter;
		/* Workers that may be killed log each number; timed ones batch their writes. */
		if (job->deadline == 0 || used == 256) {
			if (write(fd, buf, used * sizeof(uint64_t)) != (ssize_t)(used * sizeof(uint64_t)))
				return 4;
			stress_ops(run, (int64_t)used);
			used = 0;
		}
	}
	if (used && write(fd, buf, used * sizeof(uint64_t)) < 0)
		return 4;
	stress_ops(run, (int64_t)used);
	tally_sequence_destroy(seq);
	lease_close(&lease);
	tally_rcu_barrier();
	return 0;
}

/* Waits until the file at `path` holds more than `bytes` (slow starts under TSan). */
static void wait_for_growth(const char *path, off_t bytes)
{
	for (double give_up = stress_now() + 10; stress_now() < give_up;) {
		struct stat st;

		if (stat(path, &st) == 0 && st.st_size > bytes)
			return;
		usleep(1000);
	}
}

/* Phase 1: concurrent workers, some killed and restarted. Returns numbers checked. */
static size_t phase_processes(int slots, double seconds, int *kills)
{
	struct stress_rng rng;
	pid_t pid[STRESS_PROCESSES_MAX];
	int incarnation[STRESS_PROCESSES_MAX], logs = 0, status;
	struct path log_path[STRESS_PROCESSES_MAX];
	struct issuing job[STRESS_PROCESSES_MAX];
	double end = stress_now() + seconds;
	struct path lease = path_of("lease", 0);

	stress_rng_init(&rng, stress.opt.seed, UINT64_C(0x5e9) << 32);
	for (int s = 0; s < slots; s++) {
		log_path[s] = path_of("proc", logs++);
		job[s] = (struct issuing){ lease.text, tenant_processes, log_path[s].text, NULL, 0 };
		pid[s] = stress_spawn(&stress, issuing_child, &job[s], s);
		incarnation[s] = 0;
	}
	/* Kill a random worker every 5-25% of the phase; keep the last slot to the end. */
	while (stress_now() < end) {
		stress_sleep(&stress, seconds * (0.05 + 0.2 * stress_rng_unit(&rng)));
		int s = (int)stress_rng_below(&rng, (uint64_t)slots);
		if (stress_now() >= end || s == slots - 1)
			continue;
		wait_for_growth(log_path[s].text, 0);
		kill(pid[s], SIGKILL);
		waitpid(pid[s], &status, 0);
		stress_check(&stress, WIFSIGNALED(status), "worker %d exited before its kill "
			     "(status %d)", s, status);
		(*kills)++;
		log_path[s] = path_of("proc", logs++);
		job[s] = (struct issuing){ lease.text, tenant_processes, log_path[s].text, NULL, 0 };
		pid[s] = stress_spawn(&stress, issuing_child, &job[s], s);
		incarnation[s]++;
	}
	for (int s = 0; s < slots; s++) {
		wait_for_growth(log_path[s].text, 0);
		kill(pid[s], SIGKILL);
		waitpid(pid[s], &status, 0);
	}
	uint64_t *all = NULL;
	size_t len = 0, cap = 0;
	for (int l = 0; l < logs; l++)
		stress_log_load(path_of("proc", l).text, &all, &len, &cap);
	size_t dup = stress_duplicates(all, len);
	stress_check(&stress, dup == 0, "%zu numbers issued twice across %d processes and %d "
		     "incarnations", dup, slots, logs);
	stress_checked(&stress, (int64_t)len);
	check_marks(lease.text, tenant_processes, all, len);
	free(all);
	return len;
}

/* Phase 2 helpers: counts numbers in [1, max] neither logged nor inside a crash range. */
static uint64_t unexplained_gaps(const uint64_t *sorted, size_t len, const uint64_t (*ranges)[3],
				 int range_count)
{
	uint64_t gaps = 0, expect = 1;

	for (size_t i = 0; i <= len; i++) {
		uint64_t next = i < len ? sorted[i] : expect;

		for (uint64_t missing = expect; missing < next; missing++) {
			bool covered = false;

			for (int r = 0; r < range_count && !covered; r++)
				covered = ranges[r][2] && missing >= ranges[r][0] &&
					  missing <= ranges[r][1];
			gaps += !covered;
		}
		if (next >= expect)
			expect = next + 1;
	}
	return gaps;
}

static size_t phase_crashes(double seconds, int *unclean_reports, uint64_t *in_ranges)
{
	uint64_t ranges[CRASH_INCARNATIONS + 1][3] = { { 0 } };
	struct stress_rng rng;
	uint64_t *all = NULL;
	size_t len = 0, cap = 0;
	struct path lease = path_of("lease", 1);

	stress_rng_init(&rng, stress.opt.seed, UINT64_C(0xc7a5) << 32);
	for (int i = 0; i <= CRASH_INCARNATIONS; i++) {
		struct path log = path_of("crashlog", i), recovery = path_of("recovery", i);
		struct issuing job = { lease.text, tenant_crashes, log.text, recovery.text, 0 };
		struct tally_lease_record rec;
		pid_t child;
		int status;

		child = stress_spawn(&stress, issuing_child, &job, i);
		wait_for_growth(log.text, 0);
		if (i == CRASH_INCARNATIONS) { /* the last one only reports the previous crash */
			kill(child, SIGKILL);
			waitpid(child, &status, 0);
			int fd = open(recovery.text, O_RDONLY);
			if (fd < 0 || read(fd, ranges[i - 1], sizeof(ranges[0])) != sizeof(ranges[0]))
				stress_violation(&stress, "incarnation %d wrote no crash report", i);
			if (fd >= 0)
				close(fd);
			stress_log_load(log.text, &all, &len, &cap);
			break;
		}
		stress_sleep(&stress, seconds / CRASH_INCARNATIONS *
					      (0.3 + 0.7 * stress_rng_unit(&rng)));
		kill(child, SIGKILL);
		waitpid(child, &status, 0);
		stress_log_load(log.text, &all, &len, &cap);
		/* Every number logged so far must be at or below the durable mark. */
		if (lease_read(lease.text, tenant_crashes, &rec) == TALLY_OK) {
			uint64_t mark = rec.mark & COUNTER_MASK;

			for (size_t k = 0; k < len; k++)
				if (all[k] > mark)
					stress_violation(&stress, "number %llu above the durable mark "
							 "%llu", (unsigned long long)all[k],
							 (unsigned long long)mark);
			stress_checked(&stress, (int64_t)len);
			*unclean_reports += !(rec.flags & TALLY_LEASE_CLEAN);
		} else {
			stress_violation(&stress, "lease record unreadable after kill %d", i);
		}
		/* This incarnation's own crash range is reported by the next one: read it
		 * there (recovery.<i + 1> names the range of incarnation i). */
		if (i > 0) {
			int fd = open(recovery.text, O_RDONLY);

			if (fd < 0 || read(fd, ranges[i - 1], sizeof(ranges[0])) != sizeof(ranges[0]))
				stress_violation(&stress, "incarnation %d wrote no crash report", i);
			if (fd >= 0)
				close(fd);
		}
	}
	size_t dup = stress_duplicates(all, len);
	stress_check(&stress, dup == 0, "%zu numbers issued twice across incarnations", dup);
	check_marks(lease.text, tenant_crashes, all, len);
	uint64_t gaps = unexplained_gaps(all, len, (const uint64_t(*)[3])ranges,
					 CRASH_INCARNATIONS);
	stress_check(&stress, gaps == 0, "%llu strict numbers missing outside every crash range",
		     (unsigned long long)gaps);
	for (int r = 0; r < CRASH_INCARNATIONS; r++)
		*in_ranges += ranges[r][2];
	free(all);
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
	uint64_t *strict_log[STRESS_THREADS_MAX], *cached_log[STRESS_THREADS_MAX];
	size_t strict_len[STRESS_THREADS_MAX], cached_len[STRESS_THREADS_MAX];
	_Atomic long backwards;
	_Atomic long reserve_failures;
	double deadline;
};

static uint64_t pack(struct tally_seq_number n)
{
	return ((uint64_t)n.period << 40) | n.counter;
}

/* One reservation of 1..8 numbers: commit every other one, release the rest. */
static size_t reserve_some(struct thread_run *run, struct stress_rng *rng, uint64_t *slog)
{
	struct tally_seq_reservation *r;
	const struct tally_seq_number *nums;
	struct tally_seq_number n;
	uint32_t count;
	size_t logged = 0;

	if (tally_series_reserve(run->strict, 1 + (uint32_t)stress_rng_below(rng, 8), &r)) {
		atomic_fetch_add(&run->reserve_failures, 1);
		return 0;
	}
	tally_seq_reservation_numbers(r, &nums, &count);
	for (uint32_t k = 0; k < count; k += 2) {
		n = nums[k];
		tally_seq_reservation_commit(r, &n);
		slog[logged++] = pack(n);
	}
	tally_seq_reservation_finish(r, false);
	return logged;
}

static void *thread_body(struct test_thread *self)
{
	struct thread_run *run = self->shared;
	uint64_t *slog = run->strict_log[self->index], *clog = run->cached_log[self->index];
	size_t sl = 0, cl = 0;
	uint32_t last_period = 0;
	struct stress_rng rng;
	struct stress_pacer pacer;
	struct tally_seq_number n;

	stress_rng_init(&rng, stress.opt.seed, (uint64_t)self->index + 1000);
	stress_pacer_init(&pacer, &stress, stress.opt.threads);
	int64_t batch = stress_pace_batch(&pacer, 64);
	while (sl < RECORD_CAP - 16 && cl < RECORD_CAP && stress_now() < run->deadline) {
		for (int64_t burst = 0; burst < batch && sl < RECORD_CAP - 16; burst++) {
			if (stress_rng_below(&rng, 32) == 0) {
				sl += reserve_some(run, &rng, slog + sl);
				continue;
			}
			if (tally_series_next(run->strict, &n) == TALLY_OK) {
				slog[sl++] = pack(n);
				if (n.period < last_period)
					atomic_fetch_add(&run->backwards, 1);
				last_period = n.period;
			}
			if (tally_series_next(run->cached, &n) == TALLY_OK)
				clog[cl++] = pack(n);
		}
		stress_ops(&stress, 2 * batch);
		stress_pace(&pacer, 2 * batch);
		if (self->index == 0 && stress_rng_below(&rng, 64) == 0)
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
		uint64_t c = v[i] & COUNTER_MASK;

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

/* Concatenates the threads' logs (strict or cached) into all; returns the length. */
static size_t gather(uint64_t *all, uint64_t *const *logs, const size_t *lens, int threads)
{
	size_t len = 0;

	for (int t = 0; t < threads; t++) {
		memcpy(all + len, logs[t], lens[t] * sizeof(uint64_t));
		len += lens[t];
	}
	return len;
}

/* One round: a fresh registry, both series, threads until the deadline or until a thread's
 * log is full; then every check of the phase on that round's numbers. */
static size_t thread_round(int threads, double deadline, uint64_t *voided)
{
	struct tally_sequence_options opts = { .now_s = fake_clock };
	struct tally_series_config strict = { .format = "INV-{date}-{counter:08}",
					      .mode = TALLY_SEQ_STRICT,
					      .reset = TALLY_SEQ_RESET_DAILY };
	struct tally_series_config cached = strict;
	struct test_thread *th = calloc((size_t)threads, sizeof(*th));
	static struct thread_run run;
	struct tally_series_stats stats;

	memset(&run, 0, sizeof(run));
	struct tally_sequence *seq;
	struct tally_seq_number n;
	size_t len = 0, clen = 0;

	cached.mode = TALLY_SEQ_CACHED;
	tally_sequence_create(&seq, &opts);
	tally_sequence_series_create(seq, "acme", "INV", &strict, NULL);
	tally_sequence_series_create(seq, "acme", "CACHED", &cached, NULL);
	tally_sequence_series_find(seq, "acme", "INV", &run.strict);
	tally_sequence_series_find(seq, "acme", "CACHED", &run.cached);
	run.deadline = deadline;
	for (int t = 0; t < threads; t++) {
		run.strict_log[t] = malloc(RECORD_CAP * sizeof(uint64_t));
		run.cached_log[t] = malloc(RECORD_CAP * sizeof(uint64_t));
	}
	run_threads(threads, thread_body, &run, th);
	stress_check(&stress, atomic_load(&run.backwards) == 0, "a thread saw the day go back "
		     "%ld times", atomic_load(&run.backwards));
	stress_check(&stress, atomic_load(&run.reserve_failures) == 0, "%ld reservations failed",
		     atomic_load(&run.reserve_failures));
	for (int t = 0; t < threads; t++) {
		len += run.strict_len[t];
		clen += run.cached_len[t];
	}
	uint64_t *all = malloc((len + 64 * STRESS_THREADS_MAX + clen + 1) * sizeof(uint64_t));
	len = gather(all, run.strict_log, run.strict_len, threads);
	/* Drain released numbers: they come back before any fresh one. */
	while (tally_series_get_stats(run.strict, &stats) == TALLY_OK && stats.released_pending > 0 &&
	       tally_series_next(run.strict, &n) == TALLY_OK)
		all[len++] = pack(n);
	size_t dup = stress_duplicates(all, len);
	stress_check(&stress, dup == 0, "%zu strict numbers issued twice by threads", dup);
	long gaps = strict_gaps(all, len);
	tally_series_get_stats(run.strict, &stats);
	*voided += stats.voided;
	stress_check(&stress, gaps <= (long)stats.voided, "%ld strict gaps, only %llu voided",
		     gaps, (unsigned long long)stats.voided);
	stress_checked(&stress, (int64_t)len);
	clen = gather(all, run.cached_log, run.cached_len, threads);
	dup = stress_duplicates(all, clen);
	stress_check(&stress, dup == 0, "%zu cached numbers issued twice by threads", dup);
	stress_checked(&stress, (int64_t)clen);
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

/* Rounds until the phase's time is up (a round ends early when a thread's log fills). */
static size_t phase_threads(int threads, double seconds, uint64_t *voided, int *rounds)
{
	double deadline = stress_now() + seconds;
	size_t issued = 0;

	do {
		issued += thread_round(threads, deadline, voided);
		(*rounds)++;
	} while (stress_now() < deadline);
	return issued;
}

int main(int argc, char **argv)
{
	int kills = 0, unclean = 0;
	uint64_t voided = 0, in_ranges = 0;

	stress_init(&stress, "sequence", argc, argv, NULL);
	int procs = stress.opt.processes ? stress.opt.processes
		    : stress.opt.threads < 2 ? 2 : stress.opt.threads > 4 ? 4 : stress.opt.threads;
	/* Tenants named after the seed: runs sharing one store never meet. */
	snprintf(tenant_processes, sizeof(tenant_processes), "p%llu",
		 (unsigned long long)stress.opt.seed);
	snprintf(tenant_crashes, sizeof(tenant_crashes), "c%llu",
		 (unsigned long long)stress.opt.seed);
	size_t proc_issued = phase_processes(procs, stress.opt.seconds / 3, &kills);
	size_t crash_issued = phase_crashes(stress.opt.seconds / 3, &unclean, &in_ranges);
	stress_check(&stress, unclean == CRASH_INCARNATIONS, "%d of %d restarts reported an "
		     "unclean record", unclean, CRASH_INCARNATIONS);
	int rounds = 0;
	size_t thread_issued = phase_threads(stress.opt.threads, stress.opt.seconds / 3, &voided,
					     &rounds);
	stress_tmpdir_remove(&stress);
	stress_field_int(&stress, "worker_processes", procs);
	stress_field_int(&stress, "process_numbers", (int64_t)proc_issued);
	stress_field_int(&stress, "kills", kills);
	stress_field_int(&stress, "incarnations", CRASH_INCARNATIONS);
	stress_field_int(&stress, "crash_numbers", (int64_t)crash_issued);
	stress_field_int(&stress, "unclean_reports", unclean);
	stress_field_int(&stress, "crash_range_numbers", (int64_t)in_ranges);
	stress_field_int(&stress, "thread_numbers", (int64_t)thread_issued);
	stress_field_int(&stress, "thread_rounds", rounds);
	stress_field_int(&stress, "voided", (int64_t)voided);
	return stress_finish(&stress);
}
