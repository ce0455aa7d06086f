/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/util.c: key checks, URL and option parsing, clocks, full-jitter backoff and the
 * per-thread error texts every store backend shares (lib/store/internal.h).
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "store/internal.h"

int tally__store_check_key(const char *key, size_t key_len, size_t max)
{
	if (!key || key_len == 0)
		return TALLY_EINVAL;
	if (key_len > max)
		return TALLY_ETOOLONG;
	return memchr(key, '\0', key_len) ? TALLY_EINVAL : TALLY_OK;
}

/* ---- URLs ------------------------------------------------------------------------------ */

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes src[0 .. len) into *cursor (NUL-terminated) and returns the start, or NULL on a
 * bad escape or %00. */
static const char *decode_part(const char *src, size_t len, char **cursor)
{
	char *start = *cursor, *dst = *cursor;

	for (size_t i = 0; i < len; i++) {
		if (src[i] != '%') {
			*dst++ = src[i];
			continue;
		}
		int hi = i + 2 < len ? hex_value(src[i + 1]) : -1;
		int lo = i + 2 < len ? hex_value(src[i + 2]) : -1;

		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return NULL;
		*dst++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*dst++ = '\0';
	*cursor = dst;
	return start;
}

static int parse_scheme(const char *url, size_t *scheme_len)
{
	size_t i = 0;

	if (!isalpha((unsigned char)url[0]))
		return TALLY_EINVAL;
	while (isalnum((unsigned char)url[i]) || url[i] == '+' || url[i] == '-' || url[i] == '.')
		i++;
	if (url[i] != ':')
		return TALLY_EINVAL;
	*scheme_len = i;
	return TALLY_OK;
}

/* Splits the authority [user[:password]@]host[:port] (host may be [v6]). */
static int parse_authority(const char *auth, size_t len, struct tally__store_url *out,
			   char **cursor)
{
	const char *at = NULL, *host = auth, *end = auth + len, *colon;

	for (const char *p = auth; p < end; p++)
		if (*p == '@')
			at = p;
	if (at) {
		const char *pw = memchr(auth, ':', (size_t)(at - auth));
		size_t user_len = pw ? (size_t)(pw - auth) : (size_t)(at - auth);

		out->user = decode_part(auth, user_len, cursor);
		out->password = pw ? decode_part(pw + 1, (size_t)(at - pw - 1), cursor)
				   : decode_part("", 0, cursor);
		if (!out->user || !out->password)
			return TALLY_EINVAL;
		host = at + 1;
	} else {
		out->user = out->password = decode_part("", 0, cursor);
	}
	if (host < end && *host == '[') {
		const char *close = memchr(host, ']', (size_t)(end - host));

		if (!close)
			return TALLY_EINVAL;
		out->host = decode_part(host + 1, (size_t)(close - host - 1), cursor);
		colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
		if (!colon && close + 1 != end)
			return TALLY_EINVAL;
	} else {
		colon = memchr(host, ':', (size_t)(end - host));
		out->host = decode_part(host, (size_t)((colon ? colon : end) - host), cursor);
	}
	out->port = colon ? decode_part(colon + 1, (size_t)(end - colon - 1), cursor)
			  : decode_part("", 0, cursor);
	return out->host && out->port ? TALLY_OK : TALLY_EINVAL;
}

static int parse_query(const char *query, struct tally__store_url *out, char **cursor,
		       char *error, size_t error_size)
{
	const char *p = query;

	while (*p) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		struct tally__store_url_option *opt;

		if (end == p) {
			p = amp ? amp + 1 : end;
			continue;
		}
		if (out->option_count == TALLY__STORE_URL_OPTIONS_MAX) {
			tally__store_format(error, error_size, "%s: more than %d URL options",
					    out->scheme, TALLY__STORE_URL_OPTIONS_MAX);
			return TALLY_EINVAL;
		}
		opt = &out->options[out->option_count];
		opt->name = decode_part(p, (size_t)((eq ? eq : end) - p), cursor);
		opt->value = eq ? decode_part(eq + 1, (size_t)(end - eq - 1), cursor)
				: decode_part("", 0, cursor);
		if (!opt->name || !opt->value || !*opt->name) {
			tally__store_format(error, error_size, "%s: malformed URL option",
					    out->scheme);
			return TALLY_EINVAL;
		}
		if (tally__store_url_option(out, opt->name)) {
			tally__store_format(error, error_size, "%s: URL option %.64s given twice",
					    out->scheme, opt->name);
			return TALLY_EINVAL;
		}
		out->option_count++;
		p = amp ? amp + 1 : end;
	}
	return TALLY_OK;
}

