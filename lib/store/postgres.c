/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/postgres.c: the PostgreSQL store backend's frame (docs/store-postgres.md):
 * opening (URL or conninfo, schema check and creation), a pool of PG_POOL_SIZE
 * connections, one call loop with a deadline, reconnects with full-jitter backoff, and the
 * mapping of libpq outcomes and SQLSTATEs onto tally's errors. The ops themselves live in
 * postgres_writer.c, postgres_read.c and postgres_lease.c.
 *
 * Why a small pool rather than one connection under a mutex: the flusher holds a connection
 * for a whole flush (one round trip, but a large one), while takes, lease acquires and reads
 * come from other threads; with one connection they would queue behind every flush. Four
 * connections cover the flusher, a reaper and a couple of request threads, and stay far
 * below a server's max_connections for a fleet of processes.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "postgres_internal.h"

#define BACKOFF_BASE_MS 10
#define BACKOFF_CAP_MS 500
#define DEFAULT_TIMEOUT_MS 5000

/* ---- error texts: per thread (lib/store/internal.h's slots), without secrets ---------- */

/* Overwrites every occurrence of the password with '*' (libpq never echoes it, but a
 * server message might quote a conninfo fragment: never let it out). */
static void scrub(char *text, const char *secret)
{
	size_t secret_len = secret ? strlen(secret) : 0;
	char *hit;

	if (secret_len < 3)
		return;
	while ((hit = strstr(text, secret)))
		memset(hit, '*', secret_len);
}

