/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/postgres_writer.c: the PostgreSQL backend's writes: writer registration and
 * fencing, heartbeats, flushes (exactly once per writer id, epoch and seq), reaping, and
 * the conditional take. docs/store-postgres.md walks through the exactly-once argument.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "postgres_internal.h"

#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT4 23
#define OID_TEXT 25
#define TOKEN_BYTES 16



/* A one-element text[] for the drop statements. */
static int one_text_array(struct pg_array *array, const char *text)
{
	tally__pg_array_begin(array, OID_TEXT);
	tally__pg_array_add(array, text, strlen(text));
	return tally__pg_array_finish(array);
}

static PGresult *exec_with_array(struct pg_call *call, const char *name,
				 const struct pg_array *array, int *err)
{
	const char *values[1] = { array->data };
	int lengths[1] = { (int)array->len }, formats[1] = { 1 };

	return tally__pg_exec(call, name, 1, values, lengths, formats, err);
}

/* Removes the gauge contributions and connection records of the writers in `ids`, inside
 * the caller's transaction, and sets the listener_count of each session they wrote or had
 * a listener in to the listener connections that remain. */
static int drop_contributions(struct pg_call *call, const struct pg_array *ids)
{
	static const char *const steps[] = {
		"tally_drop_gauges", "tally_recount_listeners", "tally_drop_connections",
	};
	int err = TALLY_OK;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && !err; i++) {
		PGresult *result = exec_with_array(call, steps[i], ids, &err);

		PQclear(result);
	}
	return err;
}


/* ---- writer_open ------------------------------------------------------------------------- */

struct open_arg {
	const char *writer_id;
	int64_t ttl_ms;
	char token[TOKEN_BYTES]; /* names this registration, to find it after a lost reply */
	struct pg_array ids;
	struct tally_store_epoch_info info;
};

static void epoch_info_from(const PGresult *result, struct tally_store_epoch_info *info)
{
	info->epoch = (uint64_t)tally__pg_int8(result, 0, 0);
	info->prior_epoch = (uint64_t)tally__pg_int8(result, 0, 1);
	info->prior_last_seq = (uint64_t)tally__pg_int8(result, 0, 2);
	info->prior_reaped = info->prior_epoch && PQgetvalue(result, 0, 3)[0] == 't';
}

/* After a lost reply: did our registration commit? Its token says so. */
static int find_registration(struct pg_call *call, struct open_arg *open, bool *found)
{
	const char *values[2] = { open->writer_id, open->token };
	int lengths[2] = { 0, TOKEN_BYTES }, formats[2] = { 0, 1 }, err = TALLY_OK;
	PGresult *result = tally__pg_exec(call, "tally_writer_token", 2, values, lengths,
					  formats, &err);

	*found = result && PQntuples(result) == 1;
	if (*found)
		epoch_info_from(result, &open->info);
	PQclear(result);
	return err;
}

static int writer_open_body(struct pg_call *call, void *arg)
{
	struct open_arg *open = arg;
	struct pg_number ttl;
	const char *values[3] = { open->writer_id, tally__pg_i64_text(&ttl, open->ttl_ms), open->token };
	int lengths[3] = { 0, 0, TOKEN_BYTES }, formats[3] = { 0, 0, 1 };
	PGresult *result;
	bool found;
	int err;

	if (call->after_ambiguous) {
		err = find_registration(call, open, &found);
		if (err || found)
			return err;
	}
	err = tally__pg_command(call, "BEGIN");
	if (err)
		return err;
	result = tally__pg_exec(call, "tally_writer_open", 3, values, lengths, formats, &err);
	if (!result)
		return tally__pg_rollback_with(call, err);
	epoch_info_from(result, &open->info);
	PQclear(result);
	err = drop_contributions(call, &open->ids);
	if (err)
		return tally__pg_rollback_with(call, err);
	return tally__pg_command(call, "COMMIT");
}

int tally__pg_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			  struct tally_store_epoch_info *info)
{
	struct open_arg open = { .writer_id = writer_id, .ttl_ms = ttl_ms };
	int err;

	for (size_t i = 0; i < sizeof(open.token); i += sizeof(uint64_t)) {
		uint64_t bits = tally__store_random64();

		memcpy(open.token + i, &bits, sizeof(bits));
	}
	if (one_text_array(&open.ids, writer_id)) {
		tally__pg_array_free(&open.ids);
		return TALLY_ENOMEM;
	}
	err = tally__pg_run(impl, writer_open_body, &open);
	tally__pg_array_free(&open.ids);
	if (!err && info)
		*info = open.info;
	return err;
}

/* ---- heartbeat and writer_close ---------------------------------------------------------- */

