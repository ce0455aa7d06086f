/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/fleet.h: a fleet of worker processes for the store-backed stress runs (counter,
 * gauge, server_day): starting them, SIGKILLing them at seeded random moments (with a
 * store, half of the kills aimed into a flush through the store proxy) and restarting each
 * as a new incarnation (a new store epoch of its slot's writer id), abandoning one at the
 * end (killed, never restarted: it must be reaped), quiescing the rest, reaping, and
 * checking what the killed ones lost against what was acknowledged.
 *
 * Everything the parent and the workers share is in struct fleet_shared, mapped before the
 * first fork; a worker writes only its slot and its incarnation. The parent runs no thread
 * (stress.h: children of a multi-threaded process may not start threads under TSan).
 *
 * A worker's life: fleet_worker_me (its incarnation), work until fleet_worker_stopping,
 * quiesce (stop its threads, final flush, fill final[]), then fleet_worker_idle, which
 * reports it quiesced, flushes again when the parent asks (after its reap) and returns once
 * the parent releases the fleet; then it closes cleanly and exits 0.
 */
#ifndef TALLY_STRESS_FLEET_H
#define TALLY_STRESS_FLEET_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <tally/store.h>
#include "stress.h"
#include "store_proxy.h"

#define FLEET_INCARNATIONS_MAX 512
#define FLEET_FINALS 4
/* What building a batch may add to the flusher's wait on a loaded machine (collecting the
 * feeds, taking up to max_batch_records records, being scheduled): see fleet_check_counter.
 * Sanitized code runs several times slower. */
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define FLEET_BUILD_SLACK_MS 1000
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define FLEET_BUILD_SLACK_MS 1000
#endif
#endif
#ifndef FLEET_BUILD_SLACK_MS
#define FLEET_BUILD_SLACK_MS 250
#endif

struct fleet_incarnation {
	int slot;
	int number;               /* 0, 1, ... within the slot */
	_Atomic int started;      /* set up, serving */
	_Atomic int killed;       /* the parent SIGKILLed it */
	_Atomic int killed_mid_flush;
	_Atomic int64_t killed_at_ms; /* CLOCK_MONOTONIC ms of the kill */
	struct store_proxy_watch watch; /* its flushes, through the proxy */
	/* A counter applied in memory, per worker thread: applied[t] is exact; while an add
	 * is in progress pending[t] holds its delta, so a kill between the add and the
	 * accounting leaves either applied or applied + pending in memory. */
	_Atomic int64_t applied[STRESS_THREADS_MAX];
	_Atomic int64_t pending[STRESS_THREADS_MAX];
	_Atomic int64_t fenced;   /* its flusher was fenced while alive (lease ran out) */
	int64_t final[FLEET_FINALS]; /* the program's values after its final flush */
};

struct fleet_slot {
	_Atomic int pid;
	_Atomic int current;      /* its live incarnation's index */
	_Atomic int abandoned;
	_Atomic int quiesced;
	_Atomic int reflushed;
};

struct fleet_shared {
	_Atomic int stop;
	_Atomic int reflush;
	_Atomic int release;
	_Atomic int incarnation_count;
	struct fleet_slot slots[STRESS_PROCESSES_MAX];
	struct fleet_incarnation incarnations[FLEET_INCARNATIONS_MAX];
};

/* The parent's handle. */
struct fleet {
	struct stress_run *run;
	struct fleet_shared *shared; /* in shared memory */
	int workers;
	int (*body)(struct stress_run *run, void *arg, int slot);
	void *arg;
	int64_t writer_ttl_ms;
	int64_t flush_ms;         /* the workers' write-behind interval */
	bool store;
	int kills;
	int kills_mid_flush;
	int store_restarts;
	int store_cuts;
};

/* The parent: `shared` is in shared memory; starts incarnation 0 of every slot. */
void fleet_start(struct fleet *fleet, struct fleet_shared *shared, struct stress_run *run,
		 int workers, int (*body)(struct stress_run *, void *, int), void *arg,
		 int64_t writer_ttl_ms, int64_t flush_ms, bool store);
/* Kills and restarts workers until the run's end (mean interval kill_every_s; 0: none).
 * With a store and STRESS_STORE_RESTART set (a shell command that restarts the store
 * server), a quarter of the steps, at most two per run, restart the store instead; with
 * STRESS_STORE_FAULT (a command that makes a fault proxy cut every store connection),
 * another quarter cut the connections instead. */
void fleet_chaos(struct fleet *fleet, double kill_every_s);
/* Kills the last slot (after it flushed once) and never restarts it. */
void fleet_abandon_last(struct fleet *fleet);
/* Asks every worker to stop and waits until each quiesced (violations for those that died
 * or hung). */
void fleet_stop(struct fleet *fleet);
/* Waits out the abandoned writer's lease, reaps through `store` (retrying for up to
 * FLEET_REAP_GRACE_MS while it reaps less than was abandoned), then has every live worker
 * flush again. Adds the field writers_reaped. */
#define FLEET_REAP_GRACE_MS 3000
void fleet_reap(struct fleet *fleet, struct tally_store *store);
/* Releases the workers and checks that each exits 0. */
void fleet_release(struct fleet *fleet);
struct fleet_incarnation *fleet_current(const struct fleet *fleet, int slot);
bool fleet_abandoned(const struct fleet *fleet, int slot);
/* Adds the fields workers, incarnations, kills_survived, kills_mid_flush. */
void fleet_summarise(struct fleet *fleet);

/*
 * Checks a counter the incarnations applied (applied/pending) against the store: key_of
 * names incarnation i's own key (acknowledged totals in watch.acked[0]). An incarnation that
 * lived holds exactly what it applied; a killed one at least what was acknowledged and at
 * most what was applied: the measured loss (applied - stored) never exceeds the
 * unacknowledged amount. Adds fields <name>_applied, _in_store, _lost_measured, _lost_bound.
 *
 * And the loss window of each killed incarnation that had something unacknowledged: the
 * time from its last acknowledged flush to its kill (unacked_age_ms_max) is the flusher's
 * wait before the next flush's first attempt (flusher_wait_ms_max) plus that flush's
 * latency so far, retries included (flush_in_flight_ms_max). The write-behind bounds the
 * wait: the next flush starts one interval after an acknowledgement, plus the time to
 * build its batch, which first collects what the table feeds queued during the flush just
 * acknowledged; a wait above flush_ms + that flush's duration + FLEET_BUILD_SLACK_MS is a
 * violation.
 * The latency is the store's (store_call_ms_max: its longest single call); docs/stress.md.
 * Returns the sum stored over the incarnations' keys.
 */
int64_t fleet_check_counter(struct fleet *fleet, struct tally_store *store, const char *name,
			    void (*key_of)(void *arg, int incarnation, char *out, size_t size),
			    void *arg);

/* Workers. */
struct fleet_incarnation *fleet_worker_me(struct fleet_shared *shared, int slot);
bool fleet_worker_stopping(struct fleet_shared *shared);
void fleet_worker_idle(struct fleet_shared *shared, int slot, void (*reflush)(void *arg),
		       void *arg);

/* A worker's request thread calls this first: it lowers its own scheduling priority (nice
 * FLEET_REQUEST_NICE, Linux's per-thread nice) so that the worker's flusher, whose delay is
 * a crash's loss window, is not starved by the load the run generates itself on a machine
 * with fewer CPUs than threads (docs/stress.md: the loss window). Failure is ignored. */
#define FLEET_REQUEST_NICE 5
void fleet_request_thread_yields(void);

/* Accounting of one add of `delta` by worker thread t (around the counter add). */
static inline void fleet_apply_begin(struct fleet_incarnation *me, int t, int64_t delta)
{
	atomic_store_explicit(&me->pending[t], delta, memory_order_relaxed);
}

static inline void fleet_apply_end(struct fleet_incarnation *me, int t, int64_t applied_total)
{
	atomic_store_explicit(&me->applied[t], applied_total, memory_order_relaxed);
	atomic_store_explicit(&me->pending[t], 0, memory_order_relaxed);
}

/* The on_error callback for a worker's write-behind flusher (arg: a struct
 * fleet_error_sink): EFENCED is counted in me->fenced (a heartbeat starved past the TTL on
 * a loaded machine got the writer reaped while alive; by design the flusher re-registers
 * and republishes), anything else is a violation. */
struct fleet_error_sink {
	struct stress_run *run;
	struct fleet_incarnation *me;
};
void fleet_flusher_error(int err, const char *text, void *arg);

/* A worker's write-behind: the store proxy and a flusher over it (tally/writebehind.h). */
struct tally_writebehind;
struct fleet_writer {
	struct store_proxy *proxy;
	struct tally_store *outer;  /* the flusher's handle (the proxy) */
	struct tally_store *inner;  /* the real store: leases, reads */
	struct tally_writebehind *wb;
	struct fleet_error_sink errors;
};

/* Opens the store at url under writer_id through the proxy (watched counter keys as in
 * store_proxy_open) and starts a flusher every flush_ms with heartbeats at a quarter of
 * the TTL. Returns a tally_err (printed). */
int fleet_writer_open(struct fleet_writer *writer, struct stress_run *run,
		      struct fleet_incarnation *me, const char *url, const char *writer_id,
		      int64_t writer_ttl_ms, int64_t flush_ms, const char *const *watched,
		      int count);
/* The final flush: a violation unless it is acknowledged within 60 s. */
void fleet_writer_flush(struct fleet_writer *writer, const char *why);
/* Stops the flusher (closing the writer cleanly) and closes the stores. */
void fleet_writer_close(struct fleet_writer *writer);
/* fleet_worker_idle's reflush for a struct fleet_writer. */
void fleet_writer_reflush(void *writer);

/* The options of a store-backed run, and the program flags that set them. */
struct fleet_options {
	double kill_every_s;
	double writer_ttl_ms;
	double flush_ms;
};
/* Flags --kill-every, --writer-ttl-ms, --flush-ms over `options` (which holds the defaults);
 * the array is static, ended by a NULL name. */
const struct stress_flag *fleet_flags(struct fleet_options *options);

/* A whole store-backed run: start `workers` (or --processes) workers of body, chaos until
 * the run's end, abandon the last, quiesce, then with a reader on the store call
 * before_reap, reap, call after_reap (either may be NULL), release and summarise. Returns
 * stress_finish's status. */
int fleet_run(struct fleet *fleet, struct stress_run *run, int workers,
	      int (*body)(struct stress_run *, void *, int), void *arg,
	      const struct fleet_options *options,
	      void (*before_reap)(void *arg, struct tally_store *reader),
	      void (*after_reap)(void *arg, struct tally_store *reader));
#endif
