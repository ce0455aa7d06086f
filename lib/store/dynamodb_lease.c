/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_lease.c: sequence leases (tally/lease.h) in the DynamoDB leases table,
 * written through: each call is one conditional UpdateItem (two when the mark must jump to
 * min_start), durable when DynamoDB acknowledges it.
 *
 * acquire: "ADD hi :size" if hi >= min_start (ReturnValues UPDATED_NEW: base = hi - size);
 * otherwise "SET hi = min_start + size" if hi is absent or below min_start. An ambiguous
 * failure re-sent may lease a block twice over: a gap, never a duplicate.
 *
 * Resets: the table holds a generation item ("\0generation", a random number) created with
 * the table, and every lease item carries the generation it was written under. A key with
 * no item is "never acquired" only while the generation item is still the one this handle
 * saw first: an emptied or recreated table fails with TALLY_ECORRUPT instead of handing out
 * numbers from 0 again (issue 17's rule).
 */
#include "config.h"

#include "store/dynamodb_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char generation_key[] = "\0generation"; /* lease keys hold no NUL */

static json_t *lease_key(const char *key, size_t len)
{
	return json_pack("{s:o}", "k", tally__ddb_bin(key, len));
}

int tally__ddb_lease_generation_create(struct tally__ddb_store *store)
{
	uint64_t generation = 0;
	while (generation == 0 || generation > (UINT64_C(1) << 62))
		if (getrandom(&generation, sizeof(generation), 0) != sizeof(generation))
			return TALLY_EIO;
	json_t *body = tally__ddb_body(store, TALLY__DDB_LEASES);
	json_t *item = lease_key(generation_key, sizeof(generation_key) - 1);
	json_object_set_new(item, "g", tally__ddb_num((int64_t)generation));
	json_object_set_new(body, "Item", item);
	json_object_set_new(body, "ConditionExpression", json_string("attribute_not_exists(k)"));
	int rc = tally__ddb_request(store, "PutItem", body, NULL);
	return rc == TALLY__DDB_CONDITION_ERR ? TALLY_OK : rc;
}

static int corrupt(struct tally__ddb_store *store, const char *why)
{
	tally__ddb_set_error(store, "dynamodb: lease table %s %s", store->table[TALLY__DDB_LEASES], why);
	return TALLY_ECORRUPT;
}

/* Reads the generation item; checks it against (or, the first time, records) what this
 * handle saw. */
static int check_generation(struct tally__ddb_store *store, uint64_t *generation)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_LEASES), *reply = NULL;
	json_object_set_new(body, "Key", lease_key(generation_key, sizeof(generation_key) - 1));
	json_object_set_new(body, "ConsistentRead", json_true());
	int rc = tally__ddb_request(store, "GetItem", body, &reply);
	if (rc)
		return rc == TALLY__DDB_CONDITION_ERR ? TALLY_EUNAVAIL : rc;
	int64_t g = 0;
	bool present = false;
	tally__ddb_get_num(json_object_get(reply, "Item"), "g", &g, &present);
	json_decref(reply);
	if (!present || g <= 0)
		return corrupt(store, "has no generation item: it was emptied or reset");
	uint64_t seen = 0;
	if (!atomic_compare_exchange_strong(&store->lease_generation, &seen, (uint64_t)g) &&
	    seen != (uint64_t)g)
		return corrupt(store, "was reset (its generation changed)");
	*generation = (uint64_t)g;
	return TALLY_OK;
}

static int generation(struct tally__ddb_store *store, uint64_t *g)
{
	*g = atomic_load(&store->lease_generation);
	return *g ? TALLY_OK : check_generation(store, g);
}