int tally__pg_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms)
{
	struct pg_number epoch_text, ttl;
	const char *values[3] = { writer_id, tally__pg_u64_text(&epoch_text, epoch),
				  tally__pg_i64_text(&ttl, ttl_ms) };
	PGresult *result;
	int err = tally__pg_query(impl, "tally_heartbeat", 3, values, NULL, NULL, &result);

	if (!err && PQntuples(result) != 1) {
		tally__pg_set_error(impl, "writer fenced: a newer epoch exists or it was reaped");
		err = TALLY_EFENCED;
	}
	PQclear(result);
	return err;
}

/* The writer's row as it is now: epoch, last_seq, reaped. false if the id has no row. */
static bool read_writer_state(struct pg_call *call, const char *writer_id, uint64_t *epoch,
			      uint64_t *last_seq, bool *reaped, int *err)
{
	const char *values[1] = { writer_id };
	PGresult *result = tally__pg_exec(call, "tally_writer_state", 1, values, NULL, NULL, err);
	bool found = result && PQntuples(result) == 1;

	if (found) {
		*epoch = (uint64_t)tally__pg_int8(result, 0, 0);
		*last_seq = (uint64_t)tally__pg_int8(result, 0, 1);
		*reaped = PQgetvalue(result, 0, 2)[0] == 't';
	}
	PQclear(result);
	return found;
}

struct close_arg {
	const char *writer_id;
	uint64_t epoch;
	struct pg_array ids;
};

static int writer_close_body(struct pg_call *call, void *arg)
{
	struct close_arg *close = arg;
	struct pg_number epoch_text;
	const char *values[2] = { close->writer_id, tally__pg_u64_text(&epoch_text, close->epoch) };
	uint64_t epoch = 0, last_seq;
	bool reaped = false;
	PGresult *result;
	int err = tally__pg_command(call, "BEGIN");

	if (err)
		return err;
	result = tally__pg_exec(call, "tally_writer_close", 2, values, NULL, NULL, &err);
	if (!result)
		return tally__pg_rollback_with(call, err);
	if (PQntuples(result) != 1) {
		PQclear(result);
		/* A retry after our own close landed finds the epoch ended: that is success. */
		if (call->after_ambiguous &&
		    read_writer_state(call, close->writer_id, &epoch, &last_seq, &reaped, &err) &&
		    epoch == close->epoch && reaped)
			return tally__pg_rollback_with(call, TALLY_OK);
		tally__pg_set_error(call->store, "writer fenced: a newer epoch exists or it was reaped");
		return tally__pg_rollback_with(call, err ? err : TALLY_EFENCED);
	}
	PQclear(result);
	err = drop_contributions(call, &close->ids);
	if (err)
		return tally__pg_rollback_with(call, err);
	return tally__pg_command(call, "COMMIT");
}

int tally__pg_writer_close(void *impl, const char *writer_id, uint64_t epoch)
{
	struct close_arg close = { .writer_id = writer_id, .epoch = epoch };
	int err;

	if (one_text_array(&close.ids, writer_id)) {
		tally__pg_array_free(&close.ids);
		return TALLY_ENOMEM;
	}
	err = tally__pg_run(impl, writer_close_body, &close);
	tally__pg_array_free(&close.ids);
	return err;
}

/* ---- reap -------------------------------------------------------------------------------- */

static int reap_body(struct pg_call *call, void *arg)
{
	int64_t *reaped = arg;
	struct pg_array ids;
	PGresult *result;
	int err = tally__pg_command(call, "BEGIN");

	if (err)
		return err;
	result = tally__pg_exec(call, "tally_reap", 0, NULL, NULL, NULL, &err);
	if (!result)
		return tally__pg_rollback_with(call, err);
	tally__pg_array_begin(&ids, OID_TEXT);
	for (int row = 0; row < PQntuples(result); row++)
		tally__pg_array_add(&ids, PQgetvalue(result, row, 0),
				    (size_t)PQgetlength(result, row, 0));
	*reaped = PQntuples(result);
	PQclear(result);
	if (tally__pg_array_finish(&ids))
		err = TALLY_ENOMEM;
	else if (*reaped)
		err = drop_contributions(call, &ids);
	tally__pg_array_free(&ids);
	if (err)
		return tally__pg_rollback_with(call, err);
	return tally__pg_command(call, "COMMIT");
}

int tally__pg_reap(void *impl, int64_t *reaped)
{
	int64_t count = 0;
	int err = tally__pg_run(impl, reap_body, &count);

	if (!err && reaped)
		*reaped = count;
	return err;
}

/* ---- flush ------------------------------------------------------------------------------- */

enum { FLUSH_PARAMS = 26, FLUSH_ARRAYS = 22 };

