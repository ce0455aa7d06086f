/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tools/tally-store.c: an operator's view of a tally store (any backend tally/store.h can
 * open), installed with the library.
 *
 *   tally-store URL totals                 KEY TOTAL, one counter a line, in key order
 *   tally-store URL writers                each writer id, epoch, last seq, lease, liveness
 *   tally-store URL leases                 each lease key, mark, issued, clean, crash range
 *   tally-store URL sessions [WRITER_ID]   the session records (of one writer)
 *   tally-store URL connections [SESSION]  the connection records (of one session)
 *   tally-store URL gauge KEY              KEY VALUE live_writers=N: the sum over live writers
 *   tally-store URL reap                   reaps writers whose lease expired; prints how many
 *
 * Plain text, one record a line, fields separated by single spaces, `name=value` after the
 * key. Keys and ids are printed verbatim except bytes below 0x20, 0x7f, space and backslash,
 * which are written as \xHH (so a line always splits on spaces). The URL is never printed:
 * it may hold a password. Exit status 0, 1 for a usage error, 2 for a store error (its
 * text, without secrets, on stderr). Opens no writer and never creates a schema.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tally/store.h>

static void print_escaped(const char *bytes, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)bytes[i];

		if (c <= 0x20 || c == 0x7f || c == '\\')
			printf("\\x%02x", c);
		else
			putchar(c);
	}
}

static void print_string(const char *s)
{
	if (*s)
		print_escaped(s, strlen(s));
	else
		fputs("-", stdout);
}

static int print_counter(const char *key, size_t key_len, int64_t total, void *arg)
{
	print_escaped(key, key_len);
	printf(" %" PRId64 "\n", total);
	return 0;
}

static int print_writer(const struct tally_store_writer_info *w, void *arg)
{
	print_string(w->writer_id);
	printf(" epoch=%" PRIu64 " last_seq=%" PRIu64 " expires_in_ms=%" PRId64 " state=%s\n",
	       w->epoch, w->last_seq, w->expires_at_ms - w->store_now_ms,
	       w->reaped ? "reaped" : w->live ? "live" : "expired");
	return 0;
}

static int print_lease(const char *key, size_t key_len, const struct tally_lease_record *r,
		       void *arg)
{
	bool clean = r->flags & TALLY_LEASE_CLEAN;

	print_escaped(key, key_len);
	printf(" mark=%" PRIu64 " issued=%" PRIu64 " clean=%s", r->mark, r->issued,
	       clean ? "yes" : "no");
	if (!clean && r->mark > r->issued)
		printf(" crash_range=(%" PRIu64 ",%" PRIu64 "]", r->issued, r->mark);
	putchar('\n');
	return 0;
}

static int print_session(const struct tally_session_info *s, const char *writer_id,
			 uint64_t epoch, void *arg)
{
	print_string(s->session_id);
	fputs(" speakerConnectionId=", stdout);
	print_string(s->speaker_connection_id);
	fputs(" speakerUserId=", stdout);
	print_string(s->speaker_user_id);
	fputs(" sourceLanguage=", stdout);
	print_string(s->source_language);
	fputs(" qualityTier=", stdout);
	print_string(s->quality_tier);
	printf(" createdAt=%" PRId64 " isActive=%d listenerCount=%" PRId64 " expiresAt=%" PRId64
	       " writer=", s->created_at_ms, s->active, s->listener_count, s->expires_at_ms);
	print_string(writer_id);
	printf("/%" PRIu64 "\n", epoch);
	return 0;
}

static int print_connection(const struct tally_connection_info *c, const char *writer_id,
			    uint64_t epoch, void *arg)
{
	print_string(c->connection_id);
	fputs(" sessionId=", stdout);
	print_string(c->session_id);
	fputs(" targetLanguage=", stdout);
	print_string(c->target_language);
	printf(" role=%s connectedAt=%" PRId64 " expiresAt=%" PRId64 " clientAddress=",
	       c->role == TALLY_ROLE_SPEAKER ? "speaker" :
	       c->role == TALLY_ROLE_LISTENER ? "listener" : "other",
	       c->connected_at_ms, c->expires_at_ms);
	print_string(c->client_address);
	fputs(" writer=", stdout);
	print_string(writer_id);
	printf("/%" PRIu64 "\n", epoch);
	return 0;
}

static int run(struct tally_store *store, const char *command, const char *arg)
{
	int64_t reaped = 0;
	int err;

	if (strcmp(command, "totals") == 0)
		return tally_store_counters(store, print_counter, NULL);
	if (strcmp(command, "writers") == 0)
		return tally_store_writers(store, print_writer, NULL);
	if (strcmp(command, "leases") == 0)
		return tally_store_leases(store, print_lease, NULL);
	if (strcmp(command, "sessions") == 0)
		return tally_store_sessions(store, arg, print_session, NULL);
	if (strcmp(command, "connections") == 0)
		return tally_store_connections(store, arg, print_connection, NULL);
	if (strcmp(command, "gauge") == 0) {
		int64_t value = 0, live = 0;

		err = tally_store_read_gauge(store, arg, strlen(arg), &value, &live);
		if (!err) {
			print_escaped(arg, strlen(arg));
			printf(" %" PRId64 " live_writers=%" PRId64 "\n", value, live);
		}
		return err;
	}
	err = tally_store_reap(store, &reaped);
	if (!err)
		printf("reaped %" PRId64 "\n", reaped);
	return err;
}

static int usage(void)
{
	fputs("usage: tally-store URL totals | writers | leases | sessions [WRITER_ID] |\n"
	      "                   connections [SESSION_ID] | gauge KEY | reap\n"
	      "  e.g. tally-store sqlite:///var/lib/app/tally.db totals\n", stderr);
	return 1;
}

static bool known(const char *command, bool has_arg)
{
	static const char *const plain[] = { "totals", "writers", "leases", "reap", NULL };

	if (strcmp(command, "sessions") == 0 || strcmp(command, "connections") == 0)
		return true;
	if (strcmp(command, "gauge") == 0)
		return has_arg;
	for (int i = 0; plain[i]; i++)
		if (strcmp(command, plain[i]) == 0)
			return !has_arg;
	return false;
}

int main(int argc, char **argv)
{
	struct tally_store_options options = { .create_schema = false };
	struct tally_store *store;
	int err;

	if (argc < 3 || argc > 4 || !known(argv[2], argc == 4))
		return usage();
	err = tally_store_open(&store, argv[1], &options);
	if (err) {
		fprintf(stderr, "tally-store: cannot open the store: %s (%s)\n", tally_strerror(err),
			tally_store_last_error(NULL));
		return 2;
	}
	err = run(store, argv[2], argc == 4 ? argv[3] : NULL);
	if (err)
		fprintf(stderr, "tally-store: %s: %s (%s)\n", argv[2], tally_strerror(err),
			tally_store_last_error(store));
	if (fflush(stdout) != 0 && !err) {
		fprintf(stderr, "tally-store: cannot write the output\n");
		err = TALLY_EIO;
	}
	tally_store_close(store);
	return err ? 2 : 0;
}
