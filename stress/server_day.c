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
#include <string.h>
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

/* Zero duplicate invoice numbers across every process, incarnation and thread; the lease
 * marks (file or store) cover the highest number of each tenant. */
static void check_invoices(struct stress_run *run, struct day_config *config)
{
	int incarnations = atomic_load(&config->shared->fleet.incarnation_count);
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

static void summarise(struct stress_run *run, struct day_config *config, double elapsed)
{
	int64_t total = 0;

	fleet_summarise(&config->fleet);
	for (int k = 0; k < DAY_REQUEST_KINDS; k++) {
		int64_t n = atomic_load(&config->shared->requests[k]);

		stress_field_int(run, request_names[k], n);
		total += n;
	}
	stress_field_int(run, "invoices_refused_store_down",
			 atomic_load(&config->shared->invoices_refused));
	stress_field_real(run, "serving_seconds", elapsed);
	stress_field_real(run, "requests_per_s", (double)total / elapsed);
	/* the seeds' bar: 0 collisions at <= 1,000 requests/s */
	stress_field_real(run, "seeds_bar_x", (double)total / elapsed / 1000.0);
}

int main(int argc, char **argv)
{
	static struct stress_run run;
	static struct day_config config;

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
	fleet_start(&config.fleet, &config.shared->fleet, &run, config.workers, day_worker,
		    &config, config.writer_ttl_ms, config.flush_interval_ms,
		    config.store_url != NULL);
	fleet_chaos(&config.fleet, kill_every_s);
	double elapsed = stress_elapsed(&run);
	if (config.store_url && kill_every_s > 0 && config.workers > 1)
		fleet_abandon_last(&config.fleet);
	fleet_stop(&config.fleet);
	check_invoices(&run, &config);
	if (config.store_url)
		day_store_check_fleet(&run, &config);
	fleet_release(&config.fleet);
	summarise(&run, &config, elapsed);
	stress_tmpdir_remove(&run);
	return stress_finish(&run);
}
