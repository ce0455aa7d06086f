/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/batch.c: the checks tally_store_flush makes on a batch before any backend sees
 * it (lib/store/internal.h): every key 1..TALLY_STORE_KEY_MAX bytes without NUL, no key twice
 * within one kind (counters, gauges, session ids, connection ids), known record kinds and
 * ops, record strings terminated inside their fields. The duplicate check is an open
 * addressing set of indices: O(n), one allocation per part.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/hash.h"
#include "store/internal.h"

/* One key of a batch part, for the duplicate check. */
typedef const char *(*key_at_fn)(const void *items, size_t i, size_t *len);

static const char *delta_key(const void *items, size_t i, size_t *len)
{
	const struct tally_store_delta *d = (const struct tally_store_delta *)items + i;

	*len = d->key_len;
	return d->key;
}

static const char *gauge_key(const void *items, size_t i, size_t *len)
{
	const struct tally_store_gauge *g = (const struct tally_store_gauge *)items + i;

	*len = g->key_len;
	return g->key;
}

static uint64_t hash_key(const char *key, size_t len)
{
	return tally__fnv1a64(TALLY__FNV1A64_BASIS, key, len);
}

/* TALLY_OK if no key of items[0 .. count) appears twice (keys already checked). An open
 * addressing set of indices: O(count), one allocation, where sorting would be
 * O(count log count) comparisons of keys up to 512 bytes. */
static int check_unique(const void *items, size_t count, key_at_fn key_at)
{
	size_t slots = 16;
	uint32_t *set;
	int err = TALLY_OK;

	if (count < 2)
		return TALLY_OK;
	if (count > UINT32_MAX / 4)
		return TALLY_EINVAL;
	while (slots < count * 2)
		slots *= 2;
	set = calloc(slots, sizeof(*set));
	if (!set)
		return TALLY_ENOMEM;
	for (size_t i = 0; i < count && !err; i++) {
		size_t len, other_len;
		const char *key = key_at(items, i, &len);
		size_t at = hash_key(key, len) & (slots - 1);

		for (; set[at]; at = (at + 1) & (slots - 1)) {
			const char *other = key_at(items, set[at] - 1, &other_len);

			if (other_len == len && memcmp(other, key, len) == 0) {
				err = TALLY_EEXIST;
				break;
			}
		}
		set[at] = (uint32_t)i + 1;
	}
	free(set);
	return err;
}

static int check_keys(const void *store, const void *items, size_t count,
		      key_at_fn key_at, const char *part)
{
	int err;

	if (count && !items)
		return tally__store_refuse(store, TALLY_EINVAL, "%s is NULL with a count of %zu", part, count);
	for (size_t i = 0; i < count; i++) {
		size_t len;
		const char *key = key_at(items, i, &len);

		err = tally__store_check_key(key, len, TALLY_STORE_KEY_MAX);
		if (err == TALLY_ETOOLONG)
			return tally__store_refuse(store, err, "%s[%zu]: key of %zu bytes (at most %d)", part, i,
				    len, TALLY_STORE_KEY_MAX);
		if (err)
			return tally__store_refuse(store, err, "%s[%zu]: key empty, NULL or holding a NUL", part,
				    i);
	}
	err = check_unique(items, count, key_at);
	if (err == TALLY_EEXIST)
		return tally__store_refuse(store, TALLY_EINVAL, "%s: a key appears twice (coalesce per key)",
			    part);
	return err ? tally__store_refuse(store, err, "%s: duplicate check", part) : TALLY_OK;
}

/* A fixed-size string field must be NUL-terminated inside its buffer. */
#define TERMINATED(field) (memchr((field), '\0', sizeof(field)) != NULL)

static bool session_valid(const struct tally_store_record *r)
{
	const struct tally_session_info *s = &r->as.session;

	if (!TERMINATED(s->session_id) || !s->session_id[0])
		return false;
	return r->op == TALLY_STORE_DELETE ||
	       (TERMINATED(s->speaker_connection_id) && TERMINATED(s->speaker_user_id) &&
		TERMINATED(s->source_language) && TERMINATED(s->quality_tier));
}

static bool connection_valid(const struct tally_store_record *r)
{
	const struct tally_connection_info *c = &r->as.connection;

	if (!TERMINATED(c->connection_id) || !c->connection_id[0])
		return false;
	return r->op == TALLY_STORE_DELETE ||
	       (TERMINATED(c->session_id) && c->session_id[0] && TERMINATED(c->target_language) &&
		TERMINATED(c->client_address));
}

/* Records of one kind, for the duplicate check: the record's id string. */
struct record_ids {
	const char **ids;
	size_t count;
};

static const char *record_id(const void *items, size_t i, size_t *len)
{
	const char *id = ((const struct record_ids *)items)->ids[i];

	*len = strlen(id);
	return id;
}

static int check_record_ids(const void *store,
			    const struct tally_store_batch *batch)
{
	struct record_ids sessions = { 0 }, connections = { 0 };
	int err = TALLY_ENOMEM;

	sessions.ids = malloc(batch->record_count * sizeof(*sessions.ids));
	connections.ids = malloc(batch->record_count * sizeof(*connections.ids));
	if (sessions.ids && connections.ids) {
		for (size_t i = 0; i < batch->record_count; i++) {
			const struct tally_store_record *r = &batch->records[i];

			if (r->kind == TALLY_STORE_SESSION)
				sessions.ids[sessions.count++] = r->as.session.session_id;
			else
				connections.ids[connections.count++] = r->as.connection.connection_id;
		}
		err = check_unique(&sessions, sessions.count, record_id);
		if (!err)
			err = check_unique(&connections, connections.count, record_id);
	}
	free(sessions.ids);
	free(connections.ids);
	if (err == TALLY_EEXIST)
		return tally__store_refuse(store, TALLY_EINVAL, "records: an id appears twice in one kind");
	return err ? tally__store_refuse(store, err, "records: duplicate check") : TALLY_OK;
}

static int check_records(const void *store, const struct tally_store_batch *batch)
{
	if (batch->record_count && !batch->records)
		return tally__store_refuse(store, TALLY_EINVAL, "records is NULL with a count of %zu",
			    batch->record_count);
	for (size_t i = 0; i < batch->record_count; i++) {
		const struct tally_store_record *r = &batch->records[i];
		bool valid;

		if (r->op != TALLY_STORE_PUT && r->op != TALLY_STORE_DELETE)
			return tally__store_refuse(store, TALLY_EINVAL, "records[%zu]: unknown op", i);
		if (r->kind == TALLY_STORE_SESSION)
			valid = session_valid(r);
		else if (r->kind == TALLY_STORE_CONNECTION)
			valid = connection_valid(r);
		else
			return tally__store_refuse(store, TALLY_EINVAL, "records[%zu]: unknown kind", i);
		if (!valid)
			return tally__store_refuse(store, TALLY_EINVAL,
				    "records[%zu]: an id empty or a string not terminated", i);
	}
	return batch->record_count > 1 ? check_record_ids(store, batch) : TALLY_OK;
}

int tally__store_check_batch(const void *store, const struct tally_store_batch *batch)
{
	int err = check_keys(store, batch->counters, batch->counter_count, delta_key, "counters");

	if (!err)
		err = check_keys(store, batch->gauges, batch->gauge_count, gauge_key, "gauges");
	return err ? err : check_records(store, batch);
}
