/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/session/connection.c: connections and the per-session index: create/get/delete, batch
 * delete, visits by role and target language, distinct languages, delete by filter,
 * concurrent duplicate disconnects racing readers walking the list, and every field's round
 * trip through get, visits and notify at the length limits. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include "../tap.h"
#include "../threads.h"

static struct tally_session_table *table_with_session(const char *session_id)
{
	struct tally_session_params params = { session_id, "spk", "u", "en", "premium", 0 };
	struct tally_session_table *table = NULL;

	tally_session_table_create(&table, NULL);
	tally_session_create(table, &params);
	return table;
}

static int add(struct tally_session_table *table, const char *id, const char *session,
	       int role, const char *language)
{
	struct tally_connection_params params = { id, session, language, role, "192.0.2.7:443", 0 };

	return tally_connection_create(table, &params);
}

static size_t count(struct tally_session_table *table, const char *session, int role,
		    const char *language)
{
	struct tally_connection_filter filter = { role, language };
	size_t n = 0;

	if (tally_session_count_connections(table, session, &filter, &n) != TALLY_OK)
		return (size_t)-1;
	return n;
}

static int64_t listeners_of(struct tally_session_table *table, const char *session)
{
	int64_t n = -1;

	tally_session_listener_count(table, session, &n);
	return n;
}

static void test_create_get(void)
{
	struct tally_session_table *table = table_with_session("s");
	struct tally_connection_info info;
	struct tally_connection_params params = { "c", "s", "fr", 7, NULL, 0 };

	tap_eq(add(table, "spk", "s", TALLY_ROLE_SPEAKER, NULL), TALLY_OK,
	       "speaker connection without a language");
	tap_eq(add(table, "l1", "s", TALLY_ROLE_LISTENER, "fr"), TALLY_OK, "listener connection");
	tap_eq(listeners_of(table, "s"), 1, "a listener created directly is counted");
	tap_eq(add(table, "l1", "s", TALLY_ROLE_SPEAKER, NULL), TALLY_EEXIST, "duplicate id");
	tap_eq(tally_connection_create(table, &params), TALLY_EINVAL, "unknown role");
	params.role = 0;
	tap_eq(tally_connection_create(table, &params), TALLY_EINVAL, "role 0");
	tap_eq(tally_connection_create(table, NULL), TALLY_EINVAL, "NULL params");
	tap_eq(add(table, "l2", "s", TALLY_ROLE_LISTENER, ""), TALLY_EINVAL,
	       "listener with an empty language");
	tap_eq(add(table, "l2", "nope", TALLY_ROLE_LISTENER, "fr"), TALLY_ENOTFOUND,
	       "unknown session");
	tap_eq(count(table, "s", 0, NULL), 2, "failed creates left two connections");

	tap_eq(tally_connection_get(table, "l1", &info), TALLY_OK, "get l1");
	tap_ok(strcmp(info.connection_id, "l1") == 0 && strcmp(info.session_id, "s") == 0 &&
	       strcmp(info.target_language, "fr") == 0 && info.role == TALLY_ROLE_LISTENER &&
	       strcmp(info.client_address, "192.0.2.7:443") == 0 && info.expires_at_ms == 0,
	       "get copies every field");
	tap_ok(info.connected_at_ms > 0, "connected_at_ms from the real-time clock");
	tap_eq(tally_connection_get(table, "zz", &info), TALLY_ENOTFOUND, "get missing");
	tap_eq(tally_connection_get(table, "l1", NULL), TALLY_EINVAL, "get: NULL info");
	tap_eq(tally_connection_delete(table, "spk"), TALLY_OK, "delete speaker connection");
	tap_eq(listeners_of(table, "s"), 1, "deleting a speaker leaves the count");
	tap_eq(tally_connection_delete(table, "spk"), TALLY_ENOTFOUND, "delete is idempotent");
	tally_session_table_destroy(table);
}

static int collect(const struct tally_connection_info *c, void *arg)
{
	strcat((char *)arg, c->connection_id);
	return 0;
}

static int stop_at_first(const struct tally_connection_info *c, void *arg)
{
	return 1;
}