struct flush_arg {
	const char *writer_id;
	uint64_t epoch;
	int64_t ttl_ms;
	uint64_t seq;
	struct pg_array arrays[FLUSH_ARRAYS];
	struct tally_store_flush_result result;
};

/* Column arrays in parameter order $5..$26. */
enum {
	A_COUNTER_KEY, A_COUNTER_DELTA, A_GAUGE_KEY, A_GAUGE_VALUE,
	A_S_ID, A_S_SPEAKER_CONNECTION, A_S_SPEAKER_USER, A_S_LANGUAGE, A_S_TIER,
	A_S_CREATED, A_S_EXPIRES, A_S_LISTENERS, A_S_ACTIVE, A_S_DELETE,
	A_C_ID, A_C_SESSION, A_C_LANGUAGE, A_C_ADDRESS, A_C_ROLE, A_C_CONNECTED, A_C_EXPIRES,
	A_C_DELETE,
};

static const uint32_t array_oids[FLUSH_ARRAYS] = {
	OID_BYTEA, OID_INT8, OID_BYTEA, OID_INT8,
	OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_INT8, OID_INT8, OID_BOOL,
	OID_TEXT,
	OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT, OID_INT4, OID_INT8, OID_INT8, OID_TEXT,
};

static void add_text(struct pg_array *array, const char *text)
{
	tally__pg_array_add(array, text, strlen(text));
}

static void add_session(struct pg_array *a, const struct tally_store_record *record)
{
	const struct tally_session_info *s = &record->as.session;

	if (record->op == TALLY_STORE_DELETE) {
		add_text(&a[A_S_DELETE], s->session_id);
		return;
	}
	add_text(&a[A_S_ID], s->session_id);
	add_text(&a[A_S_SPEAKER_CONNECTION], s->speaker_connection_id);
	add_text(&a[A_S_SPEAKER_USER], s->speaker_user_id);
	add_text(&a[A_S_LANGUAGE], s->source_language);
	add_text(&a[A_S_TIER], s->quality_tier);
	tally__pg_array_add_int8(&a[A_S_CREATED], s->created_at_ms);
	tally__pg_array_add_int8(&a[A_S_EXPIRES], s->expires_at_ms);
	tally__pg_array_add_int8(&a[A_S_LISTENERS], s->listener_count);
	tally__pg_array_add_bool(&a[A_S_ACTIVE], s->active != 0);
}

static void add_connection(struct pg_array *a, const struct tally_store_record *record)
{
	const struct tally_connection_info *c = &record->as.connection;

	if (record->op == TALLY_STORE_DELETE) {
		add_text(&a[A_C_DELETE], c->connection_id);
		return;
	}
	add_text(&a[A_C_ID], c->connection_id);
	add_text(&a[A_C_SESSION], c->session_id);
	add_text(&a[A_C_LANGUAGE], c->target_language);
	add_text(&a[A_C_ADDRESS], c->client_address);
	tally__pg_array_add_int4(&a[A_C_ROLE], c->role);
	tally__pg_array_add_int8(&a[A_C_CONNECTED], c->connected_at_ms);
	tally__pg_array_add_int8(&a[A_C_EXPIRES], c->expires_at_ms);
}

static int build_flush_arrays(struct pg_array *a, const struct tally_store_batch *batch)
{
	int failed = 0;

	for (int i = 0; i < FLUSH_ARRAYS; i++)
		tally__pg_array_begin(&a[i], array_oids[i]);
	for (size_t i = 0; i < batch->counter_count; i++) {
		tally__pg_array_add(&a[A_COUNTER_KEY], batch->counters[i].key,
				    batch->counters[i].key_len);
		tally__pg_array_add_int8(&a[A_COUNTER_DELTA], batch->counters[i].delta);
	}
	for (size_t i = 0; i < batch->gauge_count; i++) {
		tally__pg_array_add(&a[A_GAUGE_KEY], batch->gauges[i].key, batch->gauges[i].key_len);
		tally__pg_array_add_int8(&a[A_GAUGE_VALUE], batch->gauges[i].value);
	}
	for (size_t i = 0; i < batch->record_count; i++) {
		const struct tally_store_record *record = &batch->records[i];

		if (record->kind == TALLY_STORE_SESSION)
			add_session(a, record);
		else if (record->kind == TALLY_STORE_CONNECTION)
			add_connection(a, record);
		else
			return TALLY_EINVAL;
	}
	for (int i = 0; i < FLUSH_ARRAYS; i++)
		failed |= tally__pg_array_finish(&a[i]);
	return failed ? TALLY_ENOMEM : TALLY_OK;
}

