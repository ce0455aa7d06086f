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

#define INTENT_CHUNK_BYTES (300 * 1024) /* well under the 400 KB item cap */
#define MAX_WRITER_SLOTS_SEEN 4096

struct writer_state {
	bool present;
	uint64_t slot, epoch, last_seq, pending, pending_chunks, cl_epoch;
	int64_t expires_ms, reaped_ms; /* reaped_ms 0: not reaped */
	bool attrs_done, closed;       /* closed: ended by writer_close, not by a reaper */
};

static uint64_t get_u64(json_t *item, const char *name)
{
	int64_t v = 0;
	tally__ddb_get_num(item, name, &v, NULL);
	return v > 0 ? (uint64_t)v : 0;
}

static void parse_writer(json_t *item, struct writer_state *w)
{
	memset(w, 0, sizeof(*w));
	if (!item)
		return;
	w->present = true;
	w->slot = get_u64(item, "slot");
	w->epoch = get_u64(item, "epoch");
	w->last_seq = get_u64(item, "last_seq");
	w->pending = get_u64(item, "pending");
	w->pending_chunks = get_u64(item, "pending_chunks");
	w->cl_epoch = get_u64(item, "cl_epoch");
	w->expires_ms = (int64_t)get_u64(item, "expires");
	w->reaped_ms = (int64_t)get_u64(item, "reaped");
	w->attrs_done = json_object_get(item, "attrs_done") != NULL;
	w->closed = json_object_get(item, "closed") != NULL;
}

static int read_writer(struct tally__ddb_store *store, const char *id, struct writer_state *w)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS), *reply = NULL;
	json_object_set_new(body, "Key", tally__ddb_writer_key(id));
	json_object_set_new(body, "ConsistentRead", json_true());
	int rc = tally__ddb_request(store, "GetItem", body, &reply);
	if (rc == TALLY_OK)
		parse_writer(json_object_get(reply, "Item"), w);
	json_decref(reply);
	return rc;
}

/* An UpdateItem on the writer item; CONDITION comes back as TALLY__DDB_CONDITION_ERR. */
static int update_writer(struct tally__ddb_store *store, const char *id, const char *update,
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

static void slot_attribute(char out[32], uint64_t slot)
{
	snprintf(out, 32, "w%" PRIu64, slot);
}

/* ---- applying deltas ------------------------------------------------------------------ */

struct applied {
	int err;              /* the worst error so far */
	int64_t rows, calls;
};

static bool transient(int err)
{
	return err == TALLY_EUNAVAIL || err == TALLY_ETIMEDOUT || err == TALLY_EBUSY || err == TALLY_EIO;
}

static void note_error(struct applied *a, int err)
{
	if (!err)
		return;
	/* A permanent error outranks a transient one: it must reach the caller. */
	if (!a->err || (transient(a->err) && !transient(err)))
		a->err = err;
}

static json_t *counter_update(struct tally__ddb_store *store, const char *key, size_t key_len,
			      int64_t delta, const char *slot_attr, const char *flushno)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_COUNTERS);
	json_object_set_new(body, "Key", json_pack("{s:o}", "k", tally__ddb_bin(key, key_len)));
	json_object_set_new(body, "UpdateExpression", json_string("ADD v :d SET #w = :f"));
	json_object_set_new(body, "ConditionExpression",
			    json_string("attribute_not_exists(#w) OR #w < :f"));
	json_object_set_new(body, "ExpressionAttributeNames", json_pack("{s:s}", "#w", slot_attr));
	json_object_set_new(body, "ExpressionAttributeValues",
			    json_pack("{s:o,s:o}", ":d", tally__ddb_num(delta), ":f",
				      tally__ddb_num_str(flushno)));
	return body;
}

static json_t *gauge_update(struct tally__ddb_store *store, const char *key, size_t key_len,
			    int64_t value, uint64_t slot, uint64_t epoch, const char *writer_id,
			    const char *flushno)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_GAUGES);
	json_object_set_new(body, "Key", json_pack("{s:o,s:o}", "k", tally__ddb_bin(key, key_len),
						   "w", tally__ddb_num((int64_t)slot)));
	json_object_set_new(body, "UpdateExpression",
			    json_string("SET v = :v, f = :f, e = :e, id = :id"));
	json_object_set_new(body, "ConditionExpression",
			    json_string("attribute_not_exists(f) OR f < :f"));
	json_object_set_new(body, "ExpressionAttributeValues",
			    json_pack("{s:o,s:o,s:o,s:o}", ":v", tally__ddb_num(value), ":f",
				      tally__ddb_num_str(flushno), ":e", tally__ddb_num((int64_t)epoch),
				      ":id", tally__ddb_bin(writer_id, strlen(writer_id))));
	return body;
}

