/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/fleet.c: worker processes, chaos, quiescence, reaping and loss accounting for the
 * store-backed stress runs (the contract is in stress/fleet.h).
 */
#include "fleet.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <tally/writebehind.h>

static void start_incarnation(struct fleet *fleet, int slot, int number)
{
	struct fleet_shared *shared = fleet->shared;
	int index = atomic_fetch_add(&shared->incarnation_count, 1);

	if (index >= FLEET_INCARNATIONS_MAX) {
		stress_violation(fleet->run, "more than %d incarnations", FLEET_INCARNATIONS_MAX);
		exit(stress_finish(fleet->run));
	}
	shared->incarnations[index].slot = slot;
	shared->incarnations[index].number = number;
	atomic_store(&shared->slots[slot].current, index);
	atomic_store(&shared->slots[slot].pid,
		     stress_spawn(fleet->run, fleet->body, fleet->arg, slot));
}

void fleet_start(struct fleet *fleet, struct fleet_shared *shared, struct stress_run *run,
		 int workers, int (*body)(struct stress_run *, void *, int), void *arg,
		 int64_t writer_ttl_ms, int64_t flush_ms, bool store)
{
	*fleet = (struct fleet){ .run = run, .shared = shared, .workers = workers, .body = body,
				 .arg = arg, .writer_ttl_ms = writer_ttl_ms,
				 .flush_ms = flush_ms, .store = store };
	for (int slot = 0; slot < workers; slot++)
		start_incarnation(fleet, slot, 0);
}

struct fleet_incarnation *fleet_current(const struct fleet *fleet, int slot)
{
	return &fleet->shared->incarnations[atomic_load(&fleet->shared->slots[slot].current)];
}

bool fleet_abandoned(const struct fleet *fleet, int slot)
{
	return atomic_load(&fleet->shared->slots[slot].abandoned);
}

/* Waits up to a second for the incarnation's flusher to be in flush phase `phase` (1:
 * before the store call, 2: committed, not yet acknowledged). */
static bool aim_at_flush(struct fleet_incarnation *victim, int phase)
{
	for (double give_up = stress_now() + 1.0; stress_now() < give_up;) {
		if (atomic_load(&victim->watch.flushing) == phase)
			return true;
		usleep(200);
	}
	return false;
}

static void kill_slot(struct fleet *fleet, int slot, bool aimed)
{
	struct fleet_slot *state = &fleet->shared->slots[slot];
	struct fleet_incarnation *victim = fleet_current(fleet, slot);
	int status;

	kill(atomic_load(&state->pid), SIGKILL);
	waitpid(atomic_load(&state->pid), &status, 0);
	stress_check(fleet->run, WIFSIGNALED(status), "worker %d ended before its kill (status "
		     "%d)", slot, status);
	atomic_store(&victim->killed, 1);
	atomic_store(&victim->killed_mid_flush, aimed);
	atomic_store(&victim->killed_at_ms, (int64_t)(stress_now() * 1000));
	fleet->kills++;
	fleet->kills_mid_flush += aimed;
}

/* STRESS_STORE_RESTART and STRESS_STORE_FAULT (environment): commands that restart the
 * store server and that make a fault proxy between the workers and the server cut every
 * connection (run-stress.sh sets both for PostgreSQL). */
static void store_chaos(struct fleet *fleet, const char *command, const char *what, int *count)
{
	int status = system(command);

	stress_check(fleet->run, status == 0, "store %s command failed (status %d)", what, status);
	(*count)++;
}

