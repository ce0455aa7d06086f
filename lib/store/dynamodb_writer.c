/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_writer.c: writers, exactly-once flushes and reaping on DynamoDB
 * without transactions (docs/store-dynamodb.md has the whole argument).
 *
 * Each writer id owns a small number, its slot, and one writer item {id, part 0}: epoch,
 * last_seq, pending (the flush in progress), expires (the lease, on the writer's clock).
 *
 * A flush of seq S under epoch E, flush number F = pack(E, S):
 *  1. intent: the counter deltas are written to intent items {id, E*10^6 + c} (only the
 *     flush in progress of an epoch has them; they are what lets another process finish a
 *     half-applied flush);
 *  2. claim: UpdateItem on the writer item sets pending = S and renews the lease, if the
 *     epoch is still E, not reaped, and last_seq >= S - 1 (fencing: a superseded or reaped
 *     writer stops here);
 *  3. apply: one UpdateItem per counter, "ADD v :d SET w<slot> = :F" if w<slot> is absent
 *     or < F, and one per gauge "SET v, f = :F" if f < F, all in flight at once; a
 *     conditional-check failure is read back (ConsistentRead): w<slot> = F means this flush
 *     already landed there, > F means a newer epoch wrote it (fenced);
 *  4. commit: last_seq = S on the writer item.
 * Whoever supersedes or reaps epoch E while a flush S is pending (pending > last_seq) first
 * *rolls it forward*: re-applies the intent's deltas under F (each one lands at most once,
 * by the same condition), then switches the epoch (or marks it reaped) on the condition
 * that pending and last_seq did not move. After the switch every request still in flight
 * from E is refused by its condition: counters already hold F, gauges are tombstoned
 * (f = pack(E, SEQ_MAX)), the claim step refuses E. So a flush is applied entirely or not
 * at all, and prior_last_seq tells the new epoch which.
 */
#include "config.h"

#include "store/dynamodb_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


uint64_t tally__ddb_get_u64(json_t *item, const char *name)
{
	int64_t v = 0;
	tally__ddb_get_num(item, name, &v, NULL);
	return v > 0 ? (uint64_t)v : 0;
}

void tally__ddb_parse_writer(json_t *item, struct tally__ddb_writer_state *w)
{
	memset(w, 0, sizeof(*w));
	if (!item)
		return;
	w->present = true;
	w->slot = tally__ddb_get_u64(item, "slot");
	w->epoch = tally__ddb_get_u64(item, "epoch");
	w->last_seq = tally__ddb_get_u64(item, "last_seq");
	w->pending = tally__ddb_get_u64(item, "pending");
	w->pending_chunks = tally__ddb_get_u64(item, "pending_chunks");
	w->cl_epoch = tally__ddb_get_u64(item, "cl_epoch");
	w->expires_ms = (int64_t)tally__ddb_get_u64(item, "expires");
	w->reaped_ms = (int64_t)tally__ddb_get_u64(item, "reaped");
	w->attrs_done = json_object_get(item, "attrs_done") != NULL;
	w->closed = json_object_get(item, "closed") != NULL;
}

int tally__ddb_read_writer(struct tally__ddb_store *store, const char *id, struct tally__ddb_writer_state *w)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS), *reply = NULL;
	json_object_set_new(body, "Key", tally__ddb_writer_key(id));
	json_object_set_new(body, "ConsistentRead", json_true());
	int rc = tally__ddb_request(store, "GetItem", body, &reply);
	if (rc == TALLY_OK)
		tally__ddb_parse_writer(json_object_get(reply, "Item"), w);
	json_decref(reply);
	return rc;
}

/* An UpdateItem on the writer item; CONDITION comes back as TALLY__DDB_CONDITION_ERR. */
int tally__ddb_update_writer(struct tally__ddb_store *store, const char *id, const char *update,
			 const char *condition, json_t *values, json_t **attributes)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS), *reply = NULL;
	json_object_set_new(body, "Key", tally__ddb_writer_key(id));
	json_object_set_new(body, "UpdateExpression", json_string(update));
	if (condition)
		json_object_set_new(body, "ConditionExpression", json_string(condition));
	if (values && json_object_size(values))
		json_object_set_new(body, "ExpressionAttributeValues", values);
	else
		json_decref(values);
	if (attributes)
		json_object_set_new(body, "ReturnValues", json_string("ALL_NEW"));
	int rc = tally__ddb_request(store, "UpdateItem", body, attributes ? &reply : NULL);
	if (attributes) {
		*attributes = json_incref(json_object_get(reply, "Attributes"));
		json_decref(reply);
	}
	return rc;
}

