/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb.c: the DynamoDB store backend, scheme "dynamodb"
 * (docs/store-dynamodb.md): opening (URL options, credentials, tables), counter reads,
 * takes, and the helpers the other dynamodb_*.c files share. The writer protocol (flush,
 * fencing, reaping) is in dynamodb_writer.c, records in dynamodb_records.c, the lease
 * provider in dynamodb_lease.c, HTTP in dynamodb_http.c.
 *
 * URL: dynamodb://?endpoint=http://127.0.0.1:8000&region=us-east-1&table_prefix=tally_
 * Every option may be omitted; the standard AWS variables fill in (AWS_ENDPOINT_URL_DYNAMODB,
 * AWS_ENDPOINT_URL, AWS_REGION, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN). Options that tune the client: attempt_timeout_ms, max_in_flight,
 * clock_skew_ms, cleanup_delay_ms, backoff_base_ms, backoff_cap_ms.
 */
#include "config.h"

#include "store/dynamodb_internal.h"
#include "store/internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
static const char schema_id[] = "\0schema"; /* writer ids are C strings: never this */

static const char *ddb_last_error(void *impl)
{
	return tally__store_error(impl);
}

/* ---- shared helpers ------------------------------------------------------------------- */

static int request(struct tally__ddb_store *store, const char *target, json_t *body, bool once,
		   json_t **response)
{
	char text[256];
	int rc = tally__ddb_call_one(&store->client, target, body, once,
				     tally__ddb_now_ms() + store->timeout_ms, response, text,
				     sizeof(text));
	if (rc && rc != TALLY__DDB_CONDITION_ERR)
		tally__ddb_set_error(store, "%s", text);
	return rc;
}

int tally__ddb_request(struct tally__ddb_store *store, const char *target, json_t *body,
		       json_t **response)
{
	return request(store, target, body, false, response);
}

int tally__ddb_request_once(struct tally__ddb_store *store, const char *target, json_t *body,
			    json_t **response)
{
	return request(store, target, body, true, response);
}

json_t *tally__ddb_body(struct tally__ddb_store *store, enum tally__ddb_table table)
{
	return json_pack("{s:s}", "TableName", store->table[table]);
}

json_t *tally__ddb_writer_key(const char *writer_id)
{
	return json_pack("{s:o,s:o}", "id", tally__ddb_bin(writer_id, strlen(writer_id)), "part",
			 tally__ddb_num(0));
}

int tally__ddb_each(struct tally__ddb_store *store, const char *target, json_t *request,
		    int (*fn)(json_t *item, void *arg), void *arg)
{
	if (!request)
		return TALLY_ENOMEM;
	json_object_set_new(request, "ConsistentRead", json_true());
	int rc = TALLY_OK;
	for (int page = 0; page < 100000; page++) {
		json_t *reply = NULL;
		rc = tally__ddb_request(store, target, json_incref(request), &reply);
		if (rc)
			break;
		size_t i;
		json_t *item;
		json_array_foreach(json_object_get(reply, "Items"), i, item) {
			rc = fn(item, arg);
			if (rc)
				break;
		}
		json_t *next = json_object_get(reply, "LastEvaluatedKey");
		if (rc || !next) {
			json_decref(reply);
			break;
		}
		json_object_set(request, "ExclusiveStartKey", next);
		json_decref(reply);
	}
	json_decref(request);
	return rc;
}

static int batch_write_chunk(struct tally__ddb_store *store, const char *table, json_t *chunk,
			     int64_t deadline_ms)
{
	for (int attempt = 0;; attempt++) {
		json_t *body = json_pack("{s:{s:O}}", "RequestItems", table, chunk);
		json_t *reply = NULL;
		char text[256];
		int rc = tally__ddb_call_one(&store->client, "BatchWriteItem", body, false, deadline_ms,
					     &reply, text, sizeof(text));
		if (rc) {
			tally__ddb_set_error(store, "%s", text);
			return rc == TALLY__DDB_CONDITION_ERR ? TALLY_EINVAL : rc;
		}
		json_t *left = json_object_get(json_object_get(reply, "UnprocessedItems"), table);
		if (!left || json_array_size(left) == 0) {
			json_decref(reply);
			return TALLY_OK;
		}
		/* Unprocessed items: the table was throttled; back off (full jitter) and resend. */
		json_array_clear(chunk);
		json_array_extend(chunk, left);
		json_decref(reply);
		int64_t sleep_ms = tally__store_backoff_ms((unsigned)attempt, store->client.backoff_base_ms,
							   store->client.backoff_cap_ms);
		if (tally__ddb_now_ms() + sleep_ms >= deadline_ms) {
			tally__ddb_set_error(store, "dynamodb: BatchWriteItem: items still unprocessed");
			return TALLY_EUNAVAIL;
		}
		tally__store_sleep_ms(sleep_ms);
	}
}

