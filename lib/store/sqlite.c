/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/sqlite.c: the SQLite store backend ("sqlite:///abs/path.db?option=value&..."):
 * the statements, the schema, open and close, the helpers the other files share, and the
 * ops table. Writers, reaping, exactly-once flushes and takes are in sqlite_writer.c; reads,
 * visitors and leases in sqlite_read.c; docs/store.md has the schema, the exactly-once
 * argument and the choice of synchronous.
 *
 * Options: synchronous=full (default) | normal; busy_timeout_ms=N (default: the options'
 * timeout_ms). Every statement is prepared once at open and bound with parameters: no key
 * or id is ever part of SQL text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/sqlite.h"

static const char *const statement_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_SYNC_FULL] = "PRAGMA synchronous = FULL",
	[S_SYNC_NORMAL] = "PRAGMA synchronous = NORMAL",
	[S_META_GET] = "SELECT value FROM meta WHERE name = ?1",
	[S_META_SET] = "UPDATE meta SET value = ?2 WHERE name = ?1",
	[S_WRITER_GET] = "SELECT epoch, last_seq, reaped FROM writers WHERE writer_id = ?1",
	[S_WRITER_PUT] = "INSERT INTO writers(writer_id, epoch, last_seq, expires_at_ms, reaped) "
			 "VALUES(?1, ?2, 0, ?3, 0) ON CONFLICT(writer_id) DO UPDATE SET "
			 "epoch = excluded.epoch, last_seq = 0, "
			 "expires_at_ms = excluded.expires_at_ms, reaped = 0",
	[S_WRITER_ADVANCE] = "UPDATE writers SET last_seq = ?3, expires_at_ms = ?4 "
			     "WHERE writer_id = ?1 AND epoch = ?2",
	[S_WRITER_RENEW] = "UPDATE writers SET expires_at_ms = ?3 "
			   "WHERE writer_id = ?1 AND epoch = ?2 AND reaped = 0",
	[S_WRITER_END] = "UPDATE writers SET reaped = ?3, "
			 "expires_at_ms = min(expires_at_ms, ?4) WHERE writer_id = ?1 AND epoch = ?2",
	[S_EXPIRED] = "SELECT writer_id, epoch FROM writers "
		      "WHERE reaped = 0 AND expires_at_ms <= ?1",
	[S_COUNTER_ADD] = "INSERT INTO counters(key, total) VALUES(?1, ?2) "
			  "ON CONFLICT(key) DO UPDATE SET total = total + excluded.total",
	[S_COUNTER_ADD_MANY] = NULL, /* made by counter_add_many_sql */
	[S_COUNTER_GET] = "SELECT total FROM counters WHERE key = ?1",
	[S_TAKE] = "UPDATE counters SET total = total - ?2 WHERE key = ?1 AND total >= ?2",
	[S_GAUGE_SET] = "INSERT INTO gauges(key, writer_id, epoch, value) VALUES(?1, ?2, ?3, ?4) "
			"ON CONFLICT(key, writer_id) DO UPDATE SET epoch = excluded.epoch, "
			"value = excluded.value",
	[S_GAUGE_DEL] = "DELETE FROM gauges WHERE key = ?1 AND writer_id = ?2",
	[S_GAUGE_SUM] = "SELECT coalesce(sum(g.value), 0), count(*) FROM gauges g "
			"JOIN writers w ON w.writer_id = g.writer_id AND w.epoch = g.epoch "
			"WHERE g.key = ?1 AND w.reaped = 0 AND w.expires_at_ms > ?2",
	[S_GAUGES_OF_WRITER_DEL] = "DELETE FROM gauges WHERE writer_id = ?1",
	[S_SESSION_PUT] = "REPLACE INTO sessions(sessionId, speakerConnectionId, speakerUserId, "
			  "sourceLanguage, qualityTier, createdAt, isActive, listenerCount, "
			  "expiresAt, writerId, writerEpoch) "
			  "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
	[S_SESSION_DEL] = "DELETE FROM sessions WHERE sessionId = ?1",
	[S_SESSION_CONNECTIONS_DEL] = "DELETE FROM connections WHERE sessionId = ?1",
	[S_CONNECTION_PUT] = "REPLACE INTO connections(connectionId, sessionId, targetLanguage, "
			     "role, connectedAt, expiresAt, clientAddress, writerId, writerEpoch) "
			     "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[S_CONNECTION_DEL] = "DELETE FROM connections WHERE connectionId = ?1",
	/* Run before its connections are deleted: every session the writer wrote or had a
	 * listener in counts the listener connections of other writers, the ones that stay.
	 * Recounted, not subtracted: a flush may carry a session whose count includes a join
	 * whose connection record was still waiting for the next flush. */
	[S_LISTENERS_FIX] = "UPDATE sessions SET listenerCount = "
			    "(SELECT count(*) FROM connections c WHERE c.sessionId = "
			    "sessions.sessionId AND c.role = 2 AND c.writerId <> ?1) "
			    "WHERE writerId = ?1 OR sessionId IN (SELECT sessionId FROM connections "
			    "WHERE writerId = ?1 AND role = 2)",
	[S_CONNECTIONS_OF_WRITER_DEL] = "DELETE FROM connections WHERE writerId = ?1",
	[S_COUNTERS] = "SELECT key, total FROM counters ORDER BY key",
	[S_WRITERS] = "SELECT writer_id, epoch, last_seq, expires_at_ms, reaped FROM writers "
		      "ORDER BY writer_id",
	[S_SESSIONS_ALL] = "SELECT sessionId, speakerConnectionId, speakerUserId, sourceLanguage, "
			   "qualityTier, createdAt, isActive, listenerCount, expiresAt, writerId, "
			   "writerEpoch FROM sessions ORDER BY sessionId",
	[S_SESSIONS_OF] = "SELECT sessionId, speakerConnectionId, speakerUserId, sourceLanguage, "
			  "qualityTier, createdAt, isActive, listenerCount, expiresAt, writerId, "
			  "writerEpoch FROM sessions WHERE writerId = ?1 ORDER BY sessionId",
	[S_CONNECTIONS_ALL] = "SELECT connectionId, sessionId, targetLanguage, role, connectedAt, "
			      "expiresAt, clientAddress, writerId, writerEpoch FROM connections "
			      "ORDER BY sessionId, targetLanguage, connectionId",
	[S_CONNECTIONS_OF] = "SELECT connectionId, sessionId, targetLanguage, role, connectedAt, "
			     "expiresAt, clientAddress, writerId, writerEpoch FROM connections "
			     "WHERE sessionId = ?1 ORDER BY targetLanguage, connectionId",
	[S_LEASE_GET] = "SELECT mark, issued, flags FROM leases WHERE key = ?1",
	[S_LEASE_PUT] = "REPLACE INTO leases(key, mark, issued, flags) VALUES(?1, ?2, ?3, ?4)",
	[S_LEASE_COUNT] = "SELECT count(*) FROM leases",
	[S_LEASES] = "SELECT key, mark, issued, flags FROM leases ORDER BY key",
};