void tally__pg_set_error(struct pg_store *store, const char *text)
{
	char clean[TALLY__STORE_ERROR_MAX];

	snprintf(clean, sizeof(clean), "postgresql: %s", text);
	for (char *c = clean; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	scrub(clean, store->password);
	tally__store_set_error(store, "%s", clean);
}

void tally__pg_set_errorf(struct pg_store *store, const char *format, ...)
{
	char text[TALLY__STORE_ERROR_MAX];
	va_list ap;

	va_start(ap, format);
	vsnprintf(text, sizeof(text), format, ap);
	va_end(ap);
	tally__pg_set_error(store, text);
}

static const char *pg_last_error(void *impl)
{
	return tally__store_error(impl);
}

/* Full jitter (lib/store/internal.h), never sleeping past the deadline. */
static void backoff_sleep(int attempt, int64_t deadline_ms)
{
	int64_t sleep_ms = tally__store_backoff_ms((unsigned)attempt, BACKOFF_BASE_MS,
						   BACKOFF_CAP_MS);
	int64_t left = deadline_ms - tally__store_monotonic_ms();

	tally__store_sleep_ms(sleep_ms < left ? sleep_ms : (left > 0 ? left : 0));
}

#define monotonic_ms tally__store_monotonic_ms

/* ---- connections ------------------------------------------------------------------------ */

/* Waits until the socket is ready for `events` or the deadline passes (0 on timeout). */
static int wait_socket(PGconn *conn, short events, int64_t deadline_ms)
{
	struct pollfd fd = { .fd = PQsocket(conn), .events = events };
	int64_t left = deadline_ms - monotonic_ms();
	int ready;

	if (fd.fd < 0)
		return -1;
	if (left <= 0)
		return 0;
	do
		ready = poll(&fd, 1, (int)(left > 60000 ? 60000 : left));
	while (ready < 0 && errno == EINTR);
	return ready;
}

/* A connection failure's class from libpq's message: libpq (15) keeps no SQLSTATE for a
 * failed connection, so the server's refusals (FATAL: authentication, unknown role or
 * database, no pg_hba entry) are told from network failures by what libpq reports. */
static int classify_connect_failure(struct pg_store *store, PGconn *conn)
{
	const char *message = PQerrorMessage(conn);
	const char *fatal = strstr(message, "FATAL:");
	const char *cause = fatal ? fatal + 6 : strrchr(message, ':');
	char first_line[160];
	size_t len;
	static const char *const refusals[] = {
		"authentication failed", "does not exist", "no pg_hba.conf entry",
		"permission denied", "not permitted", "does not support SSL", NULL,
	};

	cause = cause ? cause + (fatal ? 0 : 1) : message;
	while (*cause == ' ')
		cause++;
	len = strcspn(cause, "\n");
	if (len >= sizeof(first_line))
		len = sizeof(first_line) - 1;
	memcpy(first_line, cause, len);
	first_line[len] = '\0';
	if (strstr(message, "invalid ") && strstr(message, "connection option")) {
		tally__pg_set_errorf(store, "%s", first_line);
		return TALLY_EINVAL;
	}
	if (PQconnectionNeedsPassword(conn)) {
		tally__pg_set_error(store, "server refused the connection: a password is needed");
		return TALLY_EPERM;
	}
	for (int i = 0; refusals[i]; i++) {
		if (strstr(message, refusals[i])) {
			tally__pg_set_errorf(store, "server refused the connection: %s", first_line);
			return TALLY_EPERM;
		}
	}
	tally__pg_set_errorf(store, "could not connect: %s", first_line);
	return TALLY_EUNAVAIL;
}

static int prepare_statements(struct pg_store *store, PGconn *conn)
{
	for (const struct pg_statement *s = tally__pg_statements; s->name; s++) {
		PGresult *result = PQprepare(conn, s->name, s->sql, 0, NULL);
		int ok = PQresultStatus(result) == PGRES_COMMAND_OK;

		if (!ok)
			tally__pg_set_errorf(store, "preparing %s: %s", s->name,
					     PQresultErrorMessage(result));
		PQclear(result);
		if (!ok)
			return PQstatus(conn) == CONNECTION_OK ? TALLY_ECORRUPT : TALLY_EUNAVAIL;
	}
	return TALLY_OK;
}

/* Session settings every connection gets: commits are durable before they are
 * acknowledged (leases and flushes both rely on it), and a statement is bounded by the
 * handle's timeout on the server too. */
static int configure_session(struct pg_store *store, PGconn *conn)
{
	char sql[160];
	PGresult *result;
	int ok;

	snprintf(sql, sizeof(sql),
		 "SET synchronous_commit TO on; SET statement_timeout TO %lld;"
		 " SET idle_in_transaction_session_timeout TO %lld",
		 (long long)store->timeout_ms, (long long)store->timeout_ms * 2);
	result = PQexec(conn, sql);
	ok = PQresultStatus(result) == PGRES_COMMAND_OK;
	PQclear(result);
	if (!ok) {
		tally__pg_set_error(store, "could not configure the session");
		return TALLY_EUNAVAIL;
	}
	return TALLY_OK;
}

/* libpq prints server notices (WARNING: terminating connection ...) on stderr by default; a
 * library must not print. */
static void ignore_notice(void *arg, const char *message)
{
}

/* Connects within the deadline (PQconnectStartParams + PQconnectPoll). */
static int connect_until(struct pg_store *store, int64_t deadline_ms, PGconn **out)
{
	const char *keywords[] = { "dbname", "fallback_application_name", NULL };
	const char *values[] = { store->conninfo, "tally", NULL };
	PGconn *conn = PQconnectStartParams(keywords, values, 1);
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;

	if (!conn)
		return TALLY_ENOMEM;
	/* Before the handshake: a server shutting down sends its WARNING during it. */
	PQsetNoticeProcessor(conn, ignore_notice, NULL);
	if (PQstatus(conn) == CONNECTION_BAD) {
		/* Refused before any network step: an option libpq cannot use. */
		PQfinish(conn);
		tally__pg_set_error(store, "an invalid connection option or value");
		return TALLY_EINVAL;
	}
	while (PQstatus(conn) != CONNECTION_BAD && status != PGRES_POLLING_OK &&
	       status != PGRES_POLLING_FAILED) {
		int ready = wait_socket(conn, status == PGRES_POLLING_READING ? POLLIN : POLLOUT,
					deadline_ms);
		if (ready == 0) {
			PQfinish(conn);
			tally__pg_set_error(store, "connecting timed out");
			return TALLY_ETIMEDOUT;
		}
		status = PQconnectPoll(conn);
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		int err = classify_connect_failure(store, conn);

		PQfinish(conn);
		return err;
	}
	*out = conn;
	return TALLY_OK;
}

static int ensure_schema(struct pg_store *store, PGconn *conn, bool create);

/* A connection ready for the ops: connected, configured, statements prepared; the first
 * one of a handle (schema_check) also checks or creates the schema before preparing. */
static int open_connection(struct pg_store *store, int64_t deadline_ms, bool schema_check,
			   bool create, PGconn **out)
{
	PGconn *conn = NULL;
	int err = connect_until(store, deadline_ms, &conn);

	if (!err)
		err = configure_session(store, conn);
	if (!err && schema_check)
		err = ensure_schema(store, conn, create);
	if (!err)
		err = prepare_statements(store, conn);
	if (err) {
		PQfinish(conn);
		conn = NULL;
	}
	*out = conn;
	return err;
}

/* A free slot (connected ones first), waiting at most until the deadline: a call is bounded
 * by timeout_ms even when every connection of the pool is busy. NULL on timeout. */
static struct pg_slot *checkout(struct pg_store *store, int64_t deadline_ms)
{
	struct pg_slot *found = NULL;
	struct timespec until = { (time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000 };

	pthread_mutex_lock(&store->lock);
	for (;;) {
		for (int i = 0; i < PG_POOL_SIZE; i++) {
			struct pg_slot *slot = &store->slots[i];

			if (!slot->in_use && (!found || (!found->conn && slot->conn)))
				found = slot;
		}
		if (found || pthread_cond_timedwait(&store->slot_free, &store->lock, &until) ==
				     ETIMEDOUT)
			break;
	}
	if (found)
		found->in_use = true;
	pthread_mutex_unlock(&store->lock);
	return found;
}

static void checkin(struct pg_store *store, struct pg_slot *slot)
{
	pthread_mutex_lock(&store->lock);
	slot->in_use = false;
	pthread_cond_signal(&store->slot_free);
	pthread_mutex_unlock(&store->lock);
}

/* ---- statements ------------------------------------------------------------------------ */

/* SQLSTATE to tally error; *retry when the statement certainly did not take effect and a
 * new attempt may succeed (serialization failure, deadlock, canceled by the timeout). */
static int map_sqlstate(const char *state, bool *retry, bool *connection_gone)
{
	*retry = false;
	*connection_gone = false;
	if (!strcmp(state, "40001") || !strcmp(state, "40P01")) {
		*retry = true;
		return TALLY_EBUSY;
	}
	if (!strcmp(state, "57014"))
		return TALLY_ETIMEDOUT;
	if (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3) || !strcmp(state, "25006") ||
	    !strcmp(state, "53300")) {
		/* The server is going away, restarting, or read-only after a failover: a new
		 * connection may reach the (new) primary. */
		*connection_gone = true;
		return TALLY_EUNAVAIL;
	}
	if (!strncmp(state, "28", 2) || !strcmp(state, "42501") || !strcmp(state, "3D000"))
		return TALLY_EPERM;
	if (!strcmp(state, "22003"))
		return TALLY_EOVERFLOW;
	if (!strncmp(state, "22", 2) || !strncmp(state, "23", 2) || !strcmp(state, "21000"))
		return TALLY_EINVAL;
	if (!strcmp(state, "55P03"))
		return TALLY_EBUSY;
	if (!strncmp(state, "42", 2) || !strncmp(state, "XX", 2))
		return TALLY_ECORRUPT; /* a table or column missing: not tally's schema */
	return TALLY_EIO; /* 53100 disk full, 53200 out of memory, 58xxx I/O, anything else */
}

/* Collects the statement's result within the deadline. NULL if the deadline passed or the
 * connection broke before a result came. */
static PGresult *wait_result(PGconn *conn, int64_t deadline_ms, bool *timed_out)
{
	PGresult *last = NULL, *next;

	*timed_out = false;
	for (;;) {
		while (PQisBusy(conn)) {
			int ready = wait_socket(conn, POLLIN, deadline_ms);

			if (ready == 0)
				*timed_out = true;
			if (ready <= 0 || !PQconsumeInput(conn)) {
				PQclear(last);
				return NULL;
			}
		}
		next = PQgetResult(conn);
		if (!next)
			return last;
		PQclear(last);
		last = next;
	}
}

static void drop_connection(struct pg_call *call)
{
	PQfinish(call->conn);
	call->conn = NULL;
}

PGresult *tally__pg_exec(struct pg_call *call, const char *name, int count,
			 const char *const *values, const int *lengths, const int *formats,
			 int *err)
{
	bool timed_out, retry, gone;
	PGresult *result;
	ExecStatusType status;
	const char *state;

	call->retry = call->ambiguous = false;
	call->sqlstate[0] = '\0';
	if (!PQsendQueryPrepared(call->conn, name, count, values, lengths, formats, 0)) {
		/* Nothing was sent: the connection is unusable, a new one may work. */
		tally__pg_set_error(call->store, "connection lost");
		drop_connection(call);
		call->retry = true;
		*err = TALLY_EUNAVAIL;
		return NULL;
	}
	result = wait_result(call->conn, call->deadline_ms, &timed_out);
	status = result ? PQresultStatus(result) : PGRES_FATAL_ERROR;
	if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
		return result;
	state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : NULL;
	if (!state || PQstatus(call->conn) != CONNECTION_OK) {
		/* No reply: the statement may or may not have run (and committed). */
		tally__pg_set_error(call->store, timed_out ? "no reply before the timeout"
							   : "connection lost during a statement");
		PQclear(result);
		drop_connection(call);
		call->retry = call->ambiguous = true;
		*err = timed_out ? TALLY_ETIMEDOUT : TALLY_EUNAVAIL;
		return NULL;
	}
	snprintf(call->sqlstate, sizeof(call->sqlstate), "%s", state);
	*err = map_sqlstate(state, &retry, &gone);
	tally__pg_set_errorf(call->store, "%s (SQLSTATE %s)",
			     PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY), state);
	PQclear(result);
	if (gone) {
		drop_connection(call);
		call->retry = call->ambiguous = true;
	} else {
		call->retry = retry;
		if (PQtransactionStatus(call->conn) == PQTRANS_INERROR)
			tally__pg_command(call, "ROLLBACK"); /* leave no aborted transaction */
	}
	return NULL;
}