int tally__ddb_transition(struct tally__ddb_store *store, const char *id, const char *update,
			  const char *condition, json_t *values)
{
	/* The update also writes a random token: if the answer is lost and the re-sent
	 * request (ours, or libcurl's own) fails the condition because the first one landed,
	 * the token read back says so. */
	char digits[24], expression[512];
	snprintf(digits, sizeof(digits), "%" PRIu64, tally__store_random64() >> 2);
	const char *remove = strstr(update, " REMOVE ");
	int head = remove ? (int)(remove - update) : (int)strlen(update);
	if ((size_t)snprintf(expression, sizeof(expression), "%.*s, op = :op%s", head, update,
			     remove ? remove : "") >= sizeof(expression)) {
		json_decref(values);
		return TALLY_EINVAL;
	}
	json_object_set_new(values, ":op", tally__ddb_num_str(digits));
	int rc = tally__ddb_update_writer(store, id, expression, condition, values, NULL);
	if (rc != TALLY__DDB_CONDITION_ERR)
		return rc;
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS), *reply = NULL;
	json_object_set_new(body, "Key", tally__ddb_writer_key(id));
	json_object_set_new(body, "ConsistentRead", json_true());
	int read = tally__ddb_request(store, "GetItem", body, &reply);
	const char *seen = read ? NULL : tally__ddb_get_num_str(json_object_get(reply, "Item"), "op");
	bool ours = seen && strcmp(seen, digits) == 0;
	json_decref(reply);
	if (read)
		return read;
	return ours ? TALLY_OK : TALLY__DDB_CONDITION_ERR;
}

void tally__ddb_slot_attribute(char out[32], uint64_t slot)
{
	snprintf(out, 32, "w%" PRIu64, slot);
}

/* Completes a recorded cleanup obligation (cl_epoch) of writer `id`. */
static int collect_intent_key(json_t *item, void *arg)
{
	json_array_append_new(arg, json_pack("{s:{s:{s:O,s:O}}}", "DeleteRequest", "Key", "id",
					     json_object_get(item, "id"), "part",
					     json_object_get(item, "part")));
	return 0;
}

/* Deletes an epoch's intent chunks: its pending flush, if any, was rolled forward before
 * the epoch was switched, reaped or closed. */
static int drop_intents(struct tally__ddb_store *store, const char *id, uint64_t epoch)
{
	json_t *deletes = json_array();
	json_t *q = tally__ddb_body(store, TALLY__DDB_WRITERS);
	json_object_set_new(q, "KeyConditionExpression",
			    json_string("id = :id AND part BETWEEN :lo AND :hi"));
	json_object_set_new(q, "ProjectionExpression", json_string("id, part"));
	json_object_set_new(q, "ExpressionAttributeValues",
			    json_pack("{s:o,s:o,s:o}", ":id", tally__ddb_bin(id, strlen(id)), ":lo",
				      tally__ddb_num((int64_t)(epoch * TALLY__DDB_INTENT_PART + 1)), ":hi",
				      tally__ddb_num((int64_t)((epoch + 1) * TALLY__DDB_INTENT_PART - 1))));
	int rc = tally__ddb_each(store, "Query", q, collect_intent_key, deletes);
	if (rc == TALLY_OK && json_array_size(deletes))
		return tally__ddb_batch_write(store, TALLY__DDB_WRITERS, deletes,
					      tally__ddb_now_ms() + store->timeout_ms);
	json_decref(deletes);
	return rc;
}