/* After a conditional-check failure: reads the item's flush number back. TALLY_OK if it is
 * `flushno` (this flush landed there before), EFENCED if higher (a newer epoch or a
 * tombstone), EUNAVAIL if lower (cannot happen: numbers only grow). */
static int resolve_condition(struct tally__ddb_store *store, const char *call_body,
			     const char *attribute, const char *flushno)
{
	json_t *sent = json_loads(call_body, 0, NULL);
	if (!sent)
		return TALLY_ENOMEM;
	json_t *body = json_pack("{s:O,s:O,s:b,s:s,s:{s:s}}", "TableName",
				 json_object_get(sent, "TableName"), "Key", json_object_get(sent, "Key"),
				 "ConsistentRead", 1, "ProjectionExpression", "#a",
				 "ExpressionAttributeNames", "#a", attribute);
	json_decref(sent);
	json_t *reply = NULL;
	int rc = tally__ddb_request(store, "GetItem", body, &reply);
	if (rc)
		return rc == TALLY__DDB_CONDITION_ERR ? TALLY_EUNAVAIL : rc;
	const char *seen = tally__ddb_get_num_str(json_object_get(reply, "Item"), attribute);
	int cmp = seen ? tally__ddb_flushno_cmp(seen, flushno) : -1;
	json_decref(reply);
	if (cmp == 0)
		return TALLY_OK;
	if (cmp > 0) {
		tally__ddb_set_error(store, "dynamodb: flush refused: a newer epoch of this writer "
				     "wrote the item (fenced)");
		return TALLY_EFENCED;
	}
	tally__ddb_set_error(store, "dynamodb: conditional check failed below the flush number");
	return TALLY_EUNAVAIL;
}

/* Runs the updates (array of request bodies, consumed), resolving condition failures.
 * attrs[i] names the flush-number attribute of update i. */
static void run_updates(struct tally__ddb_store *store, json_t *updates, const char **attrs,
			const char *flushno, int64_t deadline_ms, struct applied *a)
{
	size_t n = json_array_size(updates);
	struct tally__ddb_call *calls = n ? calloc(n, sizeof(*calls)) : NULL;
	if (n && !calls) {
		note_error(a, TALLY_ENOMEM);
		json_decref(updates);
		return;
	}
	int rc = TALLY_OK;
	for (size_t i = 0; i < n && rc == TALLY_OK; i++)
		rc = tally__ddb_call_set(&calls[i], "UpdateItem", json_incref(json_array_get(updates, i)));
	json_decref(updates);
	if (rc == TALLY_OK)
		rc = tally__ddb_call_many(&store->client, calls, n, deadline_ms);
	note_error(a, rc);
	a->calls += (int64_t)n;
	for (size_t i = 0; i < n && rc == TALLY_OK; i++) {
		struct tally__ddb_call *c = &calls[i];
		if (c->outcome == TALLY__DDB_OK) {
			a->rows++;
		} else if (c->outcome == TALLY__DDB_CONDITION) {
			a->calls++;
			note_error(a, resolve_condition(store, c->body, attrs[i], flushno));
		} else {
			tally__ddb_set_error(store, "dynamodb: UpdateItem: %s", c->error_type);
			note_error(a, c->err);
		}
	}
	for (size_t i = 0; i < n; i++)
		tally__ddb_call_reset(&calls[i]);
	free(calls);
}

/* One counter's delta under (epoch, seq). */
struct delta_ref {
	const char *key;
	size_t key_len;
	int64_t delta;
};