int tally__pg_command(struct pg_call *call, const char *sql)
{
	bool timed_out;
	PGresult *result;
	int ok;

	if (!call->conn)
		return TALLY_EUNAVAIL;
	if (!PQsendQuery(call->conn, sql)) {
		drop_connection(call);
		call->retry = true;
		return TALLY_EUNAVAIL;
	}
	result = wait_result(call->conn, call->deadline_ms, &timed_out);
	ok = PQresultStatus(result) == PGRES_COMMAND_OK;
	PQclear(result);
	if (!ok) {
		/* A failed COMMIT or a lost connection: whether a COMMIT landed is unknown. */
		tally__pg_set_errorf(call->store, "%s failed", sql);
		drop_connection(call);
		call->retry = call->ambiguous = true;
		return timed_out ? TALLY_ETIMEDOUT : TALLY_EUNAVAIL;
	}
	return TALLY_OK;
}

int tally__pg_rollback_with(struct pg_call *call, int err)
{
	if (call->conn && PQtransactionStatus(call->conn) == PQTRANS_INTRANS)
		tally__pg_command(call, "ROLLBACK");
	return err;
}

/* ---- the call loop ---------------------------------------------------------------------- */

int tally__pg_run(struct pg_store *store, pg_body_fn body, void *arg)
{
	struct pg_call call = { .store = store, .deadline_ms = monotonic_ms() + store->timeout_ms };
	struct pg_slot *slot = checkout(store, call.deadline_ms);
	int err;

	if (!slot) {
		tally__pg_set_error(store, "every connection of the handle stayed busy until the"
					   " timeout");
		return TALLY_ETIMEDOUT;
	}
	for (;; call.attempt++) {
		call.retry = call.ambiguous = false;
		if (!slot->conn) {
			err = open_connection(store, call.deadline_ms, false, false, &slot->conn);
			call.retry = err == TALLY_EUNAVAIL;
		}
		if (slot->conn) {
			call.conn = slot->conn;
			err = body(&call, arg);
			slot->conn = call.conn; /* NULL if the body's statement dropped it */
			if (call.ambiguous)
				call.after_ambiguous = true;
		}
		if (!err || !call.retry || monotonic_ms() >= call.deadline_ms)
			break;
		backoff_sleep(call.attempt, call.deadline_ms);
	}
	checkin(store, slot);
	if (err == TALLY_EBUSY && call.retry)
		err = TALLY_EUNAVAIL; /* serialization failures until the deadline */
	return err;
}

