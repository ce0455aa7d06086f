/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store_worker.c: one writer process for tests/store_sqlite and tests/store_tool.sh
 * (started with fork + exec, often SIGKILLed mid-flush). It reports on stdout, one line per
 * event, flushed at once, so a parent can tell exactly what was acknowledged:
 *
 *   store_worker URL WRITER_ID flush TTL_MS KEYS FLUSHES
 *       "open EPOCH PRIOR_EPOCH PRIOR_LAST_SEQ PRIOR_REAPED", then per flush of seq S (KEYS
 *       counters "k0".."k<KEYS-1>" +1 each and gauge "live" = 1) "acked S"; transient
 *       errors are retried with the same batch; "done" after FLUSHES flushes and a clean
 *       writer_close. FLUSHES 0 = until killed.
 *   store_worker URL WRITER_ID lease KEY BLOCK LEASES
 *       LEASES acquires of BLOCK numbers on KEY through the store's lease provider, each
 *       number printed once its lease is durable ("n NUMBER"); then "done". The last lease
 *       is closed after using half of it, giving the rest back.
 * Exit status 0, or 2 with "error ..." on stdout.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tally/store.h>

static int die(const char *what, int err, struct tally_store *store)
{
	printf("error %s: %s (%s)\n", what, tally_strerror(err), tally_store_last_error(store));
	fflush(stdout);
	return 2;
}

static void pause_ms(int ms)
{
	struct timespec ts = { 0, (long)ms * 1000000 };

	nanosleep(&ts, NULL);
}

static int run_flushes(struct tally_store *store, int keys, long flushes)
{
	struct tally_store_delta *deltas = calloc((size_t)keys, sizeof(*deltas));
	char (*names)[16] = calloc((size_t)keys, sizeof(*names));
	struct tally_store_gauge live = { .key = "live", .key_len = 4, .value = 1 };
	struct tally_store_batch batch = { .counters = deltas, .counter_count = (size_t)keys,
					   .gauges = &live, .gauge_count = 1 };
	int err = TALLY_OK;

	if (!deltas || !names)
		return die("alloc", TALLY_ENOMEM, store);
	for (int i = 0; i < keys; i++) {
		snprintf(names[i], sizeof(names[i]), "k%d", i);
		deltas[i] = (struct tally_store_delta){ names[i], strlen(names[i]), 1 };
	}
	for (uint64_t seq = 1; !flushes || seq <= (uint64_t)flushes; seq++) {
		batch.seq = seq;
		while ((err = tally_store_flush(store, &batch, NULL)) != TALLY_OK &&
		       tally_store_err_transient(err))
			pause_ms(5); /* the same batch under the same seq, until it resolves */
		if (err)
			break;
		printf("acked %" PRIu64 "\n", seq);
		fflush(stdout);
	}
	free(deltas);
	free(names);
	if (!err)
		err = tally_store_writer_close(store);
	return err ? die("flush", err, store) : 0;
}

static int run_flush_mode(const char *url, const char *id, char **args)
{
	struct tally_store_options options = { .writer_id = id, .writer_ttl_ms = atoll(args[0]),
					       .create_schema = true };
	struct tally_store_epoch_info info;
	struct tally_store *store;
	int err = tally_store_open(&store, url, &options), status;

	if (err)
		return die("open", err, NULL);
	err = tally_store_writer_open(store, &info);
	if (err)
		return die("writer_open", err, store);
	printf("open %" PRIu64 " %" PRIu64 " %" PRIu64 " %d\n", info.epoch, info.prior_epoch,
	       info.prior_last_seq, info.prior_reaped ? 1 : 0);
	fflush(stdout);
	status = run_flushes(store, atoi(args[1]), atol(args[2]));
	tally_store_close(store);
	if (!status)
		printf("done\n");
	return status;
}

static int run_leases(struct tally_lease_provider *lease, const char *key, uint64_t block,
		      long leases)
{
	uint64_t base = 0, issued = 0;
	int err = TALLY_OK;

	for (long i = 0; i < leases; i++) {
		bool last = i == leases - 1;
		uint64_t use = last ? block / 2 : block;

		while ((err = tally_lease_acquire(lease, key, strlen(key), 0, block, issued,
						  &base)) != TALLY_OK &&
		       tally_store_err_transient(err))
			pause_ms(5);
		if (err)
			return err;
		for (uint64_t n = base + 1; n <= base + use; n++)
			printf("n %" PRIu64 "\n", n);
		fflush(stdout);
		issued = base + use;
		if (last)
			err = tally_lease_close(lease, key, strlen(key), base + block, base + use);
	}
	return err;
}

static int run_lease_mode(const char *url, const char *id, char **args)
{
	struct tally_store_options options = { .writer_id = id, .create_schema = true };
	struct tally_lease_provider *lease;
	struct tally_store *store;
	int err = tally_store_open(&store, url, &options);

	if (err)
		return die("open", err, NULL);
	err = tally_store_lease_provider(store, &lease);
	if (!err)
		err = run_leases(lease, args[0], strtoull(args[1], NULL, 10), atol(args[2]));
	if (err)
		return die("lease", err, store);
	tally_lease_provider_destroy(lease);
	tally_store_close(store);
	printf("done\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 7 && strcmp(argv[3], "flush") == 0)
		return run_flush_mode(argv[1], argv[2], argv + 4);
	if (argc == 7 && strcmp(argv[3], "lease") == 0)
		return run_lease_mode(argv[1], argv[2], argv + 4);
	fprintf(stderr, "usage: store_worker URL WRITER_ID flush TTL_MS KEYS FLUSHES\n"
			"       store_worker URL WRITER_ID lease KEY BLOCK LEASES\n");
	return 1;
}
