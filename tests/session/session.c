/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/session/session.c: session table, the join/leave/speaker-disconnect lifecycle, TTL
 * sweeps on an injected clock, the background sweeper, and the listener-count invariant under
 * concurrent joins, duplicate disconnects, speaker disconnects and sweeps. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include "../random.h"
#include "../tap.h"
#include "../threads.h"

static _Atomic int64_t fake_now = 1000;

static int64_t fake_clock(void *arg)
{
	return atomic_load((_Atomic int64_t *)arg);
}

static struct tally_session_table *new_table(int64_t session_ttl, int64_t connection_ttl)
{
	struct tally_session_config config = { .now_ms = fake_clock, .clock_arg = &fake_now,
					       .session_ttl_ms = session_ttl,
					       .connection_ttl_ms = connection_ttl };
	struct tally_session_table *table = NULL;

	tally_session_table_create(&table, &config);
	return table;
}

static int create_session(struct tally_session_table *table, const char *id)
{
	struct tally_session_params params = { id, "spk-conn", "user-1", "en", "standard", 0 };

	return tally_session_create(table, &params);
}

static int join(struct tally_session_table *table, const char *session, const char *connection,
		const char *language)
{
	struct tally_connection_params params = { connection, session, language, 0, "10.0.0.1", 0 };

	return tally_session_join(table, &params);
}

static int64_t listeners_of(struct tally_session_table *table, const char *session)
{
	int64_t count = -1;

	tally_session_listener_count(table, session, &count);
	return count;
}

static void test_table_errors(void)
{
	struct tally_session_config bad = { .session_ttl_ms = -1 };
	struct tally_session_table *table = NULL;

	tap_eq(tally_session_table_create(NULL, NULL), TALLY_EINVAL, "create: NULL out");
	tap_eq(tally_session_table_create(&table, &bad), TALLY_EINVAL, "create: negative TTL");
	tap_ok(table == NULL, "create: failed create sets nothing");
	tap_eq(tally_session_table_create(&table, NULL), TALLY_OK, "create with defaults");
	tap_eq(tally_session_sweeper_stop(table), TALLY_ESTATE, "stop a sweeper never started");
	tap_eq(tally_session_sweeper_start(table, 0), TALLY_EINVAL, "sweeper interval 0");
	tally_rcu_read_lock();
	tap_eq(tally_session_table_destroy(table), TALLY_EBUSY, "destroy inside a read section");
	tally_rcu_read_unlock();
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "destroy");
	tap_eq(tally_session_table_destroy(NULL), TALLY_EINVAL, "destroy NULL");
}

/* Size hints: any value is accepted (huge ones are capped), and a hinted table behaves
 * like any other, destroy included, with more entries than the hint. */
static void test_size_hints(void)
{
	struct tally_session_config hinted = { .expected_sessions = 100,
					       .expected_connections = SIZE_MAX };
	struct tally_session_table *table = NULL;
	struct tally_session_params params = { NULL, "speaker", "user", "en", "standard", 0 };
	char id[32];
	int created = 0;
	int64_t sessions = -1;

	tap_eq(tally_session_table_create(&table, &hinted), TALLY_OK, "create with size hints");
	for (int i = 0; i < 1000; i++) {
		snprintf(id, sizeof(id), "hinted-%d", i);
		params.session_id = id;
		created += tally_session_create(table, &params) == TALLY_OK;
	}
	tally_session_table_counts(table, &sessions, NULL);
	tap_ok(created == 1000 && sessions == 1000, "1000 sessions past a hint of 100");
	tap_eq(tally_session_table_counts(table, NULL, NULL), TALLY_OK,
	       "counts: both outputs NULL is accepted (nothing read)");
	tap_eq(tally_session_table_counts(NULL, &sessions, NULL), TALLY_EINVAL,
	       "counts: NULL table is EINVAL");
	tap_eq(tally_session_exists(table, "hinted-999"), 1, "the last one is found");
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "destroy the hinted table");
}