int tally__ddb_finish_cleanup(struct tally__ddb_store *store, const char *id, uint64_t slot,
			  uint64_t cl_epoch)
{
	int rc = tally__ddb_tombstone_gauges(store, slot, cl_epoch);
	if (rc == TALLY_OK)
		rc = tally__ddb_drop_connections(store, id, cl_epoch);
	if (rc == TALLY_OK)
		rc = drop_intents(store, id, cl_epoch);
	if (rc == TALLY_OK) {
		rc = tally__ddb_update_writer(store, id, "REMOVE cl_epoch", "cl_epoch = :c",
				   json_pack("{s:o}", ":c", tally__ddb_num((int64_t)cl_epoch)), NULL);
		if (rc == TALLY__DDB_CONDITION_ERR)
			rc = TALLY_OK; /* someone else finished it */
	}
	return rc;
}

/* ---- writer_open ---------------------------------------------------------------------- */

static int allocate_slot(struct tally__ddb_store *store, uint64_t *slot)
{
	static const char slots_id[] = "\0slots";
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS), *reply = NULL;
	json_object_set_new(body, "Key", json_pack("{s:o,s:o}", "id",
						   tally__ddb_bin(slots_id, sizeof(slots_id) - 1),
						   "part", tally__ddb_num(0)));
	json_object_set_new(body, "UpdateExpression", json_string("ADD n :one"));
	json_object_set_new(body, "ExpressionAttributeValues",
			    json_pack("{s:o}", ":one", tally__ddb_num(1)));
	json_object_set_new(body, "ReturnValues", json_string("UPDATED_NEW"));
	int rc = tally__ddb_request(store, "UpdateItem", body, &reply);
	if (rc == TALLY_OK)
		*slot = tally__ddb_get_u64(json_object_get(reply, "Attributes"), "n");
	json_decref(reply);
	return rc == TALLY__DDB_CONDITION_ERR ? TALLY_EUNAVAIL : rc;
}

static int register_new(struct tally__ddb_store *store, const char *id, int64_t ttl_ms)
{
	uint64_t slot = 0;
	int rc = allocate_slot(store, &slot);
	if (rc)
		return rc;
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS);
	json_t *item = tally__ddb_writer_key(id);
	json_object_set_new(item, "slot", tally__ddb_num((int64_t)slot));
	json_object_set_new(item, "epoch", tally__ddb_num(1));
	json_object_set_new(item, "last_seq", tally__ddb_num(0));
	json_object_set_new(item, "pending", tally__ddb_num(0));
	json_object_set_new(item, "expires", tally__ddb_num(tally__ddb_now_ms() + ttl_ms));
	char token[24];
	snprintf(token, sizeof(token), "%" PRIu64, tally__store_random64() >> 2);
	json_object_set_new(item, "op", tally__ddb_num_str(token));
	json_object_set_new(body, "Item", item);
	json_object_set_new(body, "ConditionExpression", json_string("attribute_not_exists(id)"));
	rc = tally__ddb_request(store, "PutItem", body, NULL);
	if (rc == TALLY__DDB_CONDITION_ERR) {
		/* Registered by this very call (a lost answer, re-sent)? The token says. */
		json_t *get = tally__ddb_body(store, TALLY__DDB_WRITERS), *reply = NULL;
		json_object_set_new(get, "Key", tally__ddb_writer_key(id));
		json_object_set_new(get, "ConsistentRead", json_true());
		if (tally__ddb_request(store, "GetItem", get, &reply) == TALLY_OK) {
			const char *seen = tally__ddb_get_num_str(json_object_get(reply, "Item"), "op");
			if (seen && strcmp(seen, token) == 0)
				rc = TALLY_OK;
		}
		json_decref(reply);
	}
	if (rc == TALLY_OK)
		atomic_store(&store->slot, (int64_t)slot);
	return rc;
}

