/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Registered counters and gauges (tally/writebehind.h): registration, what each flush takes
 * from them, and what an acknowledgement or a fenced epoch gives back. The amounts follow
 * W2 (writebehind/internal.h): an increment is in the counter, in carry, in the pending
 * batch or in the store, and only ever moves.
 */
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include "writebehind/internal.h"

static int compare_entries(const void *a, const void *b)
{
	const struct wb_entry *x = a, *y = b;

	if (x->key_len != y->key_len)
		return x->key_len < y->key_len ? -1 : 1;
	return memcmp(x->key, y->key, x->key_len);
}

static struct wb_registry *registry_of(struct tally_writebehind *wb, bool counter)
{
	return counter ? &wb->counters : &wb->gauges;
}

static struct wb_entry *find_entry(struct wb_registry *registry, const char *key,
				   size_t key_len)
{
	struct wb_entry probe = { .key = key, .key_len = key_len };
	void *found = tfind(&probe, &registry->tree, compare_entries);

	return found ? *(struct wb_entry **)found : NULL;
}

int tally__wb_grow(void **array, size_t *cap, size_t need, size_t size)
{
	size_t grown = *cap ? *cap : 16;
	void *bigger;

	if (need <= *cap)
		return TALLY_OK;
	while (grown < need)
		grown *= 2;
	bigger = realloc(*array, grown * size);
	if (!bigger)
		return TALLY_ENOMEM;
	*array = bigger;
	*cap = grown;
	return TALLY_OK;
}

/* Grows two parallel arrays that share one capacity. */
int tally__wb_grow_pair(void **a, size_t a_size, void **b, size_t b_size, size_t *cap,
			size_t need)
{
	size_t cap_b = *cap;
	int err;

	if (need <= *cap)
		return TALLY_OK;
	if ((err = tally__wb_grow(b, &cap_b, need, b_size)) != TALLY_OK)
		return err;
	if ((err = tally__wb_grow(a, cap, need, a_size)) != TALLY_OK)
		return err;
	/* a's capacity may stay below b's after a failed growth of a: b is only larger */
	return TALLY_OK;
}

static int check_key(const char *key, size_t key_len)
{
	if (!key || key_len == 0 || memchr(key, '\0', key_len))
		return TALLY_EINVAL;
	return key_len > TALLY_STORE_KEY_MAX ? TALLY_ETOOLONG : TALLY_OK;
}

static struct wb_entry *new_entry(enum wb_kind kind, const char *key, size_t key_len,
				  void *source)
{
	struct wb_entry *entry = calloc(1, sizeof(*entry) + key_len + 1);
	char *copy;

	if (!entry)
		return NULL;
	copy = (char *)(entry + 1);
	memcpy(copy, key, key_len);
	copy[key_len] = '\0';
	entry->key = copy;
	entry->key_len = key_len;
	entry->kind = kind;
	entry->source.any = source;
	return entry;
}

int tally__wb_add(struct tally_writebehind *wb, enum wb_kind kind, const char *key,
		  size_t key_len, void *source)
{
	struct wb_registry *registry = registry_of(wb, kind == WB_COUNTER);
	struct wb_entry *entry;
	int err;

	if (!source)
		return TALLY_EINVAL;
	if ((err = check_key(key, key_len)) != TALLY_OK)
		return err;
	if ((entry = find_entry(registry, key, key_len)) != NULL) {
		if (entry->source.any)
			return TALLY_EEXIST;
		/* removed, still owing the store: the new object takes over the entry */
		entry->kind = kind;
		entry->source.any = source;
		wb->free_removed--;
		return TALLY_OK;
	}
	if ((err = tally__wb_grow((void **)&registry->entries, &registry->cap, registry->count + 1,
				  sizeof(*registry->entries))) != TALLY_OK)
		return err;
	if (!(entry = new_entry(kind, key, key_len, source)))
		return TALLY_ENOMEM;
	if (!tsearch(entry, &registry->tree, compare_entries)) {
		free(entry);
		return TALLY_ENOMEM;
	}
	entry->index = registry->count;
	registry->entries[registry->count++] = entry;
	return TALLY_OK;
}