static void test_index(void)
{
	struct tally_session_table *table = table_with_session("s");
	struct tally_session_params other = { "t", "spk", NULL, "en", NULL, 0 };
	char languages[4][TALLY_SESSION_LANGUAGE_MAX + 1];
	char seen[64] = "";
	struct tally_connection_filter bad = { 9, NULL };
	size_t n = 0, visited = 0;
	int64_t deleted = -1;

	tally_session_create(table, &other);
	add(table, "S", "s", TALLY_ROLE_SPEAKER, NULL);
	add(table, "a", "s", TALLY_ROLE_LISTENER, "fr");
	add(table, "b", "s", TALLY_ROLE_LISTENER, "de");
	add(table, "c", "s", TALLY_ROLE_LISTENER, "fr");
	add(table, "d", "s", TALLY_ROLE_LISTENER, "es");
	add(table, "x", "t", TALLY_ROLE_LISTENER, "fr");
	tap_eq(count(table, "s", 0, NULL), 5, "all connections of s");
	tap_eq(count(table, "s", TALLY_ROLE_LISTENER, NULL), 4, "listeners of s");
	tap_eq(count(table, "s", TALLY_ROLE_SPEAKER, NULL), 1, "speakers of s");
	tap_eq(count(table, "s", TALLY_ROLE_LISTENER, "fr"), 2, "French listeners of s");
	tap_eq(count(table, "t", 0, "fr"), 1, "t's connections are t's own");
	tap_eq(tally_session_count_connections(table, "s", &bad, &n), TALLY_EINVAL, "bad filter");
	tap_eq(count(table, "nope", 0, NULL), (size_t)-1, "count: unknown session");

	tap_eq(tally_session_visit_connections(table, "s",
		&(struct tally_connection_filter){ 0, "fr" }, collect, seen, &visited),
	       TALLY_OK, "visit French");
	tap_ok(visited == 2 && strlen(seen) == 2 && strchr(seen, 'a') && strchr(seen, 'c'),
	       "visit saw a and c once each");
	tap_eq(tally_session_visit_connections(table, "s", NULL, stop_at_first, NULL, &visited),
	       TALLY_OK, "visit that stops");
	tap_eq(visited, 1, "a non-zero return stops the visit");
	tap_eq(tally_session_visit_connections(table, "s", NULL, NULL, NULL, NULL), TALLY_EINVAL,
	       "visit: NULL fn");

	tap_eq(tally_session_target_languages(table, "s", languages, 4, &n), TALLY_OK, "languages");
	tap_eq(n, 3, "three distinct languages (the speaker has none)");
	tap_eq(tally_session_target_languages(table, "s", languages, 2, &n), TALLY_EFULL,
	       "languages: cap 2 is too small");
	tap_eq(n, 2, "the first two stored");
	tap_eq(tally_session_target_languages(table, "s", NULL, 0, &n), TALLY_EFULL,
	       "languages: cap 0");

	tap_eq(tally_session_delete_connections(table, "s",
		&(struct tally_connection_filter){ TALLY_ROLE_LISTENER, "fr" }, &deleted),
	       TALLY_OK, "delete French listeners");
	tap_eq(deleted, 2, "two deleted");
	tap_eq(listeners_of(table, "s"), 2, "count follows");
	tap_eq(tally_session_delete_connections(table, "s", NULL, &deleted), TALLY_OK,
	       "delete all of s");
	tap_eq(deleted, 3, "b, d and the speaker");
	tap_eq(listeners_of(table, "s"), 0, "count 0");
	tap_eq(count(table, "t", 0, NULL), 1, "t untouched");
	tap_eq(tally_session_is_active(table, "s"), 1, "s stays active");
	tap_eq(add(table, "e", "s", TALLY_ROLE_LISTENER, "fr"), TALLY_OK, "s accepts joins again");
	tally_session_table_destroy(table);
}

static void test_batch(void)
{
	struct tally_session_table *table = table_with_session("s");
	const char *ids[] = { "a", "b", "a", NULL, "", "zz", "c" };
	size_t deleted = 0;

	add(table, "a", "s", TALLY_ROLE_LISTENER, "fr");
	add(table, "b", "s", TALLY_ROLE_LISTENER, "fr");
	add(table, "c", "s", TALLY_ROLE_SPEAKER, NULL);
	add(table, "d", "s", TALLY_ROLE_LISTENER, "fr");
	tap_eq(tally_connection_delete_batch(table, ids, 7, &deleted), TALLY_OK, "batch delete");
	tap_eq(deleted, 3, "a, b, c deleted once; duplicates, invalid and absent skipped");
	tap_eq(listeners_of(table, "s"), 1, "count 1 (d)");
	tap_eq(tally_connection_delete_batch(table, NULL, 2, &deleted), TALLY_EINVAL,
	       "batch: NULL ids");
	tap_eq(tally_connection_delete_batch(table, NULL, 0, &deleted), TALLY_OK, "batch: empty");
	tap_eq(deleted, 0, "nothing deleted");
	tally_session_table_destroy(table);
}

/* Many threads disconnect the same connections while readers walk the list: every
 * connection is removed exactly once and readers never see a freed node (ASan/TSan). */
#define DUP_THREADS 4
#define DUP_CONNECTIONS 500