/* Switches an existing writer to epoch + 1, if nothing moved since `w` was read. */
static int switch_epoch(struct tally__ddb_store *store, const char *id, const struct tally__ddb_writer_state *w,
			int64_t ttl_ms)
{
	bool clean_old = !w->reaped_ms || w->cl_epoch; /* a reaped epoch was cleaned by its reaper */
	uint64_t cl = w->cl_epoch ? w->cl_epoch : w->epoch;
	json_t *values = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", ":e0", tally__ddb_num((int64_t)w->epoch),
				   ":e1", tally__ddb_num((int64_t)w->epoch + 1), ":l0",
				   tally__ddb_num((int64_t)w->last_seq), ":p0",
				   tally__ddb_num((int64_t)w->pending), ":zero", tally__ddb_num(0),
				   ":exp", tally__ddb_num(tally__ddb_now_ms() + ttl_ms));
	char update[256];
	snprintf(update, sizeof(update), "SET epoch = :e1, last_seq = :zero, pending = :zero, "
		 "expires = :exp%s REMOVE reaped, closed, attrs_done, pending_chunks", clean_old ? ", cl_epoch = :cl" : "");
	if (clean_old)
		json_object_set_new(values, ":cl", tally__ddb_num((int64_t)cl));
	int rc = tally__ddb_transition(store, id, update,
				       "epoch = :e0 AND last_seq = :l0 AND pending = :p0", values);
	if (rc == TALLY_OK)
		atomic_store(&store->slot, (int64_t)w->slot);
	return rc;
}

int tally__ddb_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			   struct tally_store_epoch_info *info)
{
	struct tally__ddb_store *store = impl;
	for (int attempt = 0; attempt < 16; attempt++) {
		struct tally__ddb_writer_state w;
		int rc = tally__ddb_read_writer(store, writer_id, &w);
		if (rc)
			return rc;
		if (!w.present) {
			rc = register_new(store, writer_id, ttl_ms);
			if (rc == TALLY__DDB_CONDITION_ERR)
				continue; /* another process registered the id meanwhile */
			if (rc == TALLY_OK && info)
				*info = (struct tally_store_epoch_info){1, 0, 0, false};
			return rc;
		}
		/* A flush in progress under the old epoch is finished before the switch. */
		uint64_t resolved_last = w.last_seq;
		if (w.pending > w.last_seq) { /* a reaper sets last_seq = pending: never reaped */
			rc = tally__ddb_roll_forward(store, writer_id, w.slot, w.epoch, w.pending, w.pending_chunks);
			if (rc)
				return rc;
			resolved_last = w.pending;
		}
		rc = switch_epoch(store, writer_id, &w, ttl_ms);
		if (rc == TALLY__DDB_CONDITION_ERR)
			continue; /* the old epoch moved (flushed, reaped): look again */
		if (rc)
			return rc;
		if (info)
			*info = (struct tally_store_epoch_info){w.epoch + 1, w.epoch, resolved_last,
								w.reaped_ms != 0 && !w.closed};
		/* The old epoch's gauges and connections: a failure here leaves the obligation
		 * recorded (cl_epoch) for the next reap; the open itself has happened. */
		if (!w.reaped_ms || w.cl_epoch)
			(void)tally__ddb_finish_cleanup(store, writer_id, w.slot, w.cl_epoch ? w.cl_epoch : w.epoch);
		return TALLY_OK;
	}
	tally__ddb_set_error(store, "dynamodb: writer_open: the writer item kept changing");
	return TALLY_EBUSY;
}

/* ---- heartbeat, flush, close ---------------------------------------------------------- */

/* Tells apart why a writer condition failed: EFENCED, or EINVAL for a seq gap. */
static int explain_refusal(struct tally__ddb_store *store, const char *id, uint64_t epoch,
			   uint64_t seq)
{
	struct tally__ddb_writer_state w;
	int rc = tally__ddb_read_writer(store, id, &w);
	if (rc)
		return rc;
	if (!w.present || w.epoch != epoch || w.reaped_ms) {
		tally__ddb_set_error(store, "dynamodb: writer epoch %" PRIu64 " was %s", epoch,
				     !w.present || w.epoch != epoch ? "superseded" : "reaped");
		return TALLY_EFENCED;
	}
	if (seq > w.last_seq + 1) {
		tally__ddb_set_error(store, "dynamodb: flush seq %" PRIu64 " after last %" PRIu64,
				     seq, w.last_seq);
		return TALLY_EINVAL;
	}
	return TALLY_EUNAVAIL; /* the item changed between the two reads: try again */
}

