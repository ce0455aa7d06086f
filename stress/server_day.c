/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/server_day.c: the combined "server day" scenario. A broadcast service replayed at
 * speed by several worker processes (stress/server_day_worker.c), each a server with its own
 * session table, listener gauge, views counter, invoice series per tenant and per-client
 * rate limits, all sharing one lease store and, with --store, one store they write behind
 * to. Chaos: workers are SIGKILLed at seeded random moments (with a store, half of the kills
 * aimed at a flush in flight) and restarted as new epochs against the same store.
 * Afterwards: zero duplicate invoice numbers across every process and incarnation, the
 * lease marks cover every number, exact totals less the measured loss, dead writers reaped
 * (stress/server_day_store.c), and each worker's own invariants. docs/stress.md has them all.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <tally/lease.h>
#include "server_day.h"
#include "server_day_store.h"

static double kill_every_s = 2.0, writer_ttl_ms = 2000, flush_ms = 100, session_ttl_ms = 3000;

static const struct stress_flag flags[] = {
	{ "kill-every", "mean seconds between two SIGKILLs of a worker (0: no kills)",
	  &kill_every_s },
	{ "writer-ttl-ms", "a store writer's lease; a killed one is reaped after it",
	  &writer_ttl_ms },
	{ "flush-ms", "write-behind flush interval", &flush_ms },
	{ "session-ttl-ms", "mean lifetime of a session (its TTL)", &session_ttl_ms },
	{ NULL, NULL, NULL },
};

static const char *const request_names[DAY_REQUEST_KINDS] = {
	"creates", "joins", "leaves", "duplicate_leaves", "speaker_drops", "invoices",
	"rate_limited_calls" };

void day_invoice_log_path(const struct day_config *config, int incarnation, int thread,
			  char *out, size_t size)
{
	snprintf(out, size, "%s/invoices.%d.%d", config->dir, incarnation, thread);
}

void day_lease_path(const struct day_config *config, char *out, size_t size)
{
	snprintf(out, size, "%s/leases", config->dir);
}

void day_fleet_views_key(const struct day_config *config, char *out, size_t size)
{
	snprintf(out, size, "views/%s", config->run_tag);
}

void day_views_key(const struct day_config *config, int incarnation, char *out, size_t size)
{
	snprintf(out, size, "views/%s/incarnation-%d", config->run_tag, incarnation);
}

void day_listeners_key(const struct day_config *config, char *out, size_t size)
{
	snprintf(out, size, "listeners/%s", config->run_tag);
}

void day_writer_id(const struct day_config *config, int slot, char *out, size_t size)
{
	snprintf(out, size, "%s-worker-%d", config->run_tag, slot);
}

static pid_t start_incarnation(struct stress_run *run, struct day_config *config, int slot,
			       int number)
{
	struct day_shared *shared = config->shared;
	int index = atomic_fetch_add(&shared->incarnation_count, 1);

	if (index >= DAY_INCARNATIONS_MAX) {
		stress_violation(run, "more than %d incarnations", DAY_INCARNATIONS_MAX);
		exit(stress_finish(run));
	}
	shared->incarnations[index].slot = slot;
	shared->incarnations[index].number = number;
	atomic_store(&shared->slots[slot].current, index);
	pid_t pid = stress_spawn(run, day_worker, config, slot);
	atomic_store(&shared->slots[slot].pid, pid);
	return pid;
}

/* With a store, waits up to a second for the incarnation's flusher to be inside a flush
 * (phase 1, before the store call, or 2, committed but not acknowledged: whichever
 * `phase` asks). */
static bool aim_at_flush(struct day_incarnation *victim, int phase)
{
	for (double give_up = stress_now() + 1.0; stress_now() < give_up;) {
		if (atomic_load(&victim->watch.flushing) == phase)
			return true;
		usleep(200);
	}
	return false;
}

