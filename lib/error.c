/* SPDX-License-Identifier: BSD-2-Clause */
/* tally_strerror: one sentence per error code, indexed by code. */
#include <stddef.h>
#include "tally/error.h"

static const char *const messages[TALLY_ERR_COUNT] = {
	[TALLY_OK] = "success",
	[TALLY_EINVAL] = "invalid argument",
	[TALLY_ENOMEM] = "out of memory",
	[TALLY_EOVERFLOW] = "result would overflow its range",
	[TALLY_EFLOOR] = "decrement would go below the floor",
	[TALLY_ECEILING] = "increment would go above the ceiling",
	[TALLY_EDESTROYED] = "object destroyed or not initialised",
	[TALLY_EEXIST] = "key already exists",
	[TALLY_ENOTFOUND] = "key not found",
	[TALLY_EINACTIVE] = "entry is not active",
	[TALLY_ETOOLONG] = "key or string too long",
	[TALLY_EFULL] = "capacity reached",
	[TALLY_EBUSY] = "object busy",
	[TALLY_ESTATE] = "call not valid in the current state",
	[TALLY_EIO] = "store or file I/O failed",
	[TALLY_ECORRUPT] = "persisted state is corrupt",
	[TALLY_EFORMAT] = "malformed format template",
	[TALLY_EWIDTH] = "number outgrew its width",
	[TALLY_ENOTRESERVED] = "number is not reserved",
	[TALLY_ELIMITED] = "rate limit exceeded",
	[TALLY_ETHREAD] = "thread not registered",
	[TALLY_ETIMEDOUT] = "timed out",
	[TALLY_EUNAVAIL] = "store unavailable",
	[TALLY_EPERM] = "store refused authentication or permission",
	[TALLY_EFENCED] = "store writer fenced (epoch superseded or reaped)",
};

const char *tally_strerror(int err)
{
	if (err < 0 || err >= TALLY_ERR_COUNT || messages[err] == NULL)
		return "unknown tally error";
	return messages[err];
}
