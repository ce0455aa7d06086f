/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/postgres_sql.c: the PostgreSQL backend's schema and statements, in one place so
 * a reader sees every query the backend can run (docs/store-postgres.md explains each).
 * Every value is a parameter; keys are bytea (any bytes but NUL, verbatim), record strings
 * text. Timestamps the writers' liveness depends on are the server's now(), never a client
 * clock.
 */
#include "postgres_internal.h"

/* The empty bytea is no valid key (keys have 1 or more bytes): the lease table's sentinel
 * row lives there, its mark the table's generation and its issued the number of keys ever
 * created. A table emptied or recreated behind tally's back loses or changes it. */
#define SENTINEL "'\\x'::bytea"
#define MS_INTERVAL(p) "(" p "::float8 * interval '1 millisecond')"
#define EPOCH_MS(column) "floor(extract(epoch FROM " column ") * 1000)::bigint"
#define WRITER_OK "EXISTS (SELECT 1 FROM w)"

/* Run once, in one transaction under an advisory lock, when tally_meta does not exist. */
const char tally__pg_schema_sql[] =
	"SELECT pg_advisory_xact_lock(7306086896651040833);"
	"CREATE TABLE IF NOT EXISTS tally_meta (name text PRIMARY KEY, value bigint NOT NULL);"
	"CREATE TABLE IF NOT EXISTS tally_writers ("
	" writer_id text PRIMARY KEY, epoch bigint NOT NULL, last_seq bigint NOT NULL,"
	" expires_at timestamptz NOT NULL, reaped boolean NOT NULL, open_token bytea,"
	" prior_epoch bigint NOT NULL, prior_last_seq bigint NOT NULL,"
	" prior_reaped boolean NOT NULL);"
	/* fillfactor 50: room on each page for the new row version, so a flush's update of a
	 * total is a HOT update (no new index entry; docs/store-postgres.md has the gain). */
	"CREATE TABLE IF NOT EXISTS tally_counters (k bytea PRIMARY KEY, v bigint NOT NULL)"
	" WITH (fillfactor = 50);"
	"CREATE TABLE IF NOT EXISTS tally_gauges (k bytea NOT NULL, writer_id text NOT NULL,"
	" v bigint NOT NULL, PRIMARY KEY (k, writer_id)) WITH (fillfactor = 50);"
	"CREATE INDEX IF NOT EXISTS tally_gauges_writer ON tally_gauges (writer_id);"
	"CREATE TABLE IF NOT EXISTS tally_sessions ("
	" session_id text PRIMARY KEY, speaker_connection_id text NOT NULL,"
	" speaker_user_id text NOT NULL, source_language text NOT NULL,"
	" quality_tier text NOT NULL, created_at bigint NOT NULL, expires_at bigint NOT NULL,"
	" listener_count bigint NOT NULL, is_active boolean NOT NULL,"
	" writer_id text NOT NULL, writer_epoch bigint NOT NULL);"
	"CREATE INDEX IF NOT EXISTS tally_sessions_writer ON tally_sessions (writer_id);"
	"CREATE TABLE IF NOT EXISTS tally_connections ("
	" connection_id text PRIMARY KEY, session_id text NOT NULL,"
	" target_language text NOT NULL, client_address text NOT NULL, role integer NOT NULL,"
	" connected_at bigint NOT NULL, expires_at bigint NOT NULL,"
	" writer_id text NOT NULL, writer_epoch bigint NOT NULL);"
	"CREATE INDEX IF NOT EXISTS tally_connections_session_language"
	" ON tally_connections (session_id, target_language);"
	"CREATE INDEX IF NOT EXISTS tally_connections_writer ON tally_connections (writer_id);"
	"CREATE TABLE IF NOT EXISTS tally_leases (k bytea PRIMARY KEY,"
	" mark numeric(20,0) NOT NULL CHECK (mark >= 0 AND mark < 18446744073709551616),"
	" issued numeric(20,0) NOT NULL, flags integer NOT NULL);"
	"INSERT INTO tally_meta VALUES ('schema_version', 1),"
	" ('lease_generation', floor(random() * 4e18)::bigint + 1) ON CONFLICT DO NOTHING;"
	"INSERT INTO tally_leases SELECT " SENTINEL ", value, 0, 0 FROM tally_meta"
	" WHERE name = 'lease_generation' AND NOT EXISTS (SELECT 1 FROM tally_leases);";

