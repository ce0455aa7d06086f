/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/store.c: the public tally_store_* calls (tally/store.h). Everything a backend
 * should not have to repeat lives here: argument validation (keys, batches, seq rules), the
 * handle's writer state (id, epoch, last acknowledged seq), error texts, the backend
 * registry and URL scheme dispatch, and the lease provider over a backend's lease ops. A
 * batch's own checks (keys, duplicates, records) are in lib/store/batch.c.
 *
 * Writer state. One mutex per handle (writer_lock) guards writer_open, epoch and last_seq
 * and is held across the backend's writer_open, heartbeat, flush and writer_close calls:
 * the flushes of one writer are numbered one after the other, so running two at once would
 * only make the second wait inside the backend or fail its seq check. Reads, visitors,
 * reap, take/give and leases do not take it.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/internal.h"

#define DEFAULT_WRITER_TTL_MS 10000
#define DEFAULT_TIMEOUT_MS 5000
#define REGISTERED_MAX 16

struct tally_store {
	const struct tally_store_ops *ops;
	void *impl;
	struct tally_store_options options; /* writer_id points into writer_id below */
	char writer_id[TALLY_STORE_WRITER_ID_MAX + 1];
	pthread_mutex_t writer_lock; /* guards the three fields below */
	bool writer_open;
	uint64_t epoch;
	uint64_t last_seq;           /* last acknowledged flush of this epoch; 0 = none */
};

/* ---- backends -------------------------------------------------------------------------- */