/* The chaos loop: kill a random worker at random moments, restart it as a new epoch. */
static void chaos(struct stress_run *run, struct day_config *config, int *kills,
		  int *mid_flush)
{
	struct day_shared *shared = config->shared;
	struct stress_rng rng;
	int numbers[STRESS_PROCESSES_MAX] = { 0 };

	stress_rng_init(&rng, run->opt.seed, UINT64_C(0xc4a05));
	while (stress_running(run)) {
		if (kill_every_s <= 0) {
			stress_wait(run, NULL);
			break;
		}
		stress_sleep(run, kill_every_s * (0.25 + 1.5 * stress_rng_unit(&rng)));
		if (!stress_running(run))
			break;
		int slot = (int)stress_rng_below(&rng, (uint64_t)config->workers);
		struct day_slot *state = &shared->slots[slot];
		struct day_incarnation *victim = &shared->incarnations[atomic_load(&state->current)];
		bool aimed = config->store_url && stress_rng_below(&rng, 2) &&
			     aim_at_flush(victim, 1 + (int)stress_rng_below(&rng, 2));
		int status;

		kill(atomic_load(&state->pid), SIGKILL);
		waitpid(atomic_load(&state->pid), &status, 0);
		stress_check(run, WIFSIGNALED(status), "worker %d ended before its kill (status "
			     "%d)", slot, status);
		atomic_store(&victim->killed, 1);
		atomic_store(&victim->killed_mid_flush, aimed);
		(*kills)++;
		*mid_flush += aimed;
		start_incarnation(run, config, slot, ++numbers[slot]);
	}
}

/* A server that never comes back: the last slot is killed and not restarted, so its writer
 * must be reaped once its lease expires. */
static void abandon(struct stress_run *run, struct day_config *config, int *kills)
{
	struct day_slot *state = &config->shared->slots[config->workers - 1];
	struct day_incarnation *victim = &config->shared->incarnations[atomic_load(&state->current)];

	for (double give_up = stress_now() + 30; stress_now() < give_up;)
		if (atomic_load(&victim->started) && atomic_load(&victim->watch.flushes) > 0)
			break; /* registered and flushed once: it has something to reap */
		else
			usleep(1000);
	kill(atomic_load(&state->pid), SIGKILL);
	waitpid(atomic_load(&state->pid), NULL, 0);
	atomic_store(&victim->killed, 1);
	atomic_store(&state->abandoned, 1);
	atomic_store(&state->pid, 0);
	(*kills)++;
}

static void wait_quiesced(struct stress_run *run, struct day_config *config)
{
	for (int slot = 0; slot < config->workers; slot++) {
		struct day_slot *state = &config->shared->slots[slot];
		double give_up = stress_now() + 120;

		if (atomic_load(&state->abandoned))
			continue;
		while (!atomic_load(&state->quiesced) && stress_now() < give_up) {
			int status;

			if (waitpid(atomic_load(&state->pid), &status, WNOHANG) > 0) {
				stress_violation(run, "worker %d died before quiescing (status %d)",
						 slot, status);
				atomic_store(&state->pid, 0);
				break;
			}
			usleep(2000);
		}
		if (!atomic_load(&state->quiesced) && atomic_load(&state->pid))
			stress_violation(run, "worker %d did not quiesce in 120 s", slot);
	}
}

static void reap_workers(struct stress_run *run, struct day_config *config)
{
	for (int slot = 0; slot < config->workers; slot++) {
		pid_t pid = atomic_load(&config->shared->slots[slot].pid);
		int status;

		if (!pid)
			continue;
		waitpid(pid, &status, 0);
		stress_check(run, WIFEXITED(status) && WEXITSTATUS(status) == 0, "worker %d exited "
			     "with status %d", slot, status);
	}
}

/* Zero duplicate invoice numbers across every process, incarnation and thread; the lease
 * marks (file or store) cover the highest number of each tenant. */
