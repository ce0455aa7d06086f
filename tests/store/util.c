/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/util.c: the helpers every store backend shares (lib/store/internal.h, compiled
 * into this program since libtally exports no tally__ symbol): URL and option parsing,
 * percent-decoding, key checks, full-jitter backoff, per-thread error texts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/internal.h"
#include "../tap.h"

static void test_url(void)
{
	struct tally__store_url url;
	char error[TALLY__STORE_ERROR_MAX] = "";

	tap_eq(tally__store_url_parse("PostgreSQL://app:p%40ss:w0rd@db.example:5433/tally?"
				      "sslmode=require&application_name=a%20b&flag",
				      &url, error, sizeof(error)), TALLY_OK, "url: a full URL");
	tap_ok(strcmp(url.scheme, "postgresql") == 0, "scheme lowered: %s", url.scheme);
	tap_ok(strcmp(url.user, "app") == 0, "user");
	tap_ok(strcmp(url.password, "p@ss:w0rd") == 0, "password decoded, ':' after the first kept");
	tap_ok(strcmp(url.host, "db.example") == 0 && strcmp(url.port, "5433") == 0,
	       "host and port");
	tap_ok(strcmp(url.path, "/tally") == 0, "path");
	tap_eq(url.option_count, 3, "three options");
	tap_ok(strcmp(tally__store_url_option(&url, "application_name"), "a b") == 0,
	       "option value decoded");
	tap_ok(strcmp(tally__store_url_option(&url, "flag"), "") == 0, "a bare flag is \"\"");
	tap_ok(tally__store_url_option(&url, "missing") == NULL, "absent option: NULL");
	{
		const char *const known[] = { "sslmode", "application_name", NULL };

		tap_eq(tally__store_url_check_options(&url, known, "pg", error, sizeof(error)),
		       TALLY_EINVAL, "an unknown option is named");
		tap_ok(strstr(error, "flag") && !strstr(error, "w0rd"), "text: %s", error);
	}
	tally__store_url_free(&url);
	tap_ok(url.buffer_ == NULL, "free clears the struct");
	tally__store_url_free(&url);

	tap_eq(tally__store_url_parse("dynamodb://[::1]:8000/?region=eu-west-1", &url, error,
				      sizeof(error)), TALLY_OK, "an IPv6 literal");
	tap_ok(strcmp(url.host, "::1") == 0 && strcmp(url.port, "8000") == 0 &&
	       strcmp(url.path, "/") == 0 && url.user[0] == '\0', "host ::1, port 8000, path /");
	tally__store_url_free(&url);

	tap_eq(tally__store_url_parse("sqlite:///var/lib/a%20b.db", &url, NULL, 0), TALLY_OK,
	       "sqlite URL");
	tap_ok(url.has_authority && url.host[0] == '\0' && strcmp(url.path, "/var/lib/a b.db") == 0,
	       "empty host, path decoded");
	tally__store_url_free(&url);

	tap_eq(tally__store_url_parse("sqlite:rel.db", &url, NULL, 0), TALLY_OK, "no authority");
	tap_ok(!url.has_authority && strcmp(url.path, "rel.db") == 0, "path rel.db");
	tally__store_url_free(&url);

	tap_eq(tally__store_url_parse("x://u:secret@h/p%00x", &url, error, sizeof(error)),
	       TALLY_EINVAL, "%%00: EINVAL");
	tap_ok(!strstr(error, "secret"), "no password in the text: %s", error);
	tap_eq(tally__store_url_parse("x://h/p%4", &url, NULL, 0), TALLY_EINVAL, "a cut escape");
	tap_eq(tally__store_url_parse("x://h/p%zz", &url, NULL, 0), TALLY_EINVAL, "a bad escape");
	tap_eq(tally__store_url_parse("x://h/?a=1&a=2", &url, NULL, 0), TALLY_EINVAL,
	       "an option twice");
	tap_eq(tally__store_url_parse("x://h/?=1", &url, NULL, 0), TALLY_EINVAL, "an empty name");
	tap_eq(tally__store_url_parse("://h", &url, NULL, 0), TALLY_EINVAL, "no scheme");
	tap_eq(tally__store_url_parse("x://[::1/", &url, NULL, 0), TALLY_EINVAL, "an open [");
	tap_eq(tally__store_url_parse(NULL, &url, NULL, 0), TALLY_EINVAL, "NULL");
	{
		char many[512] = "x://h/?";

		for (int i = 0; i <= TALLY__STORE_URL_OPTIONS_MAX; i++)
			snprintf(many + strlen(many), sizeof(many) - strlen(many), "o%d=1&", i);
		tap_eq(tally__store_url_parse(many, &url, NULL, 0), TALLY_EINVAL,
		       "more than %d options", TALLY__STORE_URL_OPTIONS_MAX);
	}
	{
		char *long_url = malloc(TALLY_STORE_URL_MAX + 16);

		memset(long_url, 'a', TALLY_STORE_URL_MAX + 15);
		memcpy(long_url, "x://h/", 6);
		long_url[TALLY_STORE_URL_MAX + 15] = '\0';
		tap_eq(tally__store_url_parse(long_url, &url, NULL, 0), TALLY_ETOOLONG,
		       "longer than TALLY_STORE_URL_MAX: ETOOLONG");
		free(long_url);
	}
}