int tally__wb_remove(struct tally_writebehind *wb, bool counter, const char *key,
		     size_t key_len)
{
	struct wb_entry *entry;
	int64_t delta = 0, owed;
	int err;

	if ((err = check_key(key, key_len)) != TALLY_OK)
		return err;
	entry = find_entry(registry_of(wb, counter), key, key_len);
	if (!entry || !entry->source.any)
		return TALLY_ENOTFOUND;
	if (counter) {
		/* the last delta moves into carry (W2); the counter is not touched again */
		if ((err = tally_counter_drain(entry->source.counter, &delta)) != TALLY_OK)
			return err;
		if (__builtin_add_overflow(entry->carry, delta, &owed)) {
			tally_counter_undrain(entry->source.counter, delta);
			return TALLY_EOVERFLOW;
		}
		entry->carry = owed;
	}
	entry->source.any = NULL; /* a gauge now owes the store its value 0 */
	wb->free_removed++;
	return TALLY_OK;
}

static int64_t gauge_value(const struct wb_entry *entry, int *err)
{
	int64_t value = 0;

	*err = TALLY_OK;
	if (entry->kind == WB_GAUGE && entry->source.gauge)
		*err = tally_gauge_read(entry->source.gauge, &value);
	else if (entry->kind == WB_SGAUGE && entry->source.sgauge)
		*err = tally_sgauge_read(entry->source.sgauge, &value);
	return value;
}

int tally__wb_unflushed(struct tally_writebehind *wb, bool counter, const char *key,
			size_t key_len, int64_t *amount)
{
	struct wb_entry *entry = find_entry(registry_of(wb, counter), key, key_len);
	int64_t undrained = 0, value;
	int err = TALLY_OK;

	if (!entry)
		return TALLY_ENOTFOUND;
	if (!counter) {
		value = gauge_value(entry, &err);
		*amount = value - (entry->acked ? entry->acked_value : 0);
		return err;
	}
	/* A drain and its undrain under wb->lock: the flusher drains only under it, so the
	 * pair leaves the counter as it was and reads exactly what is undrained. */
	if (entry->source.counter) {
		if ((err = tally_counter_drain(entry->source.counter, &undrained)) != TALLY_OK)
			return err;
		tally_counter_undrain(entry->source.counter, undrained);
	}
	*amount = undrained + entry->carry + (entry->in_batch ? entry->in_flight : 0);
	return TALLY_OK;
}

/* ---- what a batch takes ---------------------------------------------------------------- */

static int grow_deltas(struct wb_batch *batch, size_t need)
{
	return tally__wb_grow_pair((void **)&batch->deltas, sizeof(*batch->deltas),
				   (void **)&batch->delta_entries, sizeof(*batch->delta_entries),
				   &batch->delta_cap, need);
}

static int append_delta(struct wb_batch *batch, struct wb_entry *entry, int64_t delta)
{
	int err;

	if ((err = grow_deltas(batch, batch->delta_count + 1)) != TALLY_OK)
		return err;
	batch->deltas[batch->delta_count] =
		(struct tally_store_delta){ entry->key, entry->key_len, delta };
	batch->delta_entries[batch->delta_count++] = entry;
	entry->in_flight = delta;
	entry->in_batch = true;
	return TALLY_OK;
}

/* The counter's delta since the last take, plus its carry (W2); 0 leaves it out. */
static int take_counter(struct wb_batch *batch, struct wb_entry *entry)
{
	int64_t drained = 0, delta;
	int err;

	if (entry->source.counter &&
	    (err = tally_counter_drain(entry->source.counter, &drained)) != TALLY_OK)
		return err; /* EOVERFLOW: the counter itself is out of range; nothing moved */
	if (__builtin_add_overflow(entry->carry, drained, &delta)) {
		tally_counter_undrain(entry->source.counter, drained); /* next time */
		delta = entry->carry;
	}
	if (delta == 0)
		return TALLY_OK;
	/* the array was grown before the drain (take_values), so this cannot fail */
	append_delta(batch, entry, delta);
	entry->carry = 0;
	return TALLY_OK;
}