struct dup {
	struct tally_session_table *table;
	_Atomic int64_t removed;
	_Atomic int64_t walks;
};

static int check_node(const struct tally_connection_info *c, void *arg)
{
	return c->connection_id[0] != 'c'; /* reads the node: ASan flags a freed one */
}

static void *dup_body(struct test_thread *self)
{
	struct dup *dup = self->shared;
	char id[16];

	for (int i = 0; i < DUP_CONNECTIONS; i++) {
		int pick = (i * 7 + self->index * 131) % DUP_CONNECTIONS;

		snprintf(id, sizeof(id), "c%d", pick);
		if (tally_session_leave(dup->table, id) == TALLY_OK)
			atomic_fetch_add(&dup->removed, 1);
		snprintf(id, sizeof(id), "c%d", i);
		if (tally_session_leave(dup->table, id) == TALLY_OK)
			atomic_fetch_add(&dup->removed, 1);
		if (i % 16 == 0) {
			tally_session_visit_connections(dup->table, "s", NULL, check_node, NULL,
							NULL);
			atomic_fetch_add(&dup->walks, 1);
		}
	}
	return NULL;
}

static void test_duplicate_disconnects(void)
{
	struct dup dup = { .table = table_with_session("s") };
	struct test_thread threads[DUP_THREADS];
	char id[16];

	for (int i = 0; i < DUP_CONNECTIONS; i++) {
		snprintf(id, sizeof(id), "c%d", i);
		add(dup.table, id, "s", TALLY_ROLE_LISTENER, (i & 1) ? "fr" : "de");
	}
	tap_eq(listeners_of(dup.table, "s"), DUP_CONNECTIONS, "all joined");
	run_threads(DUP_THREADS, dup_body, &dup, threads);
	tap_eq(atomic_load(&dup.removed), DUP_CONNECTIONS,
	       "every connection removed exactly once across duplicate disconnects");
	tap_eq(listeners_of(dup.table, "s"), 0, "count exactly 0");
	tap_eq(count(dup.table, "s", 0, NULL), 0, "list empty");
	tally_session_table_destroy(dup.table);
}

/* ---- every field round trips, at the length limits -------------------------------------- */

static int64_t fixed_clock(void *arg)
{
	return *(const int64_t *)arg;
}

#define ROUND_TRIPS 4
#define TTL_DEFAULT 1000

/* What each connection of test_round_trip was created with. */
struct round_trip {
	struct tally_connection_params params[ROUND_TRIPS];
	int64_t now;
	int seen[ROUND_TRIPS];
	int equal[ROUND_TRIPS];
};

static const char *or_empty(const char *text)
{
	return text ? text : "";
}

/* Is info exactly what params created at `now`? */
static int same_connection(const struct tally_connection_info *info,
			   const struct tally_connection_params *params, int64_t now)
{
	int64_t ttl = params->ttl_ms ? params->ttl_ms : TTL_DEFAULT;

	return strcmp(info->connection_id, params->connection_id) == 0 &&
	       strcmp(info->session_id, params->session_id) == 0 &&
	       strcmp(info->target_language, or_empty(params->target_language)) == 0 &&
	       strcmp(info->client_address, or_empty(params->client_address)) == 0 &&
	       info->role == params->role && info->connected_at_ms == now &&
	       info->expires_at_ms == now + ttl;
}

/* Visit and notify callback: marks which connection it got and whether it was exact. */
static int check_round_trip(const struct tally_connection_info *info, void *arg)
{
	struct round_trip *trip = arg;

	for (int i = 0; i < ROUND_TRIPS; i++)
		if (strcmp(info->connection_id, trip->params[i].connection_id) == 0) {
			trip->seen[i]++;
			trip->equal[i] += same_connection(info, &trip->params[i], trip->now);
		}
	return 0;
}

static int all_once(const int *counts, int role, const struct round_trip *trip)
{
	for (int i = 0; i < ROUND_TRIPS; i++)
		if (counts[i] != (!role || trip->params[i].role == role))
			return 0;
	return 1;
}

/* Connections with ids, language and address of the maximum length, empty and NULL
 * optional strings, and a non-UTF-8 address, in sessions whose ids are 1, 24, 25 and
 * TALLY_SESSION_ID_MAX bytes: get, a visit and a speaker disconnect's notify each give
 * back every field exactly as it was passed. */