/* Ids on both sides of the 16-byte short-id key (session.c keys short ids on a copy in the
 * node's cache line, longer ones on the packed copy) and of the inline compare's 4-, 8- and
 * 16-byte cases (internal/rcu_map.h): each is found whole, never by a
 * prefix or an extension, and reads back intact. */
static void test_id_lengths(void)
{
	static const size_t lengths[] = { 1, 3, 4, 7, 8, 15, 16, 17, 24, 25, 64,
					    TALLY_SESSION_ID_MAX };
	struct tally_session_table *table = new_table(0, 0);
	struct tally_session_params params = { NULL, "spk", NULL, "en", NULL, 0 };
	struct tally_session_info info;
	char id[TALLY_SESSION_ID_MAX + 2];
	int ok = 1;

	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		size_t len = lengths[i];

		for (size_t k = 0; k < len; k++)
			id[k] = (char)('a' + (k * 7 + len) % 26);
		id[len] = '\0';
		params.session_id = id;
		ok &= tally_session_create(table, &params) == TALLY_OK;
		ok &= tally_session_exists(table, id) == 1;
		ok &= tally_session_get(table, id, &info) == TALLY_OK && strcmp(info.session_id, id) == 0;
		id[len - 1] = '\0'; /* a prefix (empty for len 1: invalid, so not found either) */
		ok &= tally_session_exists(table, id) == 0;
		id[len - 1] = (char)('a' + ((len - 1) * 7 + len) % 26);
		if (len < TALLY_SESSION_ID_MAX) {
			id[len] = 'z';
			id[len + 1] = '\0';
			ok &= tally_session_exists(table, id) == 0; /* an extension */
			id[len] = '\0';
		}
		ok &= tally_session_delete(table, id, NULL) == TALLY_OK;
		ok &= tally_session_exists(table, id) == 0;
	}
	tap_ok(ok, "ids of 1-25, 64 and 128 bytes: found whole, read back, deleted");
	tally_session_table_destroy(table);
}

/* Is info exactly what params created at fake_now (ttl_ms > 0), with this speaker id? */
static int same_session(const struct tally_session_info *info,
			const struct tally_session_params *params, const char *speaker)
{
	int64_t now = atomic_load(&fake_now);

	return strcmp(info->session_id, params->session_id) == 0 &&
	       strcmp(info->speaker_connection_id, speaker) == 0 &&
	       strcmp(info->speaker_user_id, params->speaker_user_id ? params->speaker_user_id
								       : "") == 0 &&
	       strcmp(info->source_language, params->source_language) == 0 &&
	       strcmp(info->quality_tier, params->quality_tier ? params->quality_tier : "") == 0 &&
	       info->created_at_ms == now && info->expires_at_ms == now + params->ttl_ms &&
	       info->listener_count == 0 && info->active == 1;
}

/* get (and set_speaker) give back every field as passed: session ids of 1, 16, 17 and
 * TALLY_SESSION_ID_MAX bytes, with optional strings of the maximum length, empty or NULL,
 * and speaker ids of 1 and TALLY_SESSION_ID_MAX bytes. */