static int take_gauge(struct wb_batch *batch, struct wb_entry *entry)
{
	int err;
	int64_t value = gauge_value(entry, &err);

	if (err != TALLY_OK)
		return err;
	if (!entry->source.any && !entry->acked)
		return TALLY_OK; /* removed, and the store holds nothing of it in this epoch */
	if (entry->acked && entry->acked_value == value)
		return TALLY_OK;
	if ((err = tally__wb_grow_pair((void **)&batch->gauges, sizeof(*batch->gauges),
				       (void **)&batch->gauge_entries,
				       sizeof(*batch->gauge_entries), &batch->gauge_cap,
				       batch->gauge_count + 1)) != TALLY_OK)
		return err;
	batch->gauges[batch->gauge_count] =
		(struct tally_store_gauge){ entry->key, entry->key_len, value };
	batch->gauge_entries[batch->gauge_count++] = entry;
	entry->in_flight = value;
	entry->in_batch = true;
	return TALLY_OK;
}

int tally__wb_take_values(struct tally_writebehind *wb)
{
	struct wb_batch *batch = &wb->batch;
	int err, first = TALLY_OK;

	/* room for every counter first, so no drained delta can be left without a slot */
	if ((err = grow_deltas(batch, wb->counters.count)) != TALLY_OK)
		return err;
	for (size_t i = 0; i < wb->counters.count; i++)
		if ((err = take_counter(batch, wb->counters.entries[i])) && !first)
			first = err;
	for (size_t i = 0; i < wb->gauges.count; i++)
		if ((err = take_gauge(batch, wb->gauges.entries[i])) && !first)
			first = err;
	return first; /* a key that failed is left for the next batch; the others go */
}

/* ---- acknowledged, or lost with a fenced epoch ----------------------------------------- */

static void drop_entry(struct wb_registry *registry, struct wb_entry *entry)
{
	struct wb_entry *last = registry->entries[--registry->count];

	last->index = entry->index;
	registry->entries[entry->index] = last;
	tdelete(entry, &registry->tree, compare_entries);
	free(entry);
}

static bool owes_nothing(const struct wb_entry *entry)
{
	if (entry->source.any || entry->in_batch)
		return false;
	if (entry->kind == WB_COUNTER)
		return entry->carry == 0;
	return !entry->acked || entry->acked_value == 0;
}

/* Frees removed entries that owe the store nothing any more. */
static void free_settled(struct tally_writebehind *wb, struct wb_registry *registry)
{
	for (size_t i = 0; i < registry->count && wb->free_removed;) {
		struct wb_entry *entry = registry->entries[i];

		if (owes_nothing(entry) && !entry->source.any) {
			drop_entry(registry, entry);
			wb->free_removed--;
		} else {
			i++;
		}
	}
}

void tally__wb_ack_values(struct tally_writebehind *wb)
{
	struct wb_batch *batch = &wb->batch;

	for (size_t i = 0; i < batch->delta_count; i++) {
		batch->delta_entries[i]->in_flight = 0;
		batch->delta_entries[i]->in_batch = false;
	}
	for (size_t i = 0; i < batch->gauge_count; i++) {
		struct wb_entry *entry = batch->gauge_entries[i];

		entry->acked = true;
		entry->acked_value = entry->in_flight;
		entry->in_batch = false;
	}
	free_settled(wb, &wb->counters);
	free_settled(wb, &wb->gauges);
}

void tally__wb_requeue_values(struct tally_writebehind *wb)
{
	struct wb_batch *batch = &wb->batch;

	for (size_t i = 0; i < batch->delta_count; i++) {
		struct wb_entry *entry = batch->delta_entries[i];
		int64_t owed;

		/* W2: the delta goes back to carry (or to the counter if carry is full) */
		if (!__builtin_add_overflow(entry->carry, entry->in_flight, &owed))
			entry->carry = owed;
		else if (entry->source.counter)
			tally_counter_undrain(entry->source.counter, entry->in_flight);
		entry->in_flight = 0;
		entry->in_batch = false;
	}
	for (size_t i = 0; i < batch->gauge_count; i++)
		batch->gauge_entries[i]->in_batch = false;
}