/* The guard did not match: tell an applied seq from a fenced epoch from a bad seq. */
static int classify_unmatched_flush(struct pg_call *call, struct flush_arg *flush)
{
	uint64_t epoch = 0, last_seq = 0;
	bool reaped = false;
	int err = TALLY_OK;

	if (!read_writer_state(call, flush->writer_id, &epoch, &last_seq, &reaped, &err)) {
		if (err)
			return err;
	} else if (epoch == flush->epoch && last_seq >= flush->seq) {
		/* Applied earlier: by a previous call, or by this call's attempt whose reply
		 * was lost. Either way its effects are in, once. */
		flush->result.already_applied = true;
		return TALLY_OK;
	} else if (epoch == flush->epoch && !reaped) {
		if (last_seq + 1 == flush->seq) {
			call->retry = true; /* the row moved between the two statements */
			return TALLY_EUNAVAIL;
		}
		tally__pg_set_errorf(call->store, "flush seq %" PRIu64 " does not follow the last"
				     " applied seq %" PRIu64, flush->seq, last_seq);
		return TALLY_EINVAL;
	}
	tally__pg_set_error(call->store, "writer fenced: a newer epoch exists or it was reaped");
	return TALLY_EFENCED;
}

static int flush_body(struct pg_call *call, void *arg)
{
	struct flush_arg *flush = arg;
	struct pg_number epoch, seq, ttl;
	const char *values[FLUSH_PARAMS] = { flush->writer_id, tally__pg_u64_text(&epoch, flush->epoch),
					     tally__pg_u64_text(&seq, flush->seq),
					     tally__pg_i64_text(&ttl, flush->ttl_ms) };
	int lengths[FLUSH_PARAMS] = { 0 }, formats[FLUSH_PARAMS] = { 0 };
	PGresult *result;
	int err = TALLY_OK;

	for (int i = 0; i < FLUSH_ARRAYS; i++) {
		values[4 + i] = flush->arrays[i].data;
		lengths[4 + i] = (int)flush->arrays[i].len;
		formats[4 + i] = 1;
	}
	flush->result.store_calls++;
	result = tally__pg_exec(call, "tally_flush", FLUSH_PARAMS, values, lengths, formats, &err);
	if (!result)
		return err;
	if (tally__pg_int8(result, 0, 0) == 1) {
		flush->result.rows_written = tally__pg_int8(result, 0, 1);
		PQclear(result);
		return TALLY_OK;
	}
	PQclear(result);
	flush->result.store_calls++;
	return classify_unmatched_flush(call, flush);
}

int tally__pg_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
		    const struct tally_store_batch *batch, struct tally_store_flush_result *result)
{
	struct flush_arg flush = { .writer_id = writer_id, .epoch = epoch, .ttl_ms = ttl_ms,
				   .seq = batch->seq };
	int err = build_flush_arrays(flush.arrays, batch);

	if (!err)
		err = tally__pg_run(impl, flush_body, &flush);
	for (int i = 0; i < FLUSH_ARRAYS; i++)
		tally__pg_array_free(&flush.arrays[i]);
	if (!err && result)
		*result = flush.result;
	return err;
}

/* ---- take and give ----------------------------------------------------------------------- */

struct take_arg {
	const char *name;
	const char *key;
	size_t key_len;
	int64_t n;
	int64_t value;
};

static int take_body(struct pg_call *call, void *arg)
{
	struct take_arg *take = arg;
	struct pg_number n;
	const char *values[2] = { take->key, tally__pg_i64_text(&n, take->n) };
	int lengths[2] = { (int)take->key_len, 0 }, formats[2] = { 1, 0 };
	PGresult *result;
	int err = TALLY_OK;

	if (call->after_ambiguous) {
		/* Not idempotent: the escrow layer above resolves an unknown outcome. */
		call->retry = false;
		tally__pg_set_error(call->store, "the connection was lost: the take may or may"
						 " not have happened");
		return TALLY_EUNAVAIL;
	}
	result = tally__pg_exec(call, take->name, 2, values, lengths, formats, &err);
	if (!result)
		return err;
	if (PQntuples(result) == 1)
		take->value = tally__pg_int8(result, 0, 0);
	else
		err = TALLY_EFLOOR;
	PQclear(result);
	return err;
}

static int take_or_give(void *impl, const char *name, const char *key, size_t key_len,
			int64_t n, int64_t *value)
{
	struct take_arg take = { name, key, key_len, n, 0 };
	int err = tally__pg_run(impl, take_body, &take);

	if (!err && value)
		*value = take.value;
	return err;
}

int tally__pg_take(void *impl, const char *key, size_t key_len, int64_t n, int64_t *remaining)
{
	return take_or_give(impl, "tally_take", key, key_len, n, remaining);
}

int tally__pg_give(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total)
{
	return take_or_give(impl, "tally_give", key, key_len, n, total);
}
