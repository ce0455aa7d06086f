/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/dynamodb_json.c: DynamoDB attribute values with jansson, base64 for the binary
 * keys, and the packed flush numbers (docs/store-dynamodb.md).
 *
 * Keys are attribute type B (binary): store keys are any bytes but NUL, not necessarily
 * UTF-8, and DynamoDB's S type (a JSON string) must be UTF-8. Base64 makes every key, with
 * its quotes, backslashes and JSON metacharacters, travel verbatim.
 */
#include "config.h"

#include "store/dynamodb_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const unsigned char *in, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		*o++ = b64_alphabet[(v >> 18) & 63];
		*o++ = b64_alphabet[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? b64_alphabet[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

static int b64_value(char c)
{
	const char *p = c ? strchr(b64_alphabet, c) : NULL;
	return p ? (int)(p - b64_alphabet) : -1;
}

/* Decodes into out; returns the length or -1 (malformed, or more than cap bytes). */
static long b64_decode(const char *in, char *out, size_t cap)
{
	size_t len = strlen(in), n = 0;
	if (len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		for (int j = 0; j < 4; j++)
			v[j] = in[i + j] == '=' ? 0 : b64_value(in[i + j]);
		if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0)
			return -1;
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		int bytes = in[i + 2] == '=' ? 1 : in[i + 3] == '=' ? 2 : 3;
		if (n + (size_t)bytes > cap)
			return -1;
		out[n++] = (char)(w >> 16);
		if (bytes > 1)
			out[n++] = (char)(w >> 8);
		if (bytes > 2)
			out[n++] = (char)w;
	}
	return (long)n;
}

json_t *tally__ddb_bin(const char *bytes, size_t len)
{
	char *b64 = b64_encode((const unsigned char *)bytes, len);
	json_t *v = b64 ? json_pack("{s:s}", "B", b64) : NULL;
	free(b64);
	return v;
}

json_t *tally__ddb_num(int64_t value)
{
	char digits[24];
	snprintf(digits, sizeof(digits), "%" PRId64, value);
	return json_pack("{s:s}", "N", digits);
}

json_t *tally__ddb_num_str(const char *digits)
{
	return json_pack("{s:s}", "N", digits);
}

json_t *tally__ddb_str(const char *s)
{
	json_t *str = json_string(s); /* NULL if not UTF-8 */
	return str ? json_pack("{s:o}", "S", str) : NULL;
}

long tally__ddb_get_bin(json_t *item, const char *name, char *out, size_t cap)
{
	const char *b64 = json_string_value(json_object_get(json_object_get(item, name), "B"));
	return b64 ? b64_decode(b64, out, cap) : -1;
}

const char *tally__ddb_get_num_str(json_t *item, const char *name)
{
	return json_string_value(json_object_get(json_object_get(item, name), "N"));
}

int tally__ddb_get_num(json_t *item, const char *name, int64_t *value, bool *present)
{
	const char *digits = tally__ddb_get_num_str(item, name);
	*value = 0;
	if (present)
		*present = digits != NULL;
	if (!digits)
		return 0;
	char *end;
	errno = 0;
	long long v = strtoll(digits, &end, 10);
	if (errno || *end || end == digits)
		return -1;
	*value = v;
	return 0;
}

const char *tally__ddb_get_str(json_t *item, const char *name)
{
	return json_string_value(json_object_get(json_object_get(item, name), "S"));
}

void tally__ddb_flushno(char out[TALLY__DDB_FLUSHNO_MAX], uint64_t epoch, uint64_t seq)
{
	if (epoch == 0)
		snprintf(out, TALLY__DDB_FLUSHNO_MAX, "%" PRIu64, seq);
	else
		snprintf(out, TALLY__DDB_FLUSHNO_MAX, "%" PRIu64 "%015" PRIu64, epoch, seq);
}

int tally__ddb_flushno_cmp(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la != lb)
		return la < lb ? -1 : 1;
	int c = strcmp(a, b);
	return (c > 0) - (c < 0);
}
