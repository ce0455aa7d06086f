/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_http.c: the DynamoDB HTTP client (docs/store-dynamodb.md).
 *
 * DynamoDB has no batch update, so a flush is many UpdateItems at once: one curl multi
 * handle drives up to max_in_flight requests over keep-alive connections. Multi handles are
 * not thread-safe, so each call_many borrows one from a small pool (each keeps its own
 * connection cache, which stays warm between flushes).
 *
 * Signing: curl's CURLOPT_AWS_SIGV4 with "aws:amz:REGION:dynamodb" (curl would take region
 * and service from the host name, which a loopback endpoint does not have). The body goes in
 * through CURLOPT_POSTFIELDS: curl hashes only that (a read callback's body is hashed as
 * empty). The secret lives in one buffer, given to curl per request and wiped at close.
 *
 * libcurl itself may send a request a second time (a reused connection found dead before
 * any answer): every request the backend makes is idempotent by its condition or harmless
 * twice (a lease block wasted), except takes, which go on a fresh connection and are never
 * retried after an attempt that may have been applied.
 *
 * Retries: throttling (ProvisionedThroughputExceeded, Throttling, RequestLimitExceeded),
 * 5xx and connection errors are retried after U(0, min(cap, base * 2^attempt)) ms (full
 * jitter) until the caller's deadline. Everything else is final: a conditional-check
 * failure goes back to the caller, validation, permission and missing-table errors become
 * permanent tally errors, never a spin.
 */
#include "config.h"

#include "store/dynamodb_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tally__ddb_multi {
	CURLM *multi;
	struct tally__ddb_multi *next;
};

int64_t tally__ddb_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wipe_free(char *secret)
{
	if (secret) {
		explicit_bzero(secret, strlen(secret));
		free(secret);
	}
}

/* curl_global_init is not thread-safe before 7.84; run it once. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;
static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int tally__ddb_client_init(struct tally__ddb_client *client, char *error, size_t error_size)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK) {
		snprintf(error, error_size, "dynamodb: curl_global_init failed");
		return TALLY_ENOMEM;
	}
	if (pthread_mutex_init(&client->pool_lock, NULL) != 0)
		return TALLY_ENOMEM;
	client->idle = NULL;
	atomic_init(&client->requests, 0);
	atomic_init(&client->retries, 0);
	atomic_init(&client->peak_in_flight, 0);
	return TALLY_OK;
}

void tally__ddb_client_destroy(struct tally__ddb_client *client)
{
	struct tally__ddb_multi *m = client->idle;
	while (m) {
		struct tally__ddb_multi *next = m->next;
		curl_multi_cleanup(m->multi);
		free(m);
		m = next;
	}
	client->idle = NULL;
	pthread_mutex_destroy(&client->pool_lock);
	free(client->endpoint);
	wipe_free(client->credentials);
	wipe_free(client->token_header);
	client->endpoint = client->credentials = client->token_header = NULL;
}

static struct tally__ddb_multi *multi_borrow(struct tally__ddb_client *client)
{
	pthread_mutex_lock(&client->pool_lock);
	struct tally__ddb_multi *m = client->idle;
	if (m)
		client->idle = m->next;
	pthread_mutex_unlock(&client->pool_lock);
	if (m)
		return m;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->multi = curl_multi_init();
	if (!m->multi) {
		free(m);
		return NULL;
	}
	return m;
}

static void multi_return(struct tally__ddb_client *client, struct tally__ddb_multi *m)
{
	pthread_mutex_lock(&client->pool_lock);
	m->next = client->idle;
	client->idle = m;
	pthread_mutex_unlock(&client->pool_lock);
}

int tally__ddb_call_set(struct tally__ddb_call *call, const char *target, json_t *json)
{
	memset(call, 0, sizeof(*call));
	call->target = target;
	if (!json)
		return TALLY_ENOMEM;
	call->body = json_dumps(json, JSON_COMPACT);
	json_decref(json);
	if (!call->body)
		return TALLY_ENOMEM;
	call->body_len = strlen(call->body);
	return TALLY_OK;
}

void tally__ddb_call_reset(struct tally__ddb_call *call)
{
	free(call->body);
	free(call->reply.data);
	json_decref(call->response);
	memset(call, 0, sizeof(*call));
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct tally__ddb_buf *buf = arg;
	size_t n = size * nmemb;
	if (buf->len + n + 1 > buf->cap) {
		size_t cap = buf->cap ? buf->cap * 2 : 1024;
		while (cap < buf->len + n + 1)
			cap *= 2;
		char *data = realloc(buf->data, cap);
		if (!data)
			return 0; /* curl reports CURLE_WRITE_ERROR */
		buf->data = data;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, ptr, n);
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

