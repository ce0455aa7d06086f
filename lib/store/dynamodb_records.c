/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_records.c: the Sessions and Connections tables of the DynamoDB backend
 * (docs/store-dynamodb.md): items with the attribute names users know from a Sessions
 * table (sessionId, speakerConnectionId, ..., expiresAt), written behind with
 * BatchWriteItem (latest state wins per key), each carrying writerId and epoch. "ttl" (epoch
 * seconds) is DynamoDB's TTL attribute where the server has TTL. Empty strings are left out
 * of an item and read back as "".
 */
#include "config.h"

#include "store/dynamodb_internal.h"

#include <stdio.h>
#include <string.h>

static int set_str(json_t *item, const char *name, const char *value)
{
	if (!value[0])
		return TALLY_OK;
	json_t *v = tally__ddb_str(value);
	if (!v)
		return TALLY_EINVAL; /* not UTF-8: DynamoDB strings must be */
	json_object_set_new(item, name, v);
	return TALLY_OK;
}

static void set_times(json_t *item, int64_t expires_at)
{
	json_object_set_new(item, "expiresAt", tally__ddb_num(expires_at));
	if (expires_at > 0)
		json_object_set_new(item, "ttl", tally__ddb_num((expires_at + 999) / 1000));
}

static int session_item(const struct tally_session_info *s, json_t *item)
{
	int rc = set_str(item, "sessionId", s->session_id);
	rc = rc ? rc : set_str(item, "speakerConnectionId", s->speaker_connection_id);
	rc = rc ? rc : set_str(item, "speakerUserId", s->speaker_user_id);
	rc = rc ? rc : set_str(item, "sourceLanguage", s->source_language);
	rc = rc ? rc : set_str(item, "qualityTier", s->quality_tier);
	json_object_set_new(item, "createdAt", tally__ddb_num(s->created_at_ms));
	json_object_set_new(item, "isActive", json_pack("{s:b}", "BOOL", s->active != 0));
	json_object_set_new(item, "listenerCount", tally__ddb_num(s->listener_count));
	set_times(item, s->expires_at_ms);
	return rc;
}

static int connection_item(const struct tally_connection_info *c, json_t *item)
{
	char language_key[TALLY_SESSION_LANGUAGE_MAX + 2];
	snprintf(language_key, sizeof(language_key), "#%s", c->target_language);
	int rc = set_str(item, "connectionId", c->connection_id);
	rc = rc ? rc : set_str(item, "sessionId", c->session_id);
	rc = rc ? rc : set_str(item, "targetLanguage", c->target_language);
	rc = rc ? rc : set_str(item, "languageKey", language_key);
	rc = rc ? rc : set_str(item, "clientAddress", c->client_address);
	json_object_set_new(item, "role", tally__ddb_num(c->role));
	json_object_set_new(item, "connectedAt", tally__ddb_num(c->connected_at_ms));
	set_times(item, c->expires_at_ms);
	return rc;
}

int tally__ddb_records_requests(struct tally__ddb_store *store, const char *writer_id,
				uint64_t epoch, const struct tally_store_record *records,
				size_t count, json_t *sessions, json_t *connections)
{
	(void)store;
	for (size_t i = 0; i < count; i++) {
		const struct tally_store_record *r = &records[i];
		bool session = r->kind == TALLY_STORE_SESSION;
		json_t *item = json_object();
		const char *id = session ? r->as.session.session_id : r->as.connection.connection_id;
		int rc = item ? TALLY_OK : TALLY_ENOMEM;
		if (rc == TALLY_OK && !id[0])
			rc = TALLY_EINVAL;
		if (rc == TALLY_OK && r->op == TALLY_STORE_DELETE)
			rc = set_str(item, session ? "sessionId" : "connectionId", id);
		else if (rc == TALLY_OK) {
			rc = session ? session_item(&r->as.session, item)
				     : connection_item(&r->as.connection, item);
			if (rc == TALLY_OK)
				rc = set_str(item, "writerId", writer_id);
			json_object_set_new(item, "epoch", tally__ddb_num((int64_t)epoch));
		}
		if (rc) {
			json_decref(item);
			return rc;
		}
		json_t *request = r->op == TALLY_STORE_DELETE
			? json_pack("{s:{s:o}}", "DeleteRequest", "Key", item)
			: json_pack("{s:{s:o}}", "PutRequest", "Item", item);
		json_array_append_new(session ? sessions : connections, request);
	}
	return TALLY_OK;
}