static void apply_counters(struct tally__ddb_store *store, uint64_t slot, const char *flushno,
			   const struct delta_ref *deltas, size_t count, int64_t deadline_ms,
			   struct applied *a)
{
	if (count == 0)
		return;
	char slot_attr[32];
	slot_attribute(slot_attr, slot);
	json_t *updates = json_array();
	const char **attrs = malloc(count * sizeof(*attrs));
	if (!updates || !attrs) {
		json_decref(updates);
		free(attrs);
		note_error(a, TALLY_ENOMEM);
		return;
	}
	for (size_t i = 0; i < count; i++) {
		json_array_append_new(updates, counter_update(store, deltas[i].key, deltas[i].key_len,
							      deltas[i].delta, slot_attr, flushno));
		attrs[i] = slot_attr;
	}
	run_updates(store, updates, attrs, flushno, deadline_ms, a);
	free(attrs);
}

/* ---- intents (what rolls a half-applied flush forward) -------------------------------- */

static json_t *intent_item(const char *id, uint64_t epoch, uint64_t chunk, uint64_t seq,
			   const char *text)
{
	return json_pack("{s:{s:o}}", "PutRequest", "Item",
			 json_pack("{s:o,s:o,s:o,s:{s:s}}", "id", tally__ddb_bin(id, strlen(id)), "part",
				   tally__ddb_num((int64_t)(epoch * TALLY__DDB_INTENT_PART + chunk)),
				   "s", tally__ddb_num((int64_t)seq), "d", "S", text));
}

/* Writes the batch's counters as intent chunks; *chunks = how many. */
static int write_intent(struct tally__ddb_store *store, const char *id, uint64_t epoch,
			const struct tally_store_batch *batch, uint64_t *chunks)
{
	json_t *requests = json_array(), *chunk = json_array();
	size_t bytes = 0;
	uint64_t c = 0;
	int rc = requests && chunk ? TALLY_OK : TALLY_ENOMEM;
	for (size_t i = 0; i <= batch->counter_count && rc == TALLY_OK; i++) {
		bool last = i == batch->counter_count;
		if ((last && json_array_size(chunk)) || bytes > INTENT_CHUNK_BYTES) {
			char *text = json_dumps(chunk, JSON_COMPACT);
			json_t *item = text ? intent_item(id, epoch, ++c, batch->seq, text) : NULL;
			free(text);
			if (!item) {
				rc = TALLY_ENOMEM;
				break;
			}
			json_array_append_new(requests, item);
			json_array_clear(chunk);
			bytes = 0;
		}
		if (last)
			break;
		const struct tally_store_delta *d = &batch->counters[i];
		json_t *b = tally__ddb_bin(d->key, d->key_len);
		json_array_append_new(chunk, json_pack("[O,I]", json_object_get(b, "B"),
						       (json_int_t)d->delta));
		json_decref(b);
		bytes += d->key_len * 4 / 3 + 32;
	}
	json_decref(chunk);
	*chunks = c;
	if (rc || c == 0) {
		json_decref(requests);
		return rc;
	}
	return tally__ddb_batch_write(store, TALLY__DDB_WRITERS, requests,
				      tally__ddb_now_ms() + store->timeout_ms);
}

struct intent_read {
	uint64_t seq, chunks_seen;
	json_t *deltas; /* array of [b64, delta] */
};

static int collect_intent(json_t *item, void *arg)
{
	struct intent_read *r = arg;
	if (get_u64(item, "s") != r->seq)
		return 0; /* a chunk of an earlier flush of the epoch */
	const char *text = tally__ddb_get_str(item, "d");
	json_t *chunk = text ? json_loads(text, 0, NULL) : NULL;
	if (!json_is_array(chunk)) {
		json_decref(chunk);
		return TALLY_ECORRUPT;
	}
	json_array_extend(r->deltas, chunk);
	json_decref(chunk);
	r->chunks_seen++;
	return 0;
}

