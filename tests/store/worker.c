/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/worker.c: one writer process for tests/store/sqlite and tests/store/tool.sh
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
 *   store_worker URL WRITER_ID series TENANT strict|cached COUNT
 *       a tally_sequence series ("{counter}", lease size 20) over the store's lease
 *       provider; COUNT numbers issued by 2 threads, each printed ("n NUMBER") once
 *       tally_sequence_next returned it; then the series is removed (clean close), "done".
 *   store_worker URL WRITER_ID records SESSION LISTENERS TTL_MS
 *       one flush: session SESSION, a speaker connection "SESSION-speaker" and LISTENERS
 *       listener connections "SESSION-l<i>" (languages cycling fr, de, ja); no close.
 * Exit status 0, or 2 with "error ..." on stdout.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tally/sequence.h>
#include <tally/store.h>

#include "records.h"

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

/* tally_store_open, retried while its error is transient, as store.h asks of a caller: a
 * process opening a file that others flush into every few ms can wait past the busy
 * timeout for SQLite's write lock (the lock is not fair; TSan makes every holder slower)
 * and get EBUSY. At most 10 attempts, 100 ms apart. */
static int open_store_retrying(struct tally_store **store, const char *url,
			       const struct tally_store_options *options)
{
	int err = tally_store_open(store, url, options);

	for (int attempt = 1; err && tally_store_err_transient(err) && attempt < 10; attempt++) {
		pause_ms(100);
		err = tally_store_open(store, url, options);
	}
	return err;
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
	int err = open_store_retrying(&store, url, &options), status;

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
	int err = open_store_retrying(&store, url, &options);

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

struct series_run {
	struct tally_sequence *seq;
	const char *tenant;
	long count;
	pthread_mutex_t *print_lock;
	int err;
};

static void *issue_numbers(void *arg)
{
	struct series_run *run = arg;

	for (long i = 0; i < run->count && !run->err; i++) {
		struct tally_seq_number number;

		run->err = tally_sequence_next(run->seq, run->tenant, "inv", &number);
		if (run->err)
			break;
		pthread_mutex_lock(run->print_lock);
		printf("n %" PRIu64 "\n", number.counter);
		fflush(stdout);
		pthread_mutex_unlock(run->print_lock);
	}
	return NULL;
}

static int run_series_mode(const char *url, const char *id, char **args)
{
	struct tally_store_options options = { .writer_id = id, .create_schema = true };
	struct tally_series_config config = {
		.format = "{counter}", .lease_size = 20,
		.mode = strcmp(args[1], "cached") == 0 ? TALLY_SEQ_CACHED : TALLY_SEQ_STRICT,
	};
	pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
	struct series_run runs[2];
	pthread_t threads[2];
	struct tally_sequence *seq = NULL;
	struct tally_store *store;
	int err = open_store_retrying(&store, url, &options);

	if (err)
		return die("open", err, NULL);
	err = tally_store_lease_provider(store, &config.lease);
	if (!err)
		err = tally_sequence_create(&seq, NULL);
	if (!err)
		err = tally_sequence_series_create(seq, args[0], "inv", &config, NULL);
	if (err)
		return die("series", err, store);
	for (int i = 0; i < 2; i++) {
		runs[i] = (struct series_run){ seq, args[0], atol(args[2]) / 2, &print_lock, 0 };
		pthread_create(&threads[i], NULL, issue_numbers, &runs[i]);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(threads[i], NULL);
		err = err ? err : runs[i].err;
	}
	if (!err)
		err = tally_sequence_destroy(seq);
	if (err)
		return die("series", err, store);
	tally_lease_provider_destroy(config.lease);
	tally_store_close(store);
	printf("done\n");
	return 0;
}

static int run_records_mode(const char *url, const char *id, char **args)
{
	static const char *const languages[] = { "fr", "de", "ja" };
	struct tally_store_options options = { .writer_id = id, .writer_ttl_ms = atoll(args[2]),
					       .create_schema = true };
	int listeners = atoi(args[1]);
	struct tally_store_record *records = calloc((size_t)listeners + 2, sizeof(*records));
	struct tally_store_batch batch = { .seq = 1, .records = records,
					   .record_count = (size_t)listeners + 2 };
	struct tally_session_info *session = &records[0].as.session;
	struct tally_store *store;
	char name[TALLY_SESSION_ID_MAX + 1];
	int err = records ? open_store_retrying(&store, url, &options) : TALLY_ENOMEM;

	if (err)
		return die("open", err, NULL);
	records[0].kind = TALLY_STORE_SESSION;
	records[0].op = TALLY_STORE_PUT;
	snprintf(session->session_id, sizeof(session->session_id), "%s", args[0]);
	snprintf(session->speaker_connection_id, sizeof(session->speaker_connection_id),
		 "%.100s-speaker", args[0]);
	strcpy(session->speaker_user_id, "user-1");
	strcpy(session->source_language, "en");
	strcpy(session->quality_tier, "standard");
	session->created_at_ms = 1700000000000;
	session->listener_count = listeners;
	session->active = 1;
	records[1] = connection_put(session->speaker_connection_id, args[0], TALLY_ROLE_SPEAKER,
				    "");
	for (int i = 0; i < listeners; i++) {
		snprintf(name, sizeof(name), "%.100s-l%d", args[0], i);
		records[i + 2] = connection_put(name, args[0], TALLY_ROLE_LISTENER, languages[i % 3]);
	}
	err = tally_store_writer_open(store, NULL);
	if (!err)
		err = tally_store_flush(store, &batch, NULL);
	if (err)
		return die("records", err, store);
	free(records);
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
	if (argc == 7 && strcmp(argv[3], "series") == 0)
		return run_series_mode(argv[1], argv[2], argv + 4);
	if (argc == 7 && strcmp(argv[3], "records") == 0)
		return run_records_mode(argv[1], argv[2], argv + 4);
	fprintf(stderr, "usage: store_worker URL WRITER_ID flush TTL_MS KEYS FLUSHES\n"
			"       store_worker URL WRITER_ID lease KEY BLOCK LEASES\n"
			"       store_worker URL WRITER_ID series TENANT strict|cached COUNT\n"
			"       store_worker URL WRITER_ID records SESSION LISTENERS TTL_MS\n");
	return 1;
}