static CURL *easy_for(struct tally__ddb_client *client, struct tally__ddb_call *call,
		      int64_t timeout_ms)
{
	CURL *easy = curl_easy_init();
	if (!easy)
		return NULL;
	char target[96];
	snprintf(target, sizeof(target), "X-Amz-Target: DynamoDB_20120810.%s", call->target);
	struct curl_slist *headers = NULL, *h;
	h = curl_slist_append(headers, "Content-Type: application/x-amz-json-1.0");
	if (h)
		headers = h;
	h = h ? curl_slist_append(headers, target) : NULL;
	if (h)
		headers = h;
	if (h && client->token_header) {
		h = curl_slist_append(headers, client->token_header);
		if (h)
			headers = h;
	}
	h = h ? curl_slist_append(headers, "Expect:") : NULL; /* no 100-continue round trip */
	if (!h) {
		curl_slist_free_all(headers);
		curl_easy_cleanup(easy);
		return NULL;
	}
	call->headers = headers;
	call->reply.len = 0;
	curl_easy_setopt(easy, CURLOPT_URL, client->endpoint);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
	if (client->credentials) {
		curl_easy_setopt(easy, CURLOPT_USERPWD, client->credentials);
		curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, client->sigv4);
	}
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &call->reply);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 1 ? timeout_ms : 1));
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms > 1 ? timeout_ms : 1));
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, call);
	/* libcurl re-sends a request by itself when a reused connection turns out closed
	 * before any answer ("Connection died, retrying a fresh connect"): harmless for the
	 * conditional writes, not for a take, which therefore gets a connection of its own. */
	if (call->once)
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
	return easy;
}

static void easy_release(struct tally__ddb_call *call)
{
	if (call->easy)
		curl_easy_cleanup(call->easy);
	curl_slist_free_all(call->headers);
	call->easy = NULL;
	call->headers = NULL;
}

static bool is_one_of(const char *type, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(type, *names) == 0)
			return true;
	return false;
}

static const char *const throttled_types[] = {
	"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
	"LimitExceededException", "InternalServerError", "ServiceUnavailable",
	"TransactionInProgressException", NULL,
};
static const char *const auth_types[] = {
	"AccessDeniedException", "UnrecognizedClientException", "MissingAuthenticationTokenException",
	"InvalidSignatureException", "IncompleteSignatureException", "ExpiredTokenException",
	"InvalidClientTokenId", "MissingAuthenticationToken", NULL,
};

/* The DynamoDB error type of a 4xx/5xx reply ("...#ConditionalCheckFailedException"). */
static void error_type_of(struct tally__ddb_call *call)
{
	call->error_type[0] = '\0';
	call->message[0] = '\0';
	json_t *j = call->reply.data ? json_loadb(call->reply.data, call->reply.len, 0, NULL) : NULL;
	const char *type = j ? json_string_value(json_object_get(j, "__type")) : NULL;
	if (type) {
		const char *hash = strrchr(type, '#');
		snprintf(call->error_type, sizeof(call->error_type), "%s", hash ? hash + 1 : type);
	}
	const char *message = j ? json_string_value(json_object_get(j, "message")) : NULL;
	if (!message && j)
		message = json_string_value(json_object_get(j, "Message"));
	if (message)
		snprintf(call->message, sizeof(call->message), "%s", message);
	json_decref(j);
}

enum verdict { DONE, RETRY };