const struct pg_statement tally__pg_statements[] = {
	/* One statement, hence one atomic transaction: the guard w renews the lease and
	 * records seq only if this epoch is the id's current one, not reaped, and seq follows
	 * the recorded last_seq; every other part runs only if w matched. Keys are applied in
	 * key order so that two writers' flushes lock shared rows in the same order. */
	{ "tally_flush",
	  "WITH w AS (UPDATE tally_writers SET last_seq = $3,"
	  "  expires_at = now() + " MS_INTERVAL("$4")
	  "  WHERE writer_id = $1 AND epoch = $2 AND NOT reaped AND last_seq = $3 - 1"
	  "  RETURNING 1),"
	  " c AS (INSERT INTO tally_counters AS t (k, v)"
	  "  SELECT u.k, u.v FROM unnest($5::bytea[], $6::int8[]) AS u(k, v)"
	  "  WHERE " WRITER_OK " ORDER BY u.k"
	  "  ON CONFLICT (k) DO UPDATE SET v = t.v + EXCLUDED.v RETURNING 1),"
	  " g AS (INSERT INTO tally_gauges AS t (k, writer_id, v)"
	  "  SELECT u.k, $1, u.v FROM unnest($7::bytea[], $8::int8[]) AS u(k, v)"
	  "  WHERE " WRITER_OK " ORDER BY u.k"
	  "  ON CONFLICT (k, writer_id) DO UPDATE SET v = EXCLUDED.v RETURNING 1),"
	  " sp AS (INSERT INTO tally_sessions AS t SELECT u.*, $1, $2 FROM"
	  "  unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::text[],"
	  "   $14::int8[], $15::int8[], $16::int8[], $17::bool[]) AS u"
	  "  WHERE " WRITER_OK " ORDER BY 1"
	  "  ON CONFLICT (session_id) DO UPDATE SET"
	  "  speaker_connection_id = EXCLUDED.speaker_connection_id,"
	  "  speaker_user_id = EXCLUDED.speaker_user_id,"
	  "  source_language = EXCLUDED.source_language, quality_tier = EXCLUDED.quality_tier,"
	  "  created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,"
	  "  listener_count = EXCLUDED.listener_count, is_active = EXCLUDED.is_active,"
	  "  writer_id = EXCLUDED.writer_id, writer_epoch = EXCLUDED.writer_epoch RETURNING 1),"
	  " sd AS (DELETE FROM tally_sessions WHERE session_id = ANY($18::text[])"
	  "  AND " WRITER_OK " RETURNING 1),"
	  " cp AS (INSERT INTO tally_connections AS t SELECT u.*, $1, $2 FROM"
	  "  unnest($19::text[], $20::text[], $21::text[], $22::text[], $23::int4[],"
	  "   $24::int8[], $25::int8[]) AS u"
	  "  WHERE " WRITER_OK " ORDER BY 1"
	  "  ON CONFLICT (connection_id) DO UPDATE SET session_id = EXCLUDED.session_id,"
	  "  target_language = EXCLUDED.target_language,"
	  "  client_address = EXCLUDED.client_address, role = EXCLUDED.role,"
	  "  connected_at = EXCLUDED.connected_at, expires_at = EXCLUDED.expires_at,"
	  "  writer_id = EXCLUDED.writer_id, writer_epoch = EXCLUDED.writer_epoch RETURNING 1),"
	  " cd AS (DELETE FROM tally_connections WHERE connection_id = ANY($26::text[])"
	  "  AND " WRITER_OK " RETURNING 1)"
	  " SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM c) + (SELECT count(*) FROM g)"
	  "  + (SELECT count(*) FROM sp) + (SELECT count(*) FROM sd)"
	  "  + (SELECT count(*) FROM cp) + (SELECT count(*) FROM cd)" },
	{ "tally_writer_state",
	  "SELECT epoch, last_seq, reaped FROM tally_writers WHERE writer_id = $1" },
	/* writer_open, in a transaction with the two deletes below: the upsert takes the row
	 * lock (waiting for a flush of an older epoch to commit), so the deletes, later
	 * statements with later snapshots, see everything that epoch wrote. */
	{ "tally_writer_open",
	  "INSERT INTO tally_writers AS t (writer_id, epoch, last_seq, expires_at, reaped,"
	  "  open_token, prior_epoch, prior_last_seq, prior_reaped)"
	  " VALUES ($1, 1, 0, now() + " MS_INTERVAL("$2") ", false, $3, 0, 0, false)"
	  " ON CONFLICT (writer_id) DO UPDATE SET prior_epoch = t.epoch,"
	  "  prior_last_seq = t.last_seq, prior_reaped = t.reaped, epoch = t.epoch + 1,"
	  "  last_seq = 0, expires_at = EXCLUDED.expires_at, reaped = false,"
	  "  open_token = EXCLUDED.open_token"
	  " RETURNING epoch, prior_epoch, prior_last_seq, prior_reaped" },
	{ "tally_writer_token",
	  "SELECT epoch, prior_epoch, prior_last_seq, prior_reaped FROM tally_writers"
	  " WHERE writer_id = $1 AND open_token = $2" },
	{ "tally_drop_gauges", "DELETE FROM tally_gauges WHERE writer_id = ANY($1::text[])" },
	/* Run before tally_drop_connections, in its transaction: every session the writers
	 * wrote or had a listener in counts the listener connections of other writers, the
	 * ones that stay. Recounted, not subtracted: a flush may carry a session whose count
	 * includes a join whose connection record was still waiting for the next flush. */
	{ "tally_recount_listeners",
	  "UPDATE tally_sessions s SET listener_count = (SELECT count(*) FROM tally_connections c"
	  "  WHERE c.session_id = s.session_id AND c.role = 2"
	  "  AND NOT c.writer_id = ANY($1::text[]))"
	  " WHERE s.writer_id = ANY($1::text[]) OR s.session_id IN (SELECT session_id"
	  "  FROM tally_connections WHERE writer_id = ANY($1::text[]) AND role = 2)" },
	{ "tally_drop_connections",
	  "DELETE FROM tally_connections WHERE writer_id = ANY($1::text[])" },
	{ "tally_heartbeat",
	  "UPDATE tally_writers SET expires_at = now() + " MS_INTERVAL("$3")
	  " WHERE writer_id = $1 AND epoch = $2 AND NOT reaped RETURNING 1" },
	{ "tally_writer_close",
	  "UPDATE tally_writers SET expires_at = now(), reaped = true"
	  " WHERE writer_id = $1 AND epoch = $2 AND NOT reaped RETURNING writer_id" },
	/* Reap: the expiry is compared with the server's clock. */
	{ "tally_reap",
	  "UPDATE tally_writers SET reaped = true"
	  " WHERE NOT reaped AND expires_at <= now() RETURNING writer_id" },
	{ "tally_take",
	  "UPDATE tally_counters SET v = v - $2 WHERE k = $1 AND v >= $2 RETURNING v" },
	{ "tally_give",
	  "INSERT INTO tally_counters AS t VALUES ($1, $2)"
	  " ON CONFLICT (k) DO UPDATE SET v = t.v + EXCLUDED.v RETURNING v" },
	{ "tally_read_counter", "SELECT v FROM tally_counters WHERE k = $1" },
	{ "tally_read_gauge",
	  "SELECT coalesce(sum(g.v), 0)::bigint, count(*) FROM tally_gauges g"
	  " JOIN tally_writers w ON w.writer_id = g.writer_id"
	  " WHERE g.k = $1 AND NOT w.reaped AND w.expires_at > now()" },
	{ "tally_counters", "SELECT k, v FROM tally_counters ORDER BY k" },
	{ "tally_writers",
	  "SELECT writer_id, epoch, last_seq, " EPOCH_MS("expires_at") ", " EPOCH_MS("now()")
	  ", reaped FROM tally_writers WHERE epoch > 0 ORDER BY writer_id" },
	{ "tally_sessions",
	  "SELECT session_id, speaker_connection_id, speaker_user_id, source_language,"
	  " quality_tier, created_at, expires_at, listener_count, is_active, writer_id,"
	  " writer_epoch FROM tally_sessions WHERE $1::text IS NULL OR writer_id = $1"
	  " ORDER BY session_id" },
	{ "tally_connections",
	  "SELECT connection_id, session_id, target_language, client_address, role,"
	  " connected_at, expires_at, writer_id, writer_epoch FROM tally_connections"
	  " WHERE $1::text IS NULL OR session_id = $1"
	  " ORDER BY session_id, target_language, connection_id" },
	/* Leases. acquire runs in a transaction: the upsert (refused unless the sentinel holds
	 * the generation seen at open), then for a new key the sentinel's key count is raised
	 * and compared with the rows present, so a deleted row is never taken for a new key. */
	{ "tally_lease_acquire",
	  "INSERT INTO tally_leases AS t (k, mark, issued, flags)"
	  " SELECT $1, $2::numeric + $3::numeric, $4::numeric, 0 WHERE EXISTS"
	  "  (SELECT 1 FROM tally_leases WHERE k = " SENTINEL " AND mark = $5::numeric)"
	  " ON CONFLICT (k) DO UPDATE SET mark = GREATEST(t.mark, $2::numeric) + $3::numeric,"
	  "  issued = $4::numeric, flags = 0"
	  " RETURNING (mark - $3::numeric)::text, xmax = 0" },
	{ "tally_lease_count_key",
	  "UPDATE tally_leases SET issued = issued + 1 WHERE k = " SENTINEL
	  " AND mark = $1::numeric RETURNING issued::bigint" },
	{ "tally_lease_sentinel",
	  "SELECT mark::text, issued::bigint, (SELECT count(*) FROM tally_leases"
	  "  WHERE k <> " SENTINEL ") FROM tally_leases WHERE k = " SENTINEL },
	{ "tally_lease_close",
	  "UPDATE tally_leases SET mark = $3::numeric, issued = $3::numeric, flags = 1"
	  " WHERE k = $1 AND mark = $2::numeric RETURNING 1" },
	{ "tally_lease_read",
	  "SELECT mark::text, issued::text, flags, (SELECT mark::text FROM tally_leases"
	  "  WHERE k = " SENTINEL ") FROM tally_leases WHERE k = $1" },
	{ "tally_leases",
	  "SELECT k, mark::text, issued::text, flags FROM tally_leases"
	  " WHERE k <> " SENTINEL " ORDER BY k" },
	{ NULL, NULL },
};