int tally__ddb_batch_write(struct tally__ddb_store *store, enum tally__ddb_table table,
			   json_t *requests, int64_t deadline)
{
	if (!requests)
		return TALLY_ENOMEM;
	int rc = TALLY_OK;
	size_t n = json_array_size(requests);
	for (size_t i = 0; i < n && rc == TALLY_OK; i += 25) {
		json_t *chunk = json_array();
		for (size_t j = i; j < n && j < i + 25; j++)
			json_array_append(chunk, json_array_get(requests, j));
		rc = chunk ? batch_write_chunk(store, store->table[table], chunk, deadline)
			   : TALLY_ENOMEM;
		json_decref(chunk);
	}
	json_decref(requests);
	return rc;
}

/* ---- options -------------------------------------------------------------------------- */

struct url_options {
	char *endpoint, *region, *prefix, *access_key, *secret, *token;
	int64_t attempt_timeout_ms, max_in_flight, clock_skew_ms, cleanup_delay_ms;
	int64_t backoff_base_ms, backoff_cap_ms;
};

static void options_free(struct url_options *o)
{
	free(o->endpoint);
	free(o->region);
	free(o->prefix);
	if (o->access_key)
		explicit_bzero(o->access_key, strlen(o->access_key));
	if (o->secret)
		explicit_bzero(o->secret, strlen(o->secret));
	if (o->token)
		explicit_bzero(o->token, strlen(o->token));
	free(o->access_key);
	free(o->secret);
	free(o->token);
}

static const char *const known_options[] = {
	"endpoint", "region", "table_prefix", "access_key_id", "secret_access_key",
	"session_token", "attempt_timeout_ms", "max_in_flight", "clock_skew_ms",
	"cleanup_delay_ms", "backoff_base_ms", "backoff_cap_ms", NULL,
};

static int copy_option(const struct tally__store_url *url, const char *name, char **field)
{
	const char *v = tally__store_url_option(url, name);
	return v && *v && !(*field = strdup(v)) ? TALLY_ENOMEM : TALLY_OK;
}

static int parse_url(const char *url, struct url_options *o, char *error, size_t error_size)
{
	struct tally__store_url u;
	int rc = tally__store_url_parse(url, &u, error, error_size);
	if (rc)
		return rc;
	if (strcmp(u.scheme, "dynamodb") != 0 || u.host[0] || u.user[0] ||
	    (u.path[0] && strcmp(u.path, "/") != 0)) {
		tally__store_format(error, error_size,
				    "dynamodb: the URL takes options only (dynamodb://?endpoint=...)");
		rc = TALLY_EINVAL;
	}
	if (rc == TALLY_OK)
		rc = tally__store_url_check_options(&u, known_options, "dynamodb", error, error_size);
	static const char *const strings[] = {"endpoint", "region", "table_prefix", "access_key_id",
					      "secret_access_key", "session_token"};
	char **fields[] = {&o->endpoint, &o->region, &o->prefix, &o->access_key, &o->secret,
			   &o->token};
	for (size_t i = 0; rc == TALLY_OK && i < sizeof(strings) / sizeof(strings[0]); i++)
		rc = copy_option(&u, strings[i], fields[i]);
	static const struct { const char *name; int64_t min, max, fallback; } numbers[] = {
		{"attempt_timeout_ms", 1, 600000, 2000}, {"max_in_flight", 1, 1024, 32},
		{"clock_skew_ms", 0, 3600000, 1000}, {"cleanup_delay_ms", 0, INT64_MAX / 4, 60000},
		{"backoff_base_ms", 0, 60000, 10}, {"backoff_cap_ms", 0, 600000, 1000},
	};
	int64_t *targets[] = {&o->attempt_timeout_ms, &o->max_in_flight, &o->clock_skew_ms,
			      &o->cleanup_delay_ms, &o->backoff_base_ms, &o->backoff_cap_ms};
	for (size_t i = 0; rc == TALLY_OK && i < sizeof(numbers) / sizeof(numbers[0]); i++)
		rc = tally__store_option_int64(&u, numbers[i].name, numbers[i].min, numbers[i].max,
					       numbers[i].fallback, targets[i], "dynamodb", error,
					       error_size);
	tally__store_url_free(&u);
	return rc;
}