static void get_str(json_t *item, const char *name, char *out, size_t size)
{
	const char *v = tally__ddb_get_str(item, name);
	snprintf(out, size, "%s", v ? v : "");
}

static int64_t get_num(json_t *item, const char *name)
{
	int64_t v = 0;
	tally__ddb_get_num(item, name, &v, NULL);
	return v;
}

struct session_visit {
	tally_store_session_fn fn;
	void *arg;
};

static int visit_session(json_t *item, void *arg)
{
	struct session_visit *visit = arg;
	struct tally_session_info s = {0};
	char writer[TALLY_STORE_WRITER_ID_MAX + 1];
	get_str(item, "sessionId", s.session_id, sizeof(s.session_id));
	get_str(item, "speakerConnectionId", s.speaker_connection_id, sizeof(s.speaker_connection_id));
	get_str(item, "speakerUserId", s.speaker_user_id, sizeof(s.speaker_user_id));
	get_str(item, "sourceLanguage", s.source_language, sizeof(s.source_language));
	get_str(item, "qualityTier", s.quality_tier, sizeof(s.quality_tier));
	get_str(item, "writerId", writer, sizeof(writer));
	s.created_at_ms = get_num(item, "createdAt");
	s.expires_at_ms = get_num(item, "expiresAt");
	s.listener_count = get_num(item, "listenerCount");
	s.active = json_is_true(json_object_get(json_object_get(item, "isActive"), "BOOL"));
	return visit->fn(&s, writer, (uint64_t)get_num(item, "epoch"), visit->arg) ? -1000 : 0;
}

int tally__ddb_sessions(void *impl, const char *writer_id, tally_store_session_fn fn, void *arg)
{
	struct tally__ddb_store *store = impl;
	struct session_visit visit = {fn, arg};
	json_t *scan = tally__ddb_body(store, TALLY__DDB_SESSIONS);
	if (writer_id) {
		json_t *w = tally__ddb_str(writer_id);
		if (!w) {
			json_decref(scan);
			return TALLY_EINVAL;
		}
		json_object_set_new(scan, "FilterExpression", json_string("writerId = :w"));
		json_object_set_new(scan, "ExpressionAttributeValues", json_pack("{s:o}", ":w", w));
	}
	int rc = tally__ddb_each(store, "Scan", scan, visit_session, &visit);
	return rc == -1000 ? TALLY_OK : rc;
}

struct connection_visit {
	tally_store_connection_fn fn;
	void *arg;
	const char *writer_id; /* drop_connections: collect instead */
	uint64_t epoch;
	json_t *deletes;
	json_t *sessions; /* drop_connections: sessionId -> {} of each listener it deletes */
};

static int visit_connection(json_t *item, void *arg)
{
	struct connection_visit *visit = arg;
	struct tally_connection_info c = {0};
	char writer[TALLY_STORE_WRITER_ID_MAX + 1];
	get_str(item, "connectionId", c.connection_id, sizeof(c.connection_id));
	get_str(item, "sessionId", c.session_id, sizeof(c.session_id));
	get_str(item, "targetLanguage", c.target_language, sizeof(c.target_language));
	get_str(item, "clientAddress", c.client_address, sizeof(c.client_address));
	get_str(item, "writerId", writer, sizeof(writer));
	c.role = (int)get_num(item, "role");
	c.connected_at_ms = get_num(item, "connectedAt");
	c.expires_at_ms = get_num(item, "expiresAt");
	uint64_t epoch = (uint64_t)get_num(item, "epoch");
	if (visit->deletes) {
		if (strcmp(writer, visit->writer_id) != 0 || epoch != visit->epoch)
			return 0;
		json_array_append_new(visit->deletes,
				      json_pack("{s:{s:{s:O}}}", "DeleteRequest", "Key",
						"connectionId", json_object_get(item, "connectionId")));
		if (c.role == TALLY_ROLE_LISTENER && c.session_id[0])
			json_object_set_new(visit->sessions, c.session_id, json_object());
		return 0;
	}
	return visit->fn(&c, writer, epoch, visit->arg) ? -1000 : 0;
}

