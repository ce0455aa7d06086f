/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/broadcast.c: the connect/disconnect handlers of a WebSocket broadcast service on
 * tally's session table instead of a Sessions and a Connections table.
 *
 * A speaker opens a session; listener threads join on a target language, receive a few
 * translated broadcasts, and some disconnect twice (a retried $disconnect). The speaker then
 * disconnects: every remaining listener gets "session ended" (one client is gone and fails,
 * the rest are still told), all connections are deleted and the count returns to 0.
 *
 * Build against an installed tally:  cc -std=c11 broadcast.c $(pkg-config --cflags --libs tally)
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <tally/rcu.h>
#include <tally/session.h>

#define LISTENERS 6

static struct tally_session_table *table;
static const char *const languages[] = { "fr", "de", "es" };

/* $connect for a listener: ?sessionId=...&targetLanguage=... */
static int on_listener_connect(const char *connection_id, const char *language)
{
	struct tally_connection_params params = {
		.connection_id = connection_id, .session_id = "talk-42",
		.target_language = language, .client_address = "198.51.100.4",
	};
	int err = tally_session_join(table, &params);

	if (err != TALLY_OK)
		fprintf(stderr, "join %s refused: %s\n", connection_id, tally_strerror(err));
	return err;
}

/* $disconnect: may arrive twice; only the first one counts the listener out. */
static void on_disconnect(const char *connection_id)
{
	int err = tally_session_leave(table, connection_id);

	if (err != TALLY_OK && err != TALLY_ENOTFOUND)
		fprintf(stderr, "leave %s: %s\n", connection_id, tally_strerror(err));
}

static int send_translation(const struct tally_connection_info *listener, void *arg)
{
	(*(int *)arg)++; /* a real server posts the message to listener->connection_id */
	return 0;
}

static void *listener_thread(void *arg)
{
	int index = (int)(intptr_t)arg;
	char id[32];

	snprintf(id, sizeof(id), "conn-listener-%d", index);
	if (on_listener_connect(id, languages[index % 3]) != TALLY_OK)
		return NULL;
	if (index % 2 == 0) { /* half of them leave early, with a duplicate $disconnect */
		on_disconnect(id);
		on_disconnect(id);
	}
	return NULL;
}

static int send_session_ended(const struct tally_connection_info *listener, void *arg)
{
	printf("  sessionEnded -> %s (%s)\n", listener->connection_id, listener->target_language);
	/* a GoneException for one client must not stop the others */
	return strcmp(listener->connection_id, "conn-listener-3") == 0 ? -1 : 0;
}

int main(void)
{
	struct tally_session_params session = {
		.session_id = "talk-42", .speaker_connection_id = "conn-speaker",
		.speaker_user_id = "user-7", .source_language = "en", .quality_tier = "standard",
	};
	struct tally_connection_filter french = { TALLY_ROLE_LISTENER, "fr" };
	struct tally_speaker_disconnect_result ended;
	char found[3][TALLY_SESSION_LANGUAGE_MAX + 1];
	pthread_t threads[LISTENERS];
	size_t language_count = 0;
	int64_t count = 0;
	int sent = 0;

	if (tally_session_table_create(&table, NULL) != TALLY_OK ||
	    tally_session_create(table, &session) != TALLY_OK)
		return 1;
	for (int i = 0; i < LISTENERS; i++)
		pthread_create(&threads[i], NULL, listener_thread, (void *)(intptr_t)i);
	for (int i = 0; i < LISTENERS; i++)
		pthread_join(threads[i], NULL);

	tally_session_listener_count(table, "talk-42", &count);
	tally_session_target_languages(table, "talk-42", found, 3, &language_count);
	printf("listeners: %lld, target languages: %zu\n", (long long)count, language_count);
	/* one translation per language; here the French one */
	tally_session_visit_connections(table, "talk-42", &french, send_translation, &sent, NULL);
	printf("french translation sent to %d listener(s)\n", sent);

	tally_session_speaker_disconnect(table, "talk-42", send_session_ended, NULL, &ended);
	tally_session_listener_count(table, "talk-42", &count);
	printf("speaker left: %lld notified, %lld gone, %lld connections deleted, count %lld\n",
	       (long long)ended.notified, (long long)ended.notify_failed,
	       (long long)ended.connections_deleted, (long long)count);
	tally_session_table_destroy(table);
	tally_rcu_barrier();
	return count == 0 ? 0 : 1;
}
