/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/listeners.h: one case for every backend's test (tests/store/sqlite.c,
 * postgres.c, dynamodb.c): after a writer's records are removed (reap, a new
 * epoch fencing the old one, writer_close), each session's stored listenerCount equals the
 * listener connections left in the store. The write-behind flusher may send a session whose
 * count includes a join whose connection record waits for the next batch; a writer that dies
 * in between left that join counted for good when the store only subtracted the rows it had.
 * Header-only; needs tap.h and records.h first.
 */
#ifndef TALLY_TESTS_STORE_LISTENERS_H
#define TALLY_TESTS_STORE_LISTENERS_H
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <tally/store.h>

struct listeners_find {
	const char *session_id;
	int64_t count; /* -1: not found */
};

static int listeners_find_session(const struct tally_session_info *s, const char *writer_id,
				  uint64_t epoch, void *arg)
{
	struct listeners_find *find = arg;

	(void)writer_id;
	(void)epoch;
	if (strcmp(s->session_id, find->session_id) == 0)
		find->count = s->listener_count;
	return 0;
}

/* The stored listenerCount of session_id; -1 if absent, -2 on a failed read. */
static int64_t listeners_stored(struct tally_store *store, const char *session_id)
{
	struct listeners_find find = { session_id, -1 };

	if (tally_store_sessions(store, NULL, listeners_find_session, &find))
		return -2;
	return find.count;
}

static int listeners_flush(struct tally_store *store, uint64_t seq,
			   const struct tally_store_record *records, size_t count)
{
	struct tally_store_batch batch = { .seq = seq, .records = records, .record_count = count };
	int err = TALLY_EUNAVAIL;

	/* the caller's rule: re-send the same batch under the same seq */
	for (int attempt = 0; attempt < 20 && tally_store_err_transient(err); attempt++)
		err = tally_store_flush(store, &batch, NULL);
	return err;
}

static void listeners_sleep_ms(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * w and w_again: two handles with the same writer id, lease ttl_ms; x: a handle of another
 * writer id with a long lease. No writer open on any of them; session and connection ids
 * start with prefix (unique in the store). expire_ms: how long after w's last flush a reap
 * finds it expired (ttl plus the backend's clock allowance).
 */
__attribute__((unused))
static void listeners_recount_case(const char *prefix, struct tally_store *w,
				   struct tally_store *w_again, struct tally_store *x,
				   int64_t expire_ms)
{
	char sw[64], sx[64], id[8][64];
	struct tally_store_record x_records[2], w_records[5], again[2];
	int64_t reaped = -1;

	snprintf(sw, sizeof(sw), "%s-sw", prefix);
	snprintf(sx, sizeof(sx), "%s-sx", prefix);
	for (int i = 0; i < 8; i++)
		snprintf(id[i], sizeof(id[i]), "%s-c%d", prefix, i);
	tap_eq(tally_store_writer_open(x, NULL), TALLY_OK, "recount: writer x opens");
	tap_eq(tally_store_writer_open(w, NULL), TALLY_OK, "recount: writer w opens");
	/* x's session sx: its own listener c0 and w's listener c1 */
	x_records[0] = session_put(sx, 2);
	x_records[1] = connection_put(id[0], sx, TALLY_ROLE_LISTENER, "fr");
	tap_eq(listeners_flush(x, 1, x_records, 2), TALLY_OK, "recount: x flushes sx (2 listeners)");
	/* w's session sw counts 3 listeners, but only c2 and c3 reached the store */
	w_records[0] = session_put(sw, 3);
	w_records[1] = connection_put(id[2], sw, TALLY_ROLE_LISTENER, "fr");
	w_records[2] = connection_put(id[3], sw, TALLY_ROLE_LISTENER, "de");
	w_records[3] = connection_put(id[4], sw, TALLY_ROLE_SPEAKER, "");
	w_records[4] = connection_put(id[1], sx, TALLY_ROLE_LISTENER, "de");
	tap_eq(listeners_flush(w, 1, w_records, 5), TALLY_OK,
	       "recount: w flushes sw with 3 listeners and 2 listener records");

	/* the reap */
	listeners_sleep_ms(expire_ms);
	tap_eq(tally_store_heartbeat(x), TALLY_OK, "recount: x stays live");
	tap_eq(tally_store_reap(x, &reaped), TALLY_OK, "recount: reap");
	tap_ok(reaped >= 1, "recount: w reaped");
	tap_eq(listeners_stored(x, sw), 0, "recount: reaped w's session counts 0 listeners");
	tap_eq(listeners_stored(x, sx), 1, "recount: x's session counts its 1 remaining listener");

	/* a new epoch fencing the old one */
	/* fenced already: the refusal leaves the handle writer-less */
	tap_eq(tally_store_writer_close(w), TALLY_EFENCED, "recount: reaped w is fenced");
	tap_eq(tally_store_writer_open(w, NULL), TALLY_OK, "recount: w opens a new epoch");
	again[0] = session_put(sw, 2);
	again[1] = connection_put(id[5], sw, TALLY_ROLE_LISTENER, "fr");
	tap_eq(listeners_flush(w, 1, again, 2), TALLY_OK, "recount: sw with 2, 1 listener record");
	tap_eq(tally_store_writer_open(w_again, NULL), TALLY_OK, "recount: another epoch of w opens");
	tap_eq(listeners_stored(x, sw), 0, "recount: fenced epoch's session counts 0 listeners");

	/* writer_close */
	again[1] = connection_put(id[6], sw, TALLY_ROLE_LISTENER, "de");
	tap_eq(listeners_flush(w_again, 1, again, 2), TALLY_OK, "recount: sw again 2 and 1 record");
	tap_eq(tally_store_writer_close(w_again), TALLY_OK, "recount: w closes");
	tap_eq(listeners_stored(x, sw), 0, "recount: closed writer's session counts 0 listeners");
	tap_eq(listeners_stored(x, sx), 1, "recount: x's session still counts 1");
	tap_eq(tally_store_writer_close(x), TALLY_OK, "recount: x closes");
}
#endif
