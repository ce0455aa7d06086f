/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/session/internal.h: the objects behind tally/session.h, shared by lib/session/session.c
 * (table, sessions, lifecycle, sweeps) and lib/session/connection.c (connections and the per-session
 * list that indexes them).
 *
 * Invariants (kept by the code that names them):
 * I1 A connection is in the connection map only while it is linked in its session's list,
 *    apart from the window between its remover's map removal and its unlink.
 * I2 Link (with the listener increment) and the `active` check happen in one hold of the
 *    session's list_lock; `active` only goes 1 -> 0, under the same lock. So once a thread
 *    has stored active = 0 and released the lock, no connection is ever linked again.
 * I3 Only the thread whose tally__rcu_map_remove of a connection returned TALLY_OK unlinks
 *    it, decrements the listener count (listeners) and retires it.
 * I4 A session is retired only after it is out of the session map, inactive and swept: every
 *    connection that still points at it has been removed from the connection map by a
 *    thread whose read-side section began before the retire, so the session outlives it.
 */
#ifndef TALLY_SESSION_INTERNAL_H
#define TALLY_SESSION_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "tally/counter.h"
#include "tally/static/counter.h"
#include "tally/session.h"
#include "tally/gauge.h"
#include "gauge/internal.h"
#include "internal/lock.h"
#include "internal/rcu.h"
#include "internal/rcu_map.h"
#include <urcu/wfcqueue.h>
#include "internal/sweeper.h"

struct session;

/* The change feed: how a write-behind flusher (lib/writebehind/records.c) learns which
 * sessions and connections changed without scanning the table. Off (table->feed NULL) it
 * costs a load and a branch per change. On, a changed object is pushed onto one of two
 * wait-free queues (liburcu wfcqueue: one exchange on the tail) unless it is queued already:
 * its feed_flags QUEUED bit, set by an atomic OR, says so. The flusher dequeues it, copies its
 * id, clears QUEUED, and reads its latest state later (latest state wins), so a session that
 * changes a thousand times between flushes is pushed once.
 * F1 An object whose QUEUED bit is set is not freed: its reclaim sets ZOMBIE instead and the
 *    flusher frees it when it clears QUEUED (tally__session_feed_done,
 *    tally__connection_feed_done). One RMW on feed_flags each side decides who frees.
 * F2 A change is made (map removal, count move, field store) before its OR of QUEUED, and the
 *    flusher clears QUEUED before it reads the state; both RMWs are acq_rel, so if the OR saw
 *    QUEUED set, the change is visible to the flusher's later read. */
#define TALLY_FEED_QUEUED 1u
#define TALLY_FEED_ZOMBIE 2u
struct tally_session_feed {
	struct __cds_wfcq_head sessions_head; /* the flusher alone dequeues */
	struct cds_wfcq_tail sessions_tail;
	struct __cds_wfcq_head connections_head;
	struct cds_wfcq_tail connections_tail;
};

/* Allocated cache-line aligned (tally__alloc_aligned) and sized to its strings
 * (connection_size in lib/session/connection.c): the fixed part is 104 bytes and the strings follow
 * it packed, so a connection with ids of ~10-40 bytes takes two or three cache lines rather
 * than the eight a fixed-size struct tally_connection_info needed. Less memory per join and
 * per removed connection waiting for its grace period leaves the session table's hot lines
 * in the cache. Line 0 holds what a lookup, a leave and a list walk by role touch. */
struct connection {
	struct tally_rcu_map_node node;        /* in table->connections, key = the id in text */
	struct session *session;               /* immutable; outlives us by I4; its id is ours */
	_Atomic(struct connection *) next;     /* list link; readers acquire-load it */
	struct connection *prev;               /* writers only, under session->list_lock */
	uint8_t role;                          /* enum tally_connection_role */
	uint8_t id_len, language_len, address_len; /* the strings' lengths, without NUL */
	_Atomic uint8_t feed_flags;            /* TALLY_FEED_*: F1, F2 */
	int64_t connected_at_ms;
	int64_t expires_at_ms;                 /* read by sweeps */
	struct tally_rcu_head rcu;             /* retire */
	struct cds_wfcq_node feed_node;        /* in the change feed while QUEUED */
	/* connection_id, target_language, client_address: each followed by its NUL. The session
	 * id is not stored: it is connection->session's, which outlives the connection. */
	char text[];
};

_Static_assert(TALLY_SESSION_ID_MAX <= UINT8_MAX && TALLY_SESSION_LANGUAGE_MAX <= UINT8_MAX &&
		       TALLY_SESSION_ADDRESS_MAX <= UINT8_MAX && TALLY_SESSION_TIER_MAX <= UINT8_MAX,
	       "string lengths fit the uint8_t length fields of connections and sessions");

/* The connection's strings (immutable once published). */
static inline const char *tally__connection_id(const struct connection *connection)
{
	return connection->text;
}

static inline const char *tally__connection_language(const struct connection *connection)
{
	return connection->text + connection->id_len + 1;
}