static void test_session_round_trip(void)
{
	static const size_t id_lengths[] = { 1, 16, 17, TALLY_SESSION_ID_MAX };
	static char ids[4][TALLY_SESSION_ID_MAX + 1], max_id[TALLY_SESSION_ID_MAX + 1];
	static char max_language[TALLY_SESSION_LANGUAGE_MAX + 1];
	static char max_tier[TALLY_SESSION_TIER_MAX + 1];
	struct tally_session_table *table = new_table(0, 0);
	struct tally_session_info info;
	int ok_get = 1, ok_speaker = 1;

	memset(max_id, 'u', TALLY_SESSION_ID_MAX);
	memset(max_language, 'l', TALLY_SESSION_LANGUAGE_MAX);
	memset(max_tier, 't', TALLY_SESSION_TIER_MAX);
	for (int i = 0; i < 4; i++) {
		struct tally_session_params variants[3] = {
			{ ids[i], max_id, max_id, max_language, max_tier, 50 },
			{ ids[i], "p", "", "en", "", 60 },
			{ ids[i], "p", NULL, "en", NULL, 70 },
		};

		memset(ids[i], 'a' + i, id_lengths[i]);
		for (int v = 0; v < 3; v++) {
			const struct tally_session_params *params = &variants[v];

			ok_get &= tally_session_create(table, params) == TALLY_OK;
			memset(&info, 0x5a, sizeof(info)); /* garbage a get must overwrite */
			ok_get &= tally_session_get(table, ids[i], &info) == TALLY_OK &&
				  same_session(&info, params, params->speaker_connection_id);
			ok_speaker &= tally_session_set_speaker(table, ids[i], max_id) == TALLY_OK &&
				      tally_session_get(table, ids[i], &info) == TALLY_OK &&
				      same_session(&info, params, max_id);
			ok_speaker &= tally_session_set_speaker(table, ids[i], "q") == TALLY_OK &&
				      tally_session_get(table, ids[i], &info) == TALLY_OK &&
				      same_session(&info, params, "q");
			ok_get &= tally_session_delete(table, ids[i], NULL) == TALLY_OK;
		}
	}
	tap_ok(ok_get, "get gives back every field (max, empty and NULL optional strings)");
	tap_ok(ok_speaker, "set_speaker with 128- and 1-byte ids reads back whole");
	tally_session_table_destroy(table);
}

static void test_session_crud(void)
{
	struct tally_session_table *table = new_table(0, 0);
	struct tally_session_info info;
	char long_id[TALLY_SESSION_ID_MAX + 2];
	struct tally_session_params params = { "s1", "spk", NULL, "en", NULL, 0 };
	int64_t sessions = -1;

	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	tap_eq(tally_session_create(table, &params), TALLY_OK, "create s1 (optional fields NULL)");
	tap_eq(tally_session_create(table, &params), TALLY_EEXIST, "second s1 is EEXIST");
	tap_eq(tally_session_create(NULL, &params), TALLY_EINVAL, "create: NULL table");
	tap_eq(tally_session_create(table, NULL), TALLY_EINVAL, "create: NULL params");
	params.session_id = "";
	tap_eq(tally_session_create(table, &params), TALLY_EINVAL, "create: empty id");
	params.session_id = long_id;
	tap_eq(tally_session_create(table, &params), TALLY_ETOOLONG, "create: id too long");
	long_id[TALLY_SESSION_ID_MAX] = '\0';
	tap_eq(tally_session_create(table, &params), TALLY_OK, "create: id of exactly max bytes");
	params.session_id = "s2";
	params.source_language = NULL;
	tap_eq(tally_session_create(table, &params), TALLY_EINVAL, "create: no source language");
	params.source_language = "this-language-tag-is-far-too-long-to-be-real";
	tap_eq(tally_session_create(table, &params), TALLY_ETOOLONG, "create: language too long");
	params.source_language = "en";
	params.ttl_ms = -5;
	tap_eq(tally_session_create(table, &params), TALLY_EINVAL, "create: negative ttl");
	params.ttl_ms = 0;
	params.session_id = "s\xff\xfe"; /* non-UTF-8 bytes are fine */
	tap_eq(tally_session_create(table, &params), TALLY_OK, "create: non-UTF-8 id");
	tap_eq(tally_session_exists(table, "s2"), 0, "failed creates left nothing");
	tally_session_table_counts(table, &sessions, NULL);
	tap_eq(sessions, 3, "three sessions counted");

	tap_eq(create_session(table, "s3"), TALLY_OK, "create s3");
	tap_eq(tally_session_get(table, "s3", &info), TALLY_OK, "get s3");
	tap_ok(strcmp(info.session_id, "s3") == 0 && strcmp(info.speaker_connection_id,
		"spk-conn") == 0 && strcmp(info.speaker_user_id, "user-1") == 0 &&
	       strcmp(info.source_language, "en") == 0 && strcmp(info.quality_tier,
		"standard") == 0, "get copies every string");
	tap_ok(info.created_at_ms == 1000 && info.expires_at_ms == 0 && info.active == 1 &&
	       info.listener_count == 0,
	       "get: created_at_ms from the clock, no expiry, active, 0");
	tap_eq(tally_session_get(table, "nope", &info), TALLY_ENOTFOUND, "get: missing");
	tap_eq(tally_session_get(table, "s3", NULL), TALLY_EINVAL, "get: NULL info");
	tap_eq(tally_session_get(table, NULL, &info), TALLY_EINVAL, "get: NULL id");
	tap_eq(tally_session_exists(table, "s3"), 1, "exists");
	tap_eq(tally_session_exists(table, NULL), 0, "exists: NULL id is 0");
	tap_eq(tally_session_is_active(table, "s3"), 1, "is_active");

	tap_eq(tally_session_set_speaker(table, "s3", "spk-2"), TALLY_OK, "set speaker");
	tally_session_get(table, "s3", &info);
	tap_ok(strcmp(info.speaker_connection_id, "spk-2") == 0, "speaker replaced");
	tap_eq(tally_session_set_speaker(table, "s3", ""), TALLY_EINVAL, "set speaker: empty");
	tap_eq(tally_session_set_speaker(table, "zz", "x"), TALLY_ENOTFOUND, "set speaker: missing");

	tap_eq(tally_session_mark_inactive(table, "s3"), TALLY_OK, "mark inactive");
	tap_eq(tally_session_mark_inactive(table, "s3"), TALLY_OK, "mark inactive twice");
	tap_eq(tally_session_is_active(table, "s3"), 0, "now inactive");
	tap_eq(tally_session_set_speaker(table, "s3", "x"), TALLY_EINACTIVE,
	       "set speaker: inactive");
	tap_eq(tally_session_mark_inactive(table, "zz"), TALLY_ENOTFOUND, "mark inactive: missing");

	tap_eq(tally_session_delete(table, "s3", NULL), TALLY_OK, "delete");
	tap_eq(tally_session_delete(table, "s3", NULL), TALLY_ENOTFOUND, "delete twice");
	tap_eq(tally_session_exists(table, "s3"), 0, "deleted session gone");
	tap_eq(create_session(table, "s3"), TALLY_OK, "id reusable after delete");
	tap_eq(tally_session_is_active(table, "s3"), 1, "the new s3 is active");
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "destroy with sessions in it");
}

