/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_internal.h: what the DynamoDB backend's files share
 * (docs/store-dynamodb.md). Never installed.
 *
 * dynamodb_http.c  the HTTP client: curl multi (many requests in flight, keep-alive
 *                  connections), SigV4 by curl, retries with full-jitter backoff, the
 *                  DynamoDB error classes.
 * dynamodb_json.c  attribute values, base64 keys, the packed flush numbers.
 * dynamodb.c       opening (options, tables), counter reads, takes, shared helpers.
 * dynamodb_writer.c the writer protocol: writer_open, heartbeat, flush, close.
 * dynamodb_apply.c the conditional writes of a flush, intents, roll-forward, tombstones.
 * dynamodb_reap.c  writers read back, gauge reads, reaping, attribute cleanup.
 * dynamodb_records.c the Sessions and Connections tables.
 * dynamodb_lease.c the lease provider.
 */
#ifndef TALLY_STORE_DYNAMODB_INTERNAL_H
#define TALLY_STORE_DYNAMODB_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tally/store.h>

#include "store/internal.h"

/* ---- the HTTP client ------------------------------------------------------------------ */

struct tally__ddb_multi; /* one curl multi handle and its connection cache */

struct tally__ddb_client {
	char *endpoint;        /* "http://127.0.0.1:4567" or "https://dynamodb.REGION.amazonaws.com" */
	char sigv4[96];        /* "aws:amz:REGION:dynamodb" */
	char *credentials;     /* "ACCESS:SECRET" for CURLOPT_USERPWD; wiped at close */
	char *token_header;    /* "x-amz-security-token: ..." or NULL; wiped at close */
	int64_t attempt_timeout_ms; /* one HTTP attempt */
	int64_t backoff_base_ms;    /* full jitter: sleep U(0, min(cap, base * 2^attempt)) */
	int64_t backoff_cap_ms;
	int max_in_flight;          /* requests one call_many keeps in flight */
	pthread_mutex_t pool_lock;  /* guards idle */
	struct tally__ddb_multi *idle; /* multi handles not in use (a stack) */
	/* Statistics for the benchmark (relaxed: counts, nothing is ordered by them). */
	atomic_llong requests;      /* HTTP attempts sent */
	atomic_llong retries;       /* attempts that were retries */
	atomic_llong peak_in_flight;
};

/* What a call came back with, beyond success. */
enum tally__ddb_outcome {
	TALLY__DDB_OK = 0,
	TALLY__DDB_CONDITION,  /* ConditionalCheckFailedException */
	TALLY__DDB_FAILED,     /* err holds the tally error */
};

/* One request. The caller sets target ("UpdateItem", ...) and body (owned by the call,
 * freed by tally__ddb_call_reset); call_many fills the rest. */
struct tally__ddb_call {
	const char *target;
	char *body;
	size_t body_len;
	json_t *response;          /* the parsed 200 body (NULL otherwise) */
	enum tally__ddb_outcome outcome;
	int err;                   /* tally error when outcome is FAILED */
	bool ambiguous;            /* some attempt may have reached the server without an answer */
	bool once;                 /* not idempotent (take, give): no retry after an attempt that
				    * may have been applied (timeout, cut connection, 5xx) */
	char error_type[64];       /* DynamoDB's __type after '#', or curl's error name */
	char message[160];         /* DynamoDB's message (names tables and rules, never secrets) */
	/* private to dynamodb_http.c */
	int attempts;
	int64_t not_before_ms;
	struct tally__ddb_buf { char *data; size_t len, cap; } reply;
	void *easy;
	void *headers;
};

int tally__ddb_client_init(struct tally__ddb_client *client, char *error, size_t error_size);
void tally__ddb_client_destroy(struct tally__ddb_client *client);

/* Sets call->body from json (takes a reference: json is decref'd). ENOMEM. */
int tally__ddb_call_set(struct tally__ddb_call *call, const char *target, json_t *json);
void tally__ddb_call_reset(struct tally__ddb_call *call);

/*
 * Runs the calls, up to max_in_flight at once, each retried with full-jitter backoff on
 * throttling, 5xx and connection errors until it succeeds, fails permanently or
 * deadline_ms (CLOCK_REALTIME ms) passes (then EUNAVAIL, or ETIMEDOUT if the last attempt
 * timed out). Blocking; any number of threads may call it at once. Returns TALLY_OK or
 * ENOMEM; each call's own outcome is in the call.
 */
int tally__ddb_call_many(struct tally__ddb_client *client, struct tally__ddb_call *calls,
			 size_t count, int64_t deadline_ms);

/* One call; returns its tally error (0 for OK) and writes a description into error.
 * CONDITION gives TALLY__DDB_CONDITION_ERR. once: see struct tally__ddb_call. */
#define TALLY__DDB_CONDITION_ERR (-1)
int tally__ddb_call_one(struct tally__ddb_client *client, const char *target, json_t *body,
			bool once, int64_t deadline_ms, json_t **response, char *error,
			size_t error_size);