static inline const char *tally__connection_address(const struct connection *connection)
{
	return tally__connection_language(connection) + connection->language_len + 1;
}

/* The speaker connection id, replaced whole (never edited) so a reader never sees it torn.
 * malloc'ed, sized to the id. */
struct speaker_version {
	struct tally_rcu_head rcu;
	uint8_t len;            /* of connection_id, without its NUL */
	char connection_id[];   /* NUL-terminated */
};

/* Allocated cache-line aligned (tally__alloc_aligned) and sized to its strings
 * (session_size in lib/session/session.c), as three parts: the cold fields (struct session_cold) in
 * the cache line before the session, the session's first line, then its strings packed with
 * their NULs. The session pointer points at the first line.
 *
 * Line 0 holds everything that a lookup of an id of up to SESSION_SHORT_ID bytes, a listener
 * count read, a join and a leave touch: the map node, a copy of the id that the node keys on,
 * the count, the list head and its lock. So a join or a leave writes one line of the session,
 * the one its lookup brought in; with two cores every further line it wrote was another
 * cache-line transfer (docs/session.md, Costs, has its price). That is why the lock
 * is a 4-byte futex word (internal/lock.h) and the count a bare gauge word with constant
 * bounds (gauge/internal.h): pthread_mutex_t (40 bytes) and struct tally_gauge (32) do not
 * fit. A longer id (a 36-byte UUID, say) is the first packed string, right after line 0: its
 * lookup reads one more line, not the two it read when the cold fields came first. */
#define SESSION_SHORT_ID 16
struct session {
	struct tally_rcu_map_node node;        /* in table->sessions */
	char short_id[SESSION_SHORT_ID];       /* the key when the id fits; immutable */
	/* A floor-guarded gauge, floor 0, no ceiling: moved by tally__gauge_move under
	 * list_lock (matched to the list, I2/I3), read lock-free with acquire. */
	_Atomic int64_t listener_count;
	_Atomic(struct connection *) first;    /* head of the connection list */
	struct tally_lock list_lock;           /* serialises list writers */
	_Atomic uint8_t active;                /* 1 -> 0 once, under list_lock (I2) */
	uint8_t id_len, user_len, language_len; /* immutable */
	/* Immutable once published, each followed by its NUL: session_id (only when longer
	 * than SESSION_SHORT_ID, else it is short_id), speaker_user_id, source_language,
	 * quality_tier. */
	char text[];
};

/* What only create, get, set_speaker, speaker disconnect, sweeps and reclaim touch. */
struct session_cold {
	struct tally_rcu_head rcu;                 /* retire */
	_Atomic(struct speaker_version *) speaker; /* exchanged by set_speaker */
	int64_t created_at_ms;
	int64_t expires_at_ms;
	uint8_t tier_len;                          /* immutable */
	_Atomic uint8_t feed_flags;                /* TALLY_FEED_*: F1, F2 */
	struct cds_wfcq_node feed_node;            /* in the change feed while QUEUED */
};

#define SESSION_COLD_SPACE 64 /* one line: the session after it stays line-aligned */

_Static_assert(sizeof(struct tally_rcu_map_node) == 24 && sizeof(struct session) == 64 &&
		       offsetof(struct session, language_len) == 63,
	       "a lookup, a count read, a join and a leave touch only the session's first line");
_Static_assert(sizeof(struct session_cold) <= SESSION_COLD_SPACE,
	       "the cold fields fit the line before the session");

static inline struct session_cold *tally__session_cold(const struct session *session)
{
	return (struct session_cold *)((char *)session - SESSION_COLD_SPACE);
}

static inline struct session *tally__session_of_cold(struct session_cold *cold)
{
	return (struct session *)((char *)cold + SESSION_COLD_SPACE);
}

/* The listener count: moves under list_lock (inc on a listener's link, dec on its unlink),
 * so it never leaves [0, INT64_MAX] (a refused move would mean a broken I3 and is ignored,
 * as the gauge's verdict). Reads acquire: they pair with the move's acq_rel. */
static inline void tally__session_listeners_move(struct session *session, int64_t delta)
{
	tally__lock_assert_held(&session->list_lock);
	tally__gauge_move(&session->listener_count, 0, TALLY_GAUGE_NO_CEILING, delta, NULL);
}

static inline int64_t tally_session_listeners(const struct session *session)
{
	return atomic_load_explicit(&session->listener_count, memory_order_acquire);
}

/* The session's id, *len bytes; not NUL-terminated when it is the short copy. Immutable
 * once published. */
static inline const char *tally__session_id(const struct session *session, size_t *len)
{
	*len = session->id_len;
	return session->id_len <= SESSION_SHORT_ID ? session->short_id : session->text;
}