struct query {
	const char *name;
	int count;
	const char *const *values;
	const int *lengths, *formats;
	PGresult *result;
};

static int query_body(struct pg_call *call, void *arg)
{
	struct query *query = arg;
	int err = TALLY_OK;

	query->result = tally__pg_exec(call, query->name, query->count, query->values,
				       query->lengths, query->formats, &err);
	return err;
}

int tally__pg_query(struct pg_store *store, const char *name, int count,
		    const char *const *values, const int *lengths, const int *formats,
		    PGresult **result)
{
	struct query query = { name, count, values, lengths, formats, NULL };
	int err = tally__pg_run(store, query_body, &query);

	*result = query.result;
	return err;
}

/* ---- open and close --------------------------------------------------------------------- */

/* "postgresql://..." goes to libpq as a URL; "postgresql:KEY=VALUE ..." is a libpq conninfo
 * string. */
static int split_url(const char *url, char **conninfo, char **password)
{
	PQconninfoOption *options;
	const char *rest = url;

	if (strncmp(url, "postgresql:", 11))
		return TALLY_EINVAL;
	if (strncmp(url + 11, "//", 2))
		rest = url + 11;
	options = PQconninfoParse(rest, NULL);
	if (!options)
		return TALLY_EINVAL;
	*password = NULL;
	for (PQconninfoOption *o = options; o->keyword; o++)
		if (!strcmp(o->keyword, "password") && o->val && *o->val)
			*password = strdup(o->val);
	PQconninfoFree(options);
	*conninfo = strdup(rest);
	return *conninfo ? TALLY_OK : TALLY_ENOMEM;
}