int64_t tally__ddb_now_ms(void);

/* ---- JSON ----------------------------------------------------------------------------- */

/* {"B": base64(bytes)} */
json_t *tally__ddb_bin(const char *bytes, size_t len);
/* {"N": "123"} */
json_t *tally__ddb_num(int64_t value);
json_t *tally__ddb_num_str(const char *digits);
/* {"S": "..."}; NULL if s is not valid UTF-8 */
json_t *tally__ddb_str(const char *s);
/* decodes a {"B": ...} attribute into out (at most cap bytes); -1 if absent/malformed */
long tally__ddb_get_bin(json_t *item, const char *name, char *out, size_t cap);
/* an {"N": ...} attribute as int64: 0 and *present = false when absent; -1 malformed */
int tally__ddb_get_num(json_t *item, const char *name, int64_t *value, bool *present);
/* an {"N": ...} attribute's digits (or NULL) */
const char *tally__ddb_get_num_str(json_t *item, const char *name);
/* an {"S": ...} attribute (or NULL) */
const char *tally__ddb_get_str(json_t *item, const char *name);

/* Flush numbers: epoch and seq packed into one decimal number that only grows,
 * epoch * 10^15 + seq (DynamoDB numbers carry 38 digits). TALLY__DDB_SEQ_MAX is the
 * tombstone that fences every later write of an epoch. */
#define TALLY__DDB_SEQ_LIMIT UINT64_C(1000000000000000)
#define TALLY__DDB_SEQ_MAX (TALLY__DDB_SEQ_LIMIT - 1)
#define TALLY__DDB_FLUSHNO_MAX 40
void tally__ddb_flushno(char out[TALLY__DDB_FLUSHNO_MAX], uint64_t epoch, uint64_t seq);
/* compares two packed numbers given as digit strings (no sign, no leading zeros) */
int tally__ddb_flushno_cmp(const char *a, const char *b);

/* ---- the store ------------------------------------------------------------------------ */

enum tally__ddb_table {
	TALLY__DDB_COUNTERS,    /* k (B): v, w<slot> = the writer's last flush number */
	TALLY__DDB_GAUGES,      /* k (B), w (N slot): v, f (flush number), e (epoch) */
	TALLY__DDB_WRITERS,     /* id (B), part (N): 0 the writer item, E*10^6+c intent chunks */
	TALLY__DDB_LEASES,      /* k (B): hi, issued, flags, gen; "\0generation" item */
	TALLY__DDB_SESSIONS,    /* sessionId (S) */
	TALLY__DDB_CONNECTIONS, /* connectionId (S); index bySessionLanguage */
	TALLY__DDB_TABLE_COUNT
};

#define TALLY__DDB_TABLE_NAME_MAX 256
#define TALLY__DDB_INTENT_PART UINT64_C(1000000) /* part = epoch * this + chunk (1-based) */

struct tally__ddb_store {
	struct tally__ddb_client client;
	char table[TALLY__DDB_TABLE_COUNT][TALLY__DDB_TABLE_NAME_MAX];
	int64_t timeout_ms;       /* options.timeout_ms */
	int64_t clock_skew_ms;    /* bound on writer clock skew (reaping waits it out) */
	int64_t cleanup_delay_ms; /* a reaped writer's counter attributes go after this */
	_Atomic int64_t slot;     /* this handle's writer slot (0 = none yet) */
	_Atomic uint64_t lease_generation; /* the lease table generation seen first (0 = not yet) */
};

/* Records the calling thread's last error on this store (no secrets): lib/store/internal.h's
 * per-thread, per-owner texts. */
#define tally__ddb_set_error tally__store_set_error
/* One call with the store's deadline; the error text is recorded. */
int tally__ddb_request(struct tally__ddb_store *store, const char *target, json_t *body,
		       json_t **response);
/* The same for a request that is not idempotent: an ambiguous failure is returned
 * (EUNAVAIL/ETIMEDOUT: it may have happened), never retried. */
int tally__ddb_request_once(struct tally__ddb_store *store, const char *target, json_t *body,
			    json_t **response);
/* {"TableName": table} */
json_t *tally__ddb_body(struct tally__ddb_store *store, enum tally__ddb_table table);
/* Scans (or, with a key condition, queries) a whole table page by page, ConsistentRead,
 * calling fn per item until it returns non-zero (then that value is returned). `request`
 * is the body without pagination (consumed). */
int tally__ddb_each(struct tally__ddb_store *store, const char *target, json_t *request,
		    int (*fn)(json_t *item, void *arg), void *arg);
/* Puts/deletes through BatchWriteItem, 25 per call, UnprocessedItems retried with
 * backoff until deadline_ms. `requests` is an array of {"PutRequest": ...} /
 * {"DeleteRequest": ...} for `table` (consumed). */
int tally__ddb_batch_write(struct tally__ddb_store *store, enum tally__ddb_table table,
			   json_t *requests, int64_t deadline_ms);