void tally__wb_republish_gauges(struct tally_writebehind *wb)
{
	for (size_t i = 0; i < wb->gauges.count; i++)
		wb->gauges.entries[i]->acked = false;
	free_settled(wb, &wb->gauges);
}

static void free_registry(struct wb_registry *registry)
{
	for (size_t i = 0; i < registry->count; i++)
		tdelete(registry->entries[i], &registry->tree, compare_entries);
	for (size_t i = 0; i < registry->count; i++)
		free(registry->entries[i]);
	free(registry->entries);
	registry->entries = NULL;
	registry->count = registry->cap = 0;
}

void tally__wb_registry_free(struct tally_writebehind *wb)
{
	free_registry(&wb->counters);
	free_registry(&wb->gauges);
}

/* ---- the calls of tally/writebehind.h -------------------------------------------------- */

static int locked_call(struct tally_writebehind *wb, int (*call)(struct tally_writebehind *wb,
								  void *arg),
		       void *arg)
{
	int err;

	if (!wb)
		return TALLY_EINVAL;
	pthread_mutex_lock(&wb->lock);
	err = wb->stopping ? TALLY_ESTATE : call(wb, arg);
	pthread_mutex_unlock(&wb->lock);
	return err;
}

struct key_call {
	enum wb_kind kind;
	const char *key;
	size_t key_len;
	void *source;
	int64_t *amount;
};

static int add_call(struct tally_writebehind *wb, void *arg)
{
	struct key_call *call = arg;

	return tally__wb_add(wb, call->kind, call->key, call->key_len, call->source);
}

static int remove_call(struct tally_writebehind *wb, void *arg)
{
	struct key_call *call = arg;

	return tally__wb_remove(wb, call->kind == WB_COUNTER, call->key, call->key_len);
}

static int unflushed_call(struct tally_writebehind *wb, void *arg)
{
	struct key_call *call = arg;

	if (!call->amount || !call->key)
		return TALLY_EINVAL;
	return tally__wb_unflushed(wb, call->kind == WB_COUNTER, call->key, call->key_len,
				   call->amount);
}

int tally_writebehind_add_counter(struct tally_writebehind *wb, const char *key, size_t key_len,
				  struct tally_counter *counter)
{
	struct key_call call = { WB_COUNTER, key, key_len, counter, NULL };

	return locked_call(wb, add_call, &call);
}

int tally_writebehind_add_gauge(struct tally_writebehind *wb, const char *key, size_t key_len,
				struct tally_gauge *gauge)
{
	struct key_call call = { WB_GAUGE, key, key_len, gauge, NULL };

	return locked_call(wb, add_call, &call);
}

int tally_writebehind_add_sgauge(struct tally_writebehind *wb, const char *key, size_t key_len,
				 struct tally_sgauge *gauge)
{
	struct key_call call = { WB_SGAUGE, key, key_len, gauge, NULL };

	return locked_call(wb, add_call, &call);
}

int tally_writebehind_remove_counter(struct tally_writebehind *wb, const char *key,
				     size_t key_len)
{
	struct key_call call = { WB_COUNTER, key, key_len, NULL, NULL };

	return locked_call(wb, remove_call, &call);
}

int tally_writebehind_remove_gauge(struct tally_writebehind *wb, const char *key,
				   size_t key_len)
{
	struct key_call call = { WB_GAUGE, key, key_len, NULL, NULL };

	return locked_call(wb, remove_call, &call);
}

int tally_writebehind_unflushed_counter(struct tally_writebehind *wb, const char *key,
					size_t key_len, int64_t *amount)
{
	struct key_call call = { WB_COUNTER, key, key_len, NULL, amount };

	return locked_call(wb, unflushed_call, &call);
}

int tally_writebehind_unflushed_gauge(struct tally_writebehind *wb, const char *key,
				      size_t key_len, int64_t *amount)
{
	struct key_call call = { WB_GAUGE, key, key_len, NULL, amount };

	return locked_call(wb, unflushed_call, &call);
}