/* Runs the schema script unless tally_meta exists; then checks the version. */
static int ensure_schema(struct pg_store *store, PGconn *conn, bool create)
{
	const char *check = "SELECT value FROM tally_meta WHERE name = 'schema_version'";
	PGresult *result = PQexec(conn, check);
	const char *state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
	int err = TALLY_OK;

	if (PQresultStatus(result) != PGRES_TUPLES_OK && state && !strcmp(state, "42P01") &&
	    create) {
		PQclear(result);
		result = PQexec(conn, "BEGIN");
		PQclear(result);
		result = PQexec(conn, tally__pg_schema_sql);
		if (PQresultStatus(result) == PGRES_TUPLES_OK ||
		    PQresultStatus(result) == PGRES_COMMAND_OK) {
			PQclear(result);
			result = PQexec(conn, "COMMIT");
		}
		state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
		if (PQresultStatus(result) != PGRES_COMMAND_OK) {
			bool retry, gone;

			err = state ? map_sqlstate(state, &retry, &gone) : TALLY_EUNAVAIL;
			tally__pg_set_errorf(store, "creating the schema: %s",
					     PQresultErrorMessage(result));
			PQclear(result);
			return err;
		}
		PQclear(result);
		result = PQexec(conn, check);
		state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
	}
	if (PQresultStatus(result) != PGRES_TUPLES_OK) {
		bool retry, gone;

		err = state ? map_sqlstate(state, &retry, &gone) : TALLY_EUNAVAIL;
		if (state && !strcmp(state, "42P01"))
			tally__pg_set_error(store, "no tally schema in this database"
						   " (open with create_schema)");
		else
			tally__pg_set_errorf(store, "reading the schema version: %s",
					     PQresultErrorMessage(result));
	} else if (PQntuples(result) != 1 || tally__pg_int8(result, 0, 0) != PG_SCHEMA_VERSION) {
		tally__pg_set_error(store, "the tally schema has another version");
		err = TALLY_ECORRUPT;
	}
	PQclear(result);
	return err;
}