static void test_join_leave(void)
{
	struct tally_session_table *table = new_table(0, 0);
	struct tally_connection_params params = { "c1", "s1", "fr", 0, NULL, 0 };
	int64_t connections = -1;

	create_session(table, "s1");
	tap_eq(tally_session_join(table, &params), TALLY_OK, "join c1");
	tap_eq(listeners_of(table, "s1"), 1, "count 1");
	tap_eq(tally_session_join(table, &params), TALLY_EEXIST, "join c1 again: EEXIST");
	tap_eq(listeners_of(table, "s1"), 1, "count still 1");
	params.session_id = "nope";
	params.connection_id = "c2";
	tap_eq(tally_session_join(table, &params), TALLY_ENOTFOUND, "join a missing session");
	params.session_id = "s1";
	params.target_language = NULL;
	tap_eq(tally_session_join(table, &params), TALLY_EINVAL, "join without a language");
	params.target_language = "fr";
	params.client_address = "0123456789012345678901234567890123456789012345678901234567890123";
	tap_eq(tally_session_join(table, &params), TALLY_ETOOLONG, "join: address too long");
	params.client_address = NULL;
	tap_eq(tally_session_join(table, NULL), TALLY_EINVAL, "join: NULL params");
	tap_eq(listeners_of(table, "s1"), 1, "failed joins left the count alone");
	tally_session_table_counts(table, NULL, &connections);
	tap_eq(connections, 1, "and left no connection");

	tap_eq(tally_session_leave(table, "c1"), TALLY_OK, "leave c1");
	tap_eq(tally_session_leave(table, "c1"), TALLY_ENOTFOUND, "leave c1 twice: ENOTFOUND");
	tap_eq(listeners_of(table, "s1"), 0, "count back to 0, not below");
	tap_eq(tally_session_leave(table, ""), TALLY_EINVAL, "leave: empty id");
	tap_eq(tally_session_leave(NULL, "c1"), TALLY_EINVAL, "leave: NULL table");

	tally_session_mark_inactive(table, "s1");
	tap_eq(tally_session_join(table, &params), TALLY_EINACTIVE, "join an inactive session");
	tap_eq(listeners_of(table, "s1"), 0, "nothing left behind");
	tap_eq(tally_connection_get(table, "c2", &(struct tally_connection_info){ 0 }),
	       TALLY_ENOTFOUND, "no connection left behind");
	tally_session_table_destroy(table);
}