void fleet_chaos(struct fleet *fleet, double kill_every_s)
{
	struct stress_run *run = fleet->run;
	struct stress_rng rng;
	int numbers[STRESS_PROCESSES_MAX] = { 0 };
	const char *restart = fleet->store ? getenv("STRESS_STORE_RESTART") : NULL;
	const char *fault = fleet->store ? getenv("STRESS_STORE_FAULT") : NULL;

	stress_rng_init(&rng, run->opt.seed, UINT64_C(0xc4a05));
	while (stress_running(run)) {
		if (kill_every_s <= 0) {
			stress_wait(run, NULL);
			break;
		}
		stress_sleep(run, kill_every_s * (0.25 + 1.5 * stress_rng_unit(&rng)));
		if (!stress_running(run))
			break;
		uint64_t roll = stress_rng_below(&rng, 4);
		if (restart && *restart && fleet->store_restarts < 2 && roll == 0) {
			/* at most twice a run: each takes a second */
			store_chaos(fleet, restart, "restart", &fleet->store_restarts);
			continue;
		}
		if (fault && *fault && roll == 1) {
			store_chaos(fleet, fault, "fault", &fleet->store_cuts);
			continue;
		}
		int slot = (int)stress_rng_below(&rng, (uint64_t)fleet->workers);
		bool aimed = fleet->store && stress_rng_below(&rng, 2) &&
			     aim_at_flush(fleet_current(fleet, slot),
					  1 + (int)stress_rng_below(&rng, 2));
		kill_slot(fleet, slot, aimed);
		start_incarnation(fleet, slot, ++numbers[slot]);
	}
}

void fleet_abandon_last(struct fleet *fleet)
{
	int slot = fleet->workers - 1;
	struct fleet_incarnation *victim = fleet_current(fleet, slot);

	/* registered and flushed once: it has something in the store to reap */
	for (double give_up = stress_now() + 30; stress_now() < give_up;) {
		if (atomic_load(&victim->started) && atomic_load(&victim->watch.flushes) > 0)
			break;
		usleep(1000);
	}
	kill_slot(fleet, slot, false);
	atomic_store(&fleet->shared->slots[slot].abandoned, 1);
	atomic_store(&fleet->shared->slots[slot].pid, 0);
}

void fleet_stop(struct fleet *fleet)
{
	atomic_store(&fleet->shared->stop, 1);
	for (int slot = 0; slot < fleet->workers; slot++) {
		struct fleet_slot *state = &fleet->shared->slots[slot];
		double give_up = stress_now() + 120;

		if (atomic_load(&state->abandoned))
			continue;
		while (!atomic_load(&state->quiesced) && stress_now() < give_up) {
			int status;

			if (waitpid(atomic_load(&state->pid), &status, WNOHANG) > 0) {
				stress_violation(fleet->run, "worker %d died before quiescing "
						 "(status %d)", slot, status);
				atomic_store(&state->pid, 0);
				break;
			}
			usleep(2000);
		}
		if (!atomic_load(&state->quiesced) && atomic_load(&state->pid))
			stress_violation(fleet->run, "worker %d did not quiesce in 120 s", slot);
	}
}

/* Reaps once the abandoned writers' leases ran out, then again every 100 ms for up to
 * FLEET_REAP_GRACE_MS more: a store may allow for clock skew between writer and reaper
 * (DynamoDB's clock_skew_ms) or be restarting. Returns the last error. */
static int reap_abandoned(struct fleet *fleet, struct tally_store *store, int64_t abandoned,
			  int64_t *reaped)
{
	double give_up;
	int err;

	usleep((useconds_t)(fleet->writer_ttl_ms * 1000 + 300000));
	give_up = stress_now() + FLEET_REAP_GRACE_MS / 1000.0;
	*reaped = 0;
	for (;;) {
		int64_t now_reaped = 0;

		err = tally_store_reap(store, &now_reaped);
		*reaped += err == TALLY_OK ? now_reaped : 0;
		if ((err == TALLY_OK && *reaped >= abandoned) || stress_now() > give_up)
			return err;
		usleep(100000);
	}
}

void fleet_reap(struct fleet *fleet, struct tally_store *store)
{
	struct fleet_shared *shared = fleet->shared;
	int64_t reaped = 0, abandoned = 0;

	for (int slot = 0; slot < fleet->workers; slot++)
		abandoned += fleet_abandoned(fleet, slot);
	if (abandoned) {
		int err = reap_abandoned(fleet, store, abandoned, &reaped);

		stress_check(fleet->run, err == TALLY_OK && reaped >= abandoned, "reap: %s, %lld "
			     "writers reaped, %lld abandoned", tally_strerror(err),
			     (long long)reaped, (long long)abandoned);
	}
	atomic_store(&shared->reflush, 1);
	for (int slot = 0; slot < fleet->workers; slot++) {
		double give_up = stress_now() + 60;

		while (!fleet_abandoned(fleet, slot) && !atomic_load(&shared->slots[slot].reflushed) &&
		       stress_now() < give_up)
			usleep(2000);
	}
	stress_field_int(fleet->run, "writers_reaped", reaped);
}

