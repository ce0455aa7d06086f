/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/static/gauge.h: the layouts of struct tally_gauge and struct tally_sgauge, so callers
 * can own them in their own memory. Fields are private: use the calls in tally/gauge.h.
 */
#ifndef TALLY_STATIC_GAUGE_H
#define TALLY_STATIC_GAUGE_H

#include <stdint.h>
#include <tally/gauge.h>
#include <tally/static/compat.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tally_gauge {
	uint32_t magic;               /* alive marker; written by init/destroy */
	TALLY__ATOMIC(int64_t) value; /* CAS by every updater */
	int64_t floor;                /* set at init */
	int64_t ceiling;              /* set at init */
};

struct tally_sgauge_shard;

struct tally_sgauge {
	uint32_t magic;                      /* alive marker; written by init/destroy */
	uint32_t shard_count;                /* set at init, a power of two */
	int64_t floor;                       /* set at init */
	int64_t ceiling;                     /* set at init */
	struct tally_sgauge_shard *above;    /* tokens of value - floor */
	struct tally_sgauge_shard *headroom; /* tokens of ceiling - value; NULL if none */
	TALLY__ATOMIC(uint64_t) in_flight;   /* multi-shard operations holding tokens */
	TALLY__ATOMIC(uint64_t) returns;     /* count of token give-backs, for retries */
};

#ifdef __cplusplus
}
#endif
#endif /* TALLY_STATIC_GAUGE_H */