/* Version 1. Keys and ids are TEXT holding the caller's bytes verbatim (SQLite never
 * checks or converts UTF-8 through the _text calls; BINARY collation compares memcmp). */
static const char schema_sql[] =
	"CREATE TABLE meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE writers(writer_id TEXT PRIMARY KEY, epoch INTEGER NOT NULL,"
	" last_seq INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL,"
	" reaped INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
	/* the CHECK turns SQLite's silent integer-to-real overflow into an error */
	"CREATE TABLE counters(key TEXT PRIMARY KEY,"
	" total INTEGER NOT NULL CHECK (typeof(total) = 'integer')) WITHOUT ROWID;"
	"CREATE TABLE gauges(key TEXT NOT NULL, writer_id TEXT NOT NULL, epoch INTEGER NOT NULL,"
	" value INTEGER NOT NULL, PRIMARY KEY (key, writer_id)) WITHOUT ROWID;"
	"CREATE INDEX gauges_by_writer ON gauges(writer_id);"
	"CREATE TABLE sessions(sessionId TEXT PRIMARY KEY, speakerConnectionId TEXT NOT NULL,"
	" speakerUserId TEXT NOT NULL, sourceLanguage TEXT NOT NULL, qualityTier TEXT NOT NULL,"
	" createdAt INTEGER NOT NULL, isActive INTEGER NOT NULL, listenerCount INTEGER NOT NULL,"
	" expiresAt INTEGER NOT NULL, writerId TEXT NOT NULL, writerEpoch INTEGER NOT NULL);"
	"CREATE INDEX sessions_by_writer ON sessions(writerId);"
	"CREATE TABLE connections(connectionId TEXT PRIMARY KEY, sessionId TEXT NOT NULL,"
	" targetLanguage TEXT NOT NULL, role INTEGER NOT NULL, connectedAt INTEGER NOT NULL,"
	" expiresAt INTEGER NOT NULL, clientAddress TEXT NOT NULL, writerId TEXT NOT NULL,"
	" writerEpoch INTEGER NOT NULL);"
	"CREATE INDEX connections_by_session ON connections(sessionId, targetLanguage);"
	"CREATE INDEX connections_by_writer ON connections(writerId);"
	"CREATE TABLE leases(key TEXT PRIMARY KEY, mark INTEGER NOT NULL,"
	" issued INTEGER NOT NULL, flags INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT INTO meta(name, value) VALUES('schema_version', 1), ('lease_rows', 0);";

