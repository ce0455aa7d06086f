/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * In-memory lease provider (tally/lease.h).
 * A mutex-protected array of records: leases are taken once per thousand numbers, so a
 * lock here costs nothing measurable and keeps the record update trivially atomic.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "tally/lease.h"

struct memory_record {
	char key[TALLY_LEASE_KEY_MAX];
	size_t key_len;
	struct tally_lease_record state;
};

struct memory_provider {
	struct tally_lease_provider provider;
	pthread_mutex_t lock; /* guards records, count, capacity */
	struct memory_record *records;
	size_t count, capacity;
};

static struct memory_record *find(struct memory_provider *mem, const char *key, size_t key_len)
{
	for (size_t i = 0; i < mem->count; i++)
		if (mem->records[i].key_len == key_len &&
		    memcmp(mem->records[i].key, key, key_len) == 0)
			return &mem->records[i];
	return NULL;
}

/* A new key's record, appended (zeroed: mark 0, never acquired yet), or NULL on ENOMEM. */
static struct memory_record *append(struct memory_provider *mem, const char *key,
				    size_t key_len)
{
	struct memory_record *rec;

	if (mem->count == mem->capacity) {
		size_t cap = mem->capacity ? mem->capacity * 2 : 8;
		struct memory_record *grown = realloc(mem->records, cap * sizeof(*grown));

		if (!grown)
			return NULL;
		mem->records = grown;
		mem->capacity = cap;
	}
	rec = &mem->records[mem->count++];
	memset(rec, 0, sizeof(*rec));
	memcpy(rec->key, key, key_len);
	rec->key_len = key_len;
	return rec;
}

static int memory_acquire(void *impl, const char *key, size_t key_len, uint64_t min_start,
			  uint64_t size, uint64_t issued, uint64_t *base_out)
{
	struct memory_provider *mem = impl;
	struct memory_record *rec;
	uint64_t base;
	int err = TALLY_OK;

	pthread_mutex_lock(&mem->lock);
	rec = find(mem, key, key_len);
	/* Validate before a new key is added: a refused acquire must store nothing, or a
	 * later read would find a record (mark 0, not clean) for a key never acquired. */
	base = rec && rec->state.mark > min_start ? rec->state.mark : min_start;
	if (base > UINT64_MAX - size) {
		err = TALLY_EINVAL;
		goto out;
	}
	if (!rec)
		rec = append(mem, key, key_len);
	if (!rec) {
		err = TALLY_ENOMEM;
		goto out;
	}
	rec->state.mark = base + size;
	rec->state.issued = issued;
	rec->state.flags = 0;
	*base_out = base;
out:
	pthread_mutex_unlock(&mem->lock);
	return err;
}

static int memory_close(void *impl, const char *key, size_t key_len, uint64_t leased_hi,
			uint64_t issued)
{
	struct memory_provider *mem = impl;
	struct memory_record *rec;
	int err = TALLY_OK;

	pthread_mutex_lock(&mem->lock);
	rec = find(mem, key, key_len);
	if (!rec) {
		err = TALLY_ENOTFOUND;
	} else if (rec->state.mark == leased_hi && issued <= leased_hi) {
		rec->state.mark = issued;
		rec->state.issued = issued;
		rec->state.flags = TALLY_LEASE_CLEAN;
	}
	pthread_mutex_unlock(&mem->lock);
	return err;
}

static int memory_read(void *impl, const char *key, size_t key_len,
		       struct tally_lease_record *out)
{
	struct memory_provider *mem = impl;
	struct memory_record *rec;
	int err = TALLY_OK;

	pthread_mutex_lock(&mem->lock);
	rec = find(mem, key, key_len);
	if (rec)
		*out = rec->state;
	else
		err = TALLY_ENOTFOUND;
	pthread_mutex_unlock(&mem->lock);
	return err;
}

static void memory_destroy(void *impl)
{
	struct memory_provider *mem = impl;

	pthread_mutex_destroy(&mem->lock);
	free(mem->records);
	free(mem);
}

static const struct tally_lease_ops memory_ops = {
	.acquire = memory_acquire,
	.close = memory_close,
	.read = memory_read,
	.destroy = memory_destroy,
};

int tally_lease_memory_create(struct tally_lease_provider **out)
{
	struct memory_provider *mem;

	if (!out)
		return TALLY_EINVAL;
	mem = calloc(1, sizeof(*mem));
	if (!mem)
		return TALLY_ENOMEM;
	if (pthread_mutex_init(&mem->lock, NULL)) {
		free(mem);
		return TALLY_ENOMEM;
	}
	mem->provider.ops = &memory_ops;
	mem->provider.impl = mem;
	*out = &mem->provider;
	return TALLY_OK;
}
