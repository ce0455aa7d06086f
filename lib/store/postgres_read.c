/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/postgres_read.c: the PostgreSQL backend's reads. Each is one statement under
 * the call loop (retried after a lost connection: a read has no effect). Visitors get the
 * rows after the connection went back to the pool, so a visitor may call the store.
 */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_internal.h"


int tally__pg_read_counter(void *impl, const char *key, size_t key_len, int64_t *total)
{
	const char *values[1] = { key };
	int lengths[1] = { (int)key_len }, formats[1] = { 1 };
	PGresult *result;
	int err = tally__pg_query(impl, "tally_read_counter", 1, values, lengths, formats,
				  &result);

	if (!err && PQntuples(result) != 1)
		err = TALLY_ENOTFOUND;
	else if (!err)
		*total = tally__pg_int8(result, 0, 0);
	PQclear(result);
	return err;
}

int tally__pg_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			 int64_t *live_writers)
{
	const char *values[1] = { key };
	int lengths[1] = { (int)key_len }, formats[1] = { 1 };
	PGresult *result;
	int err = tally__pg_query(impl, "tally_read_gauge", 1, values, lengths, formats, &result);

	if (!err) {
		*value = tally__pg_int8(result, 0, 0);
		if (live_writers)
			*live_writers = tally__pg_int8(result, 0, 1);
	}
	PQclear(result);
	return err;
}

int tally__pg_counters(void *impl, tally_store_counter_fn fn, void *arg)
{
	char key[TALLY_STORE_KEY_MAX];
	PGresult *result;
	int err = tally__pg_query(impl, "tally_counters", 0, NULL, NULL, NULL, &result);

	for (int row = 0; !err && row < PQntuples(result); row++) {
		long len = tally__pg_bytea_decode(PQgetvalue(result, row, 0), key, sizeof(key));

		if (len < 1) {
			err = TALLY_ECORRUPT;
			break;
		}
		if (fn(key, (size_t)len, tally__pg_int8(result, row, 1), arg))
			break;
	}
	PQclear(result);
	return err;
}

static void copy_field(char *out, size_t size, const PGresult *result, int row, int column)
{
	snprintf(out, size, "%s", PQgetvalue(result, row, column));
}

int tally__pg_writers(void *impl, tally_store_writer_fn fn, void *arg)
{
	PGresult *result;
	int err = tally__pg_query(impl, "tally_writers", 0, NULL, NULL, NULL, &result);

	for (int row = 0; !err && row < PQntuples(result); row++) {
		struct tally_store_writer_info info = { 0 };

		copy_field(info.writer_id, sizeof(info.writer_id), result, row, 0);
		info.epoch = (uint64_t)tally__pg_int8(result, row, 1);
		info.last_seq = (uint64_t)tally__pg_int8(result, row, 2);
		info.expires_at_ms = tally__pg_int8(result, row, 3);
		info.store_now_ms = tally__pg_int8(result, row, 4);
		info.reaped = PQgetvalue(result, row, 5)[0] == 't';
		info.live = !info.reaped && info.expires_at_ms > info.store_now_ms;
		if (fn(&info, arg))
			break;
	}
	PQclear(result);
	return err;
}

int tally__pg_sessions(void *impl, const char *writer_id, tally_store_session_fn fn,
		       void *arg)
{
	const char *values[1] = { writer_id };
	PGresult *result;
	int err = tally__pg_query(impl, "tally_sessions", 1, values, NULL, NULL, &result);

	for (int row = 0; !err && row < PQntuples(result); row++) {
		struct tally_session_info s = { 0 };

		copy_field(s.session_id, sizeof(s.session_id), result, row, 0);
		copy_field(s.speaker_connection_id, sizeof(s.speaker_connection_id), result, row, 1);
		copy_field(s.speaker_user_id, sizeof(s.speaker_user_id), result, row, 2);
		copy_field(s.source_language, sizeof(s.source_language), result, row, 3);
		copy_field(s.quality_tier, sizeof(s.quality_tier), result, row, 4);
		s.created_at_ms = tally__pg_int8(result, row, 5);
		s.expires_at_ms = tally__pg_int8(result, row, 6);
		s.listener_count = tally__pg_int8(result, row, 7);
		s.active = PQgetvalue(result, row, 8)[0] == 't';
		if (fn(&s, PQgetvalue(result, row, 9), (uint64_t)tally__pg_int8(result, row, 10),
		       arg))
			break;
	}
	PQclear(result);
	return err;
}

int tally__pg_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			  void *arg)
{
	const char *values[1] = { session_id };
	PGresult *result;
	int err = tally__pg_query(impl, "tally_connections", 1, values, NULL, NULL, &result);

	for (int row = 0; !err && row < PQntuples(result); row++) {
		struct tally_connection_info c = { 0 };

		copy_field(c.connection_id, sizeof(c.connection_id), result, row, 0);
		copy_field(c.session_id, sizeof(c.session_id), result, row, 1);
		copy_field(c.target_language, sizeof(c.target_language), result, row, 2);
		copy_field(c.client_address, sizeof(c.client_address), result, row, 3);
		c.role = (int)tally__pg_int8(result, row, 4);
		c.connected_at_ms = tally__pg_int8(result, row, 5);
		c.expires_at_ms = tally__pg_int8(result, row, 6);
		if (fn(&c, PQgetvalue(result, row, 7), (uint64_t)tally__pg_int8(result, row, 8), arg))
			break;
	}
	PQclear(result);
	return err;
}