/* ---- helpers shared with sqlite_read.c -------------------------------------------------- */

int tally__sqlite_map(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_ROW:
	case SQLITE_DONE:
		return TALLY_OK;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return TALLY_EBUSY;
	case SQLITE_NOMEM:
		return TALLY_ENOMEM;
	case SQLITE_INTERRUPT:
		return TALLY_ETIMEDOUT;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	case SQLITE_SCHEMA:
	case SQLITE_FORMAT:
		return TALLY_ECORRUPT;
	case SQLITE_READONLY:
		/* the file was unlinked or renamed under the handle: an I/O failure, not a
		 * permission the operator set */
		return rc == SQLITE_READONLY_DBMOVED ? TALLY_EIO : TALLY_EPERM;
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return TALLY_EPERM;
	case SQLITE_TOOBIG:
		return TALLY_ETOOLONG;
	case SQLITE_MISUSE:
	case SQLITE_RANGE:
		return TALLY_EINVAL;
	default: /* SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_PROTOCOL, ... */
		return TALLY_EIO;
	}
}

int tally__sqlite_fail(struct tally__sqlite *s, int rc, const char *what)
{
	tally__store_set_error(s, "sqlite: %s: %s", what, sqlite3_errmsg(s->db));
	return tally__sqlite_map(rc);
}

int tally__sqlite_run(struct tally__sqlite *s, enum tally__sqlite_stmt id, const char *what)
{
	int rc = sqlite3_step(s->stmt[id]);

	sqlite3_reset(s->stmt[id]);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? TALLY_OK : tally__sqlite_fail(s, rc, what);
}

int tally__sqlite_row(struct tally__sqlite *s, enum tally__sqlite_stmt id, const char *what,
		      bool *row)
{
	int rc = sqlite3_step(s->stmt[id]);

	*row = rc == SQLITE_ROW;
	if (*row)
		return TALLY_OK;
	sqlite3_reset(s->stmt[id]);
	return rc == SQLITE_DONE ? TALLY_OK : tally__sqlite_fail(s, rc, what);
}

int tally__sqlite_begin(struct tally__sqlite *s, const char *what)
{
	return tally__sqlite_run(s, S_BEGIN, what);
}

int tally__sqlite_commit(struct tally__sqlite *s, const char *what)
{
	return tally__sqlite_run(s, S_COMMIT, what);
}

void tally__sqlite_rollback(struct tally__sqlite *s)
{
	if (!sqlite3_get_autocommit(s->db)) {
		sqlite3_step(s->stmt[S_ROLLBACK]);
		sqlite3_reset(s->stmt[S_ROLLBACK]);
	}
}

void tally__sqlite_bind_text(sqlite3_stmt *st, int index, const char *text, size_t len)
{
	sqlite3_bind_text(st, index, text, (int)len, SQLITE_STATIC);
}

bool tally__sqlite_column_copy(sqlite3_stmt *st, int col, char *out, size_t size)
{
	const unsigned char *text = sqlite3_column_text(st, col);
	size_t len = (size_t)sqlite3_column_bytes(st, col);

	if (len >= size) {
		out[0] = '\0';
		return false;
	}
	if (len)
		memcpy(out, text, len);
	out[len] = '\0';
	return true;
}

