/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/stress.h: the shared frame of tally's stress programs (stress/stress.c is linked
 * into each). docs/stress.md lists every program's invariants.
 *
 * Command line, the same for every program:
 *   --seconds S     run time (default 5)
 *   --threads N     worker threads per process (default 4)
 *   --processes N   worker processes, where the structure is shared across processes
 *   --rate N        requests/s over all threads and processes together, paced; absent or 0
 *                   = unthrottled
 *   --seed N        every random choice derives from it (default: from the clock, printed)
 *   --store URL     none, sqlite:///path, postgresql://..., dynamodb://...
 *   --json FILE     write the summary as one JSON object
 * and the old positional form `PROGRAM SECONDS [THREADS]`.
 *
 * Output: on a terminal a progress line redrawn in place with \r (elapsed, ops/s, invariants
 * checked, violations); otherwise a plain progress line every 10 s. At the end one summary
 * line "<name>: key=value ... violations=N" (scripts/check.sh counts lines ending in
 * "violations=0"; progress lines never end that way), and on any violation the seed and the
 * command line that replays the run's random choices. Exit status: 0 iff no violation,
 * 2 for a usage error.
 *
 * Processes: the run's counters (ops, checks, violations) live in shared memory mapped before
 * any fork, so workers forked with stress_spawn add to the same totals the parent reports.
 * The parent runs no threads of its own while it forks (ThreadSanitizer's rule: a child of a
 * multi-threaded process may not start threads), so progress is drawn from the thread that
 * calls stress_wait or stress_progress.
 *
 * Threads: counting (stress_ops, stress_checked, stress_violation, stress_check), the
 * randomness and pacing calls and stress_now/elapsed/running may be made from any thread of
 * any process of the run. stress_init, the progress calls (stress_progress, stress_wait,
 * stress_sleep), stress_field_* and stress_finish belong to the main thread of the parent
 * (a forked worker's progress calls do nothing).
 */
#ifndef TALLY_STRESS_H
#define TALLY_STRESS_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>

#define STRESS_FIELDS_MAX 48
#define STRESS_THREADS_MAX 256
#define STRESS_PROCESSES_MAX 64

struct stress_options {
	double seconds;
	int threads;
	int processes;      /* 0 when the program was not given --processes */
	double rate;        /* total requests/s, 0 = unthrottled */
	uint64_t seed;
	const char *store;  /* NULL for none */
	const char *json;   /* NULL for none */
};

/* A program's own numeric option (--name VALUE), given to stress_init in an array ended by
 * a NULL name. The value keeps its default when the option is absent. */
struct stress_flag {
	const char *name;
	const char *help;
	double *value;
};

/* What every process of a run adds to (shared memory). */
struct stress_totals {
	_Atomic int64_t ops;
	_Atomic int64_t checks;
	_Atomic int64_t violations;
	_Atomic int64_t reported; /* violation messages printed (capped) */
};

struct stress_field {
	char name[40];
	char text[80];
	bool quoted; /* a string in the JSON summary */
};

struct stress_run {
	const char *name;
	struct stress_options opt;
	struct stress_totals *totals;
	double start;          /* stress_now() at init */
	double next_progress;  /* when the next progress line is due */
	int64_t last_ops;      /* ops at the previous progress line (for the rate shown) */
	double last_time;
	bool tty;
	bool child;            /* a forked worker: never draws progress or a summary */
	bool drew;             /* a \r line is on the terminal */
	int field_count;
	struct stress_field fields[STRESS_FIELDS_MAX];
	char command[1024];    /* the canonical command line that reproduces the run */
	char dir[64];          /* stress_tmpdir, "" before */
};

/* Parses the command line into run (exits 2 with a usage message on a bad option). `flags`
 * (may be NULL) are the program's own options. Maps the shared totals. */
void stress_init(struct stress_run *run, const char *name, int argc, char **argv,
		 const struct stress_flag *flags);

/* Monotonic seconds. */
double stress_now(void);
/* Seconds since stress_init. */
double stress_elapsed(const struct stress_run *run);
/* true until the run's --seconds have passed. */
bool stress_running(const struct stress_run *run);

/* Counting. Workers batch their ops (one call per few thousand) to keep the totals' cache
 * line cold. */
void stress_ops(struct stress_run *run, int64_t n);
void stress_checked(struct stress_run *run, int64_t n);
/* Records one violation and prints (the first 20 of a run) a line naming it and the seed. */
void stress_violation(struct stress_run *run, const char *format, ...)
	__attribute__((format(printf, 2, 3)));
/* Counts a check; a violation (with the message) when `ok` is false. Returns ok. */
bool stress_check(struct stress_run *run, bool ok, const char *format, ...)
	__attribute__((format(printf, 3, 4)));
int64_t stress_violations(const struct stress_run *run);

/* Draws the progress line if one is due. Cheap when not due. */
void stress_progress(struct stress_run *run);
/* Sleeps until the run's end (or until *stop becomes non-zero, when stop is not NULL),
 * drawing progress. */
void stress_wait(struct stress_run *run, _Atomic int *stop);
/* Sleeps `seconds`, drawing progress. */
void stress_sleep(struct stress_run *run, double seconds);

/* Summary fields, printed in the order added, before violations=N. */
void stress_field_int(struct stress_run *run, const char *name, int64_t value);
void stress_field_real(struct stress_run *run, const char *name, double value);
void stress_field_text(struct stress_run *run, const char *name, const char *value);

/* Prints the summary line (and, on violations, how to reproduce), writes --json, returns
 * the exit status (0 iff no violation). */
int stress_finish(struct stress_run *run);

/* ---- randomness: every choice derives from --seed ----------------------------------- */

struct stress_rng {
	uint64_t state;
};

/* A stream of the run's seed: `stream` names who draws from it (thread, process,
 * incarnation, ...), so each is reproducible on its own. */
void stress_rng_init(struct stress_rng *rng, uint64_t seed, uint64_t stream);

static inline uint64_t stress_rng_next(struct stress_rng *rng)
{
	/* splitmix64: full period, passes BigCrush, one add and three multiply-xorshifts */
	uint64_t z = (rng->state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (multiply-shift; the bias is below 2^-32 for n < 2^32). */
static inline uint64_t stress_rng_below(struct stress_rng *rng, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)stress_rng_next(rng) * n) >> 64);
}

