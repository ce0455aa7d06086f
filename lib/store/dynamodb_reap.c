/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_reap.c: the writers table read back (tally_store_writers), gauge reads
 * (the sum over live epochs), reaping expired writers (roll their pending flush forward,
 * mark them reaped, remove their gauges and connections) and, after cleanup_delay_ms, their
 * per-writer attributes on counter items (docs/store-dynamodb.md, "The store clock and
 * reaping", "Item size").
 */
#include "config.h"

#include "store/dynamodb_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writers, gauges, reaping --------------------------------------------------------- */

struct writer_row {
	char id[TALLY_STORE_WRITER_ID_MAX + 1];
	struct tally__ddb_writer_state w;
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
	if (len <= 0 || row.id[0] == '\0' || tally__ddb_get_u64(item, "part") != 0)
		return 0; /* the schema and slot items, intent chunks */
	row.id[len] = '\0';
	tally__ddb_parse_writer(item, &row.w);
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
		const struct tally__ddb_writer_state *w = &list.rows[i].w;
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
	uint64_t slot = tally__ddb_get_u64(item, "w"), epoch = tally__ddb_get_u64(item, "e");
	for (size_t i = 0; i < sum->writers->count; i++) {
		const struct tally__ddb_writer_state *w = &sum->writers->rows[i].w;
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
static int reap_one(struct tally__ddb_store *store, const char *id, const struct tally__ddb_writer_state *w)
{
	uint64_t last = w->last_seq;
	if (w->pending > w->last_seq) {
		int rc = tally__ddb_roll_forward(store, id, w->slot, w->epoch, w->pending, w->pending_chunks);
		if (rc)
			return rc;
		last = w->pending;
	}
	int rc = tally__ddb_transition(store, id, "SET reaped = :now, last_seq = :last, cl_epoch = :e",
			       "epoch = :e AND expires = :exp AND last_seq = :l0 AND pending = :p0 "
			       "AND attribute_not_exists(reaped)",
			       json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", ":now", tally__ddb_num(tally__ddb_now_ms()),
					 ":last", tally__ddb_num((int64_t)last), ":e",
					 tally__ddb_num((int64_t)w->epoch), ":exp",
					 tally__ddb_num(w->expires_ms), ":l0",
					 tally__ddb_num((int64_t)w->last_seq), ":p0",
					 tally__ddb_num((int64_t)w->pending)));
	if (rc == TALLY__DDB_CONDITION_ERR)
		return 0; /* renewed, flushed or reaped by someone else meanwhile */
	if (rc)
		return rc;
	rc = tally__ddb_finish_cleanup(store, id, w->slot, w->epoch);
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
			       const struct tally__ddb_writer_state *w)
{
	struct attr_cleanup c = {store, "", json_array()};
	tally__ddb_slot_attribute(c.attr, w->slot);
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
		rc = tally__ddb_update_writer(store, id, "SET attrs_done = :one", "epoch = :e AND attribute_exists(reaped)",
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
		const struct tally__ddb_writer_state *w = &list.rows[i].w;
		if (w->cl_epoch)
			rc = tally__ddb_finish_cleanup(store, id, w->slot, w->cl_epoch);
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