static void check_invoices(struct stress_run *run, struct day_config *config)
{
	int incarnations = atomic_load(&config->shared->incarnation_count);
	uint64_t *all = NULL, highest[DAY_TENANTS] = { 0 };
	size_t len = 0, cap = 0;
	char path[256];

	for (int i = 0; i < incarnations; i++)
		for (int t = 0; t < run->opt.threads; t++) {
			day_invoice_log_path(config, i, t, path, sizeof(path));
			stress_log_load(path, &all, &len, &cap);
		}
	size_t duplicates = stress_duplicates(all, len);
	stress_check(run, duplicates == 0, "%zu invoice numbers issued twice across %d "
		     "incarnations", duplicates, incarnations);
	stress_checked(run, (int64_t)len);
	for (size_t i = 0; i < len; i++) {
		unsigned tenant = (unsigned)(all[i] >> 40);
		uint64_t counter = all[i] & ((UINT64_C(1) << 40) - 1);

		if (tenant < DAY_TENANTS && counter > highest[tenant])
			highest[tenant] = counter;
	}
	memcpy(config->highest_invoice, highest, sizeof(highest));
	free(all);
	stress_field_int(run, "invoice_numbers", (int64_t)len);
	stress_field_int(run, "duplicate_numbers", (int64_t)duplicates);
	if (config->store_url)
		return; /* the store's lease marks are checked with the store */
	struct tally_lease_provider *leases;
	day_lease_path(config, path, sizeof(path));
	if (!stress_check(run, tally_lease_file_open(&leases, path) == TALLY_OK,
			  "lease file unreadable"))
		return;
	for (unsigned tenant = 0; tenant < DAY_TENANTS; tenant++) {
		struct tally_lease_record record = { 0 };
		char key[64];
		int key_len = snprintf(key, sizeof(key), "%s-tenant%u", config->run_tag, tenant);

		memcpy(key + key_len, "\0INV", 4);
		if (!highest[tenant])
			continue;
		tally_lease_read(leases, key, (size_t)key_len + 4, &record);
		stress_check(run, highest[tenant] <= (record.mark & ((UINT64_C(1) << 40) - 1)),
			     "tenant %u issued %llu above its lease mark %llu", tenant,
			     (unsigned long long)highest[tenant],
			     (unsigned long long)(record.mark & ((UINT64_C(1) << 40) - 1)));
	}
	tally_lease_provider_destroy(leases);
}

static void summarise(struct stress_run *run, struct day_config *config, int kills,
		      int mid_flush, double elapsed)
{
	int64_t total = 0;

	stress_field_int(run, "workers", config->workers);
	stress_field_int(run, "incarnations", atomic_load(&config->shared->incarnation_count));
	stress_field_int(run, "kills_survived", kills);
	stress_field_int(run, "kills_mid_flush", mid_flush);
	for (int k = 0; k < DAY_REQUEST_KINDS; k++) {
		int64_t n = atomic_load(&config->shared->requests[k]);

		stress_field_int(run, request_names[k], n);
		total += n;
	}
	stress_field_real(run, "requests_per_s", (double)total / elapsed);
	if (run->opt.rate > 0)
		stress_field_real(run, "seeds_bar_x", (double)total / elapsed / 1000.0);
}

int main(int argc, char **argv)
{
	static struct stress_run run;
	static struct day_config config;
	int kills = 0, mid_flush = 0;

	stress_init(&run, "server_day", argc, argv, flags);
	config = (struct day_config){
		.shared = stress_shared(sizeof(struct day_shared)),
		.dir = stress_tmpdir(&run),
		.store_url = run.opt.store,
		.workers = run.opt.processes ? run.opt.processes : 3,
		.writer_ttl_ms = (int64_t)writer_ttl_ms,
		.flush_interval_ms = (int64_t)flush_ms,
		.session_ttl_ms = session_ttl_ms < 10 ? 10 : (int64_t)session_ttl_ms,
	};
	snprintf(config.run_tag, sizeof(config.run_tag), "r%d", (int)getpid());
	for (int slot = 0; slot < config.workers; slot++)
		start_incarnation(&run, &config, slot, 0);
	chaos(&run, &config, &kills, &mid_flush);
	double elapsed = stress_elapsed(&run);
	if (config.store_url && kill_every_s > 0 && config.workers > 1)
		abandon(&run, &config, &kills);
	atomic_store(&config.shared->stop, 1);
	wait_quiesced(&run, &config);
	check_invoices(&run, &config);
	if (config.store_url)
		day_store_check_fleet(&run, &config);
	atomic_store(&config.shared->release, 1);
	reap_workers(&run, &config);
	summarise(&run, &config, kills, mid_flush, elapsed);
	stress_tmpdir_remove(&run);
	return stress_finish(&run);
}