/* Re-applies flush (epoch, seq) from its intent: every delta lands once (the condition). */
static int roll_forward(struct tally__ddb_store *store, const char *id, uint64_t slot,
			uint64_t epoch, uint64_t seq, uint64_t chunks)
{
	if (chunks == 0)
		return TALLY_OK;
	struct intent_read r = {seq, 0, json_array()};
	json_t *q = tally__ddb_body(store, TALLY__DDB_WRITERS);
	json_object_set_new(q, "KeyConditionExpression",
			    json_string("id = :id AND part BETWEEN :lo AND :hi"));
	json_object_set_new(q, "ExpressionAttributeValues",
			    json_pack("{s:o,s:o,s:o}", ":id", tally__ddb_bin(id, strlen(id)), ":lo",
				      tally__ddb_num((int64_t)(epoch * TALLY__DDB_INTENT_PART + 1)),
				      ":hi", tally__ddb_num((int64_t)(epoch * TALLY__DDB_INTENT_PART + chunks))));
	int rc = tally__ddb_each(store, "Query", q, collect_intent, &r);
	if (rc == TALLY_OK && r.chunks_seen != chunks) {
		tally__ddb_set_error(store, "dynamodb: the intent of a pending flush is incomplete");
		rc = TALLY_ECORRUPT;
	}
	size_t n = json_array_size(r.deltas);
	struct delta_ref *deltas = rc == TALLY_OK && n ? calloc(n, sizeof(*deltas)) : NULL;
	char (*keys)[TALLY_STORE_KEY_MAX] = deltas ? malloc(n * TALLY_STORE_KEY_MAX) : NULL;
	if (rc == TALLY_OK && n && !keys)
		rc = TALLY_ENOMEM;
	for (size_t i = 0; i < n && rc == TALLY_OK; i++) {
		json_t *pair = json_array_get(r.deltas, i);
		json_t *b = json_pack("{s:{s:O}}", "k", "B", json_array_get(pair, 0));
		long len = tally__ddb_get_bin(b, "k", keys[i], TALLY_STORE_KEY_MAX);
		json_decref(b);
		if (len <= 0)
			rc = TALLY_ECORRUPT;
		deltas[i] = (struct delta_ref){keys[i], (size_t)(len > 0 ? len : 0),
					       json_integer_value(json_array_get(pair, 1))};
	}
	if (rc == TALLY_OK) {
		char flushno[TALLY__DDB_FLUSHNO_MAX];
		tally__ddb_flushno(flushno, epoch, seq);
		struct applied a = {0};
		apply_counters(store, slot, flushno, deltas, n, tally__ddb_now_ms() + store->timeout_ms, &a);
		/* EFENCED here means a later epoch wrote the item after this flush did: fine. */
		rc = a.err == TALLY_EFENCED ? TALLY_OK : a.err;
	}
	free(keys);
	free(deltas);
	json_decref(r.deltas);
	return rc;
}

/* ---- removing an epoch's gauges and connections --------------------------------------- */

struct tombstone_scan {
	struct tally__ddb_store *store;
	char tomb[TALLY__DDB_FLUSHNO_MAX];
	json_t *updates;
};

static int tombstone_gauge(json_t *item, void *arg)
{
	struct tombstone_scan *t = arg;
	json_t *body = tally__ddb_body(t->store, TALLY__DDB_GAUGES);
	json_object_set_new(body, "Key", json_pack("{s:O,s:O}", "k", json_object_get(item, "k"),
						   "w", json_object_get(item, "w")));
	json_object_set_new(body, "UpdateExpression", json_string("SET f = :t REMOVE v"));
	json_object_set_new(body, "ConditionExpression", json_string("f < :t"));
	json_object_set_new(body, "ExpressionAttributeValues",
			    json_pack("{s:o}", ":t", tally__ddb_num_str(t->tomb)));
	json_array_append_new(t->updates, body);
	return 0;
}

/* Fences (slot, epoch) on every gauge item: f = pack(epoch, SEQ_MAX), value removed. */
static int tombstone_gauges(struct tally__ddb_store *store, uint64_t slot, uint64_t epoch)
{
	struct tombstone_scan t = {store, "", json_array()};
	tally__ddb_flushno(t.tomb, epoch, TALLY__DDB_SEQ_MAX);
	json_t *scan = tally__ddb_body(store, TALLY__DDB_GAUGES);
	json_object_set_new(scan, "FilterExpression", json_string("w = :w AND e = :e"));
	json_object_set_new(scan, "ExpressionAttributeValues",
			    json_pack("{s:o,s:o}", ":w", tally__ddb_num((int64_t)slot), ":e",
				      tally__ddb_num((int64_t)epoch)));
	int rc = tally__ddb_each(store, "Scan", scan, tombstone_gauge, &t);
	size_t n = json_array_size(t.updates);
	const char **attrs = n ? malloc(n * sizeof(*attrs)) : NULL;
	if (rc == TALLY_OK && n && !attrs)
		rc = TALLY_ENOMEM;
	if (rc == TALLY_OK && n) {
		for (size_t i = 0; i < n; i++)
			attrs[i] = "f";
		struct applied a = {0};
		run_updates(store, json_incref(t.updates), attrs, t.tomb,
			    tally__ddb_now_ms() + store->timeout_ms, &a);
		/* a condition failure: already tombstoned, or a newer epoch owns it */
		rc = a.err == TALLY_EFENCED ? TALLY_OK : a.err;
	}
	free(attrs);
	json_decref(t.updates);
	return rc;
}