static int parse_url(const char *url, size_t len, struct tally__store_url *out, char *error,
		     size_t error_size)
{
	char *cursor = out->buffer_;
	size_t scheme_len;
	const char *rest, *query, *path_end;

	if (parse_scheme(url, &scheme_len)) {
		tally__store_format(error, error_size, "store: URL has no scheme (e.g. sqlite://)");
		return TALLY_EINVAL;
	}
	out->scheme = decode_part(url, scheme_len, &cursor);
	for (char *s = (char *)out->scheme; *s; s++)
		*s = (char)tolower((unsigned char)*s);
	rest = url + scheme_len + 1;
	query = strchr(rest, '?');
	path_end = query ? query : url + len;
	if (rest[0] == '/' && rest[1] == '/') {
		const char *auth = rest + 2, *slash = auth;

		while (slash < path_end && *slash != '/')
			slash++;
		out->has_authority = true;
		if (parse_authority(auth, (size_t)(slash - auth), out, &cursor))
			goto malformed;
		rest = slash;
	} else {
		out->user = out->password = out->host = out->port = decode_part("", 0, &cursor);
	}
	out->path = decode_part(rest, (size_t)(path_end - rest), &cursor);
	if (!out->path)
		goto malformed;
	return query ? parse_query(query + 1, out, &cursor, error, error_size) : TALLY_OK;
malformed:
	/* The scheme is safe to name; the rest may hold a password. */
	tally__store_format(error, error_size, "%s: malformed URL (bad escape or authority)",
			    out->scheme);
	return TALLY_EINVAL;
}

int tally__store_url_parse(const char *url, struct tally__store_url *out, char *error,
			   size_t error_size)
{
	size_t len;
	int err;

	if (!out)
		return TALLY_EINVAL;
	memset(out, 0, sizeof(*out));
	if (!url) {
		tally__store_format(error, error_size, "store: URL is NULL");
		return TALLY_EINVAL;
	}
	len = strnlen(url, TALLY_STORE_URL_MAX + 1);
	if (len > TALLY_STORE_URL_MAX) {
		tally__store_format(error, error_size, "store: URL longer than %d bytes",
				    TALLY_STORE_URL_MAX);
		return TALLY_ETOOLONG;
	}
	/* Every decoded part is at most its raw length, plus a NUL for each of at most
	 * 6 + 2 * OPTIONS_MAX parts. */
	out->buffer_size_ = len + 7 + 2 * TALLY__STORE_URL_OPTIONS_MAX + 1;
	out->buffer_ = calloc(1, out->buffer_size_);
	if (!out->buffer_)
		return TALLY_ENOMEM;
	err = parse_url(url, len, out, error, error_size);
	if (err)
		tally__store_url_free(out);
	return err;
}

void tally__store_url_free(struct tally__store_url *url)
{
	if (!url || !url->buffer_)
		return;
	/* explicit_bzero is not elided like a memset before free may be. */
	explicit_bzero(url->buffer_, url->buffer_size_);
	free(url->buffer_);
	memset(url, 0, sizeof(*url));
}

const char *tally__store_url_option(const struct tally__store_url *url, const char *name)
{
	for (size_t i = 0; i < url->option_count; i++)
		if (strcmp(url->options[i].name, name) == 0)
			return url->options[i].value;
	return NULL;
}

int tally__store_url_check_options(const struct tally__store_url *url,
				   const char *const *known, const char *backend, char *error,
				   size_t error_size)
{
	for (size_t i = 0; i < url->option_count; i++) {
		const char *const *k = known;

		while (*k && strcmp(*k, url->options[i].name) != 0)
			k++;
		if (!*k) {
			tally__store_format(error, error_size, "%s: unknown URL option %.64s",
					    backend, url->options[i].name);
			return TALLY_EINVAL;
		}
	}
	return TALLY_OK;
}