/* Fills what the URL left out from the environment. */
static int options_from_env(struct url_options *o)
{
	struct { char **field; const char *var[2]; } env[] = {
		{&o->endpoint, {"AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"}},
		{&o->region, {"AWS_REGION", "AWS_DEFAULT_REGION"}},
		{&o->access_key, {"AWS_ACCESS_KEY_ID", NULL}},
		{&o->secret, {"AWS_SECRET_ACCESS_KEY", NULL}},
		{&o->token, {"AWS_SESSION_TOKEN", NULL}},
	};
	for (size_t i = 0; i < sizeof(env) / sizeof(env[0]); i++)
		for (int j = 0; j < 2 && !*env[i].field && env[i].var[j]; j++) {
			const char *v = getenv(env[i].var[j]);
			if (v && *v && !(*env[i].field = strdup(v)))
				return TALLY_ENOMEM;
		}
	return TALLY_OK;
}

static int configure_client(struct tally__ddb_store *store, struct url_options *o,
			    char *error, size_t error_size)
{
	struct tally__ddb_client *c = &store->client;
	if (!o->region) {
		tally__store_format(error, error_size, "dynamodb: no region (AWS_REGION or ?region=)");
		return TALLY_EINVAL;
	}
	if (!o->access_key || !o->secret) {
		tally__store_format(error, error_size,
			 "dynamodb: no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)");
		return TALLY_EPERM;
	}
	if (strchr(o->access_key, ':')) {
		tally__store_format(error, error_size, "dynamodb: malformed access key id");
		return TALLY_EPERM;
	}
	snprintf(c->sigv4, sizeof(c->sigv4), "aws:amz:%.40s:dynamodb", o->region);
	if (o->endpoint)
		c->endpoint = strdup(o->endpoint);
	else if (asprintf(&c->endpoint, "https://dynamodb.%s.amazonaws.com", o->region) < 0)
		c->endpoint = NULL;
	size_t n = strlen(o->access_key) + strlen(o->secret) + 2;
	c->credentials = malloc(n);
	if (c->credentials)
		snprintf(c->credentials, n, "%s:%s", o->access_key, o->secret);
	if (o->token) {
		n = strlen(o->token) + 32;
		c->token_header = malloc(n);
		if (c->token_header)
			snprintf(c->token_header, n, "x-amz-security-token: %s", o->token);
	}
	if (!c->endpoint || !c->credentials || (o->token && !c->token_header))
		return TALLY_ENOMEM;
	c->attempt_timeout_ms = o->attempt_timeout_ms;
	c->max_in_flight = (int)o->max_in_flight;
	c->backoff_base_ms = o->backoff_base_ms;
	c->backoff_cap_ms = o->backoff_cap_ms;
	store->clock_skew_ms = o->clock_skew_ms;
	store->cleanup_delay_ms = o->cleanup_delay_ms;
	const char *prefix = o->prefix ? o->prefix : "tally_";
	static const char *const names[TALLY__DDB_TABLE_COUNT] = {
		"counters", "gauges", "writers", "leases", "sessions", "connections",
	};
	for (int t = 0; t < TALLY__DDB_TABLE_COUNT; t++)
		if ((size_t)snprintf(store->table[t], sizeof(store->table[t]), "%s%s", prefix,
				     names[t]) >= sizeof(store->table[t])) {
			tally__store_format(error, error_size, "dynamodb: table_prefix too long");
			return TALLY_EINVAL;
		}
	return TALLY_OK;
}

/* ---- schema --------------------------------------------------------------------------- */

static json_t *key_schema(const char *hash, const char *hash_type, const char *range,
			  const char *range_type, json_t **attributes)
{
	json_t *schema = json_pack("[{s:s,s:s}]", "AttributeName", hash, "KeyType", "HASH");
	json_array_append_new(*attributes,
			      json_pack("{s:s,s:s}", "AttributeName", hash, "AttributeType", hash_type));
	if (range) {
		json_array_append_new(schema, json_pack("{s:s,s:s}", "AttributeName", range,
							"KeyType", "RANGE"));
		json_array_append_new(*attributes, json_pack("{s:s,s:s}", "AttributeName", range,
							     "AttributeType", range_type));
	}
	return schema;
}

