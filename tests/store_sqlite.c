/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store_sqlite.c: the store interface (tally/store.h) over the SQLite backend, on real
 * files in a temporary directory, with real threads and real processes (tests/store_worker,
 * started with fork + exec). No mock of SQLite anywhere: faults are made by the operating
 * system (permissions, RLIMIT_FSIZE, unlink) or by writing to the file from outside.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tally/store.h>

#include "tap.h"
#include "threads.h"

static char tmpdir[256];
static int file_counter;

/* A fresh database path in the test's directory. */
static void new_db(char *path, size_t size, char *url, size_t url_size, const char *options)
{
	snprintf(path, size, "%s/db%d.sqlite", tmpdir, ++file_counter);
	snprintf(url, url_size, "sqlite://%s%s", path, options ? options : "");
}

static struct tally_store *open_store(const char *url, const char *writer_id, int64_t ttl_ms)
{
	struct tally_store_options options = { .writer_id = writer_id, .writer_ttl_ms = ttl_ms,
					       .create_schema = true };
	struct tally_store *store = NULL;
	int err = tally_store_open(&store, url, &options);

	if (err)
		printf("# open %s: %s (%s)\n", url, tally_strerror(err), tally_store_last_error(NULL));
	return store;
}

static int64_t counter(struct tally_store *store, const char *key)
{
	int64_t total = -1;
	int err = tally_store_read_counter(store, key, strlen(key), &total);

	return err == TALLY_OK ? total : -1000 - err;
}

static int64_t gauge(struct tally_store *store, const char *key, int64_t *writers)
{
	int64_t value = -1;

	if (tally_store_read_gauge(store, key, strlen(key), &value, writers))
		return INT64_MIN;
	return value;
}

#define DELTA(k, d) { .key = (k), .key_len = sizeof(k) - 1, .delta = (d) }
#define GAUGE(k, v) { .key = (k), .key_len = sizeof(k) - 1, .value = (v) }

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* ---- basics: flush, re-send, seq rules, argument checks -------------------------------- */

static void test_basics(void)
{
	char path[512], url[600];
	struct tally_store *store;
	struct tally_store_epoch_info info;
	struct tally_store_flush_result result;
	struct tally_store_delta deltas[] = { DELTA("views", 5), DELTA("bytes", 1000) };
	struct tally_store_gauge gauges[] = { GAUGE("listeners", 7) };
	struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 2,
					   .gauges = gauges, .gauge_count = 1 };
	char id[TALLY_STORE_WRITER_ID_MAX + 1];
	uint64_t epoch = 0;
	int64_t writers = -1;

	new_db(path, sizeof(path), url, sizeof(url), NULL);
	store = open_store(url, "basic", 0);
	tap_ok(store != NULL, "basics: open creates the schema");
	if (!store)
		return;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_ESTATE, "flush before writer_open: ESTATE");
	tap_eq(tally_store_writer_open(store, &info), TALLY_OK, "writer_open");
	tap_eq(info.epoch, 1, "first epoch is 1");
	tap_eq(info.prior_epoch, 0, "no prior epoch");
	tap_eq(tally_store_writer_open(store, NULL), TALLY_ESTATE, "second writer_open: ESTATE");
	tap_eq(tally_store_writer_identity(store, id, &epoch), TALLY_OK, "identity");
	tap_ok(strcmp(id, "basic") == 0 && epoch == 1, "identity is basic/1");

	batch.seq = 0;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL, "seq 0: EINVAL");
	batch.seq = 2;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL, "seq beyond last + 1: EINVAL");
	tap_ok(strstr(tally_store_last_error(store), "seq") != NULL,
	       "the error text names the seq: %s", tally_store_last_error(store));
	tap_eq(tally_store_read_counter(store, "views", 5, &writers), TALLY_ENOTFOUND,
	       "nothing landed: ENOTFOUND");

	batch.seq = 1;
	tap_eq(tally_store_flush(store, &batch, &result), TALLY_OK, "flush seq 1");
	tap_ok(!result.already_applied && result.rows_written >= 4,
	       "applied, %" PRId64 " rows written", result.rows_written);
	tap_eq(counter(store, "views"), 5, "views = 5");
	tap_eq(counter(store, "bytes"), 1000, "bytes = 1000");
	tap_eq(gauge(store, "listeners", &writers), 7, "gauge = 7");
	tap_eq(writers, 1, "one live writer contributes");

	tap_eq(tally_store_flush(store, &batch, &result), TALLY_OK, "re-send seq 1");
	tap_ok(result.already_applied, "re-send: already_applied");
	tap_eq(counter(store, "views"), 5, "re-send doubled nothing");

	deltas[0].delta = 1;
	gauges[0].value = 3;
	batch.seq = 2;
	batch.counter_count = 1;
	tap_eq(tally_store_flush(store, &batch, &result), TALLY_OK, "flush seq 2");
	tap_eq(counter(store, "views"), 6, "views = 6");
	tap_eq(gauge(store, "listeners", NULL), 3, "a gauge flush sets the writer's value");
	batch.seq = 1;
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_EINVAL,
	       "seq below the last acknowledged: EINVAL");

	tap_eq(tally_store_writer_close(store), TALLY_OK, "writer_close");
	tap_eq(gauge(store, "listeners", &writers), 0, "closed writer's gauge is gone");
	tap_eq(writers, 0, "no live writers");
	tap_eq(counter(store, "views"), 6, "closed writer's counters stay");
	tap_eq(tally_store_writer_identity(store, id, &epoch), TALLY_ESTATE,
	       "no identity after close");
	tap_eq(tally_store_close(store), TALLY_OK, "close");
}

int main(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/tally-store-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_basics();
	{
		char cmd[300];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
	return tap_done();
}