int tally__store_option_int64(const struct tally__store_url *url, const char *name,
			      int64_t min, int64_t max, int64_t fallback, int64_t *out,
			      const char *backend, char *error, size_t error_size)
{
	const char *value = tally__store_url_option(url, name);
	char *end;
	long long parsed;

	if (!value) {
		*out = fallback;
		return TALLY_OK;
	}
	errno = 0;
	parsed = strtoll(value, &end, 10);
	if (!*value || *end || errno || parsed < min || parsed > max) {
		tally__store_format(error, error_size,
				    "%s: option %s must be an integer in [%" PRId64 ", %" PRId64 "]",
				    backend, name, min, max);
		return TALLY_EINVAL;
	}
	*out = parsed;
	return TALLY_OK;
}

int tally__store_option_choice(const struct tally__store_url *url, const char *name,
			       const char *const *choices, int fallback, int *index,
			       const char *backend, char *error, size_t error_size)
{
	const char *value = tally__store_url_option(url, name);

	if (!value) {
		*index = fallback;
		return TALLY_OK;
	}
	for (int i = 0; choices[i]; i++) {
		if (strcasecmp(value, choices[i]) == 0) {
			*index = i;
			return TALLY_OK;
		}
	}
	tally__store_format(error, error_size, "%s: option %s has an unknown value", backend,
			    name);
	return TALLY_EINVAL;
}

/* ---- time, randomness, backoff --------------------------------------------------------- */

static int64_t clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t tally__store_now_ms(void)
{
	return clock_ms(CLOCK_REALTIME);
}

int64_t tally__store_monotonic_ms(void)
{
	return clock_ms(CLOCK_MONOTONIC);
}

uint64_t tally__store_random64(void)
{
	uint64_t value;
	struct timespec ts;

	if (getrandom(&value, sizeof(value), GRND_NONBLOCK) == (ssize_t)sizeof(value))
		return value;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* splitmix64 of time and pid: never reached on Linux >= 3.17 after boot. */
	value = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ ((uint64_t)getpid() << 48);
	value += 0x9e3779b97f4a7c15u;
	value = (value ^ (value >> 30)) * 0xbf58476d1ce4e5b9u;
	value = (value ^ (value >> 27)) * 0x94d049bb133111ebu;
	return value ^ (value >> 31);
}

int64_t tally__store_backoff_ms(unsigned attempt, int64_t base_ms, int64_t cap_ms)
{
	int64_t ceiling = base_ms;

	if (base_ms <= 0 || cap_ms <= 0)
		return 0;
	for (unsigned i = 0; i < attempt && ceiling < cap_ms; i++)
		ceiling = ceiling > INT64_MAX / 2 ? INT64_MAX : ceiling * 2;
	if (ceiling > cap_ms)
		ceiling = cap_ms;
	return (int64_t)(tally__store_random64() % ((uint64_t)ceiling + 1));
}

void tally__store_sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	if (ms <= 0)
		return;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ---- error texts ----------------------------------------------------------------------- */

#define ERROR_SLOTS 8

struct error_slot {
	const void *owner;
	char text[TALLY__STORE_ERROR_MAX];
};

/* A small ring per thread: the last error of up to ERROR_SLOTS handles stays readable. */
static _Thread_local struct error_slot error_slots[ERROR_SLOTS];
static _Thread_local unsigned error_next;

static struct error_slot *find_slot(const void *owner)
{
	for (int i = 0; i < ERROR_SLOTS; i++)
		if (error_slots[i].owner == owner)
			return &error_slots[i];
	return NULL;
}

void tally__store_set_error(const void *owner, const char *fmt, ...)
{
	struct error_slot *slot = find_slot(owner);
	va_list ap;

	if (!slot) {
		slot = &error_slots[error_next++ % ERROR_SLOTS];
		slot->owner = owner;
	}
	va_start(ap, fmt);
	vsnprintf(slot->text, sizeof(slot->text), fmt, ap);
	va_end(ap);
}

void tally__store_clear_error(const void *owner)
{
	struct error_slot *slot = find_slot(owner);

	if (slot)
		slot->text[0] = '\0';
}

const char *tally__store_error(const void *owner)
{
	struct error_slot *slot = find_slot(owner);

	return slot ? slot->text : "";
}

int tally__store_refuse(const void *owner, int err, const char *fmt, ...)
{
	char text[TALLY__STORE_ERROR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	tally__store_set_error(owner, "store: %s: %s", tally_strerror(err), text);
	return err;
}

void tally__store_format(char *error, size_t error_size, const char *fmt, ...)
{
	va_list ap;

	if (!error || error_size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(error, error_size, fmt, ap);
	va_end(ap);
}
