/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/error.c: tally_strerror covers every code and never returns NULL. */
#include <string.h>
#include "tally/error.h"
#include "tap.h"

int main(void)
{
	int distinct = 1;
	for (int code = 0; code < TALLY_ERR_COUNT; code++) {
		const char *msg = tally_strerror(code);
		tap_ok(msg != NULL && strcmp(msg, "unknown tally error") != 0,
		       "code %d has its own message", code);
		for (int other = 0; other < code; other++)
			if (strcmp(msg, tally_strerror(other)) == 0)
				distinct = 0;
	}
	tap_ok(distinct, "messages are distinct");
	tap_ok(strcmp(tally_strerror(-1), "unknown tally error") == 0, "negative code is unknown");
	tap_ok(strcmp(tally_strerror(TALLY_ERR_COUNT), "unknown tally error") == 0,
	       "code past the end is unknown");
	tap_ok(strcmp(tally_strerror(TALLY_OK), "success") == 0, "0 is success");
	return tap_done();
}