/* Uniform in [0, 1). */
static inline double stress_rng_unit(struct stress_rng *rng)
{
	return (double)(stress_rng_next(rng) >> 11) / 9007199254740992.0;
}

/* ---- pacing: --rate ----------------------------------------------------------------- */

struct stress_pacer {
	double per_second; /* this worker's share of --rate; 0 = unthrottled */
	double start;
	int64_t done;
};

/* A worker that is one of `share` workers dividing the run's --rate between them. */
void stress_pacer_init(struct stress_pacer *pacer, const struct stress_run *run, int share);
/* How many requests a worker should make between two stress_pace calls: `most` when
 * unthrottled, else about a millisecond's worth (at least 1). */
int64_t stress_pace_batch(const struct stress_pacer *pacer, int64_t most);
/* Accounts n requests just made; sleeps while the worker is ahead of its rate. Falling
 * behind by more than a second forgives the debt (no burst to catch up). */
void stress_pace(struct stress_pacer *pacer, int64_t n);

/* ---- processes ---------------------------------------------------------------------- */

/* Memory shared with every process forked afterwards (zeroed; never freed: the run's). */
void *stress_shared(size_t size);
/* Forks a worker that runs body(run, arg, index) and exits with its return value. Returns
 * the child's pid (exits the program if fork fails). */
pid_t stress_spawn(struct stress_run *run, int (*body)(struct stress_run *, void *, int),
		   void *arg, int index);
/* A fresh temporary directory for the run's files ("/tmp/tally-<name>-XXXXXX"). */
const char *stress_tmpdir(struct stress_run *run);
/* Removes the files of stress_tmpdir and the directory itself. */
void stress_tmpdir_remove(struct stress_run *run);

/* ---- logs of issued numbers (one per process, read back by the checker) ------------- */

/* Reads every uint64 of the file at `path` and appends them to *values (grown with
 * realloc). Returns how many were read; a missing file reads as empty. */
size_t stress_log_load(const char *path, uint64_t **values, size_t *len, size_t *cap);
/* Sorts values and returns how many are equal to their predecessor. */
size_t stress_duplicates(uint64_t *values, size_t len);
#endif