static void test_options(void)
{
	static const char *const modes[] = { "full", "normal", NULL };
	struct tally__store_url url;
	char error[TALLY__STORE_ERROR_MAX];
	int64_t value = 0;
	int index = -1;

	tally__store_url_parse("s:///p?n=42&bad=4x&big=99&mode=NORMAL&odd=maybe", &url, NULL, 0);
	tap_eq(tally__store_option_int64(&url, "n", 0, 100, 7, &value, "s", error, sizeof(error)),
	       TALLY_OK, "int option");
	tap_eq(value, 42, "42");
	tap_eq(tally__store_option_int64(&url, "none", 0, 100, 7, &value, "s", error,
					 sizeof(error)), TALLY_OK, "absent int option");
	tap_eq(value, 7, "the fallback");
	tap_eq(tally__store_option_int64(&url, "bad", 0, 100, 7, &value, "s", error,
					 sizeof(error)), TALLY_EINVAL, "4x: EINVAL");
	tap_eq(tally__store_option_int64(&url, "big", 0, 50, 7, &value, "s", error,
					 sizeof(error)), TALLY_EINVAL, "out of range: EINVAL");
	tap_ok(strstr(error, "big") && strstr(error, "[0, 50]"), "text: %s", error);
	tap_eq(tally__store_option_choice(&url, "mode", modes, 0, &index, "s", error,
					  sizeof(error)), TALLY_OK, "choice, any case");
	tap_eq(index, 1, "normal");
	tap_eq(tally__store_option_choice(&url, "odd", modes, 0, &index, "s", error,
					  sizeof(error)), TALLY_EINVAL, "an unknown choice");
	tally__store_url_free(&url);
}

static void test_keys_and_backoff(void)
{
	int64_t max_seen = 0, over = 0;

	tap_eq(tally__store_check_key("k", 1, 4), TALLY_OK, "key ok");
	tap_eq(tally__store_check_key("kkkkk", 5, 4), TALLY_ETOOLONG, "key too long");
	tap_eq(tally__store_check_key("k\0k", 3, 4), TALLY_EINVAL, "NUL inside");
	tap_eq(tally__store_check_key("", 0, 4), TALLY_EINVAL, "empty");
	tap_eq(tally__store_check_key(NULL, 1, 4), TALLY_EINVAL, "NULL");
	for (int i = 0; i < 2000; i++) {
		int64_t ms = tally__store_backoff_ms(3, 10, 1000);

		over += ms < 0 || ms > 80;
		max_seen = ms > max_seen ? ms : max_seen;
	}
	tap_eq(over, 0, "backoff attempt 3, base 10: always in [0, 80]");
	tap_ok(max_seen >= 60, "and spread over it (max seen %lld)", (long long)max_seen);
	over = 0;
	for (int i = 0; i < 2000; i++)
		over += tally__store_backoff_ms(40, 10, 500) > 500;
	tap_eq(over, 0, "a large attempt is capped, without overflow");
	tap_eq(tally__store_backoff_ms(0, 0, 100), 0, "base 0: no sleep");
}

static void test_errors(void)
{
	static int owners[12]; /* only their addresses matter */

	tap_ok(strcmp(tally__store_error(&owners[0]), "") == 0, "no error yet: \"\"");
	tally__store_set_error(&owners[0], "first %d", 1);
	tally__store_set_error(&owners[1], "second");
	tap_ok(strcmp(tally__store_error(&owners[0]), "first 1") == 0 &&
	       strcmp(tally__store_error(&owners[1]), "second") == 0, "one text per owner");
	tally__store_set_error(&owners[0], "first again");
	tap_ok(strcmp(tally__store_error(&owners[0]), "first again") == 0, "replaced");
	tally__store_clear_error(&owners[0]);
	tap_ok(strcmp(tally__store_error(&owners[0]), "") == 0, "cleared");
	for (int i = 2; i < 12; i++)
		tally__store_set_error(&owners[i], "owner %d", i);
	tap_ok(strcmp(tally__store_error(&owners[11]), "owner 11") == 0,
	       "the ring keeps the latest owners");
	{
		char big[600];

		memset(big, 'x', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		tally__store_set_error(&owners[11], "%s", big);
		tap_eq(strlen(tally__store_error(&owners[11])), TALLY__STORE_ERROR_MAX - 1,
		       "a long text is cut");
	}
}

int main(void)
{
	test_url();
	test_options();
	test_keys_and_backoff();
	test_errors();
	return tap_done();
}