static int lease_update(struct tally__ddb_store *store, const char *key, size_t len,
			const char *update, const char *condition, json_t *values,
			const char *return_values, json_t **attributes)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_LEASES), *reply = NULL;
	json_object_set_new(body, "Key", lease_key(key, len));
	json_object_set_new(body, "UpdateExpression", json_string(update));
	json_object_set_new(body, "ConditionExpression", json_string(condition));
	json_object_set_new(body, "ExpressionAttributeValues", values);
	json_object_set_new(body, "ReturnValues", json_string(return_values));
	int rc = tally__ddb_request(store, "UpdateItem", body, &reply);
	*attributes = json_incref(json_object_get(reply, "Attributes"));
	json_decref(reply);
	return rc;
}

static json_t *num_u64(uint64_t v)
{
	char digits[24];
	snprintf(digits, sizeof(digits), "%" PRIu64, v);
	return tally__ddb_num_str(digits);
}

static uint64_t attr_u64(json_t *item, const char *name, bool *present)
{
	const char *digits = tally__ddb_get_num_str(item, name);
	if (present)
		*present = digits != NULL;
	return digits ? strtoull(digits, NULL, 10) : 0;
}

/* Reads a lease item; ENOTFOUND if absent. */
static int read_item(struct tally__ddb_store *store, const char *key, size_t len,
		     struct tally_lease_record *out, uint64_t *item_generation)
{
	json_t *body = tally__ddb_body(store, TALLY__DDB_LEASES), *reply = NULL;
	json_object_set_new(body, "Key", lease_key(key, len));
	json_object_set_new(body, "ConsistentRead", json_true());
	int rc = tally__ddb_request(store, "GetItem", body, &reply);
	if (rc)
		return rc == TALLY__DDB_CONDITION_ERR ? TALLY_EUNAVAIL : rc;
	json_t *item = json_object_get(reply, "Item");
	bool present = false;
	out->mark = attr_u64(item, "hi", &present);
	out->issued = attr_u64(item, "issued", NULL);
	out->flags = (uint32_t)attr_u64(item, "flags", NULL);
	*item_generation = attr_u64(item, "gen", NULL);
	json_decref(reply);
	return present ? TALLY_OK : TALLY_ENOTFOUND;
}

static int acquire(void *impl, const char *key, size_t key_len, uint64_t min_start,
		   uint64_t size, uint64_t issued, uint64_t *base_out)
{
	struct tally__ddb_store *store = impl;
	uint64_t g;
	int rc = generation(store, &g);
	if (rc)
		return rc;
	if (min_start > UINT64_MAX - size)
		return TALLY_EINVAL;
	for (int attempt = 0; attempt < 8; attempt++) {
		json_t *attrs = NULL;
		/* The mark already reaches min_start: one atomic ADD. */
		rc = lease_update(store, key, key_len, "SET issued = :i, flags = :zero ADD hi :size",
				  "hi >= :min AND gen = :g",
				  json_pack("{s:o,s:o,s:o,s:o,s:o}", ":i", num_u64(issued), ":zero",
					    num_u64(0), ":size", num_u64(size), ":min", num_u64(min_start),
					    ":g", num_u64(g)),
				  "UPDATED_NEW", &attrs);
		if (rc == TALLY_OK) {
			*base_out = attr_u64(attrs, "hi", NULL) - size;
			json_decref(attrs);
			return TALLY_OK;
		}
		json_decref(attrs);
		if (rc != TALLY__DDB_CONDITION_ERR)
			return rc;
		/* Absent, or below min_start: jump to min_start + size. */
		rc = lease_update(store, key, key_len,
				  "SET hi = :target, issued = :i, flags = :zero, gen = :g",
				  "attribute_not_exists(hi) OR (hi < :min AND gen = :g)",
				  json_pack("{s:o,s:o,s:o,s:o,s:o}", ":target", num_u64(min_start + size),
					    ":i", num_u64(issued), ":zero", num_u64(0), ":min",
					    num_u64(min_start), ":g", num_u64(g)),
				  "UPDATED_OLD", &attrs);
		bool existed = false;
		attr_u64(attrs, "hi", &existed);
		json_decref(attrs);
		if (rc == TALLY_OK) {
			/* A key with no item: only "never acquired" if the table was never reset. */
			if (!existed && (rc = check_generation(store, &g)))
				return rc;
			*base_out = min_start;
			return TALLY_OK;
		}
		if (rc != TALLY__DDB_CONDITION_ERR)
			return rc;
		struct tally_lease_record seen;
		uint64_t seen_generation = 0;
		rc = read_item(store, key, key_len, &seen, &seen_generation);
		if (rc == TALLY_OK && seen_generation != g)
			return corrupt(store, "holds a lease item of another generation");
		if (rc && rc != TALLY_ENOTFOUND)
			return rc;
		/* else: another process moved the mark between the two updates: go again */
	}
	tally__ddb_set_error(store, "dynamodb: lease acquire kept racing");
	return TALLY_EBUSY;
}