struct notified {
	int calls;
};

static int notify_fails_on_b(const struct tally_connection_info *listener, void *arg)
{
	struct notified *notified = arg;

	notified->calls++;
	return strcmp(listener->connection_id, "b") == 0 ? -1 : 0; /* b is a gone client */
}

static void test_speaker_disconnect(void)
{
	struct tally_session_table *table = new_table(0, 0);
	struct tally_connection_params speaker = { "spk", "s1", NULL, TALLY_ROLE_SPEAKER, NULL, 0 };
	struct tally_speaker_disconnect_result result;
	struct notified notified = { 0 };
	struct tally_session_info info;
	int64_t connections = -1;

	create_session(table, "s1");
	tap_eq(tally_connection_create(table, &speaker), TALLY_OK, "speaker connection");
	join(table, "s1", "a", "fr");
	join(table, "s1", "b", "de");
	join(table, "s1", "c", "fr");
	tap_eq(listeners_of(table, "s1"), 3, "3 listeners (the speaker is not counted)");
	atomic_store(&fake_now, 61000);
	tap_eq(tally_session_speaker_disconnect(table, "s1", notify_fails_on_b, &notified, &result),
	       TALLY_OK, "speaker disconnect");
	tap_eq(notified.calls, 3, "every listener handed to notify, after b failed");
	tap_ok(result.listeners == 3 && result.notified == 2 && result.notify_failed == 1,
	       "2 notified, 1 failed");
	tap_eq(result.connections_deleted, 4, "4 connections deleted (speaker's too)");
	tap_eq(result.duration_ms, 60000, "duration from the clock");
	tap_eq(tally_session_get(table, "s1", &info), TALLY_OK, "the session stays");
	tap_ok(info.active == 0 && info.listener_count == 0, "inactive, count 0");
	tally_session_table_counts(table, NULL, &connections);
	tap_eq(connections, 0, "no connection left");
	tap_eq(join(table, "s1", "d", "fr"), TALLY_EINACTIVE, "joins refused afterwards");
	tap_eq(tally_session_speaker_disconnect(table, "s1", NULL, NULL, &result), TALLY_OK,
	       "speaker disconnect twice");
	tap_ok(result.listeners == 0 && result.connections_deleted == 0, "second one does nothing");
	tap_eq(tally_session_speaker_disconnect(table, "zz", NULL, NULL, NULL), TALLY_ENOTFOUND,
	       "speaker disconnect: missing session");
	atomic_store(&fake_now, 1000);
	tally_session_table_destroy(table);
}

static void test_ttl(void)
{
	struct tally_session_table *table = new_table(10000, 5000);
	struct tally_session_params params = { "long", "spk", NULL, "en", NULL, 100000 };
	struct tally_connection_params forever = { "keep", "long", "fr", 0, NULL, 0 };
	struct tally_session_sweep_result swept;
	struct tally_connection_info info;

	atomic_store(&fake_now, 1000);
	create_session(table, "short");
	tally_session_create(table, &params);
	join(table, "short", "x1", "fr");
	join(table, "long", "y1", "fr");
	forever.ttl_ms = 50000;
	tally_session_join(table, &forever);
	tally_connection_get(table, "y1", &info);
	tap_eq(info.expires_at_ms, 6000, "connection expiry = connected_at_ms + default ttl");

	tap_eq(tally_session_table_sweep(table, &swept), TALLY_OK, "sweep at t=1000");
	tap_ok(swept.sessions_deleted == 0 && swept.connections_deleted == 0, "nothing expired");
	atomic_store(&fake_now, 6000);
	tally_session_table_sweep(table, &swept);
	tap_ok(swept.sessions_deleted == 0 && swept.connections_deleted == 2,
	       "t=6000: x1 and y1 expire (expires_at_ms <= now)");
	tap_eq(listeners_of(table, "short"), 0, "short's count follows its expired connection");
	tap_eq(listeners_of(table, "long"), 1, "long keeps its 50s connection");
	join(table, "short", "x2", "fr");
	atomic_store(&fake_now, 11000);
	tally_session_table_sweep(table, &swept);
	tap_ok(swept.sessions_deleted == 1 && swept.connections_deleted == 1,
	       "t=11000: short expires with its connection");
	tap_eq(tally_session_exists(table, "short"), 0, "short swept");
	tap_eq(tally_session_exists(table, "long"), 1, "long (own ttl 100s) stays");
	atomic_store(&fake_now, 200000);
	tally_session_table_sweep(table, NULL);
	tap_eq(tally_session_exists(table, "long"), 0, "long swept at t=200000");
	tap_eq(tally_session_table_sweep(NULL, NULL), TALLY_EINVAL, "sweep: NULL table");
	atomic_store(&fake_now, 1000);
	tally_session_table_destroy(table);
}