/* Built in: SQLite always; PostgreSQL and DynamoDB when configure found their libraries. */
static const struct tally_store_ops *const builtin_backends[] = {
	&tally__store_sqlite_ops,
#ifdef HAVE_LIBPQ
	&tally__store_postgres_ops,
#endif
#ifdef HAVE_DYNAMODB
	&tally__store_dynamodb_ops,
#endif
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct tally_store_ops *registered[REGISTERED_MAX]; /* guarded by registry_lock */
static size_t registered_count;

static const struct tally_store_ops *find_builtin(const char *scheme)
{
	for (size_t i = 0; i < sizeof(builtin_backends) / sizeof(builtin_backends[0]); i++)
		if (strcmp(builtin_backends[i]->scheme, scheme) == 0)
			return builtin_backends[i];
	return NULL;
}

/* Caller holds registry_lock. */
static const struct tally_store_ops *find_registered(const char *scheme)
{
	for (size_t i = 0; i < registered_count; i++)
		if (strcmp(registered[i]->scheme, scheme) == 0)
			return registered[i];
	return NULL;
}

static bool ops_complete(const struct tally_store_ops *ops)
{
	return ops->scheme && *ops->scheme && ops->open && ops->close && ops->writer_open &&
	       ops->heartbeat && ops->flush && ops->writer_close && ops->read_counter &&
	       ops->read_gauge && ops->counters && ops->writers && ops->sessions &&
	       ops->connections && ops->reap && ops->take && ops->give;
}

int tally_store_register_backend(const struct tally_store_ops *ops)
{
	int err = TALLY_OK;

	if (!ops || !ops_complete(ops))
		return TALLY_EINVAL;
	pthread_mutex_lock(&registry_lock);
	if (find_builtin(ops->scheme) || find_registered(ops->scheme))
		err = TALLY_EEXIST;
	else if (registered_count == REGISTERED_MAX)
		err = TALLY_EFULL;
	else
		registered[registered_count++] = ops;
	pthread_mutex_unlock(&registry_lock);
	return err;
}

static const struct tally_store_ops *find_backend(const char *scheme)
{
	const struct tally_store_ops *ops = find_builtin(scheme);

	if (ops)
		return ops;
	pthread_mutex_lock(&registry_lock);
	ops = find_registered(scheme);
	pthread_mutex_unlock(&registry_lock);
	return ops;
}

/* ---- errors ---------------------------------------------------------------------------- */

bool tally_store_err_transient(int err)
{
	return err == TALLY_EUNAVAIL || err == TALLY_EBUSY || err == TALLY_ETIMEDOUT ||
	       err == TALLY_EIO;
}

const char *tally_store_last_error(const struct tally_store *store)
{
	return tally__store_error(store);
}

/* Records the outcome of a backend call: its own text if it gave one. */
static int backend_result(const struct tally_store *store, int err)
{
	const char *text = NULL;

	if (err == TALLY_OK) {
		tally__store_clear_error(store);
		return err;
	}
	if (store->ops->last_error)
		text = store->ops->last_error(store->impl);
	if (text && *text)
		tally__store_set_error(store, "%s", text);
	else
		tally__store_set_error(store, "%s: %s", store->ops->scheme, tally_strerror(err));
	return err;
}

/* ---- opening --------------------------------------------------------------------------- */

/* "host-pid-16hex": unique per incarnation, readable in tally-store writers. */
static void generate_writer_id(char out[TALLY_STORE_WRITER_ID_MAX + 1])
{
	char host[64] = "host";

	if (gethostname(host, sizeof(host)) != 0 || !host[0])
		strcpy(host, "host");
	host[sizeof(host) - 1] = '\0';
	snprintf(out, TALLY_STORE_WRITER_ID_MAX + 1, "%s-%ld-%016" PRIx64, host, (long)getpid(),
		 tally__store_random64());
}

static int copy_options(struct tally_store *store, const struct tally_store_options *options)
{
	struct tally_store_options defaults = { 0 };

	if (!options)
		options = &defaults;
	if (options->writer_ttl_ms < 0 || options->writer_ttl_ms > TALLY_STORE_DURATION_MAX_MS ||
	    options->timeout_ms < 0 || options->timeout_ms > TALLY_STORE_DURATION_MAX_MS)
		return tally__store_refuse(NULL, TALLY_EINVAL, "writer_ttl_ms and timeout_ms must "
					   "be in [0, 2^40] ms");
	store->options = *options;
	if (!store->options.writer_ttl_ms)
		store->options.writer_ttl_ms = DEFAULT_WRITER_TTL_MS;
	if (!store->options.timeout_ms)
		store->options.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (options->writer_id) {
		size_t len = strnlen(options->writer_id, TALLY_STORE_WRITER_ID_MAX + 1);

		if (len == 0)
			return tally__store_refuse(NULL, TALLY_EINVAL, "writer_id is empty");
		if (len > TALLY_STORE_WRITER_ID_MAX)
			return tally__store_refuse(NULL, TALLY_ETOOLONG, "writer_id longer than %d bytes",
				    TALLY_STORE_WRITER_ID_MAX);
		memcpy(store->writer_id, options->writer_id, len + 1);
	} else {
		generate_writer_id(store->writer_id);
	}
	store->options.writer_id = store->writer_id;
	return TALLY_OK;
}

static int find_url_backend(const char *url, const struct tally_store_ops **ops)
{
	struct tally__store_url parsed;
	char error[TALLY__STORE_ERROR_MAX] = "";
	int err = tally__store_url_parse(url, &parsed, error, sizeof(error));

	if (err) {
		tally__store_set_error(NULL, "%s", error[0] ? error : "store: malformed URL");
		return err;
	}
	*ops = find_backend(parsed.scheme);
	if (!*ops)
		tally__store_refuse(NULL, TALLY_EINVAL, "no backend for URL scheme \"%.32s\"", parsed.scheme);
	tally__store_url_free(&parsed);
	return *ops ? TALLY_OK : TALLY_EINVAL;
}

int tally_store_open(struct tally_store **out, const char *url,
		     const struct tally_store_options *options)
{
	struct tally_store *store;
	char error[TALLY__STORE_ERROR_MAX] = "";
	int err;

	tally__store_clear_error(NULL);
	if (!out || !url)
		return tally__store_refuse(NULL, TALLY_EINVAL, "out and url must not be NULL");
	*out = NULL;
	store = calloc(1, sizeof(*store));
	if (!store)
		return TALLY_ENOMEM;
	err = copy_options(store, options);
	if (!err)
		err = find_url_backend(url, &store->ops);
	if (!err) {
		err = store->ops->open(url, &store->options, &store->impl, error, sizeof(error));
		if (err)
			tally__store_set_error(NULL, "%s", error[0] ? error : tally_strerror(err));
	}
	if (err) {
		free(store);
		return err;
	}
	pthread_mutex_init(&store->writer_lock, NULL);
	*out = store;
	return TALLY_OK;
}

int tally_store_close(struct tally_store *store)
{
	if (!store)
		return TALLY_OK;
	store->ops->close(store->impl);
	pthread_mutex_destroy(&store->writer_lock);
	tally__store_clear_error(store);
	free(store);
	return TALLY_OK;
}

/* ---- the writer ------------------------------------------------------------------------ */

int tally_store_writer_open(struct tally_store *store, struct tally_store_epoch_info *info)
{
	struct tally_store_epoch_info got = { 0 };
	int err;

	if (!store)
		return TALLY_EINVAL;
	pthread_mutex_lock(&store->writer_lock);
	if (store->writer_open) {
		err = tally__store_refuse(store, TALLY_ESTATE, "a writer is already open on this handle");
		goto out;
	}
	err = backend_result(store, store->ops->writer_open(store->impl, store->writer_id,
							     store->options.writer_ttl_ms, &got));
	if (err)
		goto out;
	store->writer_open = true;
	store->epoch = got.epoch;
	store->last_seq = 0;
	if (info)
		*info = got;
out:
	pthread_mutex_unlock(&store->writer_lock);
	return err;
}

int tally_store_writer_identity(const struct tally_store *store,
				char id_out[TALLY_STORE_WRITER_ID_MAX + 1], uint64_t *epoch_out)
{
	struct tally_store *mutable_store = (struct tally_store *)store;
	int err = TALLY_OK;

	if (!store)
		return TALLY_EINVAL;
	pthread_mutex_lock(&mutable_store->writer_lock);
	if (!store->writer_open) {
		err = TALLY_ESTATE;
	} else {
		if (id_out)
			memcpy(id_out, store->writer_id, sizeof(store->writer_id));
		if (epoch_out)
			*epoch_out = store->epoch;
	}
	pthread_mutex_unlock(&mutable_store->writer_lock);
	return err;
}

/* A fenced writer is gone for good: the handle forgets it, so writer_open may open the
 * next epoch. Caller holds writer_lock. */
static int writer_outcome(struct tally_store *store, int err)
{
	if (err == TALLY_EFENCED)
		store->writer_open = false;
	return backend_result(store, err);
}

int tally_store_heartbeat(struct tally_store *store)
{
	int err;

	if (!store)
		return TALLY_EINVAL;
	pthread_mutex_lock(&store->writer_lock);
	if (!store->writer_open)
		err = tally__store_refuse(store, TALLY_ESTATE, "no writer open");
	else
		err = writer_outcome(store, store->ops->heartbeat(store->impl, store->writer_id,
								  store->epoch,
								  store->options.writer_ttl_ms));
	pthread_mutex_unlock(&store->writer_lock);
	return err;
}

int tally_store_writer_close(struct tally_store *store)
{
	int err;

	if (!store)
		return TALLY_EINVAL;
	pthread_mutex_lock(&store->writer_lock);
	if (!store->writer_open) {
		err = tally__store_refuse(store, TALLY_ESTATE, "no writer open");
	} else {
		err = writer_outcome(store, store->ops->writer_close(store->impl, store->writer_id,
								     store->epoch));
		if (!err)
			store->writer_open = false;
	}
	pthread_mutex_unlock(&store->writer_lock);
	return err;
}

/* Caller holds writer_lock. seq must be last + 1 or a re-send of last. */
static int check_seq(const struct tally_store *store, uint64_t seq)
{
	if (!store->writer_open)
		return tally__store_refuse(store, TALLY_ESTATE, "no writer open");
	if (seq == 0)
		return tally__store_refuse(store, TALLY_EINVAL, "seq 0 (the first flush of an epoch is 1)");
	if (store->last_seq == 0 && seq != 1)
		return tally__store_refuse(store, TALLY_EINVAL, "seq %" PRIu64 " where 1 (the first flush of "
			    "this epoch) is expected", seq);
	if (seq > store->last_seq + 1 || seq < store->last_seq)
		return tally__store_refuse(store, TALLY_EINVAL,
			    "seq %" PRIu64 " where %" PRIu64 " (re-send) or %" PRIu64
			    " (next) is expected", seq, store->last_seq, store->last_seq + 1);
	return TALLY_OK;
}

int tally_store_flush(struct tally_store *store, const struct tally_store_batch *batch,
		      struct tally_store_flush_result *result)
{
	struct tally_store_flush_result got = { 0 };
	int err;

	if (!store)
		return TALLY_EINVAL;
	if (!batch)
		return tally__store_refuse(store, TALLY_EINVAL, "batch is NULL");
	err = tally__store_check_batch(store, batch);
	if (err)
		return err;
	pthread_mutex_lock(&store->writer_lock);
	err = check_seq(store, batch->seq);
	if (!err)
		err = writer_outcome(store, store->ops->flush(store->impl, store->writer_id,
							      store->epoch,
							      store->options.writer_ttl_ms, batch,
							      &got));
	if (!err) {
		/* Applied now, or found applied (an earlier attempt that reported a failure
		 * had landed): either way the store holds seq. */
		store->last_seq = batch->seq;
		if (result)
			*result = got;
	}
	pthread_mutex_unlock(&store->writer_lock);
	return err;
}

/* ---- reads ----------------------------------------------------------------------------- */

static int check_read_key(const struct tally_store *store, const char *key, size_t key_len)
{
	int err = tally__store_check_key(key, key_len, TALLY_STORE_KEY_MAX);

	if (err == TALLY_ETOOLONG)
		return tally__store_refuse(store, err, "key of %zu bytes (at most %d)", key_len,
			    TALLY_STORE_KEY_MAX);
	return err ? tally__store_refuse(store, err, "key empty, NULL or holding a NUL") : TALLY_OK;
}

int tally_store_read_counter(struct tally_store *store, const char *key, size_t key_len,
			     int64_t *total)
{
	int err;

	if (!store)
		return TALLY_EINVAL;
	if (!total)
		return tally__store_refuse(store, TALLY_EINVAL, "total is NULL");
	err = check_read_key(store, key, key_len);
	return err ? err
		   : backend_result(store, store->ops->read_counter(store->impl, key, key_len,
								    total));
}

int tally_store_read_gauge(struct tally_store *store, const char *key, size_t key_len,
			   int64_t *value, int64_t *live_writers)
{
	int64_t ignored;
	int err;

	if (!store)
		return TALLY_EINVAL;
	if (!value)
		return tally__store_refuse(store, TALLY_EINVAL, "value is NULL");
	err = check_read_key(store, key, key_len);
	return err ? err
		   : backend_result(store, store->ops->read_gauge(store->impl, key, key_len, value,
								  live_writers ? live_writers
									       : &ignored));
}

int tally_store_counters(struct tally_store *store, tally_store_counter_fn fn, void *arg)
{
	if (!store)
		return TALLY_EINVAL;
	if (!fn)
		return tally__store_refuse(store, TALLY_EINVAL, "fn is NULL");
	return backend_result(store, store->ops->counters(store->impl, fn, arg));
}

int tally_store_writers(struct tally_store *store, tally_store_writer_fn fn, void *arg)
{
	if (!store)
		return TALLY_EINVAL;
	if (!fn)
		return tally__store_refuse(store, TALLY_EINVAL, "fn is NULL");
	return backend_result(store, store->ops->writers(store->impl, fn, arg));
}

int tally_store_sessions(struct tally_store *store, const char *writer_id,
			 tally_store_session_fn fn, void *arg)
{
	if (!store)
		return TALLY_EINVAL;
	if (!fn)
		return tally__store_refuse(store, TALLY_EINVAL, "fn is NULL");
	if (writer_id && strnlen(writer_id, TALLY_STORE_WRITER_ID_MAX + 1) >
			 TALLY_STORE_WRITER_ID_MAX)
		return tally__store_refuse(store, TALLY_ETOOLONG, "writer_id longer than %d bytes",
			    TALLY_STORE_WRITER_ID_MAX);
	return backend_result(store, store->ops->sessions(store->impl, writer_id, fn, arg));
}

int tally_store_connections(struct tally_store *store, const char *session_id,
			    tally_store_connection_fn fn, void *arg)
{
	if (!store)
		return TALLY_EINVAL;
	if (!fn)
		return tally__store_refuse(store, TALLY_EINVAL, "fn is NULL");
	if (session_id && strnlen(session_id, TALLY_SESSION_ID_MAX + 1) > TALLY_SESSION_ID_MAX)
		return tally__store_refuse(store, TALLY_ETOOLONG, "session_id longer than %d bytes",
			    TALLY_SESSION_ID_MAX);
	return backend_result(store, store->ops->connections(store->impl, session_id, fn, arg));
}

int tally_store_reap(struct tally_store *store, int64_t *reaped)
{
	int64_t ignored;

	if (!store)
		return TALLY_EINVAL;
	return backend_result(store, store->ops->reap(store->impl, reaped ? reaped : &ignored));
}

/* ---- conditional take ------------------------------------------------------------------ */

typedef int (*amount_op)(void *impl, const char *key, size_t key_len, int64_t n,
			 int64_t *out);

/* take and give: n > 0, a valid key, out may be NULL. */
static int change_amount(struct tally_store *store, const char *key, size_t key_len,
			 int64_t n, int64_t *out, amount_op op)
{
	int64_t ignored;
	int err;

	if (!store)
		return TALLY_EINVAL;
	if (n <= 0)
		return tally__store_refuse(store, TALLY_EINVAL, "n must be > 0");
	err = check_read_key(store, key, key_len);
	return err ? err : backend_result(store, op(store->impl, key, key_len, n,
						    out ? out : &ignored));
}

int tally_store_take(struct tally_store *store, const char *key, size_t key_len, int64_t n,
		     int64_t *remaining)
{
	return change_amount(store, key, key_len, n, remaining, store ? store->ops->take : NULL);
}

int tally_store_give(struct tally_store *store, const char *key, size_t key_len, int64_t n,
		     int64_t *total)
{
	return change_amount(store, key, key_len, n, total, store ? store->ops->give : NULL);
}

/* ---- sequence leases ------------------------------------------------------------------- */

/* The provider borrows the handle; its ops forward to the backend's lease ops with the
 * backend's impl, and record the backend's error text on the handle. */
struct store_lease_provider {
	struct tally_lease_provider provider;
	struct tally_store *store;
};

static int lease_acquire(void *impl, const char *key, size_t key_len, uint64_t min_start,
			 uint64_t size, uint64_t issued, uint64_t *base_out)
{
	struct tally_store *store = ((struct store_lease_provider *)impl)->store;

	return backend_result(store, store->ops->lease_ops->acquire(store->impl, key, key_len,
								     min_start, size, issued,
								     base_out));
}

static int lease_close(void *impl, const char *key, size_t key_len, uint64_t leased_hi,
		       uint64_t issued)
{
	struct tally_store *store = ((struct store_lease_provider *)impl)->store;

	return backend_result(store, store->ops->lease_ops->close(store->impl, key, key_len,
								   leased_hi, issued));
}

static int lease_read(void *impl, const char *key, size_t key_len,
		      struct tally_lease_record *out)
{
	struct tally_store *store = ((struct store_lease_provider *)impl)->store;

	return backend_result(store, store->ops->lease_ops->read(store->impl, key, key_len, out));
}

static void lease_destroy(void *impl)
{
	free(impl);
}

static const struct tally_lease_ops store_lease_ops = {
	.acquire = lease_acquire,
	.close = lease_close,
	.read = lease_read,
	.destroy = lease_destroy,
};

int tally_store_lease_provider(struct tally_store *store, struct tally_lease_provider **out)
{
	struct store_lease_provider *lease;

	if (!store || !out)
		return TALLY_EINVAL;
	if (!store->ops->lease_ops)
		return tally__store_refuse(store, TALLY_EINVAL, "the %s backend has no lease provider",
			    store->ops->scheme);
	lease = calloc(1, sizeof(*lease));
	if (!lease)
		return TALLY_ENOMEM;
	lease->provider.ops = &store_lease_ops;
	lease->provider.impl = lease;
	lease->store = store;
	*out = &lease->provider;
	return TALLY_OK;
}

int tally_store_leases(struct tally_store *store, tally_store_lease_fn fn, void *arg)
{
	if (!store)
		return TALLY_EINVAL;
	if (!fn)
		return tally__store_refuse(store, TALLY_EINVAL, "fn is NULL");
	if (!store->ops->leases)
		return tally__store_refuse(store, TALLY_EINVAL, "the %s backend cannot list leases",
			    store->ops->scheme);
	return backend_result(store, store->ops->leases(store->impl, fn, arg));
}