static json_t *create_table_body(struct tally__ddb_store *store, enum tally__ddb_table t)
{
	static const struct { const char *hash, *hash_type, *range, *range_type; } keys[] = {
		[TALLY__DDB_COUNTERS] = {"k", "B", NULL, NULL},
		[TALLY__DDB_GAUGES] = {"k", "B", "w", "N"},
		[TALLY__DDB_WRITERS] = {"id", "B", "part", "N"},
		[TALLY__DDB_LEASES] = {"k", "B", NULL, NULL},
		[TALLY__DDB_SESSIONS] = {"sessionId", "S", NULL, NULL},
		[TALLY__DDB_CONNECTIONS] = {"connectionId", "S", NULL, NULL},
	};
	json_t *attributes = json_array();
	json_t *body = tally__ddb_body(store, t);
	json_object_set_new(body, "KeySchema", key_schema(keys[t].hash, keys[t].hash_type,
							  keys[t].range, keys[t].range_type,
							  &attributes));
	json_object_set_new(body, "BillingMode", json_string("PAY_PER_REQUEST"));
	if (t == TALLY__DDB_CONNECTIONS) {
		/* The index by (sessionId, targetLanguage): the sort key is "#" + language, so a
		 * speaker without a language is indexed too (key attributes cannot be empty). */
		json_t *index_attrs = json_array();
		json_t *schema = key_schema("sessionId", "S", "languageKey", "S", &index_attrs);
		json_array_extend(attributes, index_attrs);
		json_decref(index_attrs);
		json_object_set_new(body, "GlobalSecondaryIndexes",
				    json_pack("[{s:s,s:o,s:{s:s}}]", "IndexName", "bySessionLanguage",
					      "KeySchema", schema, "Projection", "ProjectionType",
					      "ALL"));
	}
	json_object_set_new(body, "AttributeDefinitions", attributes);
	return body;
}

static bool table_active(json_t *describe_reply)
{
	const char *status = json_string_value(
		json_object_get(json_object_get(describe_reply, "Table"), "TableStatus"));
	return status && strcmp(status, "ACTIVE") == 0;
}

/* Waits until the table is ACTIVE (bounded by the store timeout). */
static int wait_active(struct tally__ddb_store *store, enum tally__ddb_table t)
{
	int64_t deadline = tally__ddb_now_ms() + store->timeout_ms;
	while (tally__ddb_now_ms() < deadline) {
		json_t *reply = NULL;
		int rc = tally__ddb_request(store, "DescribeTable", tally__ddb_body(store, t), &reply);
		if (rc)
			return rc == TALLY__DDB_CONDITION_ERR ? TALLY_EINVAL : rc;
		bool active = table_active(reply);
		json_decref(reply);
		if (active)
			return TALLY_OK;
		usleep(20000);
	}
	tally__ddb_set_error(store, "dynamodb: table %s did not become ACTIVE", store->table[t]);
	return TALLY_ETIMEDOUT;
}

/* TTL on the record tables' "ttl" attribute (seconds). dynalite has no UpdateTimeToLive
 * (UnknownOperationException): records then just stay until deleted. */
static void enable_ttl(struct tally__ddb_store *store, enum tally__ddb_table t)
{
	json_t *body = tally__ddb_body(store, t);
	json_object_set_new(body, "TimeToLiveSpecification",
			    json_pack("{s:b,s:s}", "Enabled", 1, "AttributeName", "ttl"));
	(void)tally__ddb_request(store, "UpdateTimeToLive", body, NULL);
}

static int put_schema_version(struct tally__ddb_store *store)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS);
	json_object_set_new(body, "Item",
			    json_pack("{s:o,s:o,s:o}", "id", tally__ddb_bin(schema_id, sizeof(schema_id) - 1),
				      "part", tally__ddb_num(0), "version", tally__ddb_num(SCHEMA_VERSION)));
	json_object_set_new(body, "ConditionExpression", json_string("attribute_not_exists(id)"));
	int rc = tally__ddb_request(store, "PutItem", body, NULL);
	return rc == TALLY__DDB_CONDITION_ERR ? TALLY_OK : rc;
}