void fleet_release(struct fleet *fleet)
{
	atomic_store(&fleet->shared->release, 1);
	for (int slot = 0; slot < fleet->workers; slot++) {
		pid_t pid = atomic_load(&fleet->shared->slots[slot].pid);
		int status;

		if (!pid)
			continue;
		waitpid(pid, &status, 0);
		stress_check(fleet->run, WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d "
			     "exited with status %d", slot, status);
	}
}

void fleet_summarise(struct fleet *fleet)
{
	int64_t fenced = 0;
	int incarnations = atomic_load(&fleet->shared->incarnation_count);

	for (int i = 0; i < incarnations; i++)
		fenced += atomic_load(&fleet->shared->incarnations[i].fenced);
	stress_field_int(fleet->run, "workers", fleet->workers);
	stress_field_int(fleet->run, "incarnations", incarnations);
	stress_field_int(fleet->run, "kills_survived", fleet->kills);
	stress_field_int(fleet->run, "kills_mid_flush", fleet->kills_mid_flush);
	if (fleet->store) {
		stress_field_int(fleet->run, "store_restarts", fleet->store_restarts);
		stress_field_int(fleet->run, "store_connection_cuts", fleet->store_cuts);
	}
	if (fleet->store)
		stress_field_int(fleet->run, "live_writers_fenced", fenced);
}

/* ---- loss accounting ------------------------------------------------------------------ */

static void incarnation_applied(const struct fleet *fleet, const struct fleet_incarnation *in,
				int64_t *applied, int64_t *pending)
{
	*applied = *pending = 0;
	for (int t = 0; t < fleet->run->opt.threads; t++) {
		*applied += atomic_load(&in->applied[t]);
		*pending += atomic_load(&in->pending[t]);
	}
}

/* The longest of each part of a killed incarnation's loss window (fleet_check_counter). */
struct loss_window {
	int64_t age_ms, wait_ms, in_flight_ms, store_call_ms, failed_attempts;
};

/* The window of a killed incarnation with something unacknowledged: its kill split at the
 * first attempt of the flush it cut off (none: the flusher was still waiting). */
static void check_loss_window(struct fleet *fleet, int index, struct fleet_incarnation *in,
			      struct loss_window *worst)
{
	int64_t killed = atomic_load(&in->killed_at_ms);
	int64_t acked = atomic_load(&in->watch.last_ack_ms);
	int64_t since = atomic_load(&in->watch.unacked_since_ms);
	int64_t wait, in_flight, collect;

	if (!acked)
		return; /* killed before its first acknowledgement: no window to time */
	wait = (since ? since : killed) - acked;
	in_flight = since ? killed - since : 0;
	/* the build first collects what the table feeds queued while the last flush was at
	 * the store: as many changes as that flush's duration brought */
	collect = atomic_load(&in->watch.acked_call_ms);
	stress_check(fleet->run, wait <= fleet->flush_ms + collect + FLEET_BUILD_SLACK_MS,
		     "incarnation %d (worker %d): the flusher waited %lld ms after an "
		     "acknowledgement before its next flush (interval %lld ms + collecting the "
		     "last flush's %lld ms + build %d ms)", index, in->slot, (long long)wait,
		     (long long)fleet->flush_ms, (long long)collect, FLEET_BUILD_SLACK_MS);
	if (killed - acked > worst->age_ms)
		worst->age_ms = killed - acked;
	if (wait > worst->wait_ms)
		worst->wait_ms = wait;
	if (in_flight > worst->in_flight_ms)
		worst->in_flight_ms = in_flight;
}

static void add_window_fields(struct stress_run *run, const struct loss_window *worst)
{
	stress_field_int(run, "unacked_age_ms_max", worst->age_ms);
	stress_field_int(run, "flusher_wait_ms_max", worst->wait_ms);
	stress_field_int(run, "flush_in_flight_ms_max", worst->in_flight_ms);
	stress_field_int(run, "store_call_ms_max", worst->store_call_ms);
	stress_field_int(run, "store_failed_attempts", worst->failed_attempts);
}