/* ---- open ------------------------------------------------------------------------------ */

static const char *const known_options[] = { "synchronous", "busy_timeout_ms", NULL };
static const char *const synchronous_choices[] = { "full", "normal", NULL };

struct sqlite_config {
	int64_t busy_timeout_ms;
	bool sync_normal;
};

static int parse_config(const char *url, const struct tally_store_options *options,
			struct sqlite_config *config, char **path, char *error, size_t error_size)
{
	struct tally__store_url parsed;
	int sync = 0;
	int err = tally__store_url_parse(url, &parsed, error, error_size);

	if (err)
		return err;
	if (!parsed.has_authority || (parsed.host[0] && strcmp(parsed.host, "localhost")) ||
	    parsed.user[0] || parsed.port[0] || parsed.path[0] != '/') {
		tally__store_format(error, error_size,
				    "sqlite: URL must be sqlite:///absolute/path.db");
		err = TALLY_EINVAL;
	}
	if (!err)
		err = tally__store_url_check_options(&parsed, known_options, "sqlite", error,
						     error_size);
	if (!err)
		err = tally__store_option_int64(&parsed, "busy_timeout_ms", 0, INT32_MAX,
						options->timeout_ms < INT32_MAX ? options->timeout_ms
										: INT32_MAX,
						&config->busy_timeout_ms,
						"sqlite", error, error_size);
	if (!err)
		err = tally__store_option_choice(&parsed, "synchronous", synchronous_choices, 0,
						 &sync, "sqlite", error, error_size);
	config->sync_normal = sync == 1;
	if (!err) {
		*path = strdup(parsed.path);
		if (!*path)
			err = TALLY_ENOMEM;
	}
	tally__store_url_free(&parsed);
	return err;
}

/* Runs constant SQL (pragmas, the schema) through sqlite3_exec. */
static int exec_sql(struct tally__sqlite *s, const char *sql, const char *what)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);

	return rc == SQLITE_OK ? TALLY_OK : tally__sqlite_fail(s, rc, what);
}

/* One attempt at WAL mode. SQLITE_BUSY here does not go through the busy handler when
 * another connection is switching the same new file to WAL at that moment. */
static int try_wal(struct tally__sqlite *s, bool *wal)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);

	*wal = false;
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*wal = sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

/* WAL lets readers run beside the one writer and makes a commit one append (plus one
 * fsync under synchronous=FULL). A read-only file keeps whatever mode it has. Several
 * processes opening one new file at once race for the switch: the losers retry, with
 * full-jitter backoff, until the busy timeout. */
static int enter_wal(struct tally__sqlite *s, int64_t busy_timeout_ms)
{
	int64_t deadline = tally__store_monotonic_ms() + busy_timeout_ms;
	bool wal;
	int rc;

	for (unsigned attempt = 0;; attempt++) {
		rc = try_wal(s, &wal);
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			break;
		if (tally__store_monotonic_ms() >= deadline)
			break;
		tally__store_sleep_ms(1 + tally__store_backoff_ms(attempt, 1, 50));
	}
	if (rc != SQLITE_DONE)
		return tally__sqlite_fail(s, rc, "open (journal_mode)");
	if (!wal && !s->read_only) {
		tally__store_set_error(s, "sqlite: open: could not enter WAL mode");
		return TALLY_EIO;
	}
	return TALLY_OK;
}

/* meta.value of `name` via a one-off statement (the cached ones need the schema). */
static int read_meta(struct tally__sqlite *s, const char *name, int64_t *value, bool *found)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE name = ?1", -1, &st,
				    NULL);

	*found = false;
	if (rc != SQLITE_OK)
		return tally__sqlite_fail(s, rc, "open (meta)");
	tally__sqlite_bind_cstr(st, 1, name);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*found = true;
		*value = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? TALLY_OK
						      : tally__sqlite_fail(s, rc, "open (meta)");
}

static int has_meta_table(struct tally__sqlite *s, bool *has)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master "
				    "WHERE type = 'table' AND name = 'meta'", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return tally__sqlite_fail(s, rc, "open (schema)");
	rc = sqlite3_step(st);
	*has = rc == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0;
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? TALLY_OK : tally__sqlite_fail(s, rc, "open (schema)");
}

