/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_apply.c: the conditional writes of a flush on DynamoDB
 * (docs/store-dynamodb.md, "Exactly once without transactions"): counter and gauge
 * UpdateItems carrying the flush number, all in flight at once, a failed condition read back
 * to tell "already applied" from "fenced"; the intent chunks and the roll-forward of a flush
 * cut off half-way; the tombstones that fence an epoch's gauges.
 */
#include "config.h"

#include "store/dynamodb_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INTENT_CHUNK_BYTES (300 * 1024) /* well under the 400 KB item cap */

/* ---- applying deltas ------------------------------------------------------------------ */

void tally__ddb_note_error(struct tally__ddb_applied *a, int err)
{
	if (!err)
		return;
	/* A permanent error outranks a transient one: it must reach the caller. */
	if (!a->err || (tally_store_err_transient(a->err) && !tally_store_err_transient(err)))
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
			const char *flushno, int64_t deadline_ms, struct tally__ddb_applied *a)
{
	size_t n = json_array_size(updates);
	struct tally__ddb_call *calls = n ? calloc(n, sizeof(*calls)) : NULL;
	if (n && !calls) {
		tally__ddb_note_error(a, TALLY_ENOMEM);
		json_decref(updates);
		return;
	}
	int rc = TALLY_OK;
	for (size_t i = 0; i < n && rc == TALLY_OK; i++)
		rc = tally__ddb_call_set(&calls[i], "UpdateItem", json_incref(json_array_get(updates, i)));
	json_decref(updates);
	if (rc == TALLY_OK)
		rc = tally__ddb_call_many(&store->client, calls, n, deadline_ms);
	tally__ddb_note_error(a, rc);
	a->calls += (int64_t)n;
	for (size_t i = 0; i < n && rc == TALLY_OK; i++) {
		struct tally__ddb_call *c = &calls[i];
		if (c->outcome == TALLY__DDB_OK) {
			a->rows++;
		} else if (c->outcome == TALLY__DDB_CONDITION) {
			a->calls++;
			tally__ddb_note_error(a, resolve_condition(store, c->body, attrs[i], flushno));
		} else {
			tally__ddb_set_error(store, "dynamodb: UpdateItem: %s", c->error_type);
			tally__ddb_note_error(a, c->err);
		}
	}
	for (size_t i = 0; i < n; i++)
		tally__ddb_call_reset(&calls[i]);
	free(calls);
}

void tally__ddb_apply_counters(struct tally__ddb_store *store, uint64_t slot, const char *flushno,
			   const struct tally__ddb_delta *deltas, size_t count, int64_t deadline_ms,
			   struct tally__ddb_applied *a)
{
	if (count == 0)
		return;
	char slot_attr[32];
	tally__ddb_slot_attribute(slot_attr, slot);
	json_t *updates = json_array();
	const char **attrs = malloc(count * sizeof(*attrs));
	if (!updates || !attrs) {
		json_decref(updates);
		free(attrs);
		tally__ddb_note_error(a, TALLY_ENOMEM);
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
int tally__ddb_write_intent(struct tally__ddb_store *store, const char *id, uint64_t epoch,
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
	if (tally__ddb_get_u64(item, "s") != r->seq)
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
int tally__ddb_roll_forward(struct tally__ddb_store *store, const char *id, uint64_t slot,
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
	struct tally__ddb_delta *deltas = rc == TALLY_OK && n ? calloc(n, sizeof(*deltas)) : NULL;
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
		deltas[i] = (struct tally__ddb_delta){keys[i], (size_t)(len > 0 ? len : 0),
					       json_integer_value(json_array_get(pair, 1))};
	}
	if (rc == TALLY_OK) {
		char flushno[TALLY__DDB_FLUSHNO_MAX];
		tally__ddb_flushno(flushno, epoch, seq);
		struct tally__ddb_applied a = {0};
		tally__ddb_apply_counters(store, slot, flushno, deltas, n, tally__ddb_now_ms() + store->timeout_ms, &a);
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
int tally__ddb_tombstone_gauges(struct tally__ddb_store *store, uint64_t slot, uint64_t epoch)
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
		struct tally__ddb_applied a = {0};
		run_updates(store, json_incref(t.updates), attrs, t.tomb,
			    tally__ddb_now_ms() + store->timeout_ms, &a);
		/* a condition failure: already tombstoned, or a newer epoch owns it */
		rc = a.err == TALLY_EFENCED ? TALLY_OK : a.err;
	}
	free(attrs);
	json_decref(t.updates);
	return rc;
}

void tally__ddb_apply_gauges(struct tally__ddb_store *store, const char *id, uint64_t slot,
			 uint64_t epoch, const char *flushno, const struct tally_store_batch *batch,
			 int64_t deadline_ms, struct tally__ddb_applied *a)
{
	if (batch->gauge_count == 0)
		return;
	json_t *updates = json_array();
	const char **attrs = malloc(batch->gauge_count * sizeof(*attrs));
	if (!updates || !attrs) {
		json_decref(updates);
		free(attrs);
		tally__ddb_note_error(a, TALLY_ENOMEM);
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