/* Completes a recorded cleanup obligation (cl_epoch) of writer `id`. */
static int finish_cleanup(struct tally__ddb_store *store, const char *id, uint64_t slot,
			  uint64_t cl_epoch)
{
	int rc = tombstone_gauges(store, slot, cl_epoch);
	if (rc == TALLY_OK)
		rc = tally__ddb_drop_connections(store, id, cl_epoch);
	if (rc == TALLY_OK) {
		rc = update_writer(store, id, "REMOVE cl_epoch", "cl_epoch = :c",
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
		*slot = get_u64(json_object_get(reply, "Attributes"), "n");
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
	json_object_set_new(body, "Item", item);
	json_object_set_new(body, "ConditionExpression", json_string("attribute_not_exists(id)"));
	rc = tally__ddb_request(store, "PutItem", body, NULL);
	if (rc == TALLY_OK)
		atomic_store(&store->slot, (int64_t)slot);
	return rc;
}

/* Switches an existing writer to epoch + 1, if nothing moved since `w` was read. */
static int switch_epoch(struct tally__ddb_store *store, const char *id, const struct writer_state *w,
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
	int rc = update_writer(store, id, update,
			       "epoch = :e0 AND last_seq = :l0 AND pending = :p0", values, NULL);
	if (rc == TALLY_OK)
		atomic_store(&store->slot, (int64_t)w->slot);
	return rc;
}

int tally__ddb_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			   struct tally_store_epoch_info *info)
{
	struct tally__ddb_store *store = impl;
	for (int attempt = 0; attempt < 16; attempt++) {
		struct writer_state w;
		int rc = read_writer(store, writer_id, &w);
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
		if (w.pending > w.last_seq && !w.reaped_ms) {
			rc = roll_forward(store, writer_id, w.slot, w.epoch, w.pending, w.pending_chunks);
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
			(void)finish_cleanup(store, writer_id, w.slot, w.cl_epoch ? w.cl_epoch : w.epoch);
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
	struct writer_state w;
	int rc = read_writer(store, id, &w);
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
	int rc = update_writer(store, writer_id, "SET expires = :exp",
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
	struct writer_state w;
	if (read_writer(store, id, &w) || !w.present)
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
	int rc = update_writer(
		store, id, "SET expires = :exp, pending = :s, pending_chunks = :n, pending_until = :u",
		"epoch = :e AND attribute_not_exists(reaped) AND last_seq >= :sm1",
		json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", ":exp", tally__ddb_num(now + ttl_ms), ":s",
			  tally__ddb_num((int64_t)seq), ":n", tally__ddb_num((int64_t)chunks), ":u",
			  tally__ddb_num(deadline_ms), ":e", tally__ddb_num((int64_t)epoch),
			  ":sm1", tally__ddb_num((int64_t)seq - 1)),
		&attributes);
	if (rc == TALLY__DDB_CONDITION_ERR)
		return explain_refusal(store, id, epoch, seq);
	*done = rc == TALLY_OK && get_u64(attributes, "last_seq") >= seq;
	json_decref(attributes);
	return rc;
}

static int commit(struct tally__ddb_store *store, const char *id, uint64_t epoch, uint64_t seq)
{
	int rc = update_writer(store, id, "SET last_seq = :s",
			       "epoch = :e AND attribute_not_exists(reaped) AND last_seq < :s",
			       json_pack("{s:o,s:o}", ":s", tally__ddb_num((int64_t)seq), ":e",
					 tally__ddb_num((int64_t)epoch)), NULL);
	if (rc != TALLY__DDB_CONDITION_ERR)
		return rc;
	struct writer_state w;
	rc = read_writer(store, id, &w);
	if (rc == TALLY_OK && w.present && w.epoch == epoch && !w.reaped_ms && w.last_seq >= seq)
		return TALLY_OK; /* an earlier attempt's commit landed */
	return rc ? rc : explain_refusal(store, id, epoch, seq);
}

static void apply_gauges(struct tally__ddb_store *store, const char *id, uint64_t slot,
			 uint64_t epoch, const char *flushno, const struct tally_store_batch *batch,
			 int64_t deadline_ms, struct applied *a)
{
	if (batch->gauge_count == 0)
		return;
	json_t *updates = json_array();
	const char **attrs = malloc(batch->gauge_count * sizeof(*attrs));
	if (!updates || !attrs) {
		json_decref(updates);
		free(attrs);
		note_error(a, TALLY_ENOMEM);
		return;
	}
	for (size_t i = 0; i < batch->gauge_count; i++) {
		const struct tally_store_gauge *g = &batch->gauges[i];
		json_array_append_new(updates, gauge_update(store, g->key, g->key_len, g->value, slot,
							    epoch, id, flushno));
		attrs[i] = "f";
	}
	run_updates(store, updates, attrs, flushno, deadline_ms, a);
	free(attrs);
}

static void apply_records(struct tally__ddb_store *store, const char *id, uint64_t epoch,
			  const struct tally_store_batch *batch, int64_t deadline_ms, struct applied *a)
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
	note_error(a, rc);
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
	struct applied a = {0};
	int rc = write_intent(store, writer_id, epoch, batch, &chunks);
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
		struct delta_ref *deltas = batch->counter_count
			? malloc(batch->counter_count * sizeof(*deltas)) : NULL;
		if (batch->counter_count && !deltas)
			note_error(&a, TALLY_ENOMEM);
		for (size_t i = 0; deltas && i < batch->counter_count; i++)
			deltas[i] = (struct delta_ref){batch->counters[i].key, batch->counters[i].key_len,
						       batch->counters[i].delta};
		if (deltas)
			apply_counters(store, (uint64_t)slot, flushno, deltas, batch->counter_count,
				       deadline, &a);
		free(deltas);
		apply_gauges(store, writer_id, (uint64_t)slot, epoch, flushno, batch, deadline, &a);
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
	int64_t now = tally__ddb_now_ms();
	int rc = update_writer(store, writer_id,
			       "SET reaped = :now, closed = :now, expires = :now, cl_epoch = :e",
			       "epoch = :e AND attribute_not_exists(reaped)",
			       json_pack("{s:o,s:o}", ":now", tally__ddb_num(now), ":e",
					 tally__ddb_num((int64_t)epoch)), NULL);
	if (rc == TALLY__DDB_CONDITION_ERR)
		return explain_refusal(store, writer_id, epoch, 0);
	if (rc)
		return rc;
	int64_t slot = writer_slot(store, writer_id);
	return finish_cleanup(store, writer_id, (uint64_t)slot, epoch);
}

/* ---- writers, gauges, reaping --------------------------------------------------------- */

struct writer_row {
	char id[TALLY_STORE_WRITER_ID_MAX + 1];
	struct writer_state w;
};

struct writer_list {
	struct writer_row *rows;
	size_t count, cap;
};

static int collect_writer(json_t *item, void *arg)
{
	struct writer_list *list = arg;
	struct writer_row row;
	long len = tally__ddb_get_bin(item, "id", row.id, TALLY_STORE_WRITER_ID_MAX);
	if (len <= 0 || row.id[0] == '\0' || get_u64(item, "part") != 0)
		return 0; /* the schema and slot items, intent chunks */
	row.id[len] = '\0';
	parse_writer(item, &row.w);
	if (list->count == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		struct writer_row *rows = realloc(list->rows, cap * sizeof(*rows));
		if (!rows)
			return TALLY_ENOMEM;
		list->rows = rows;
		list->cap = cap;
	}
	list->rows[list->count++] = row;
	return 0;
}

static int list_writers(struct tally__ddb_store *store, struct writer_list *list)
{
	json_t *scan = tally__ddb_body(store, TALLY__DDB_WRITERS);
	json_object_set_new(scan, "FilterExpression", json_string("part = :zero"));
	json_object_set_new(scan, "ExpressionAttributeValues",
			    json_pack("{s:o}", ":zero", tally__ddb_num(0)));
	*list = (struct writer_list){0};
	int rc = tally__ddb_each(store, "Scan", scan, collect_writer, list);
	if (rc) {
		free(list->rows);
		*list = (struct writer_list){0};
	}
	return rc;
}

int tally__ddb_writers(void *impl, tally_store_writer_fn fn, void *arg)
{
	struct writer_list list;
	int rc = list_writers(impl, &list);
	int64_t now = tally__ddb_now_ms();
	for (size_t i = 0; rc == TALLY_OK && i < list.count; i++) {
		struct tally_store_writer_info info = {0};
		const struct writer_state *w = &list.rows[i].w;
		snprintf(info.writer_id, sizeof(info.writer_id), "%s", list.rows[i].id);
		info.epoch = w->epoch;
		info.last_seq = w->last_seq;
		info.expires_at_ms = w->expires_ms;
		info.store_now_ms = now; /* DynamoDB has no clock: this process's */
		info.reaped = w->reaped_ms != 0;
		info.live = !info.reaped && w->expires_ms > now;
		if (fn(&info, arg))
			break;
	}
	free(list.rows);
	return rc;
}

struct gauge_sum {
	const struct writer_list *writers;
	int64_t now, value, live;
};

static int add_gauge(json_t *item, void *arg)
{
	struct gauge_sum *sum = arg;
	int64_t v;
	bool present;
	if (tally__ddb_get_num(item, "v", &v, &present) || !present)
		return 0; /* a tombstone */
	uint64_t slot = get_u64(item, "w"), epoch = get_u64(item, "e");
	for (size_t i = 0; i < sum->writers->count; i++) {
		const struct writer_state *w = &sum->writers->rows[i].w;
		if (w->slot != slot)
			continue;
		if (w->epoch == epoch && !w->reaped_ms && w->expires_ms > sum->now) {
			sum->value += v;
			sum->live++;
		}
		break;
	}
	return 0;
}

int tally__ddb_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			  int64_t *live_writers)
{
	struct tally__ddb_store *store = impl;
	struct writer_list list;
	int rc = list_writers(store, &list);
	if (rc)
		return rc;
	struct gauge_sum sum = {&list, tally__ddb_now_ms(), 0, 0};
	json_t *q = tally__ddb_body(store, TALLY__DDB_GAUGES);
	json_object_set_new(q, "KeyConditionExpression", json_string("k = :k"));
	json_object_set_new(q, "ExpressionAttributeValues",
			    json_pack("{s:o}", ":k", tally__ddb_bin(key, key_len)));
	rc = tally__ddb_each(store, "Query", q, add_gauge, &sum);
	free(list.rows);
	if (rc == TALLY_OK) {
		*value = sum.value;
		if (live_writers)
			*live_writers = sum.live;
	}
	return rc;
}

/* Marks one expired writer reaped (after finishing its pending flush). 1 if this call did. */
static int reap_one(struct tally__ddb_store *store, const char *id, const struct writer_state *w)
{
	uint64_t last = w->last_seq;
	if (w->pending > w->last_seq) {
		int rc = roll_forward(store, id, w->slot, w->epoch, w->pending, w->pending_chunks);
		if (rc)
			return rc;
		last = w->pending;
	}
	int rc = update_writer(store, id, "SET reaped = :now, last_seq = :last, cl_epoch = :e",
			       "epoch = :e AND expires = :exp AND last_seq = :l0 AND pending = :p0 "
			       "AND attribute_not_exists(reaped)",
			       json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", ":now", tally__ddb_num(tally__ddb_now_ms()),
					 ":last", tally__ddb_num((int64_t)last), ":e",
					 tally__ddb_num((int64_t)w->epoch), ":exp",
					 tally__ddb_num(w->expires_ms), ":l0",
					 tally__ddb_num((int64_t)w->last_seq), ":p0",
					 tally__ddb_num((int64_t)w->pending)), NULL);
	if (rc == TALLY__DDB_CONDITION_ERR)
		return 0; /* renewed, flushed or reaped by someone else meanwhile */
	if (rc)
		return rc;
	rc = finish_cleanup(store, id, w->slot, w->epoch);
	return rc ? rc : 1;
}