struct tally_session_table {
	struct tally_rcu_map sessions;
	struct tally_rcu_map connections;
	struct tally_session_config config;
	/* Statistics. Sharded: a single atomic total was a cache line that every join and
	 * leave on every core wrote, which cost more than the join itself on two cores. */
	struct tally_counter session_total;
	struct tally_counter connection_total;
	struct tally__sweeper sweeper; /* the background sweep (lib/internal/sweeper.h) */
	/* The change feed, NULL when no flusher is attached. Set and cleared by the flusher with
	 * a grace period after (so every change in flight sees the new value); read relaxed by
	 * every change: the pointer and the feed it names only change across grace periods. */
	_Atomic(struct tally_session_feed *) feed;
};

/* Validates a string argument: EINVAL (NULL/empty when required), ETOOLONG, else OK; on OK
 * *len gets its length (0 for NULL), so no caller measures a string twice. Inline: it is on
 * every lookup. */
static inline int tally__session_check_string(const char *text, size_t max, int required,
					      size_t *len)
{
	size_t n;

	*len = 0;
	if (!text)
		return required ? TALLY_EINVAL : TALLY_OK;
	n = strnlen(text, max + 1);
	if (n == 0 && required)
		return TALLY_EINVAL;
	if (n > max)
		return TALLY_ETOOLONG;
	*len = n;
	return TALLY_OK;
}
/* Copies a checked string of len bytes (from may be NULL when len is 0) and a NUL. */
static inline void tally__session_copy_string(char *to, const char *from, size_t len)
{
	if (len)
		memcpy(to, from, len);
	to[len] = '\0';
}
/* Copies a checked string and its NUL to `to`; returns the byte after the NUL, where the
 * next packed string goes. */
static inline char *tally__session_pack_string(char *to, const char *from, size_t len)
{
	tally__session_copy_string(to, from, len);
	return to + len + 1;
}
int64_t tally__session_now(const struct tally_session_table *table);
/* expires_at_ms for an entry created at `now` with ttl (0 = default_ttl); 0 = never. */
int64_t tally__session_expiry(int64_t now, int64_t ttl, int64_t default_ttl);

/* The feed hooks, called with the read lock held after a change (F2). */
void tally__feed_push(struct __cds_wfcq_head *head, struct cds_wfcq_tail *tail,
		      _Atomic uint8_t *flags, struct cds_wfcq_node *node);
static inline void tally_session_feed_session(struct tally_session_table *table,
					      struct session *session)
{
	struct tally_session_feed *feed = atomic_load_explicit(&table->feed, memory_order_relaxed);

	if (TALLY_UNLIKELY(feed != NULL)) {
		struct session_cold *cold = tally__session_cold(session);

		tally__feed_push(&feed->sessions_head, &feed->sessions_tail, &cold->feed_flags,
				 &cold->feed_node);
	}
}
/* A connection created or removed; a listener's session changed its count too. */
static inline void tally_session_feed_connection(struct tally_session_table *table,
						 struct connection *connection)
{
	struct tally_session_feed *feed = atomic_load_explicit(&table->feed, memory_order_relaxed);

	if (TALLY_UNLIKELY(feed != NULL)) {
		tally__feed_push(&feed->connections_head, &feed->connections_tail,
				 &connection->feed_flags, &connection->feed_node);
		if (connection->role == TALLY_ROLE_LISTENER)
			tally_session_feed_session(table, connection->session);
	}
}
/* The flusher is done with a dequeued object: clears QUEUED, frees it if it is a ZOMBIE. */
void tally__session_feed_done(struct session *session);
void tally__connection_feed_done(struct connection *connection);

/* lib/session/session.c. Read lock held: the session with this validated id of len bytes, or NULL. */
struct session *tally__session_find(struct tally_session_table *table, const char *id,
				    size_t len);

/* lib/session/connection.c. All with the read lock held. */
/* Looks up a connection by a validated id of len bytes. */
struct connection *tally__connection_find(struct tally_session_table *table, const char *id,
					  size_t len);
/* I3: removes `connection`; OK if this call won, ENOTFOUND if another did. list_locked says
 * whether the caller already holds connection->session->list_lock. */
int tally__connection_remove(struct tally_session_table *table, struct connection *connection,
			     int list_locked);
/* Removes every connection of `session` matching filter (NULL = all); list_lock held. */
int64_t tally__connection_remove_all(struct tally_session_table *table, struct session *session,
				     const struct tally_connection_filter *filter);
/* Copies `connection` into *info: only each string's bytes and its NUL (the rest of each
 * array is left as it was). */
void tally__connection_info_of(const struct connection *connection,
			       struct tally_connection_info *info);
/* Does `connection` match the filter (NULL = all)? */
int tally__connection_matches(const struct connection *connection,
			      const struct tally_connection_filter *filter);
/* Calls fn on each connection of session that matches filter and is not removed, until fn
 * returns non-zero; returns the number of calls. */
size_t tally__connection_visit_session(struct session *session,
				       const struct tally_connection_filter *filter,
				       tally_connection_fn fn, void *arg);
/* Frees a connection that is in no structure (destroy, failed insert). */
void tally__connection_free(struct tally_rcu_map_node *node);

#endif