int tally__ddb_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms)
{
	struct tally__ddb_store *store = impl;
	int rc = tally__ddb_update_writer(store, writer_id, "SET expires = :exp",
			       "epoch = :e AND attribute_not_exists(reaped)",
			       json_pack("{s:o,s:o}", ":exp", tally__ddb_num(tally__ddb_now_ms() + ttl_ms),
					 ":e", tally__ddb_num((int64_t)epoch)), NULL);
	return rc == TALLY__DDB_CONDITION_ERR ? explain_refusal(store, writer_id, epoch, 0) : rc;
}

static int64_t writer_slot(struct tally__ddb_store *store, const char *id)
{
	int64_t slot = atomic_load(&store->slot);
	if (slot > 0)
		return slot;
	struct tally__ddb_writer_state w;
	if (tally__ddb_read_writer(store, id, &w) || !w.present)
		return 0;
	atomic_store(&store->slot, (int64_t)w.slot);
	return (int64_t)w.slot;
}

/* Step 2: claims seq for the flush (fencing) and renews the lease. *done = already applied. */
static int claim(struct tally__ddb_store *store, const char *id, uint64_t epoch, int64_t ttl_ms,
		 uint64_t seq, uint64_t chunks, int64_t deadline_ms, bool *done)
{
	int64_t now = tally__ddb_now_ms();
	json_t *attributes = NULL;
	int rc = tally__ddb_update_writer(
		store, id, "SET expires = :exp, pending = :s, pending_chunks = :n, pending_until = :u",
		"epoch = :e AND attribute_not_exists(reaped) AND last_seq >= :sm1",
		json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", ":exp", tally__ddb_num(now + ttl_ms), ":s",
			  tally__ddb_num((int64_t)seq), ":n", tally__ddb_num((int64_t)chunks), ":u",
			  tally__ddb_num(deadline_ms), ":e", tally__ddb_num((int64_t)epoch),
			  ":sm1", tally__ddb_num((int64_t)seq - 1)),
		&attributes);
	if (rc == TALLY__DDB_CONDITION_ERR)
		return explain_refusal(store, id, epoch, seq);
	*done = rc == TALLY_OK && tally__ddb_get_u64(attributes, "last_seq") >= seq;
	json_decref(attributes);
	return rc;
}

static int commit(struct tally__ddb_store *store, const char *id, uint64_t epoch, uint64_t seq)
{
	int rc = tally__ddb_update_writer(store, id, "SET last_seq = :s",
			       "epoch = :e AND attribute_not_exists(reaped) AND last_seq < :s",
			       json_pack("{s:o,s:o}", ":s", tally__ddb_num((int64_t)seq), ":e",
					 tally__ddb_num((int64_t)epoch)), NULL);
	if (rc != TALLY__DDB_CONDITION_ERR)
		return rc;
	struct tally__ddb_writer_state w;
	rc = tally__ddb_read_writer(store, id, &w);
	if (rc == TALLY_OK && w.present && w.epoch == epoch && !w.reaped_ms && w.last_seq >= seq)
		return TALLY_OK; /* an earlier attempt's commit landed */
	return rc ? rc : explain_refusal(store, id, epoch, seq);
}

static void apply_records(struct tally__ddb_store *store, const char *id, uint64_t epoch,
			  const struct tally_store_batch *batch, int64_t deadline_ms, struct tally__ddb_applied *a)
{
	if (batch->record_count == 0 || a->err)
		return;
	json_t *sessions = json_array(), *connections = json_array();
	int rc = tally__ddb_records_requests(store, id, epoch, batch->records, batch->record_count,
					     sessions, connections);
	size_t n = json_array_size(sessions) + json_array_size(connections);
	if (rc == TALLY_OK)
		rc = tally__ddb_batch_write(store, TALLY__DDB_SESSIONS, json_incref(sessions),
					    deadline_ms);
	if (rc == TALLY_OK)
		rc = tally__ddb_batch_write(store, TALLY__DDB_CONNECTIONS, json_incref(connections),
					    deadline_ms);
	json_decref(sessions);
	json_decref(connections);
	tally__ddb_note_error(a, rc);
	if (rc == TALLY_OK) {
		a->rows += (int64_t)n;
		a->calls += (int64_t)(n + 24) / 25;
	}
}

