/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/error.h: the error model shared by every tally structure.
 *
 * Every fallible public call returns an int: TALLY_OK (0) on success, or one of the
 * enum tally_err values below. A call that fails changes nothing unless its header says
 * otherwise. tally never prints, aborts or exits on bad input.
 *
 * Codes are stable: new codes are only appended, so a number seen in a log keeps its meaning.
 */
#ifndef TALLY_ERROR_H
#define TALLY_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum tally_err {
	TALLY_OK = 0,
	TALLY_EINVAL,      /* an argument is NULL, zero, negative or otherwise out of its domain */
	TALLY_ENOMEM,      /* an allocation failed; nothing was changed */
	TALLY_EOVERFLOW,   /* the result would leave the int64 range (or a documented width) */
	TALLY_EFLOOR,      /* the decrement would take the value below its floor */
	TALLY_ECEILING,    /* the increment would take the value above its ceiling */
	TALLY_EDESTROYED,  /* destroyed or never initialised: detected only for zeroed memory or
			    * a destroyed object whose memory lives, never for garbage */
	TALLY_EEXIST,      /* an entry with this key already exists */
	TALLY_ENOTFOUND,   /* no entry with this key (or it was already removed) */
	TALLY_EINACTIVE,   /* the entry exists but is no longer active */
	TALLY_ETOOLONG,    /* a key or string is longer than its documented maximum */
	TALLY_EFULL,       /* a configured capacity (keys, slots, reservations) is reached */
	TALLY_EBUSY,       /* the object is in use in a way that forbids the call (e.g. destroy) */
	TALLY_ESTATE,      /* the call is not valid in the object's current state */
	TALLY_EIO,         /* a store, file or lease provider failed; see the call's docs */
	TALLY_ECORRUPT,    /* persisted state could not be parsed or failed its check */
	TALLY_EFORMAT,     /* a format template is malformed (unknown field, no counter, ...) */
	TALLY_EWIDTH,      /* a number outgrew its configured width */
	TALLY_ENOTRESERVED,/* release or commit of a number that is not currently reserved */
	TALLY_ELIMITED,    /* a rate limit refused the request (see the retry-after output) */
	TALLY_ETHREAD,     /* the calling thread is not registered where the call requires it */
	TALLY_ETIMEDOUT,   /* an operation with a deadline did not complete in time */
	TALLY_EUNAVAIL,    /* a remote store is unreachable; the data is kept for retry */
	TALLY_EPERM,       /* the store refused authentication or permission */
	TALLY_EFENCED,     /* a store writer's epoch was superseded or reaped */
	TALLY_ERR_COUNT    /* number of codes; not an error */
};

/*
 * tally_strerror: a static, human-readable description of code `err`.
 * Never returns NULL: unknown codes map to "unknown tally error". Thread-safe, wait-free.
 */
const char *tally_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_ERROR_H */