static void test_round_trip(void)
{
	static char max_id[TALLY_SESSION_ID_MAX + 1], long_id[TALLY_SESSION_ID_MAX + 2];
	static char max_language[TALLY_SESSION_LANGUAGE_MAX + 1];
	static char long_language[TALLY_SESSION_LANGUAGE_MAX + 2];
	static char max_address[TALLY_SESSION_ADDRESS_MAX + 1];
	static char long_address[TALLY_SESSION_ADDRESS_MAX + 2];
	static char session_ids[4][TALLY_SESSION_ID_MAX + 1];
	const size_t session_lengths[4] = { 1, 24, 25, TALLY_SESSION_ID_MAX };
	int ok_get = 1, ok_visit = 1, ok_notify = 1, ok_errors = 1, ok_filter = 1;

	memset(max_id, 'c', TALLY_SESSION_ID_MAX);
	memset(long_id, 'c', TALLY_SESSION_ID_MAX + 1);
	memset(max_language, 'l', TALLY_SESSION_LANGUAGE_MAX);
	memset(long_language, 'l', TALLY_SESSION_LANGUAGE_MAX + 1);
	memset(max_address, 'a', TALLY_SESSION_ADDRESS_MAX);
	memset(long_address, 'a', TALLY_SESSION_ADDRESS_MAX + 1);
	for (int s = 0; s < 4; s++) {
		struct tally_session_config config = { .now_ms = fixed_clock,
						       .connection_ttl_ms = TTL_DEFAULT };
		struct round_trip trip = {
			.params = {
				{ max_id, session_ids[s], max_language, TALLY_ROLE_LISTENER,
				  max_address, 0 },
				{ "e", session_ids[s], "", TALLY_ROLE_SPEAKER, "", 7 },
				{ "n", session_ids[s], NULL, TALLY_ROLE_SPEAKER, NULL, 0 },
				{ "x", session_ids[s], "fr", TALLY_ROLE_LISTENER, "\xff\xfe:1", 0 },
			},
			.now = 5000 + s,
		};
		struct tally_session_params session = { session_ids[s], "spk", NULL, "en", NULL,
							0 };
		struct tally_connection_params bad = trip.params[0];
		struct tally_connection_filter by_language = { 0, max_language };
		struct tally_connection_info info;
		struct tally_session_table *table = NULL;
		size_t n = 0;

		memset(session_ids[s], 's', session_lengths[s]);
		config.clock_arg = &trip.now;
		tally_session_table_create(&table, &config);
		tally_session_create(table, &session);
		for (int i = 0; i < ROUND_TRIPS; i++) {
			ok_get &= tally_connection_create(table, &trip.params[i]) == TALLY_OK;
			memset(&info, 0x5a, sizeof(info)); /* garbage a get must overwrite */
			ok_get &= tally_connection_get(table, trip.params[i].connection_id, &info) ==
					  TALLY_OK &&
				  same_connection(&info, &trip.params[i], trip.now);
		}
		bad.connection_id = long_id;
		ok_errors &= tally_connection_create(table, &bad) == TALLY_ETOOLONG;
		bad.connection_id = "bad";
		bad.target_language = long_language;
		ok_errors &= tally_connection_create(table, &bad) == TALLY_ETOOLONG;
		bad.target_language = "fr";
		bad.client_address = long_address;
		ok_errors &= tally_connection_create(table, &bad) == TALLY_ETOOLONG;
		ok_errors &= tally_connection_get(table, long_id, &info) == TALLY_ETOOLONG;
		ok_filter &= tally_session_count_connections(table, session_ids[s], &by_language,
							     &n) == TALLY_OK && n == 1;
		ok_visit &= tally_session_visit_connections(table, session_ids[s], NULL,
							    check_round_trip, &trip, &n) ==
				    TALLY_OK &&
			    n == ROUND_TRIPS && all_once(trip.seen, 0, &trip) &&
			    all_once(trip.equal, 0, &trip);
		memset(trip.seen, 0, sizeof(trip.seen));
		memset(trip.equal, 0, sizeof(trip.equal));
		ok_notify &= tally_session_speaker_disconnect(table, session_ids[s],
							      check_round_trip, &trip, NULL) ==
				     TALLY_OK &&
			     all_once(trip.seen, TALLY_ROLE_LISTENER, &trip) &&
			     all_once(trip.equal, TALLY_ROLE_LISTENER, &trip);
		tally_session_table_destroy(table);
	}
	tap_ok(ok_get, "get gives back every field (max, empty, NULL, non-UTF-8 strings)");
	tap_ok(ok_visit, "a visit gives back every field, each connection once");
	tap_ok(ok_notify, "notify gives back every listener's fields");
	tap_ok(ok_errors, "one byte over each limit is ETOOLONG");
	tap_ok(ok_filter, "a filter on a language of the maximum length matches");
}

int main(void)
{
	test_create_get();
	test_index();
	test_batch();
	test_duplicate_disconnects();
	test_round_trip();
	tally_rcu_barrier();
	return tap_done();
}