/* The writer item {id, part 0} key */
json_t *tally__ddb_writer_key(const char *writer_id);

/* dynamodb_writer.c: the writer item {id, part 0} */
struct tally__ddb_writer_state {
	bool present;
	uint64_t slot, epoch, last_seq, pending, pending_chunks, cl_epoch;
	int64_t expires_ms, reaped_ms; /* reaped_ms 0: not reaped */
	bool attrs_done, closed;       /* closed: ended by writer_close, not by a reaper */
};
uint64_t tally__ddb_get_u64(json_t *item, const char *name);
void tally__ddb_parse_writer(json_t *item, struct tally__ddb_writer_state *w);
int tally__ddb_read_writer(struct tally__ddb_store *store, const char *id,
			   struct tally__ddb_writer_state *w);
/* An UpdateItem on the writer item (values consumed); a failed condition comes back as
 * TALLY__DDB_CONDITION_ERR; attributes (may be NULL) gets ALL_NEW. */
int tally__ddb_update_writer(struct tally__ddb_store *store, const char *id, const char *update,
			     const char *condition, json_t *values, json_t **attributes);
/* A state change of the writer item (epoch switch, reap, close) that must not be mistaken
 * for a refusal when its answer was lost: it also sets a random token "op", and a failed
 * condition is OK if the item holds that token. values consumed. */
int tally__ddb_transition(struct tally__ddb_store *store, const char *id, const char *update,
			  const char *condition, json_t *values);
/* the counter attribute holding a writer slot's last flush number: "w<slot>" */
void tally__ddb_slot_attribute(char out[32], uint64_t slot);
/* Completes a recorded cleanup obligation (cl_epoch): gauges tombstoned, connections gone. */
int tally__ddb_finish_cleanup(struct tally__ddb_store *store, const char *id, uint64_t slot,
			      uint64_t cl_epoch);
int tally__ddb_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			   struct tally_store_epoch_info *info);
int tally__ddb_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms);
int tally__ddb_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
		     const struct tally_store_batch *batch, struct tally_store_flush_result *result);
int tally__ddb_writer_close(void *impl, const char *writer_id, uint64_t epoch);

/* dynamodb_apply.c: the conditional writes of a flush */
struct tally__ddb_applied {
	int err;              /* the worst error so far (a permanent one outranks a transient) */
	int64_t rows, calls;
};
void tally__ddb_note_error(struct tally__ddb_applied *a, int err);
struct tally__ddb_delta { /* one counter's delta */
	const char *key;
	size_t key_len;
	int64_t delta;
};
void tally__ddb_apply_counters(struct tally__ddb_store *store, uint64_t slot, const char *flushno,
			       const struct tally__ddb_delta *deltas, size_t count,
			       int64_t deadline_ms, struct tally__ddb_applied *a);
void tally__ddb_apply_gauges(struct tally__ddb_store *store, const char *id, uint64_t slot,
			     uint64_t epoch, const char *flushno,
			     const struct tally_store_batch *batch, int64_t deadline_ms,
			     struct tally__ddb_applied *a);
/* the batch's counters as intent chunks of the writer item; *chunks = how many */
int tally__ddb_write_intent(struct tally__ddb_store *store, const char *id, uint64_t epoch,
			    const struct tally_store_batch *batch, uint64_t *chunks);
/* re-applies flush (epoch, seq) from its intent: every delta lands once */
int tally__ddb_roll_forward(struct tally__ddb_store *store, const char *id, uint64_t slot,
			    uint64_t epoch, uint64_t seq, uint64_t chunks);
/* fences (slot, epoch) on every gauge item: f = pack(epoch, SEQ_MAX), value removed */
int tally__ddb_tombstone_gauges(struct tally__ddb_store *store, uint64_t slot, uint64_t epoch);

/* dynamodb_reap.c */
int tally__ddb_writers(void *impl, tally_store_writer_fn fn, void *arg);
int tally__ddb_reap(void *impl, int64_t *reaped);
int tally__ddb_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			  int64_t *live_writers);

/* dynamodb_records.c */
int tally__ddb_records_requests(struct tally__ddb_store *store, const char *writer_id,
				uint64_t epoch, const struct tally_store_record *records,
				size_t count, json_t *sessions, json_t *connections);
int tally__ddb_sessions(void *impl, const char *writer_id, tally_store_session_fn fn, void *arg);
int tally__ddb_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			   void *arg);
/* removes every connection record written by (writer_id, epoch) */
int tally__ddb_drop_connections(struct tally__ddb_store *store, const char *writer_id,
				uint64_t epoch);

/* dynamodb_lease.c */
extern const struct tally_lease_ops tally__ddb_lease_ops;
int tally__ddb_leases(void *impl, tally_store_lease_fn fn, void *arg);
/* creates the lease table's generation item (schema creation only) */
int tally__ddb_lease_generation_create(struct tally__ddb_store *store);


#endif