int tally__ddb_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
		     const struct tally_store_batch *batch, struct tally_store_flush_result *result)
{
	struct tally__ddb_store *store = impl;
	if (batch->seq == 0 || batch->seq >= TALLY__DDB_SEQ_MAX)
		return TALLY_EINVAL;
	int64_t slot = writer_slot(store, writer_id);
	if (slot <= 0)
		return explain_refusal(store, writer_id, epoch, batch->seq);
	uint64_t chunks = 0;
	struct tally__ddb_applied a = {0};
	int rc = tally__ddb_write_intent(store, writer_id, epoch, batch, &chunks);
	a.calls += chunks ? 1 : 0;
	bool done = false;
	/* One deadline for the whole flush: the claim records it (pending_until), and no
	 * request of the flush starts after it (the fencing argument leans on that). */
	int64_t deadline = tally__ddb_now_ms() + store->timeout_ms;
	if (rc == TALLY_OK)
		rc = claim(store, writer_id, epoch, ttl_ms, batch->seq, chunks, deadline, &done);
	a.calls++;
	if (rc == TALLY_OK && !done) {
		char flushno[TALLY__DDB_FLUSHNO_MAX];
		tally__ddb_flushno(flushno, epoch, batch->seq);
		struct tally__ddb_delta *deltas = batch->counter_count
			? malloc(batch->counter_count * sizeof(*deltas)) : NULL;
		if (batch->counter_count && !deltas)
			tally__ddb_note_error(&a, TALLY_ENOMEM);
		for (size_t i = 0; deltas && i < batch->counter_count; i++)
			deltas[i] = (struct tally__ddb_delta){batch->counters[i].key, batch->counters[i].key_len,
						       batch->counters[i].delta};
		if (deltas)
			tally__ddb_apply_counters(store, (uint64_t)slot, flushno, deltas, batch->counter_count,
				       deadline, &a);
		free(deltas);
		tally__ddb_apply_gauges(store, writer_id, (uint64_t)slot, epoch, flushno, batch, deadline, &a);
		apply_records(store, writer_id, epoch, batch, deadline, &a);
		rc = a.err;
		if (rc == TALLY_OK)
			rc = commit(store, writer_id, epoch, batch->seq);
		a.calls++;
	}
	if (result)
		*result = (struct tally_store_flush_result){done, a.rows, a.calls};
	return rc;
}

int tally__ddb_writer_close(void *impl, const char *writer_id, uint64_t epoch)
{
	struct tally__ddb_store *store = impl;
	struct tally__ddb_writer_state w;
	int rc = tally__ddb_read_writer(store, writer_id, &w);
	if (rc)
		return rc;
	if (!w.present || w.epoch != epoch || w.reaped_ms)
		return explain_refusal(store, writer_id, epoch, 0);
	/* A flush left half-way (its answer lost, then the caller gave up) is finished first,
	 * so a closed epoch never stays half applied. */
	uint64_t last = w.last_seq;
	if (w.pending > w.last_seq) {
		rc = tally__ddb_roll_forward(store, writer_id, w.slot, epoch, w.pending,
					     w.pending_chunks);
		if (rc)
			return rc;
		last = w.pending;
	}
	int64_t now = tally__ddb_now_ms();
	rc = tally__ddb_transition(
		store, writer_id,
		"SET reaped = :now, closed = :now, expires = :now, cl_epoch = :e, last_seq = :last",
		"epoch = :e AND attribute_not_exists(reaped) AND last_seq = :l0 AND pending = :p0",
		json_pack("{s:o,s:o,s:o,s:o,s:o}", ":now", tally__ddb_num(now), ":e",
			  tally__ddb_num((int64_t)epoch), ":last", tally__ddb_num((int64_t)last),
			  ":l0", tally__ddb_num((int64_t)w.last_seq), ":p0",
			  tally__ddb_num((int64_t)w.pending)));
	if (rc == TALLY__DDB_CONDITION_ERR)
		return explain_refusal(store, writer_id, epoch, 0); /* fenced, or it moved: EUNAVAIL */
	if (rc)
		return rc;
	return tally__ddb_finish_cleanup(store, writer_id, w.slot, epoch);
}

