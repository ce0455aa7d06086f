/* SPDX-License-Identifier: BSD-2-Clause */
/* tally/tally.h: every public tally header. Include the one you use, or this. */
#ifndef TALLY_TALLY_H
#define TALLY_TALLY_H
#include <tally/error.h>
#include <tally/counter.h>
#include <tally/gauge.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include <tally/ratelimit.h>
#include <tally/sequence.h>
#include <tally/lease.h>
#endif