static void test_sweeper_thread(void)
{
	struct tally_session_table *table = new_table(10, 0);
	int gone = 0;

	atomic_store(&fake_now, 1000);
	create_session(table, "old");
	tap_eq(tally_session_sweeper_start(table, 1), TALLY_OK, "sweeper started");
	tap_eq(tally_session_sweeper_start(table, 1), TALLY_ESTATE, "started twice: ESTATE");
	atomic_store(&fake_now, 5000);
	for (int i = 0; i < 5000 && !gone; i++) { /* waits for the effect, asserts no timing */
		gone = !tally_session_exists(table, "old");
		if (!gone) {
			struct timespec pause = { 0, 1000000 };

			nanosleep(&pause, NULL);
		}
	}
	tap_ok(gone, "background sweeper removed the expired session");
	tap_eq(tally_session_sweeper_stop(table), TALLY_OK, "sweeper stopped");
	tap_eq(tally_session_sweeper_stop(table), TALLY_ESTATE, "stopped twice: ESTATE");
	tap_eq(tally_session_sweeper_start(table, 1000), TALLY_OK, "restart");
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "destroy stops a running sweeper");
	atomic_store(&fake_now, 1000);
}

/* The sweeper grows a table created without size hints while it fills: every session and
 * connection inserted during those resizes is found afterwards, and counted once. */
static void test_sweeper_grows_unhinted_table(void)
{
	struct tally_session_table *table = NULL;
	int missing = 0, joined = 0;
	int64_t sessions = 0, connections = 0;
	char id[32], connection_id[32];

	tap_eq(tally_session_table_create(&table, NULL), TALLY_OK, "unhinted table");
	tap_eq(tally_session_sweeper_start(table, 1), TALLY_OK, "sweeper at 1 ms");
	for (int i = 0; i < 3000; i++) {
		struct tally_session_params params = { id, "speaker", NULL, "en", NULL, 0 };

		snprintf(id, sizeof(id), "grown-%d", i);
		missing += tally_session_create(table, &params) != TALLY_OK;
		if (i % 4 == 0) {
			struct tally_connection_params join = { connection_id, id, "fr", 0, NULL, 0 };

			snprintf(connection_id, sizeof(connection_id), "grown-listener-%d", i);
			joined += tally_session_join(table, &join) == TALLY_OK;
		}
	}
	tally_session_sweeper_stop(table);
	for (int i = 0; i < 3000; i++) {
		int64_t count = -1;

		snprintf(id, sizeof(id), "grown-%d", i);
		missing += tally_session_listener_count(table, id, &count) != TALLY_OK ||
			   count != (i % 4 == 0);
	}
	tally_session_table_counts(table, &sessions, &connections);
	tap_ok(missing == 0 && joined == 750 && sessions == 3000 && connections == 750,
	       "3000 sessions and 750 listeners created during the sweeper's growth, each found "
	       "with its count (%d missing, %d joined)", missing, joined);
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "destroy the grown table");
}

/* ---- the invariant under concurrency ---- */