static void add_counter_fields(struct stress_run *run, const char *name, int64_t applied,
			       int64_t stored, int64_t lost, int64_t bound)
{
	static const char *const suffixes[] = { "applied", "in_store", "lost_measured",
						"lost_bound" };
	int64_t values[] = { applied, stored, lost, bound };
	char field[64];

	for (int i = 0; i < 4; i++) {
		snprintf(field, sizeof(field), "%s_%s", name, suffixes[i]);
		stress_field_int(run, field, values[i]);
	}
}

int64_t fleet_check_counter(struct fleet *fleet, struct tally_store *store, const char *name,
			    void (*key_of)(void *arg, int incarnation, char *out, size_t size),
			    void *arg)
{
	struct stress_run *run = fleet->run;
	int incarnations = atomic_load(&fleet->shared->incarnation_count);
	int64_t applied_all = 0, stored_all = 0, lost_all = 0, bound_all = 0;
	struct loss_window worst = { 0 };
	char key[TALLY_STORE_KEY_MAX + 1];

	for (int i = 0; i < incarnations; i++) {
		struct fleet_incarnation *in = &fleet->shared->incarnations[i];
		int64_t applied, pending, stored = 0;

		incarnation_applied(fleet, in, &applied, &pending);
		key_of(arg, i, key, sizeof(key));
		if (tally_store_read_counter(store, key, strlen(key), &stored) != TALLY_OK)
			stored = 0;
		int64_t acked = atomic_load(&in->watch.acked[0]);
		applied_all += applied;
		stored_all += stored;
		if (atomic_load(&in->watch.store_call_ms_max) > worst.store_call_ms)
			worst.store_call_ms = atomic_load(&in->watch.store_call_ms_max);
		worst.failed_attempts += atomic_load(&in->watch.failed_attempts);
		if (!atomic_load(&in->killed)) {
			stress_check(run, stored == applied, "%s of incarnation %d (worker %d), which "
				     "lived: store %lld, applied %lld", name, i, in->slot,
				     (long long)stored, (long long)applied);
			continue;
		}
		stress_check(run, acked <= stored && stored <= applied + pending, "%s of "
			     "incarnation %d (worker %d), killed: store %lld outside [acknowledged "
			     "%lld, applied %lld + in progress %lld]", name, i, in->slot,
			     (long long)stored, (long long)acked, (long long)applied,
			     (long long)pending);
		lost_all += applied > stored ? applied - stored : 0;
		bound_all += applied + pending - acked;
		if (applied + pending > acked)
			check_loss_window(fleet, i, in, &worst);
	}
	add_counter_fields(run, name, applied_all, stored_all, lost_all, bound_all);
	add_window_fields(run, &worst);
	return stored_all;
}

/* ---- workers -------------------------------------------------------------------------- */

struct fleet_incarnation *fleet_worker_me(struct fleet_shared *shared, int slot)
{
	return &shared->incarnations[atomic_load(&shared->slots[slot].current)];
}

bool fleet_worker_stopping(struct fleet_shared *shared)
{
	return atomic_load(&shared->stop);
}

void fleet_worker_idle(struct fleet_shared *shared, int slot, void (*reflush)(void *arg),
		       void *arg)
{
	struct fleet_slot *state = &shared->slots[slot];
	struct timespec pause = { 0, 5000000 };

	atomic_store(&state->quiesced, 1);
	while (!atomic_load(&shared->release)) {
		if (reflush && atomic_load(&shared->reflush) && !atomic_load(&state->reflushed)) {
			reflush(arg);
			atomic_store(&state->reflushed, 1);
		}
		nanosleep(&pause, NULL);
	}
}

void fleet_request_thread_yields(void)
{
	/* PRIO_PROCESS with a thread id sets that thread's nice value alone (setpriority(2)) */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), FLEET_REQUEST_NICE);
}