/* The lease generation is random, so a file re-created from scratch never matches a
 * generation a provider saw (docs/store.md, "Leases"). */
static int create_schema(struct tally__sqlite *s)
{
	sqlite3_stmt *st;
	int err = exec_sql(s, schema_sql, "create schema");
	int rc;

	if (err)
		return err;
	rc = sqlite3_prepare_v2(s->db, "INSERT INTO meta(name, value) "
				"VALUES('lease_generation', ?1)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return tally__sqlite_fail(s, rc, "create schema");
	sqlite3_bind_int64(st, 1, (int64_t)(tally__store_random64() >> 1) | 1);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? TALLY_OK : tally__sqlite_fail(s, rc, "create schema");
}

/* Checks (and with `create`, makes) the schema in one write transaction, so processes
 * opening a new file at once create it once. */
static int check_schema(struct tally__sqlite *s, bool create)
{
	int64_t version = 0;
	bool has = false, found = false;
	int err = exec_sql(s, create && !s->read_only ? "BEGIN IMMEDIATE" : "BEGIN", "open");

	if (!err)
		err = has_meta_table(s, &has);
	if (!err && !has && create && !s->read_only) {
		err = create_schema(s);
		has = !err;
	}
	if (!err && !has) {
		tally__store_set_error(s, "sqlite: open: no tally schema in the file "
				       "(open with create_schema to create it)");
		err = TALLY_ECORRUPT;
	}
	if (!err)
		err = read_meta(s, "schema_version", &version, &found);
	if (!err && (!found || version != TALLY__SQLITE_SCHEMA_VERSION)) {
		tally__store_set_error(s, "sqlite: open: schema version %" PRId64 " where this "
				       "tally reads %d", version, TALLY__SQLITE_SCHEMA_VERSION);
		err = TALLY_ECORRUPT;
	}
	if (!err)
		err = read_meta(s, "lease_generation", &s->lease_generation, &found);
	if (!err && !found) {
		tally__store_set_error(s, "sqlite: open: the lease generation row is missing");
		err = TALLY_ECORRUPT;
	}
	if (err) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
	return exec_sql(s, "COMMIT", "open");
}

/* "INSERT ... VALUES(?1, ?2), (?3, ?4), ... ON CONFLICT ...": TALLY__SQLITE_COUNTER_ROWS
 * counter deltas in one statement. The keys of one flush are distinct (store.c checks), so
 * no row of the statement meets another's conflict. */
#define COUNTER_ADD_MANY_SQL_MAX (64 + TALLY__SQLITE_COUNTER_ROWS * 16 + 80)

static void counter_add_many_sql(char sql[COUNTER_ADD_MANY_SQL_MAX])
{
	size_t used = (size_t)snprintf(sql, COUNTER_ADD_MANY_SQL_MAX,
				       "INSERT INTO counters(key, total) VALUES");

	for (int row = 0; row < TALLY__SQLITE_COUNTER_ROWS; row++)
		used += (size_t)snprintf(sql + used, COUNTER_ADD_MANY_SQL_MAX - used,
					 "%s(?%d, ?%d)", row ? ", " : "", 2 * row + 1, 2 * row + 2);
	snprintf(sql + used, COUNTER_ADD_MANY_SQL_MAX - used,
		 " ON CONFLICT(key) DO UPDATE SET total = total + excluded.total");
}

static int prepare_all(struct tally__sqlite *s)
{
	char many[COUNTER_ADD_MANY_SQL_MAX];

	counter_add_many_sql(many);
	for (int i = 0; i < S_COUNT; i++) {
		const char *sql = i == S_COUNTER_ADD_MANY ? many : statement_sql[i];
		int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
					    NULL);

		if (rc != SQLITE_OK) {
			/* a table or column missing: the file's schema is not ours */
			tally__sqlite_fail(s, rc, "open (prepare)");
			return rc == SQLITE_ERROR ? TALLY_ECORRUPT : tally__sqlite_map(rc);
		}
	}
	return TALLY_OK;
}

