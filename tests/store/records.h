/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/records.h: session and connection PUT records for the store tests
 * (tests/store/sqlite.c and its worker, tests/store/worker.c). Header-only.
 */
#ifndef TALLY_TESTS_STORE_RECORDS_H
#define TALLY_TESTS_STORE_RECORDS_H
#include <stdio.h>
#include <string.h>
#include <tally/store.h>

/* A session PUT: speaker "c-speaker", source "en", tier "premium", active. */
__attribute__((unused))
static struct tally_store_record session_put(const char *id, int64_t listeners)
{
	struct tally_store_record r = { .kind = TALLY_STORE_SESSION, .op = TALLY_STORE_PUT };

	snprintf(r.as.session.session_id, sizeof(r.as.session.session_id), "%s", id);
	strcpy(r.as.session.speaker_connection_id, "c-speaker");
	strcpy(r.as.session.source_language, "en");
	strcpy(r.as.session.quality_tier, "premium");
	r.as.session.created_at_ms = 1700000000000;
	r.as.session.listener_count = listeners;
	r.as.session.active = 1;
	return r;
}

/* A connection PUT from client [::1]:4242. */
__attribute__((unused))
static struct tally_store_record connection_put(const char *id, const char *session, int role,
						const char *language)
{
	struct tally_store_record r = { .kind = TALLY_STORE_CONNECTION, .op = TALLY_STORE_PUT };

	snprintf(r.as.connection.connection_id, sizeof(r.as.connection.connection_id), "%s", id);
	snprintf(r.as.connection.session_id, sizeof(r.as.connection.session_id), "%s", session);
	snprintf(r.as.connection.target_language, sizeof(r.as.connection.target_language), "%s",
		 language);
	strcpy(r.as.connection.client_address, "[::1]:4242");
	r.as.connection.role = role;
	r.as.connection.connected_at_ms = 1700000000001;
	return r;
}
#endif