void fleet_flusher_error(int err, const char *text, void *arg)
{
	struct fleet_error_sink *sink = arg;

	if (err == TALLY_EFENCED) {
		atomic_fetch_add(&sink->me->fenced, 1);
		return;
	}
	stress_violation(sink->run, "worker %d: flusher reports %s: %s", sink->me->slot,
			 tally_strerror(err), text);
}

/* ---- a worker's write-behind ---------------------------------------------------------- */

#define PROXY_HOLD_US 300 /* each flush phase lasts this long, so aimed kills land in it */

int fleet_writer_open(struct fleet_writer *writer, struct stress_run *run,
		      struct fleet_incarnation *me, const char *url, const char *writer_id,
		      int64_t writer_ttl_ms, int64_t flush_ms, const char *const *watched,
		      int count)
{
	struct tally_writebehind_config config = {
		.interval_ms = flush_ms, .heartbeat_ms = writer_ttl_ms / 4,
		.on_error = fleet_flusher_error, .callback_arg = &writer->errors,
		.jitter_seed = run->opt.seed ^ (uint64_t)me->slot };
	int err;

	*writer = (struct fleet_writer){ .errors = { run, me } };
	err = store_proxy_open(&writer->proxy, url, writer_id, writer_ttl_ms, &me->watch, watched,
			       count, PROXY_HOLD_US, &writer->outer, &writer->inner);
	if (err)
		return err;
	err = tally_writebehind_create(&writer->wb, writer->outer, &config);
	if (err) {
		fprintf(stderr, "fleet: write-behind: %s\n", tally_strerror(err));
		store_proxy_close(writer->proxy);
	}
	return err;
}

void fleet_writer_flush(struct fleet_writer *writer, const char *why)
{
	int err = tally_writebehind_flush(writer->wb, 60000);

	stress_check(writer->errors.run, err == TALLY_OK, "worker %d: %s: %s",
		     writer->errors.me->slot, why, tally_strerror(err));
}

void fleet_writer_close(struct fleet_writer *writer)
{
	int err = tally_writebehind_destroy(writer->wb);

	stress_check(writer->errors.run, err == TALLY_OK, "worker %d: flusher shutdown: %s",
		     writer->errors.me->slot, tally_strerror(err));
	store_proxy_close(writer->proxy);
}

void fleet_writer_reflush(void *writer)
{
	fleet_writer_flush(writer, "flush after the reap");
}

const struct stress_flag *fleet_flags(struct fleet_options *options)
{
	static struct stress_flag flags[4];

	flags[0] = (struct stress_flag){ "kill-every", "with --store: mean seconds between two "
					 "SIGKILLs of a worker (0: none)", &options->kill_every_s };
	flags[1] = (struct stress_flag){ "writer-ttl-ms", "with --store: a writer's lease; a "
					 "killed one is reaped after it", &options->writer_ttl_ms };
	flags[2] = (struct stress_flag){ "flush-ms", "with --store: write-behind flush interval",
					 &options->flush_ms };
	flags[3] = (struct stress_flag){ NULL, NULL, NULL };
	return flags;
}

int fleet_run(struct fleet *fleet, struct stress_run *run, int workers,
	      int (*body)(struct stress_run *, void *, int), void *arg,
	      const struct fleet_options *options,
	      void (*before_reap)(void *arg, struct tally_store *reader),
	      void (*after_reap)(void *arg, struct tally_store *reader))
{
	struct tally_store *reader;

	if (run->opt.processes)
		workers = run->opt.processes;
	fleet_start(fleet, stress_shared(sizeof(struct fleet_shared)), run, workers, body, arg,
		    (int64_t)options->writer_ttl_ms, (int64_t)options->flush_ms, true);
	fleet_chaos(fleet, options->kill_every_s);
	if (options->kill_every_s > 0 && workers > 1)
		fleet_abandon_last(fleet);
	fleet_stop(fleet);
	if (stress_check(run, store_proxy_open_reader(run->opt.store, &reader) == TALLY_OK,
			 "the parent cannot open the store")) {
		if (before_reap)
			before_reap(arg, reader);
		fleet_reap(fleet, reader);
		if (after_reap)
			after_reap(arg, reader);
		tally_store_close(reader);
	}
	fleet_release(fleet);
	fleet_summarise(fleet);
	return stress_finish(run);
}