#define RACE_THREADS 4
#define RACE_SESSIONS 4
#define RACE_ROUNDS 3000

struct race {
	struct tally_session_table *table;
	_Atomic int64_t joins_ok, leaves_ok, swept, speaker_deleted;
};

static int count_listener(const struct tally_connection_info *c, void *arg)
{
	(*(int64_t *)arg)++;
	return 0;
}

static void *race_body(struct test_thread *self)
{
	struct race *race = self->shared;
	unsigned seed = (unsigned)self->index * 7919u + 1;
	char session[16], connection[32];

	/* half the threads free their own removals (inline reclamation) */
	if (self->index & 1)
		tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE);
	for (int round = 0; round < RACE_ROUNDS; round++) {
		unsigned pick = test_random(&seed);
		unsigned op = pick % 100;

		snprintf(session, sizeof(session), "s%u", (pick >> 8) % RACE_SESSIONS);
		/* connection ids shared by all threads so disconnects duplicate and race */
		snprintf(connection, sizeof(connection), "c%u", (pick >> 12) % 64);
		if (op < 45) {
			struct tally_connection_params params = {
				connection, session, (pick & 1) ? "fr" : "de", 0, NULL,
				(pick & 2) ? 1 : 0 };
			if (tally_session_join(race->table, &params) == TALLY_OK)
				atomic_fetch_add(&race->joins_ok, 1);
		} else if (op < 85) {
			if (tally_session_leave(race->table, connection) == TALLY_OK)
				atomic_fetch_add(&race->leaves_ok, 1);
		} else if (op < 90) {
			struct tally_speaker_disconnect_result result;
			int64_t listeners = 0;

			if (tally_session_speaker_disconnect(race->table, session, count_listener,
							     &listeners, &result) == TALLY_OK)
				atomic_fetch_add(&race->speaker_deleted, result.connections_deleted);
		} else if (op < 95) {
			struct tally_session_sweep_result result;

			atomic_fetch_add(&fake_now, 1); /* expires the ttl-1 connections */
			tally_session_table_sweep(race->table, &result);
			atomic_fetch_add(&race->swept, result.connections_deleted);
		} else {
			int64_t deleted = 0;

			if (tally_session_delete(race->table, session, &deleted) == TALLY_OK)
				atomic_fetch_add(&race->speaker_deleted, deleted);
			create_session(race->table, session);
		}
	}
	return NULL;
}

static void test_invariant_under_races(void)
{
	struct race race = { .table = new_table(0, 0) };
	struct test_thread threads[RACE_THREADS];
	int64_t mismatches = 0, total_listeners = 0, connections = -1;
	char session[16];

	atomic_store(&fake_now, 1000);
	for (int i = 0; i < RACE_SESSIONS; i++) {
		snprintf(session, sizeof(session), "s%d", i);
		create_session(race.table, session);
	}
	/* connections made with ttl 1 expire when the clock moves; move it now so sweeps
	 * delete some of them while joins and leaves run */
	atomic_store(&fake_now, 1001);
	run_threads(RACE_THREADS, race_body, &race, threads);
	for (int i = 0; i < RACE_SESSIONS; i++) {
		const struct tally_connection_filter listeners = { TALLY_ROLE_LISTENER, NULL };
		size_t present = 0;
		int64_t count = -1;

		snprintf(session, sizeof(session), "s%d", i);
		if (tally_session_count_connections(race.table, session, &listeners, &present) !=
		    TALLY_OK)
			continue;
		tally_session_listener_count(race.table, session, &count);
		if ((int64_t)present != count)
			mismatches++;
		total_listeners += count;
	}
	tap_eq(mismatches, 0, "quiescent: every session's count == its listener connections");
	tally_session_table_counts(race.table, NULL, &connections);
	tap_eq(connections, total_listeners, "connection total == sum of counts");
	tap_eq(atomic_load(&race.joins_ok) - atomic_load(&race.leaves_ok) -
	       atomic_load(&race.speaker_deleted) - atomic_load(&race.swept), connections,
	       "each connection removed exactly once (joins - removals == present)");
	printf("# joins %lld leaves %lld swept %lld speaker/delete %lld present %lld\n",
	       (long long)race.joins_ok, (long long)race.leaves_ok, (long long)race.swept,
	       (long long)race.speaker_deleted, (long long)connections);
	atomic_store(&fake_now, 1000);
	tap_eq(tally_session_table_destroy(race.table), TALLY_OK, "destroy after the race");
}

