/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/session.h: the session and connection tables of a broadcast service (one speaker,
 * many listeners, each listener on a target language), with the join/disconnect lifecycle
 * that keeps each session's listener count. The in-process form of a Sessions table, a
 * Connections table with a (sessionId, targetLanguage) index, and the connect/disconnect
 * handlers beside them.
 *
 * Structure
 * - Sessions and connections live in two string-keyed RCU hash maps (liburcu cds_lfht, memb
 *   flavour). Each session also holds the list of its connections (the secondary index):
 *   readers walk it lock-free under RCU, writers of one session's list take that session's
 *   mutex for the few stores of a link or unlink. docs/session.md says why.
 * - A connection is immutable once published. A session's mutable fields are `active`
 *   (atomic), the listener count (struct tally_gauge, floor 0) and the speaker connection id
 *   (an immutable string version replaced RCU-style by tally_session_set_speaker).
 *
 * Guarantees
 * - Lookups (get, exists, is_active, listener_count, connection get, the visit calls):
 *   wait-free apart from hash-chain length, under an internal RCU read lock; never blocked
 *   by writers. A get copies one session: each field is read atomically (strings are never
 *   torn), but the copy is not a snapshot across fields: listener_count may be a join newer
 *   than `active`.
 * - Session create/delete, connection delete: lock-free in the maps; the per-session list
 *   update after a map change takes the session's list lock (a futex mutex held for a few
 *   stores, never across a user callback).
 * - Join (and tally_connection_create) is linearizable with speaker disconnect and session
 *   delete: it checks `active` and inserts under that lock, so a join either lands
 *   before the session goes inactive (and is swept and counted down by the sweep) or fails
 *   with TALLY_EINACTIVE / TALLY_ENOTFOUND leaving nothing behind.
 * - Exactly once: every connection is removed from the connection map by exactly one call
 *   (leave, connection delete, batch delete, sweep, speaker disconnect, session delete); that
 *   call alone unlinks it, decrements the listener count (listeners only) and frees it after
 *   a grace period. The others report TALLY_ENOTFOUND (or count nothing).
 * - Invariant: whenever no call is running on a session, its listener count equals the
 *   number of its listener connections.
 * - Memory ordering: a successful create/join happens-before any lookup that finds it
 *   (release/acquire). The `active` flag is release-stored by mark_inactive and acquire-loaded
 *   by is_active/get.
 *
 * Strings. Every string is a NUL-terminated C string (so NUL cannot occur inside one); any
 * other bytes, UTF-8 or not, are kept as given. Required strings must be non-empty; each has a
 * maximum length in bytes (below) and a longer one gives TALLY_ETOOLONG. Optional strings may
 * be NULL or "".
 *
 * Time. Timestamps are int64 milliseconds from the table's clock (default CLOCK_REALTIME;
 * injectable through struct tally_session_config so tests expire entries deterministically).
 * An entry with expires_at_ms <= now is expired; expires_at_ms 0 means never. Expired entries
 * stay visible until a sweep (tally_session_table_sweep or the background sweeper) deletes them,
 * with the same bookkeeping as an explicit delete (as with DynamoDB TTL).
 *
 * Threads. Registration is automatic (tally/rcu.h, on a thread's first call). Any call may
 * run in any thread, concurrently with any other call, except:
 *   tally_session_table_destroy  exclusive: no other call on the table while it runs or
 *                                after it; outside an RCU read-side section (else TALLY_EBUSY)
 *   a tally_connection_fn        must not call destroy, sweeper_start/_stop or
 *   callback                     tally_rcu_barrier (it runs inside a read-side section)
 * Every other call may also be made inside the caller's own tally_rcu_read_lock() section
 * (sections nest). The clock (config.now_ms) is called by every caller at once and must be
 * thread-safe.
 *
 * Errors (each call lists its own): TALLY_EINVAL (NULL or empty required argument, unknown
 * role or filter), TALLY_ETOOLONG, TALLY_EEXIST, TALLY_ENOTFOUND, TALLY_EINACTIVE,
 * TALLY_ENOMEM, TALLY_EFULL, TALLY_ESTATE, TALLY_ETHREAD, TALLY_EBUSY. A failing call
 * changes nothing.
 */
#ifndef TALLY_SESSION_H
#define TALLY_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tally/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_SESSION_ID_MAX 128       /* session, connection and user ids, bytes */
#define TALLY_SESSION_LANGUAGE_MAX 35  /* BCP 47 tags ("zh-Hant-TW"), bytes */
#define TALLY_SESSION_TIER_MAX 31      /* quality tier ("standard", "premium") */
#define TALLY_SESSION_ADDRESS_MAX 63   /* client address ("[v6]:port"), bytes */

struct tally_session_table;

/* Table configuration; zero-initialise and set what you need. */
struct tally_session_config {
	/* Clock in milliseconds; NULL = CLOCK_REALTIME. Must be thread-safe. */
	int64_t (*now_ms)(void *clock_arg);
	void *clock_arg;
	int64_t session_ttl_ms;    /* default lifetime of a session, 0 = no expiry */
	int64_t connection_ttl_ms; /* default lifetime of a connection, 0 = no expiry */
	/* Size hints, 0 = start small. The tables grow by themselves, but in steps: a table
	 * filled from small holds up to 8 entries per hash bucket between steps, and each
	 * extra entry on a bucket's chain is a cache miss on every lookup that passes it.
	 * A hint allocates about one bucket per expected entry up front (16 bytes each);
	 * without one, a running sweeper (tally_session_sweeper_start) grows the tables to
	 * that size as they fill. */
	size_t expected_sessions;
	size_t expected_connections;
};

enum tally_connection_role {
	TALLY_ROLE_ANY = 0, /* in a filter: any role; never a connection's role */
	TALLY_ROLE_SPEAKER = 1,
	TALLY_ROLE_LISTENER = 2,
};

/* What a caller passes to create a session. */
struct tally_session_params {
	const char *session_id;            /* required, <= TALLY_SESSION_ID_MAX */
	const char *speaker_connection_id; /* required, <= TALLY_SESSION_ID_MAX */
	const char *speaker_user_id;       /* optional, <= TALLY_SESSION_ID_MAX */
	const char *source_language;       /* required, <= TALLY_SESSION_LANGUAGE_MAX */
	const char *quality_tier;          /* optional, <= TALLY_SESSION_TIER_MAX */
	int64_t ttl_ms;                    /* 0 = config.session_ttl_ms; < 0 is EINVAL */
};

/* A copy of a session (tally_session_get). */
struct tally_session_info {
	char session_id[TALLY_SESSION_ID_MAX + 1];
	char speaker_connection_id[TALLY_SESSION_ID_MAX + 1];
	char speaker_user_id[TALLY_SESSION_ID_MAX + 1];
	char source_language[TALLY_SESSION_LANGUAGE_MAX + 1];
	char quality_tier[TALLY_SESSION_TIER_MAX + 1];
	int64_t created_at_ms;
	int64_t expires_at_ms;  /* 0 = never */
	int64_t listener_count; /* listener connections at the time of the read */
	bool active;            /* until mark_inactive / speaker disconnect */
};

/* What a caller passes to create a connection (or join). */
struct tally_connection_params {
	const char *connection_id;   /* required, <= TALLY_SESSION_ID_MAX */
	const char *session_id;      /* required, <= TALLY_SESSION_ID_MAX */
	const char *target_language; /* required for listeners, optional for speakers */
	enum tally_connection_role role; /* join ignores it */
	const char *client_address;  /* optional, <= TALLY_SESSION_ADDRESS_MAX */
	int64_t ttl_ms;              /* 0 = config.connection_ttl_ms; < 0 is EINVAL */
};

/* A copy of a connection (tally_connection_get). Visit and notify callbacks get a pointer
 * to a copy made for that one call: valid only until the callback returns. */
struct tally_connection_info {
	char connection_id[TALLY_SESSION_ID_MAX + 1];
	char session_id[TALLY_SESSION_ID_MAX + 1];
	char target_language[TALLY_SESSION_LANGUAGE_MAX + 1];
	char client_address[TALLY_SESSION_ADDRESS_MAX + 1];
	enum tally_connection_role role;
	int64_t connected_at_ms;
	int64_t expires_at_ms; /* 0 = never */
};

/* Which connections of a session a visit or delete selects. */
struct tally_connection_filter {
	enum tally_connection_role role; /* TALLY_ROLE_ANY or one role */
	const char *target_language; /* NULL = any, else exact byte match */
};

/* Called once per selected connection, inside an RCU read-side section: `connection` points
 * to a copy made for this call and is valid only until the callback returns (keep the
 * strings you need by copying them). May call tally_session_* / tally_connection_* (deletes
 * included) but not destroy, the sweeper control calls or tally_rcu_barrier; should not
 * block for long (memory reclamation waits). Return 0 to go on, non-zero to stop (visit
 * calls) or to report a failed notification (speaker disconnect). */
typedef int (*tally_connection_fn)(const struct tally_connection_info *connection, void *arg);

/* ---- table ---------------------------------------------------------------------------- */

/* Creates a table. config may be NULL (defaults). Errors: EINVAL (negative TTL), ENOMEM. */
int tally_session_table_create(struct tally_session_table **table,
			       const struct tally_session_config *config);

/* Stops the sweeper, frees every session and connection and the table. Exclusive (see
 * "Threads"). Blocks for a grace period. Errors: EINVAL (NULL), EBUSY (inside a read-side
 * section; nothing is freed). */
int tally_session_table_destroy(struct tally_session_table *table);

/* What a sweep removed. */
struct tally_session_sweep_result {
	int64_t sessions_deleted;
	int64_t connections_deleted; /* expired ones plus those of deleted sessions */
};

/* Deletes every expired connection, then every expired session (with its connections), as
 * the explicit deletes would. Entries created during the sweep may or may not be seen.
 * Lock-free apart from the per-session mutexes. result may be NULL. Errors: EINVAL. */
int tally_session_table_sweep(struct tally_session_table *table,
			      struct tally_session_sweep_result *result);

/* Starts a background thread that sweeps every interval_ms (> 0). Before each sweep it also
 * grows the two maps to about one bucket per entry when they have fewer (a resize that
 * waits for grace periods, in that thread only; no table call ever waits for it): a table
 * created without size hints then reaches the chain lengths of a hinted one. Errors:
 * EINVAL, ESTATE (already running), ETHREAD (pthread_create failed). */
int tally_session_sweeper_start(struct tally_session_table *table, int64_t interval_ms);

/* Stops the sweeper and waits for it (finishing a sweep in progress). Blocking. Errors:
 * EINVAL, ESTATE (not running). */
int tally_session_sweeper_stop(struct tally_session_table *table);

/* ---- sessions ------------------------------------------------------------------------- */

/* Creates an active session with listener count 0. Errors: EINVAL, ETOOLONG, EEXIST (the id
 * is taken; the existing session is untouched), ENOMEM. */
int tally_session_create(struct tally_session_table *table,
			 const struct tally_session_params *params);

/* Copies the session into *info. Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_session_get(struct tally_session_table *table, const char *session_id,
		      struct tally_session_info *info);

/* Whether the session is present (false also for invalid ids). Wait-free apart from the
 * hash chain; no errors. */
bool tally_session_exists(struct tally_session_table *table, const char *session_id);

/* Whether the session is present and active (acquire: pairs with mark_inactive). No errors. */
bool tally_session_is_active(struct tally_session_table *table, const char *session_id);

/* *count = current listener count. Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_session_listener_count(struct tally_session_table *table, const char *session_id,
				 int64_t *count);

/* Replaces the speaker connection id (a speaker reconnect). Errors: EINVAL, ETOOLONG,
 * ENOTFOUND, EINACTIVE, ENOMEM. */
int tally_session_set_speaker(struct tally_session_table *table, const char *session_id,
			      const char *speaker_connection_id);

/* Marks the session inactive: later joins fail with EINACTIVE; connections already present
 * stay (speaker disconnect also removes them). Idempotent. Errors: EINVAL, ETOOLONG,
 * ENOTFOUND. */
int tally_session_mark_inactive(struct tally_session_table *table, const char *session_id);

/* Deletes the session and all its connections. *connections_deleted (may be NULL) gets how
 * many connections this call removed. Errors: EINVAL, ETOOLONG, ENOTFOUND (absent or already
 * deleted by a concurrent call). */
int tally_session_delete(struct tally_session_table *table, const char *session_id,
			 int64_t *connections_deleted);

/* ---- lifecycle (what a server's connect/disconnect handlers call) ----------------------- */

/* Listener join: creates a listener connection and increments the session's listener count,
 * as one step. Errors: EINVAL, ETOOLONG, ENOTFOUND (no session), EINACTIVE (session
 * inactive), EEXIST (connection id taken), ENOMEM; on any error nothing was added. */
int tally_session_join(struct tally_session_table *table,
		       const struct tally_connection_params *params);

/* Listener (or any connection) disconnect: deletes the connection; if it was a listener,
 * decrements its session's count. Exactly once: a duplicate or concurrent second call for the
 * same connection returns ENOTFOUND and changes nothing. Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_session_leave(struct tally_session_table *table, const char *connection_id);

struct tally_speaker_disconnect_result {
	int64_t listeners;           /* listener connections handed to notify */
	int64_t notified;            /* ... for which notify returned 0 */
	int64_t notify_failed;       /* ... for which notify returned non-zero */
	int64_t connections_deleted; /* connections this call removed (speaker's included) */
	int64_t duration_ms;         /* now - created_at_ms */
};