int tally__ddb_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			   void *arg)
{
	struct tally__ddb_store *store = impl;
	struct connection_visit visit = {fn, arg, NULL, 0, NULL, NULL};
	json_t *request = tally__ddb_body(store, TALLY__DDB_CONNECTIONS);
	const char *target = "Scan";
	if (session_id) {
		json_t *s = tally__ddb_str(session_id);
		if (!s) {
			json_decref(request);
			return TALLY_EINVAL;
		}
		/* The index gives (session, language) order; index reads are eventually
		 * consistent on DynamoDB (ConsistentRead is refused on a GSI). */
		target = "Query";
		json_object_set_new(request, "IndexName", json_string("bySessionLanguage"));
		json_object_set_new(request, "KeyConditionExpression", json_string("sessionId = :s"));
		json_object_set_new(request, "ExpressionAttributeValues", json_pack("{s:o}", ":s", s));
	}
	if (session_id) {
		/* tally__ddb_each sets ConsistentRead, which a GSI refuses: page here. */
		int rc = TALLY_OK;
		for (int page = 0; page < 100000; page++) {
			json_t *reply = NULL;
			rc = tally__ddb_request(store, target, json_incref(request), &reply);
			if (rc)
				break;
			size_t i;
			json_t *item;
			json_array_foreach(json_object_get(reply, "Items"), i, item) {
				rc = visit_connection(item, &visit);
				if (rc)
					break;
			}
			json_t *next = json_object_get(reply, "LastEvaluatedKey");
			if (!rc && next)
				json_object_set(request, "ExclusiveStartKey", next);
			json_decref(reply);
			if (rc || !next)
				break;
		}
		json_decref(request);
		return rc == -1000 ? TALLY_OK : rc;
	}
	int rc = tally__ddb_each(store, target, request, visit_connection, &visit);
	return rc == -1000 ? TALLY_OK : rc;
}

/* ---- listener counts after a writer's connections leave ------------------------------ */

/* The sessions to recount, sessionId -> {"old": the listenerCount seen, "w", "e": the
 * writer and epoch seen, "n": listener connections counted}. */
struct recount {
	const char *writer_id;
	json_t *sessions;
};

static int pick_session(json_t *item, void *arg)
{
	struct recount *r = arg;
	const char *id = tally__ddb_get_str(item, "sessionId");
	const char *writer = tally__ddb_get_str(item, "writerId");
	json_t *seen = id ? json_object_get(r->sessions, id) : NULL;

	if (!id || !writer || (!seen && strcmp(writer, r->writer_id) != 0))
		return 0;
	json_object_set_new(r->sessions, id,
			    json_pack("{s:O*,s:O*,s:O*,s:i}", "old",
				      json_object_get(item, "listenerCount"), "w",
				      json_object_get(item, "writerId"), "e",
				      json_object_get(item, "epoch"), "n", 0));
	return 0;
}

static int count_listener(json_t *item, void *arg)
{
	struct recount *r = arg;
	const char *id = tally__ddb_get_str(item, "sessionId");
	json_t *seen = id ? json_object_get(r->sessions, id) : NULL;

	if (seen)
		json_object_set_new(seen, "n",
				    json_integer(json_integer_value(json_object_get(seen, "n")) + 1));
	return 0;
}

/* Sets one session's listenerCount to n unless the item changed since it was read (a
 * newer put carries its writer's own count, and wins). */