struct attr_cleanup {
	struct tally__ddb_store *store;
	char attr[32];
	json_t *updates;
};

static int remove_attr(json_t *item, void *arg)
{
	struct attr_cleanup *c = arg;
	const char *seen = tally__ddb_get_num_str(item, c->attr);
	if (!seen)
		return 0;
	json_t *body = tally__ddb_body(c->store, TALLY__DDB_COUNTERS);
	json_object_set_new(body, "Key", json_pack("{s:O}", "k", json_object_get(item, "k")));
	json_object_set_new(body, "UpdateExpression", json_string("REMOVE #w"));
	json_object_set_new(body, "ConditionExpression", json_string("#w = :seen"));
	json_object_set_new(body, "ExpressionAttributeNames", json_pack("{s:s}", "#w", c->attr));
	json_object_set_new(body, "ExpressionAttributeValues",
			    json_pack("{s:o}", ":seen", tally__ddb_num_str(seen)));
	json_array_append_new(c->updates, body);
	return 0;
}

/* Removes a long-reaped writer's flush numbers from the counter items (the 400 KB cap):
 * only after cleanup_delay_ms, when no request of that epoch can still be in flight (a
 * straggler that found the attribute gone would apply twice). */
static int clean_counter_attrs(struct tally__ddb_store *store, const char *id,
			       const struct writer_state *w)
{
	struct attr_cleanup c = {store, "", json_array()};
	slot_attribute(c.attr, w->slot);
	json_t *scan = tally__ddb_body(store, TALLY__DDB_COUNTERS);
	json_object_set_new(scan, "FilterExpression", json_string("attribute_exists(#w)"));
	json_object_set_new(scan, "ExpressionAttributeNames", json_pack("{s:s}", "#w", c.attr));
	int rc = tally__ddb_each(store, "Scan", scan, remove_attr, &c);
	size_t n = json_array_size(c.updates);
	struct tally__ddb_call *calls = n ? calloc(n, sizeof(*calls)) : NULL;
	if (rc == TALLY_OK && n && !calls)
		rc = TALLY_ENOMEM;
	for (size_t i = 0; rc == TALLY_OK && i < n; i++)
		rc = tally__ddb_call_set(&calls[i], "UpdateItem", json_incref(json_array_get(c.updates, i)));
	if (rc == TALLY_OK && n)
		rc = tally__ddb_call_many(&store->client, calls, n, tally__ddb_now_ms() + store->timeout_ms);
	for (size_t i = 0; rc == TALLY_OK && i < n; i++)
		if (calls[i].outcome == TALLY__DDB_FAILED)
			rc = calls[i].err; /* CONDITION: a newer epoch wrote it: leave it */
	for (size_t i = 0; i < n; i++)
		tally__ddb_call_reset(&calls[i]);
	free(calls);
	json_decref(c.updates);
	if (rc == TALLY_OK) {
		rc = update_writer(store, id, "SET attrs_done = :one", "epoch = :e AND attribute_exists(reaped)",
				   json_pack("{s:o,s:o}", ":one", tally__ddb_num(1), ":e",
					     tally__ddb_num((int64_t)w->epoch)), NULL);
		if (rc == TALLY__DDB_CONDITION_ERR)
			rc = TALLY_OK;
	}
	return rc;
}

int tally__ddb_reap(void *impl, int64_t *reaped)
{
	struct tally__ddb_store *store = impl;
	struct writer_list list;
	int rc = list_writers(store, &list);
	int64_t count = 0, now = tally__ddb_now_ms();
	for (size_t i = 0; rc == TALLY_OK && i < list.count; i++) {
		const char *id = list.rows[i].id;
		const struct writer_state *w = &list.rows[i].w;
		if (w->cl_epoch)
			rc = finish_cleanup(store, id, w->slot, w->cl_epoch);
		if (rc == TALLY_OK && !w->reaped_ms && w->expires_ms + store->clock_skew_ms < now) {
			int r = reap_one(store, id, w);
			if (r > 0)
				count += r;
			else
				rc = r;
		} else if (rc == TALLY_OK && w->reaped_ms && !w->attrs_done &&
			   w->reaped_ms + store->cleanup_delay_ms < now) {
			rc = clean_counter_attrs(store, id, w);
		}
	}
	free(list.rows);
	if (reaped)
		*reaped = count;
	return rc;
}