/* Speaker disconnect: marks the session inactive (joins fail from here on), calls notify
 * (may be NULL) for each listener connection present (a non-zero return is counted and the
 * rest are still notified), then deletes all the session's connections. The session itself
 * stays, inactive, until deleted or swept. result may be NULL. A concurrent leave may take a
 * listener out before it is notified. Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_session_speaker_disconnect(struct tally_session_table *table, const char *session_id,
				     tally_connection_fn notify, void *notify_arg,
				     struct tally_speaker_disconnect_result *result);

/* ---- connections ---------------------------------------------------------------------- */

/* Creates a connection of params->role in an active session (a listener increments the count,
 * exactly like join). Errors: as tally_session_join, plus EINVAL for an unknown role. */
int tally_connection_create(struct tally_session_table *table,
			    const struct tally_connection_params *params);

/* Copies the connection. Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_connection_get(struct tally_session_table *table, const char *connection_id,
			 struct tally_connection_info *info);

/* Same as tally_session_leave (idempotent delete with the count bookkeeping). */
int tally_connection_delete(struct tally_session_table *table, const char *connection_id);

/* Deletes each listed id (invalid or absent ones are skipped); *deleted (may be NULL) gets
 * how many this call removed. Errors: EINVAL (ids NULL with count > 0). */
int tally_connection_delete_batch(struct tally_session_table *table,
				  const char *const *connection_ids, size_t count,
				  size_t *deleted);