static int set_listener_count(struct tally__ddb_store *store, const char *id, json_t *seen)
{
	json_t *old = json_object_get(seen, "old"), *w = json_object_get(seen, "w");
	json_t *e = json_object_get(seen, "e");
	int64_t n = json_integer_value(json_object_get(seen, "n"));

	if (!old || !w || !e)
		return TALLY_OK; /* not an item tally wrote */
	json_t *body = tally__ddb_body(store, TALLY__DDB_SESSIONS);
	json_object_set_new(body, "Key", json_pack("{s:o}", "sessionId", tally__ddb_str(id)));
	json_object_set_new(body, "UpdateExpression", json_string("SET #c = :n"));
	json_object_set_new(body, "ConditionExpression",
			    json_string("#c = :old AND #w = :w AND #e = :e"));
	json_object_set_new(body, "ExpressionAttributeNames",
			    json_pack("{s:s,s:s,s:s}", "#c", "listenerCount", "#w", "writerId",
				      "#e", "epoch"));
	json_object_set_new(body, "ExpressionAttributeValues",
			    json_pack("{s:o,s:O,s:O,s:O}", ":n", tally__ddb_num(n), ":old", old,
				      ":w", w, ":e", e));
	int rc = tally__ddb_request(store, "UpdateItem", body, NULL);
	return rc == TALLY__DDB_CONDITION_ERR ? TALLY_OK : rc;
}

/*
 * After writer_id's connections of one epoch were deleted: every session it wrote (any
 * epoch) or had a deleted listener in gets the count of the listener connections left.
 * Idempotent (a count of what is there), so a cleanup cut short is finished by the next
 * reap, which runs it again (docs/store-dynamodb.md, "Listener counts").
 */
static int recount_listeners(struct tally__ddb_store *store, const char *writer_id,
			     json_t *sessions)
{
	struct recount r = {writer_id, sessions};
	int rc = tally__ddb_each(store, "Scan", tally__ddb_body(store, TALLY__DDB_SESSIONS),
				 pick_session, &r);
	if (rc == TALLY_OK && json_object_size(sessions)) {
		json_t *scan = tally__ddb_body(store, TALLY__DDB_CONNECTIONS);
		json_object_set_new(scan, "FilterExpression", json_string("#r = :listener"));
		json_object_set_new(scan, "ExpressionAttributeNames", json_pack("{s:s}", "#r", "role"));
		json_object_set_new(scan, "ExpressionAttributeValues",
				    json_pack("{s:o}", ":listener", tally__ddb_num(TALLY_ROLE_LISTENER)));
		rc = tally__ddb_each(store, "Scan", scan, count_listener, &r);
	}
	const char *id;
	json_t *seen;
	json_object_foreach(sessions, id, seen) {
		if (rc)
			break;
		rc = set_listener_count(store, id, seen);
	}
	return rc;
}

int tally__ddb_drop_connections(struct tally__ddb_store *store, const char *writer_id,
				uint64_t epoch)
{
	json_t *w = tally__ddb_str(writer_id);
	if (!w)
		return TALLY_OK; /* a non-UTF-8 writer id cannot have written records */
	struct connection_visit visit = {NULL, NULL, writer_id, epoch, json_array(), json_object()};
	json_t *scan = tally__ddb_body(store, TALLY__DDB_CONNECTIONS);
	json_object_set_new(scan, "FilterExpression", json_string("writerId = :w AND epoch = :e"));
	json_object_set_new(scan, "ExpressionAttributeValues",
			    json_pack("{s:o,s:o}", ":w", w, ":e", tally__ddb_num((int64_t)epoch)));
	int rc = tally__ddb_each(store, "Scan", scan, visit_connection, &visit);
	if (rc == TALLY_OK && json_array_size(visit.deletes))
		rc = tally__ddb_batch_write(store, TALLY__DDB_CONNECTIONS, visit.deletes,
					    tally__ddb_now_ms() + store->timeout_ms);
	else
		json_decref(visit.deletes);
	if (rc == TALLY_OK)
		rc = recount_listeners(store, writer_id, visit.sessions);
	json_decref(visit.sessions);
	return rc;
}