static int lease_close(void *impl, const char *key, size_t key_len, uint64_t leased_hi,
		       uint64_t issued)
{
	struct tally__ddb_store *store = impl;
	uint64_t g;
	int rc = generation(store, &g);
	if (rc)
		return rc;
	json_t *attrs = NULL;
	rc = lease_update(store, key, key_len, "SET hi = :i, issued = :i, flags = :clean",
			  "hi = :leased AND gen = :g",
			  json_pack("{s:o,s:o,s:o,s:o}", ":i", num_u64(issued), ":clean",
				    num_u64(TALLY_LEASE_CLEAN), ":leased", num_u64(leased_hi), ":g",
				    num_u64(g)),
			  "NONE", &attrs);
	json_decref(attrs);
	if (rc != TALLY__DDB_CONDITION_ERR)
		return rc;
	/* Not ours any more (a later owner leased), unless the item is gone: a reset. */
	struct tally_lease_record seen;
	uint64_t seen_generation = 0;
	rc = read_item(store, key, key_len, &seen, &seen_generation);
	if (rc == TALLY_ENOTFOUND)
		return corrupt(store, "lost a key that was leased: it was emptied or reset");
	if (rc == TALLY_OK && seen_generation != g)
		return corrupt(store, "holds a lease item of another generation");
	return rc;
}

static int lease_read(void *impl, const char *key, size_t key_len, struct tally_lease_record *out)
{
	struct tally__ddb_store *store = impl;
	uint64_t g, seen_generation = 0;
	int rc = generation(store, &g);
	if (rc)
		return rc;
	rc = read_item(store, key, key_len, out, &seen_generation);
	if (rc == TALLY_ENOTFOUND) {
		int check = check_generation(store, &g);
		return check ? check : TALLY_ENOTFOUND;
	}
	if (rc == TALLY_OK && seen_generation != g)
		return corrupt(store, "holds a lease item of another generation");
	return rc;
}

/* The provider borrows the store's impl: nothing to free. */
static void lease_destroy(void *impl)
{
	(void)impl;
}

const struct tally_lease_ops tally__ddb_lease_ops = {
	.acquire = acquire,
	.close = lease_close,
	.read = lease_read,
	.destroy = lease_destroy,
};

struct lease_visit {
	tally_store_lease_fn fn;
	void *arg;
};

static int visit_lease(json_t *item, void *arg)
{
	struct lease_visit *visit = arg;
	char key[TALLY_LEASE_KEY_MAX];
	long len = tally__ddb_get_bin(item, "k", key, sizeof(key));
	if (len <= 0 || key[0] == '\0')
		return 0; /* the generation item */
	struct tally_lease_record r = {attr_u64(item, "hi", NULL), attr_u64(item, "issued", NULL),
				       (uint32_t)attr_u64(item, "flags", NULL)};
	return visit->fn(key, (size_t)len, &r, visit->arg) ? -1000 : 0;
}

int tally__ddb_leases(void *impl, tally_store_lease_fn fn, void *arg)
{
	struct tally__ddb_store *store = impl;
	struct lease_visit visit = {fn, arg};
	int rc = tally__ddb_each(store, "Scan", tally__ddb_body(store, TALLY__DDB_LEASES),
				 visit_lease, &visit);
	return rc == -1000 ? TALLY_OK : rc;
}