/* Sorts one finished attempt into a final outcome or a retry. */
static enum verdict judge(struct tally__ddb_call *call, CURLcode code, long status)
{
	if (code != CURLE_OK) {
		/* The request may have reached the server: only a refused connect proves it did not. */
		if (code != CURLE_COULDNT_CONNECT && code != CURLE_COULDNT_RESOLVE_HOST)
			call->ambiguous = true;
		call->err = code == CURLE_OPERATION_TIMEDOUT ? TALLY_ETIMEDOUT : TALLY_EUNAVAIL;
		if (code == CURLE_OUT_OF_MEMORY || code == CURLE_WRITE_ERROR) {
			call->err = TALLY_ENOMEM;
			call->outcome = TALLY__DDB_FAILED;
			return DONE;
		}
		snprintf(call->error_type, sizeof(call->error_type), "%s", curl_easy_strerror(code));
		return RETRY;
	}
	if (status == 200) {
		call->response = json_loadb(call->reply.data ? call->reply.data : "", call->reply.len,
					    0, NULL);
		if (!call->response) {
			call->outcome = TALLY__DDB_FAILED;
			call->err = TALLY_EUNAVAIL;
			call->ambiguous = true;
			snprintf(call->error_type, sizeof(call->error_type), "unparsable reply");
			return RETRY;
		}
		call->outcome = TALLY__DDB_OK;
		call->err = TALLY_OK;
		return DONE;
	}
	error_type_of(call);
	if (status >= 500 || is_one_of(call->error_type, throttled_types)) {
		if (status >= 500)
			call->ambiguous = true; /* a 5xx may come after the write */
		if (!call->error_type[0])
			snprintf(call->error_type, sizeof(call->error_type), "HTTP %ld", status);
		call->err = TALLY_EUNAVAIL;
		return RETRY;
	}
	call->outcome = TALLY__DDB_FAILED;
	if (strcmp(call->error_type, "ConditionalCheckFailedException") == 0)
		call->outcome = TALLY__DDB_CONDITION;
	else if (status == 403 || is_one_of(call->error_type, auth_types))
		call->err = TALLY_EPERM;
	else if (strcmp(call->error_type, "ResourceNotFoundException") == 0)
		call->err = TALLY_ECORRUPT; /* a table is missing: the schema is not there */
	else
		call->err = TALLY_EINVAL;   /* ValidationException, SerializationException, ... */
	if (!call->error_type[0])
		snprintf(call->error_type, sizeof(call->error_type), "HTTP %ld", status);
	return DONE;
}

static int64_t full_jitter_ms(struct tally__ddb_client *client, int attempt)
{
	return tally__store_backoff_ms((unsigned)attempt, client->backoff_base_ms,
				       client->backoff_cap_ms);
}