/* Inline reclamation under churn: writers free their own removed connections (one grace
 * period per 2,048) while readers visit the same sessions' lists and read their counts; a
 * freed connection a reader could still reach would be a use-after-free (ASan) or a race
 * (TSan). Every join and leave must succeed and the counts must come back to zero. */
#define CHURN_SESSIONS 8
#define CHURN_ROUNDS 5000 /* > 2,048 leaves per writer: its inline grace periods run */

struct churn {
	struct tally_session_table *table;
	_Atomic int writers_left;
	_Atomic int64_t failures;
};

static int count_one(const struct tally_connection_info *c, void *arg)
{
	(*(int64_t *)arg) += c->role == TALLY_ROLE_LISTENER;
	return 0;
}

static void churn_write(struct churn *churn, int index)
{
	char session[16], connection[32];
	int64_t failures = 0;

	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE);
	for (int round = 0; round < CHURN_ROUNDS; round++) {
		struct tally_connection_params params = { connection, session, "fr", 0, NULL, 0 };

		snprintf(session, sizeof(session), "s%d", round % CHURN_SESSIONS);
		snprintf(connection, sizeof(connection), "w%d-%d", index, round);
		failures += tally_session_join(churn->table, &params) != TALLY_OK;
		failures += tally_session_leave(churn->table, connection) != TALLY_OK;
	}
	atomic_fetch_add(&churn->failures, failures);
	atomic_fetch_sub(&churn->writers_left, 1);
}

static void churn_read(struct churn *churn)
{
	char session[16];
	int64_t failures = 0;

	for (int round = 0; atomic_load(&churn->writers_left) > 0; round++) {
		int64_t count = 0, seen = 0;

		snprintf(session, sizeof(session), "s%d", round % CHURN_SESSIONS);
		failures += tally_session_listener_count(churn->table, session, &count) != TALLY_OK;
		failures += tally_session_visit_connections(churn->table, session, NULL, count_one,
							   &seen, NULL) != TALLY_OK;
		failures += count < 0 || seen < 0;
	}
	atomic_fetch_add(&churn->failures, failures);
}

static void *churn_body(struct test_thread *self)
{
	if (self->index < 2)
		churn_write(self->shared, self->index);
	else
		churn_read(self->shared);
	return NULL;
}

static void test_inline_reclaim_churn(void)
{
	struct churn churn = { .table = new_table(0, 0), .writers_left = 2 };
	struct test_thread threads[4];
	char session[16];
	int64_t total = 0, count, connections = -1;

	for (int i = 0; i < CHURN_SESSIONS; i++) {
		snprintf(session, sizeof(session), "s%d", i);
		create_session(churn.table, session);
	}
	run_threads(4, churn_body, &churn, threads);
	tap_eq(atomic_load(&churn.failures), 0, "inline churn: every join, leave and read succeeded");
	for (int i = 0; i < CHURN_SESSIONS; i++) {
		snprintf(session, sizeof(session), "s%d", i);
		count = -1;
		tally_session_listener_count(churn.table, session, &count);
		total += count;
	}
	tally_session_table_counts(churn.table, NULL, &connections);
	tap_eq(total, 0, "inline churn: every count back to zero");
	tap_eq(connections, 0, "inline churn: no connection left");
	tap_eq(tally_session_table_destroy(churn.table), TALLY_OK, "destroy after inline churn");
}

int main(void)
{
	test_table_errors();
	test_size_hints();
	test_id_lengths();
	test_session_round_trip();
	test_session_crud();
	test_join_leave();
	test_speaker_disconnect();
	test_ttl();
	test_sweeper_thread();
	test_sweeper_grows_unhinted_table();
	test_invariant_under_races();
	test_inline_reclaim_churn();
	tally_rcu_barrier();
	return tap_done();
}