static int check_schema_version(struct tally__ddb_store *store)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_WRITERS), *reply = NULL;
	json_object_set_new(body, "Key", json_pack("{s:o,s:o}", "id",
						   tally__ddb_bin(schema_id, sizeof(schema_id) - 1),
						   "part", tally__ddb_num(0)));
	json_object_set_new(body, "ConsistentRead", json_true());
	int rc = tally__ddb_request(store, "GetItem", body, &reply);
	if (rc)
		return rc;
	int64_t version = 0;
	tally__ddb_get_num(json_object_get(reply, "Item"), "version", &version, NULL);
	json_decref(reply);
	if (version != SCHEMA_VERSION) {
		tally__ddb_set_error(store, "dynamodb: table %s has schema version %" PRId64
				     ", this build reads %d", store->table[TALLY__DDB_WRITERS],
				     version, SCHEMA_VERSION);
		return TALLY_ECORRUPT;
	}
	return TALLY_OK;
}

static int ensure_schema(struct tally__ddb_store *store, bool create)
{
	bool created[TALLY__DDB_TABLE_COUNT] = {false};
	bool creating[TALLY__DDB_TABLE_COUNT] = {false}; /* by another process, not ACTIVE yet */
	for (int t = 0; t < TALLY__DDB_TABLE_COUNT; t++) {
		json_t *reply = NULL;
		int rc = tally__ddb_request(store, "DescribeTable", tally__ddb_body(store, t), &reply);
		/* a table another opener just created refuses writes until ACTIVE */
		creating[t] = rc == TALLY_OK && !table_active(reply);
		json_decref(reply);
		if (rc == TALLY_OK)
			continue;
		if (rc != TALLY_ECORRUPT) /* ResourceNotFoundException maps to ECORRUPT */
			return rc;
		if (!create) {
			tally__ddb_set_error(store, "dynamodb: table %s does not exist (open with create_schema)",
					     store->table[t]);
			return TALLY_ECORRUPT;
		}
		rc = tally__ddb_request(store, "CreateTable", create_table_body(store, t), NULL);
		if (rc == TALLY_EINVAL && strstr(ddb_last_error(store), "ResourceInUse"))
			rc = TALLY_OK; /* another process created it meanwhile */
		if (rc)
			return rc;
		created[t] = true;
	}
	for (int t = 0; t < TALLY__DDB_TABLE_COUNT; t++) {
		int rc = created[t] || creating[t] ? wait_active(store, t) : TALLY_OK;
		if (rc)
			return rc;
		if (created[t] && (t == TALLY__DDB_SESSIONS || t == TALLY__DDB_CONNECTIONS))
			enable_ttl(store, t);
	}
	int rc = created[TALLY__DDB_WRITERS] || create ? put_schema_version(store) : TALLY_OK;
	if (rc == TALLY_OK && created[TALLY__DDB_LEASES])
		rc = tally__ddb_lease_generation_create(store);
	return rc ? rc : check_schema_version(store);
}

static int ddb_open(const char *url, const struct tally_store_options *options, void **impl,
		    char *error, size_t error_size)
{
	struct url_options o = {0};
	struct tally__ddb_store *store = calloc(1, sizeof(*store));
	if (!store)
		return TALLY_ENOMEM;
	int rc = parse_url(url, &o, error, error_size);
	if (rc == TALLY_OK)
		rc = options_from_env(&o);
	bool client_ready = false;
	if (rc == TALLY_OK)
		rc = tally__ddb_client_init(&store->client, error, error_size);
	if (rc == TALLY_OK) {
		client_ready = true;
		rc = configure_client(store, &o, error, error_size);
	}
	options_free(&o);
	store->timeout_ms = options && options->timeout_ms > 0 ? options->timeout_ms : 5000;
	if (rc == TALLY_OK) {
		rc = ensure_schema(store, options && options->create_schema);
		if (rc)
			tally__store_format(error, error_size, "%s", ddb_last_error(store));
	}
	if (rc) {
		if (client_ready)
			tally__ddb_client_destroy(&store->client);
		tally__store_clear_error(store);
		free(store);
		return rc;
	}
	*impl = store;
	return TALLY_OK;
}

static void ddb_close(void *impl)
{
	struct tally__ddb_store *store = impl;
	if (!store)
		return;
	tally__ddb_client_destroy(&store->client);
	tally__store_clear_error(store);
	free(store);
}

/* ---- counters ------------------------------------------------------------------------- */

static json_t *counter_key(const char *key, size_t key_len)
{
	return json_pack("{s:o}", "k", tally__ddb_bin(key, key_len));
}