static void note_peak(struct tally__ddb_client *client, long long in_flight)
{
	long long peak = atomic_load_explicit(&client->peak_in_flight, memory_order_relaxed);
	while (in_flight > peak &&
	       !atomic_compare_exchange_weak_explicit(&client->peak_in_flight, &peak, in_flight,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/* Starts every waiting call whose backoff has passed, up to the in-flight bound. Returns
 * ENOMEM or OK; *next_wake_ms gets the earliest backoff still pending. */
static void finish(struct tally__ddb_call *call, int err);

static int start_ready(struct tally__ddb_client *client, CURLM *multi,
		       struct tally__ddb_call *calls, size_t count, int64_t deadline_ms,
		       int *in_flight, int64_t *next_wake_ms, size_t *done)
{
	int64_t now = tally__ddb_now_ms();
	*next_wake_ms = INT64_MAX;
	for (size_t i = 0; i < count && *in_flight < client->max_in_flight; i++) {
		struct tally__ddb_call *call = &calls[i];
		if (call->easy || call->attempts < 0)
			continue;
		if (now >= deadline_ms) {
			/* Nothing starts after the deadline (the fencing argument in
			 * dynamodb_writer.c relies on it). */
			if (!call->error_type[0])
				snprintf(call->error_type, sizeof(call->error_type), "deadline passed");
			finish(call, call->err ? call->err : TALLY_ETIMEDOUT);
			(*done)++;
			continue;
		}
		if (call->not_before_ms > now) {
			if (call->not_before_ms < *next_wake_ms)
				*next_wake_ms = call->not_before_ms;
			continue;
		}
		int64_t timeout = deadline_ms - now;
		if (timeout > client->attempt_timeout_ms)
			timeout = client->attempt_timeout_ms;
		call->easy = easy_for(client, call, timeout);
		if (!call->easy)
			return TALLY_ENOMEM;
		if (curl_multi_add_handle(multi, call->easy) != CURLM_OK) {
			easy_release(call);
			return TALLY_ENOMEM;
		}
		if (call->attempts > 0)
			atomic_fetch_add_explicit(&client->retries, 1, memory_order_relaxed);
		call->attempts++;
		atomic_fetch_add_explicit(&client->requests, 1, memory_order_relaxed);
		(*in_flight)++;
	}
	note_peak(client, *in_flight);
	return TALLY_OK;
}

/* Marks a call final (attempts = -1 so start_ready skips it). */
static void finish(struct tally__ddb_call *call, int err)
{
	if (err) {
		call->outcome = TALLY__DDB_FAILED;
		call->err = err;
	}
	call->attempts = -1;
}

static void collect(struct tally__ddb_client *client, CURLM *multi, int64_t deadline_ms,
		    int *in_flight, size_t *done)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct tally__ddb_call *call = NULL;
		long status = 0;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		CURLcode code = msg->data.result;
		curl_multi_remove_handle(multi, msg->easy_handle);
		easy_release(call);
		(*in_flight)--;
		enum verdict verdict = judge(call, code, status);
		if (verdict == RETRY && call->once && call->ambiguous) {
			finish(call, call->err ? call->err : TALLY_EUNAVAIL);
			(*done)++;
			continue;
		}
		if (verdict == DONE) {
			finish(call, 0);
			(*done)++;
			continue;
		}
		int64_t wait = full_jitter_ms(client, call->attempts);
		int64_t now = tally__ddb_now_ms();
		if (now + wait >= deadline_ms) {
			finish(call, call->err ? call->err : TALLY_EUNAVAIL);
			(*done)++;
			continue;
		}
		call->outcome = TALLY__DDB_OK;
		call->not_before_ms = now + wait;
	}
}

int tally__ddb_call_many(struct tally__ddb_client *client, struct tally__ddb_call *calls,
			 size_t count, int64_t deadline_ms)
{
	if (count == 0)
		return TALLY_OK;
	struct tally__ddb_multi *m = multi_borrow(client);
	if (!m)
		return TALLY_ENOMEM;
	int in_flight = 0, rc = TALLY_OK;
	size_t done = 0;
	while (done < count) {
		int64_t next_wake;
		rc = start_ready(client, m->multi, calls, count, deadline_ms, &in_flight, &next_wake,
				 &done);
		if (rc || done >= count)
			break;
		int running = 0;
		curl_multi_perform(m->multi, &running);
		size_t done_before = done;
		int in_flight_before = in_flight;
		collect(client, m->multi, deadline_ms, &in_flight, &done);
		if (done >= count)
			break;
		if (done != done_before || in_flight != in_flight_before)
			continue; /* slots freed or retries scheduled: start what can start now */
		int64_t now = tally__ddb_now_ms();
		int64_t wait = 20;
		if (in_flight == 0 && next_wake != INT64_MAX)
			wait = next_wake - now;
		if (wait < 0)
			wait = 0;
		if (wait > 50)
			wait = 50;
		curl_multi_poll(m->multi, NULL, 0, (int)wait, NULL);
	}
	/* On ENOMEM: detach whatever is still attached and fail the calls not yet final. */
	for (size_t i = 0; rc && i < count; i++) {
		if (calls[i].easy) {
			curl_multi_remove_handle(m->multi, calls[i].easy);
			easy_release(&calls[i]);
			calls[i].ambiguous = true;
		}
		if (calls[i].attempts >= 0)
			finish(&calls[i], TALLY_ENOMEM);
	}
	multi_return(client, m);
	return rc;
}

int tally__ddb_call_one(struct tally__ddb_client *client, const char *target, json_t *body,
			bool once, int64_t deadline_ms, json_t **response, char *error,
			size_t error_size)
{
	struct tally__ddb_call call;
	int rc = tally__ddb_call_set(&call, target, body);
	call.once = once;
	if (rc == TALLY_OK)
		rc = tally__ddb_call_many(client, &call, 1, deadline_ms);
	if (rc == TALLY_OK) {
		if (call.outcome == TALLY__DDB_CONDITION)
			rc = TALLY__DDB_CONDITION_ERR;
		else if (call.outcome == TALLY__DDB_FAILED)
			rc = call.err;
	}
	if (rc && rc != TALLY__DDB_CONDITION_ERR && error && error_size)
		snprintf(error, error_size, "dynamodb: %s: %s%s%s", target,
			 call.error_type[0] ? call.error_type : tally_strerror(rc),
			 call.message[0] ? ": " : "", call.message);
	if (response) {
		*response = call.response;
		call.response = NULL;
	}
	tally__ddb_call_reset(&call);
	return rc;
}