/* Calls fn for each connection of the session that matches filter (NULL = all), in no
 * particular order, until fn returns non-zero. Connections added or removed meanwhile may or
 * may not be seen; each present throughout is seen once. *visited (may be NULL) gets how
 * many fn calls were made. Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_session_visit_connections(struct tally_session_table *table, const char *session_id,
				    const struct tally_connection_filter *filter,
				    tally_connection_fn fn, void *arg, size_t *visited);

/* Counts the session's connections that match filter (NULL = all). Errors: as visit. */
int tally_session_count_connections(struct tally_session_table *table, const char *session_id,
				    const struct tally_connection_filter *filter, size_t *count);

/* The distinct target languages of the session's listeners, into languages[0 .. cap-1].
 * *count gets the number stored. Errors: EINVAL, ETOOLONG, ENOTFOUND, EFULL (more than cap
 * distinct languages: the first cap found are stored). */
int tally_session_target_languages(struct tally_session_table *table, const char *session_id,
				   char (*languages)[TALLY_SESSION_LANGUAGE_MAX + 1], size_t cap,
				   size_t *count);

/* Deletes the session's connections that match filter (NULL = all), with the count
 * bookkeeping; the session stays. *deleted (may be NULL) gets how many this call removed.
 * Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_session_delete_connections(struct tally_session_table *table, const char *session_id,
				     const struct tally_connection_filter *filter,
				     int64_t *deleted);

/* Totals, for tests and metrics (exact when quiescent). Either output may be NULL: that
 * total is not read (both NULL is a valid no-op). Errors: EINVAL (NULL table). */
int tally_session_table_counts(struct tally_session_table *table, int64_t *sessions,
			       int64_t *connections);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_SESSION_H */