static int ddb_read_counter(void *impl, const char *key, size_t key_len, int64_t *total)
{
	struct tally__ddb_store *store = impl;
	json_t *body = tally__ddb_body(store, TALLY__DDB_COUNTERS), *reply = NULL;
	json_object_set_new(body, "Key", counter_key(key, key_len));
	json_object_set_new(body, "ConsistentRead", json_true());
	json_object_set_new(body, "ProjectionExpression", json_string("v"));
	int rc = tally__ddb_request(store, "GetItem", body, &reply);
	if (rc)
		return rc;
	bool present = false;
	if (tally__ddb_get_num(json_object_get(reply, "Item"), "v", total, &present))
		rc = TALLY_ECORRUPT;
	else if (!present)
		rc = TALLY_ENOTFOUND;
	json_decref(reply);
	return rc;
}

struct counter_visit {
	tally_store_counter_fn fn;
	void *arg;
};

static int visit_counter(json_t *item, void *arg)
{
	struct counter_visit *visit = arg;
	char key[TALLY_STORE_KEY_MAX];
	long len = tally__ddb_get_bin(item, "k", key, sizeof(key));
	int64_t total;
	bool present;
	if (len <= 0 || tally__ddb_get_num(item, "v", &total, &present) || !present)
		return 0; /* not a counter item (never happens in our tables) */
	return visit->fn(key, (size_t)len, total, visit->arg) ? -1000 : 0;
}

static int ddb_counters(void *impl, tally_store_counter_fn fn, void *arg)
{
	struct tally__ddb_store *store = impl;
	struct counter_visit visit = {fn, arg};
	json_t *body = tally__ddb_body(store, TALLY__DDB_COUNTERS);
	int rc = tally__ddb_each(store, "Scan", body, visit_counter, &visit);
	return rc == -1000 ? TALLY_OK : rc;
}

/* ADD v :amount on a counter, with an optional floor condition; *value = the new total. */
static int add_to_counter(struct tally__ddb_store *store, const char *key, size_t key_len,
			  int64_t amount, int64_t floor_n, int64_t *value)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_COUNTERS), *reply = NULL;
	json_object_set_new(body, "Key", counter_key(key, key_len));
	json_object_set_new(body, "UpdateExpression", json_string("ADD v :amount"));
	json_t *values = json_pack("{s:o}", ":amount", tally__ddb_num(amount));
	if (floor_n > 0) {
		json_object_set_new(body, "ConditionExpression", json_string("v >= :n"));
		json_object_set_new(values, ":n", tally__ddb_num(floor_n));
	}
	json_object_set_new(body, "ExpressionAttributeValues", values);
	json_object_set_new(body, "ReturnValues", json_string("UPDATED_NEW"));
	/* A take is not idempotent: a retry after a lost answer could take twice. */
	int rc = tally__ddb_request_once(store, "UpdateItem", body, &reply);
	if (rc == TALLY__DDB_CONDITION_ERR)
		return TALLY_EFLOOR;
	if (rc)
		return rc;
	int64_t total = 0;
	if (tally__ddb_get_num(json_object_get(reply, "Attributes"), "v", &total, NULL))
		rc = TALLY_EOVERFLOW; /* beyond int64: DynamoDB numbers carry 38 digits */
	json_decref(reply);
	if (value)
		*value = total;
	return rc;
}

static int ddb_take(void *impl, const char *key, size_t key_len, int64_t n, int64_t *remaining)
{
	if (n <= 0)
		return TALLY_EINVAL;
	return add_to_counter(impl, key, key_len, -n, n, remaining);
}

static int ddb_give(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total)
{
	if (n <= 0)
		return TALLY_EINVAL;
	return add_to_counter(impl, key, key_len, n, 0, total);
}

const struct tally_store_ops tally__store_dynamodb_ops = {
	.scheme = "dynamodb",
	.open = ddb_open,
	.close = ddb_close,
	.writer_open = tally__ddb_writer_open,
	.heartbeat = tally__ddb_heartbeat,
	.flush = tally__ddb_flush,
	.writer_close = tally__ddb_writer_close,
	.read_counter = ddb_read_counter,
	.read_gauge = tally__ddb_read_gauge,
	.counters = ddb_counters,
	.writers = tally__ddb_writers,
	.sessions = tally__ddb_sessions,
	.connections = tally__ddb_connections,
	.reap = tally__ddb_reap,
	.take = ddb_take,
	.give = ddb_give,
	.lease_ops = &tally__ddb_lease_ops,
	.leases = tally__ddb_leases,
	.last_error = ddb_last_error,
};
