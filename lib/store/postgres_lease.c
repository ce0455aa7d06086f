/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/postgres_lease.c: sequence leases in PostgreSQL (tally/lease.h), written
 * through: an acquire commits (synchronous_commit on, set for every session) before it
 * returns the block's base, so no number above a durable mark is ever handed out.
 *
 * A reset table is never "never acquired" (issue 17's rule): the table's sentinel row (key
 * '' , which no caller can use) holds its generation, read at open, and the number of keys
 * ever created. Every acquire is refused unless the sentinel still holds the generation
 * seen at open; creating a key raises the count and checks it against the rows present,
 * and a read that finds no row checks the same, so a truncated table, a recreated one or
 * a deleted row gives TALLY_ECORRUPT instead of a base of 0.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_internal.h"


static uint64_t u64_value(const PGresult *result, int row, int column)
{
	return strtoull(PQgetvalue(result, row, column), NULL, 10);
}

static int corrupt(struct pg_store *store)
{
	tally__pg_set_error(store, "the lease table was reset or a lease row was deleted:"
				   " refusing to issue numbers again");
	return TALLY_ECORRUPT;
}

/* Checks the sentinel: same generation, and as many keys as were ever created. */
static int check_sentinel(struct pg_call *call)
{
	int err = TALLY_OK;
	PGresult *result = tally__pg_exec(call, "tally_lease_sentinel", 0, NULL, NULL, NULL, &err);

	if (!result)
		return err;
	if (PQntuples(result) != 1 || u64_value(result, 0, 0) != call->store->lease_generation ||
	    tally__pg_int8(result, 0, 1) != tally__pg_int8(result, 0, 2))
		err = corrupt(call->store);
	PQclear(result);
	return err;
}

int tally__pg_lease_generation(struct pg_call *call, uint64_t *generation)
{
	int err = TALLY_OK;
	PGresult *result = tally__pg_exec(call, "tally_lease_sentinel", 0, NULL, NULL, NULL, &err);

	if (!result)
		return err;
	*generation = PQntuples(result) == 1 ? u64_value(result, 0, 0) : 0;
	PQclear(result);
	return TALLY_OK;
}

struct acquire_arg {
	const char *key;
	size_t key_len;
	uint64_t min_start, size, issued;
	uint64_t base;
};

/* A key the upsert just created: count it in the sentinel and check the count. */
static int count_new_key(struct pg_call *call)
{
	struct pg_number generation;
	const char *values[1] = { tally__pg_u64_text(&generation, call->store->lease_generation) };
	int err = TALLY_OK;
	PGresult *result = tally__pg_exec(call, "tally_lease_count_key", 1, values, NULL, NULL,
					  &err);

	if (!result)
		return err;
	err = PQntuples(result) == 1 ? TALLY_OK : corrupt(call->store);
	PQclear(result);
	return err ? err : check_sentinel(call);
}


static int acquire_body(struct pg_call *call, void *arg)
{
	struct acquire_arg *acquire = arg;
	struct pg_number min_start, size, issued, generation;
	const char *values[5] = {
		acquire->key, tally__pg_u64_text(&min_start, acquire->min_start),
		tally__pg_u64_text(&size, acquire->size), tally__pg_u64_text(&issued, acquire->issued),
		tally__pg_u64_text(&generation, call->store->lease_generation),
	};
	int lengths[5] = { (int)acquire->key_len }, formats[5] = { 1 };
	PGresult *result;
	int err = tally__pg_command(call, "BEGIN");

	if (err)
		return err;
	result = tally__pg_exec(call, "tally_lease_acquire", 5, values, lengths, formats, &err);
	if (!result)
		return err;
	if (PQntuples(result) != 1) {
		err = corrupt(call->store);
	} else {
		acquire->base = u64_value(result, 0, 0);
		if (PQgetvalue(result, 0, 1)[0] == 't')
			err = count_new_key(call);
	}
	PQclear(result);
	return err ? tally__pg_rollback_with(call, err) : tally__pg_command(call, "COMMIT");
}

static int pg_lease_acquire(void *impl, const char *key, size_t key_len, uint64_t min_start,
			    uint64_t size, uint64_t issued, uint64_t *base_out)
{
	struct pg_store *store = impl;
	struct acquire_arg acquire = { key, key_len, min_start, size, issued, 0 };
	int err;

	if (!store->lease_generation)
		return corrupt(store);
	/* A lost reply is retried: the first attempt, if it landed, only leaves a gap. */
	err = tally__pg_run(store, acquire_body, &acquire);
	if (!err)
		*base_out = acquire.base;
	return err;
}

static int sentinel_body(struct pg_call *call, void *arg)
{
	return check_sentinel(call);
}

static int pg_lease_close(void *impl, const char *key, size_t key_len, uint64_t leased_hi,
			  uint64_t issued)
{
	struct pg_store *store = impl;
	struct pg_number hi, done;
	const char *values[3] = { key, tally__pg_u64_text(&hi, leased_hi),
				  tally__pg_u64_text(&done, issued) };
	int lengths[3] = { (int)key_len }, formats[3] = { 1 };
	PGresult *result;
	int err;

	if (!store->lease_generation)
		return corrupt(store);
	err = tally__pg_query(store, "tally_lease_close", 3, values, lengths, formats, &result);
	if (!err && PQntuples(result) == 0)
		err = tally__pg_run(store, sentinel_body, NULL); /* a later owner's, or reset? */
	PQclear(result);
	return err;
}

static int pg_lease_read(void *impl, const char *key, size_t key_len,
			 struct tally_lease_record *out)
{
	struct pg_store *store = impl;
	const char *values[1] = { key };
	int lengths[1] = { (int)key_len }, formats[1] = { 1 };
	PGresult *result;
	int err;

	if (!store->lease_generation)
		return corrupt(store);
	err = tally__pg_query(store, "tally_lease_read", 1, values, lengths, formats, &result);
	if (err)
		return err;
	if (PQntuples(result) == 1) {
		if (u64_value(result, 0, 3) != store->lease_generation) {
			err = corrupt(store);
		} else {
			out->mark = u64_value(result, 0, 0);
			out->issued = u64_value(result, 0, 1);
			out->flags = (uint32_t)u64_value(result, 0, 2);
		}
	} else {
		err = tally__pg_run(store, sentinel_body, NULL);
		if (!err)
			err = TALLY_ENOTFOUND;
	}
	PQclear(result);
	return err;
}

/* The provider borrows the store handle: nothing of its own to free. */
static void pg_lease_destroy(void *impl)
{
}

const struct tally_lease_ops tally__pg_lease_ops = {
	.acquire = pg_lease_acquire,
	.close = pg_lease_close,
	.read = pg_lease_read,
	.destroy = pg_lease_destroy,
};

int tally__pg_leases(void *impl, tally_store_lease_fn fn, void *arg)
{
	struct pg_store *store = impl;
	char key[TALLY_STORE_KEY_MAX];
	PGresult *result = NULL;
	int err = store->lease_generation ? tally__pg_run(store, sentinel_body, NULL)
					  : corrupt(store);

	if (!err)
		err = tally__pg_query(store, "tally_leases", 0, NULL, NULL, NULL, &result);
	for (int row = 0; !err && row < PQntuples(result); row++) {
		struct tally_lease_record record = {
			.mark = u64_value(result, row, 1),
			.issued = u64_value(result, row, 2),
			.flags = (uint32_t)u64_value(result, row, 3),
		};
		long len = tally__pg_bytea_decode(PQgetvalue(result, row, 0), key, sizeof(key));

		if (len < 1) {
			err = TALLY_ECORRUPT;
			break;
		}
		if (fn(key, (size_t)len, &record, arg))
			break;
	}
	PQclear(result);
	return err;
}