static void pg_close(void *impl)
{
	struct pg_store *store = impl;

	if (!store)
		return;
	for (int i = 0; i < PG_POOL_SIZE; i++)
		PQfinish(store->slots[i].conn);
	tally__store_clear_error(store);
	pthread_cond_destroy(&store->slot_free);
	pthread_mutex_destroy(&store->lock);
	if (store->password)
		memset(store->password, 0, strlen(store->password));
	free(store->password);
	if (store->conninfo)
		memset(store->conninfo, 0, strlen(store->conninfo));
	free(store->conninfo);
	free(store);
}

static int read_generation(struct pg_call *call, void *arg)
{
	return tally__pg_lease_generation(call, arg);
}

static int pg_open(const char *url, const struct tally_store_options *options, void **impl,
		   char *error, size_t error_size)
{
	struct pg_store *store = calloc(1, sizeof(*store));
	pthread_condattr_t condattr;
	PGconn *conn = NULL;
	int64_t deadline_ms;
	int err;

	if (!store)
		return TALLY_ENOMEM;
	pthread_mutex_init(&store->lock, NULL);
	pthread_condattr_init(&condattr);
	pthread_condattr_setclock(&condattr, CLOCK_MONOTONIC); /* deadlines are monotonic */
	pthread_cond_init(&store->slot_free, &condattr);
	pthread_condattr_destroy(&condattr);
	store->timeout_ms = options && options->timeout_ms > 0 ? options->timeout_ms
							    : DEFAULT_TIMEOUT_MS;
	err = split_url(url, &store->conninfo, &store->password);
	if (err == TALLY_EINVAL)
		tally__pg_set_error(store, "malformed URL or conninfo");
	deadline_ms = monotonic_ms() + store->timeout_ms;
	for (int attempt = 0; !err || err == TALLY_EUNAVAIL; attempt++) {
		if (attempt)
			backoff_sleep(attempt, deadline_ms);
		err = open_connection(store, deadline_ms, true,
				      options && options->create_schema, &conn);
		if (err != TALLY_EUNAVAIL || monotonic_ms() >= deadline_ms)
			break;
	}
	if (!err) {
		store->slots[0].conn = conn;
		err = tally__pg_run(store, read_generation, &store->lease_generation);
	}
	if (err) {
		if (error && error_size)
			snprintf(error, error_size, "%s", pg_last_error(store));
		pg_close(store);
		return err;
	}
	*impl = store;
	return TALLY_OK;
}

const struct tally_store_ops tally__store_postgres_ops = {
	.scheme = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.writer_open = tally__pg_writer_open,
	.heartbeat = tally__pg_heartbeat,
	.flush = tally__pg_flush,
	.writer_close = tally__pg_writer_close,
	.read_counter = tally__pg_read_counter,
	.read_gauge = tally__pg_read_gauge,
	.counters = tally__pg_counters,
	.writers = tally__pg_writers,
	.sessions = tally__pg_sessions,
	.connections = tally__pg_connections,
	.reap = tally__pg_reap,
	.take = tally__pg_take,
	.give = tally__pg_give,
	.lease_ops = &tally__pg_lease_ops,
	.leases = tally__pg_leases,
	.last_error = pg_last_error,
};