static int remember_file(struct tally__sqlite *s)
{
	struct stat st;

	if (stat(s->path, &st) != 0) {
		tally__store_set_error(s, "sqlite: open: cannot stat the database file: %s",
				       strerror(errno));
		return TALLY_EIO;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	return TALLY_OK;
}

static int open_db(struct tally__sqlite *s, const struct tally_store_options *options,
		   const struct sqlite_config *config)
{
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
		    (options->create_schema ? SQLITE_OPEN_CREATE : 0);
	int rc = sqlite3_open_v2(s->path, &s->db, flags, NULL);
	int err;

	if (rc != SQLITE_OK) {
		if (!s->db)
			return TALLY_ENOMEM;
		err = tally__sqlite_fail(s, rc, "open");
		return rc == SQLITE_CANTOPEN && sqlite3_system_errno(s->db) == EACCES ? TALLY_EPERM
										       : err;
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, (int)config->busy_timeout_ms);
	s->read_only = sqlite3_db_readonly(s->db, "main") == 1;
	s->sync_normal = config->sync_normal;
	err = enter_wal(s, config->busy_timeout_ms);
	if (!err)
		err = exec_sql(s, config->sync_normal ? "PRAGMA synchronous = NORMAL"
						      : "PRAGMA synchronous = FULL", "open");
	/* A multi-row upsert materialises its rows in a temporary table: in memory, not in a
	 * temporary file (which made large flushes slower per key than single-row ones). */
	if (!err)
		err = exec_sql(s, "PRAGMA temp_store = MEMORY", "open");
	if (!err)
		err = check_schema(s, options->create_schema);
	if (!err)
		err = prepare_all(s);
	return err ? err : remember_file(s);
}

static void sqlite_close(void *impl)
{
	struct tally__sqlite *s = impl;

	if (!s)
		return;
	sqlite_close(s->reader);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	tally__store_clear_error(s);
	free(s->path);
	free(s);
}

static struct tally__sqlite *new_connection(void)
{
	struct tally__sqlite *s = calloc(1, sizeof(*s));

	if (s)
		pthread_mutex_init(&s->lock, NULL);
	return s;
}

/* The read connection: the same file, after the writing one made sure of the schema. */
static int open_reader(struct tally__sqlite *s, const struct tally_store_options *options,
		       const struct sqlite_config *config)
{
	struct tally_store_options read_options = *options;
	struct tally__sqlite *r = new_connection();
	int err;

	if (!r || !(r->path = strdup(s->path))) {
		sqlite_close(r);
		return TALLY_ENOMEM;
	}
	read_options.create_schema = false;
	err = open_db(r, &read_options, config);
	if (err) {
		tally__store_set_error(s, "%s", tally__store_error(r));
		sqlite_close(r);
		return err;
	}
	s->reader = r;
	return TALLY_OK;
}

static int sqlite_open(const char *url, const struct tally_store_options *options, void **impl,
		       char *error, size_t error_size)
{
	struct sqlite_config config;
	struct tally__sqlite *s = new_connection();
	int err;

	if (!s)
		return TALLY_ENOMEM;
	err = parse_config(url, options, &config, &s->path, error, error_size);
	if (!err) {
		err = open_db(s, options, &config);
		if (!err)
			err = open_reader(s, options, &config);
		if (err)
			tally__store_format(error, error_size, "%s", tally__store_error(s));
	}
	if (err) {
		sqlite_close(s);
		return err;
	}
	*impl = s;
	return TALLY_OK;
}

static const char *sqlite_last_error(void *impl)
{
	return tally__store_error(impl);
}

const struct tally_store_ops tally__store_sqlite_ops = {
	.scheme = "sqlite",
	.open = sqlite_open,
	.close = sqlite_close,
	.writer_open = tally__sqlite_writer_open,
	.heartbeat = tally__sqlite_heartbeat,
	.flush = tally__sqlite_flush,
	.writer_close = tally__sqlite_writer_close,
	.read_counter = tally__sqlite_read_counter,
	.read_gauge = tally__sqlite_read_gauge,
	.counters = tally__sqlite_counters,
	.writers = tally__sqlite_writers,
	.sessions = tally__sqlite_sessions,
	.connections = tally__sqlite_connections,
	.reap = tally__sqlite_reap,
	.take = tally__sqlite_take,
	.give = tally__sqlite_give,
	.lease_ops = &tally__sqlite_lease_ops,
	.leases = tally__sqlite_leases,
	.last_error = sqlite_last_error,
};
