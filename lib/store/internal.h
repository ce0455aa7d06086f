/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/internal.h: what every store backend shares (never installed). lib/store/util.c
 * implements it; store.c and each backend (sqlite.c, postgres.c, dynamodb.c) use it.
 *
 * - Keys: tally__store_check_key, the one rule for counter, gauge, take and lease keys.
 * - URLs: tally__store_url_parse splits "scheme://user:password@host:port/path?a=b&c=d"
 *   into percent-decoded parts, all in one allocation (tally__store_url_free). The password
 *   is kept only in that allocation, which is wiped before it is freed: never copy it into
 *   an error text, a log line or a stats field.
 * - Options: tally__store_option_int64 / _choice parse one query option's value and write
 *   a clear, secret-free error text when it is wrong.
 * - Backoff: full jitter, sleep = random(0, min(cap, base * 2^attempt)) (the AWS
 *   Architecture blog's "Exponential Backoff and Jitter"), for retries inside a backend.
 * - Error texts: per thread, per owner (a handle or a backend impl), a small ring of slots,
 *   so "the last error on this handle in this thread" survives calls on other handles.
 *   Texts are formatted by the caller, who must never pass a password or a whole URL.
 *
 * Every function is thread-safe; nothing here holds global state beyond the thread-local
 * error slots (no init, nothing to shut down).
 */
#ifndef TALLY_STORE_INTERNAL_H
#define TALLY_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tally/store.h>

/* Built-in backends (store.c's static table). */
extern const struct tally_store_ops tally__store_sqlite_ops;
#ifdef HAVE_LIBPQ
extern const struct tally_store_ops tally__store_postgres_ops;
#endif
#ifdef HAVE_DYNAMODB
extern const struct tally_store_ops tally__store_dynamodb_ops;
#endif

/* TALLY_OK, TALLY_EINVAL (NULL, empty, NUL inside) or TALLY_ETOOLONG (> max bytes). */
int tally__store_check_key(const char *key, size_t key_len, size_t max);
/* The argument checks of tally_store_flush on `batch` (lib/store/batch.c); on failure the
 * text is recorded for owner. Errors: EINVAL, ETOOLONG, ENOMEM. */
int tally__store_check_batch(const void *owner, const struct tally_store_batch *batch);

/* ---- URLs ------------------------------------------------------------------------------ */

#define TALLY__STORE_URL_OPTIONS_MAX 32

struct tally__store_url_option {
	const char *name;
	const char *value; /* "" for "?flag" */
};

/* A parsed URL. Every string is percent-decoded and NUL-terminated; absent parts are "".
 * Decoded strings may hold any byte but NUL (a "%00" is refused). */
struct tally__store_url {
	const char *scheme;
	const char *user;
	const char *password; /* secret: never copy it out of this struct */
	const char *host;     /* without [] for an IPv6 literal */
	const char *port;
	const char *path;     /* with its leading '/'; "" if none */
	struct tally__store_url_option options[TALLY__STORE_URL_OPTIONS_MAX];
	size_t option_count;
	bool has_authority;   /* "scheme://..." rather than "scheme:..." */
	char *buffer_;        /* private: holds every string above */
	size_t buffer_size_;
};

/* Parses `url`. Errors: EINVAL (NULL, no scheme, bad percent escape, %00, more than
 * TALLY__STORE_URL_OPTIONS_MAX options, a duplicate option name), ETOOLONG (longer than
 * TALLY_STORE_URL_MAX), ENOMEM. On error `error` (may be NULL) gets a text without secrets.
 * On success free with tally__store_url_free. */
int tally__store_url_parse(const char *url, struct tally__store_url *out, char *error,
			   size_t error_size);
/* Wipes (the password too) and frees; a zeroed or already freed struct is a no-op. */
void tally__store_url_free(struct tally__store_url *url);
/* The value of option `name`, or NULL if absent. */
const char *tally__store_url_option(const struct tally__store_url *url, const char *name);
/* TALLY_OK if every option's name is in the NULL-terminated `known` list; else EINVAL and
 * an error text naming the unknown option (names are not secret; values are not printed). */
int tally__store_url_check_options(const struct tally__store_url *url,
				   const char *const *known, const char *backend, char *error,
				   size_t error_size);

/* Parses the decimal value of option `name` into [min, max]; absent: *out = fallback.
 * Errors: EINVAL with an error text ("sqlite: option busy_timeout_ms must be ..."). */
int tally__store_option_int64(const struct tally__store_url *url, const char *name,
			      int64_t min, int64_t max, int64_t fallback, int64_t *out,
			      const char *backend, char *error, size_t error_size);
/* Option `name` must be one of the NULL-terminated `choices` (case-insensitive); *index gets
 * its position, or `fallback` if absent. Errors: EINVAL with an error text. */
int tally__store_option_choice(const struct tally__store_url *url, const char *name,
			       const char *const *choices, int fallback, int *index,
			       const char *backend, char *error, size_t error_size);

/* ---- time, randomness, backoff --------------------------------------------------------- */

/* Wall clock, ms since the Unix epoch (the store clock of single-host backends). */
int64_t tally__store_now_ms(void);
/* Monotonic clock in ms (deadlines). */
int64_t tally__store_monotonic_ms(void);
/* 64 random bits from getrandom (never blocks after boot; falls back to time ^ pid). */
uint64_t tally__store_random64(void);
/* Full jitter: a uniformly random delay in [0, min(cap_ms, base_ms * 2^attempt)]. */
int64_t tally__store_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms);
/* Sleeps ms (>= 0), resuming after signals. */
void tally__store_sleep_ms(int64_t ms);

/* ---- error texts ----------------------------------------------------------------------- */

#define TALLY__STORE_ERROR_MAX 256

/* Records a formatted text as the calling thread's last error for `owner`. Never pass a
 * password or a URL; a text longer than TALLY__STORE_ERROR_MAX - 1 is cut. */
__attribute__((format(printf, 2, 3)))
void tally__store_set_error(const void *owner, const char *fmt, ...);
/* Forgets the calling thread's last error for `owner`. */
void tally__store_clear_error(const void *owner);
/* The calling thread's last error text for `owner`, "" if none. Valid until the thread's
 * next set/clear for any owner. */
const char *tally__store_error(const void *owner);

/* Records "store: <tally_strerror(err)>: <formatted text>" for owner and returns err: the
 * refusals of store.c's own argument checks. */
__attribute__((format(printf, 3, 4)))
int tally__store_refuse(const void *owner, int err, const char *fmt, ...);

/* snprintf into error[error_size] (NULL or size 0: nothing); for ops->open's error out. */
__attribute__((format(printf, 3, 4)))
void tally__store_format(char *error, size_t error_size, const char *fmt, ...);

#endif /* TALLY_STORE_INTERNAL_H */
