/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/rcu.h: deferred reclamation for tally's tables, with the ThreadSanitizer
 * edges liburcu cannot show (see internal/tsan.h).
 */
#ifndef TALLY_INTERNAL_RCU_H
#define TALLY_INTERNAL_RCU_H
#include <urcu/urcu-memb.h>
#include "tally/rcu.h"

struct tally_rcu_head {
	struct rcu_head head;
	void (*reclaim)(struct tally_rcu_head *rcu); /* runs after a grace period */
};

/*
 * tally__rcu_retire: after `rcu`'s object is unreachable to new readers, call reclaim(rcu)
 * once every read-side section that might still see it has ended. Non-blocking. Retires are
 * batched per thread (lib/rcu.c): up to 31 objects wait for the thread's next retires, its
 * exit, or a tally_rcu_barrier().
 */
void tally__rcu_retire(struct tally_rcu_head *rcu, void (*reclaim)(struct tally_rcu_head *rcu));

/* Registers the calling thread if it is not (used by every table entry point). */
void tally__rcu_ensure_registered(void);

#endif
