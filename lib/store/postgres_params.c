/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/postgres_params.c: how the PostgreSQL backend encodes parameters and decodes
 * results: one-dimensional arrays in PostgreSQL's binary format (array_send's layout:
 * dimensions, a no-NULLs flag, the element type's OID, the length and lower bound, then each
 * element as a 4-byte big-endian length and its bytes), so a whole flush's keys travel as
 * one parameter with no quoting; numbers as text; bytea results in hex output.
 */
#include <config.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_internal.h"

static void put_be32(char *at, uint32_t value)
{
	at[0] = (char)(value >> 24);
	at[1] = (char)(value >> 16);
	at[2] = (char)(value >> 8);
	at[3] = (char)value;
}

static void array_reserve(struct pg_array *array, size_t more)
{
	size_t cap = array->cap ? array->cap : 256;
	char *grown;

	if (array->failed || array->len + more <= array->cap)
		return;
	while (cap < array->len + more)
		cap *= 2;
	grown = realloc(array->data, cap);
	if (!grown) {
		array->failed = true;
		return;
	}
	array->data = grown;
	array->cap = cap;
}

void tally__pg_array_begin(struct pg_array *array, uint32_t element_oid)
{
	*array = (struct pg_array){ 0 };
	array_reserve(array, 20);
	if (array->failed)
		return;
	put_be32(array->data, 1);          /* dimensions */
	put_be32(array->data + 4, 0);      /* no NULLs */
	put_be32(array->data + 8, element_oid);
	put_be32(array->data + 16, 1);     /* lower bound */
	array->len = 20;
}

void tally__pg_array_add(struct pg_array *array, const void *bytes, size_t len)
{
	array_reserve(array, 4 + len);
	if (array->failed)
		return;
	put_be32(array->data + array->len, (uint32_t)len);
	memcpy(array->data + array->len + 4, bytes, len);
	array->len += 4 + len;
	array->count++;
}

void tally__pg_array_add_int8(struct pg_array *array, int64_t value)
{
	char be[8];

	put_be32(be, (uint32_t)((uint64_t)value >> 32));
	put_be32(be + 4, (uint32_t)value);
	tally__pg_array_add(array, be, sizeof(be));
}

void tally__pg_array_add_int4(struct pg_array *array, int32_t value)
{
	char be[4];

	put_be32(be, (uint32_t)value);
	tally__pg_array_add(array, be, sizeof(be));
}

void tally__pg_array_add_bool(struct pg_array *array, bool value)
{
	char byte = value ? 1 : 0;

	tally__pg_array_add(array, &byte, 1);
}

int tally__pg_array_finish(struct pg_array *array)
{
	if (array->failed)
		return -1;
	if (array->count == 0) {
		put_be32(array->data, 0); /* an empty array has no dimensions */
		array->len = 12;
	} else {
		put_be32(array->data + 12, array->count);
	}
	return 0;
}

void tally__pg_array_free(struct pg_array *array)
{
	free(array->data);
	*array = (struct pg_array){ 0 };
}

long tally__pg_bytea_decode(const char *text, char *out, size_t cap)
{
	size_t hex_len;

	if (text[0] != '\\' || text[1] != 'x')
		return -1;
	text += 2;
	hex_len = strlen(text);
	if (hex_len % 2 || hex_len / 2 > cap)
		return -1;
	for (size_t i = 0; i < hex_len / 2; i++) {
		unsigned byte;

		if (sscanf(text + 2 * i, "%2x", &byte) != 1)
			return -1;
		out[i] = (char)byte;
	}
	return (long)(hex_len / 2);
}

const char *tally__pg_u64_text(struct pg_number *buf, uint64_t value)
{
	snprintf(buf->text, sizeof(buf->text), "%" PRIu64, value);
	return buf->text;
}

const char *tally__pg_i64_text(struct pg_number *buf, int64_t value)
{
	snprintf(buf->text, sizeof(buf->text), "%" PRId64, value);
	return buf->text;
}

int64_t tally__pg_int8(const PGresult *result, int row, int column)
{
	return strtoll(PQgetvalue(result, row, column), NULL, 10);
}

