/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/rcu.h: deferred reclamation for tally's tables, with the ThreadSanitizer
 * edges liburcu cannot show (see internal/tsan.h).
 */
#ifndef TALLY_INTERNAL_RCU_H
#define TALLY_INTERNAL_RCU_H
#include <urcu/urcu-memb.h>
#include "tally/rcu.h"
#include "tally/static/compat.h"
#include "internal/tsan.h"

/*
 * The read-side lock inline inside libtally. tally_rcu_read_lock() is an exported call that
 * then called liburcu's urcu_memb_read_lock() through the PLT, which found the thread's
 * reader with __tls_get_addr (twice on unlock): four calls around a lookup of a few tens of
 * instructions. Inside libtally, tables take the lock with tally__rcu_read_lock() below:
 * the registration check and liburcu's own reader fast path (urcu/static/urcu-memb.h: five
 * lines each, written by liburcu to meet the LGPL's ten-line rule for small inline
 * functions), inlined. The licence terms, and why neither _LGPL_SOURCE nor
 * URCU_INLINE_SMALL_FUNCTIONS is defined, are in docs/licence.md.
 *
 * That header names the thread's reader `urcu_memb_reader`, a TLS variable of
 * liburcu-memb.so. From libtally it is reachable only through __tls_get_addr (what the calls
 * paid) or an initial-exec offset into liburcu's TLS block, which makes a dlopen of libtally
 * (FFI, Python's ctypes) fail: liburcu's block is not in the static TLS area. So the name is
 * redirected, while the header is read, to a pointer of tally's own in initial-exec TLS,
 * set at registration (lib/rcu.c): one load more than an offset, no call.
 *
 * Define TALLY_RCU_READER_CALLS to build with calls into liburcu only. ThreadSanitizer
 * builds always call: the reader's plain (volatile) accesses to the shared grace-period
 * word, which membarrier orders, would be reported as races once compiled in tally's
 * instrumented files (inside liburcu they are not instrumented).
 */
#define TALLY__RCU_TLS __attribute__((tls_model("initial-exec"), visibility("hidden")))
struct urcu_reader;
/* The calling thread's liburcu reader while it is registered, else NULL. */
extern _Thread_local struct urcu_reader *tally__rcu_reader TALLY__RCU_TLS;
#include <urcu/config.h>
/* CONFIG_RCU_TLS: liburcu built with compiler TLS (Debian's is), the form redirected here */
#if !defined(TALLY_RCU_READER_CALLS) && !defined(TALLY_TSAN) && defined(CONFIG_RCU_TLS)
#define urcu_memb_reader (*tally__rcu_reader)
#include <urcu/static/urcu-memb.h>
#undef urcu_memb_reader
#define TALLY__URCU_READ_LOCK() _urcu_memb_read_lock()
#define TALLY__URCU_READ_UNLOCK() _urcu_memb_read_unlock()
#define TALLY__URCU_READ_ONGOING() _urcu_memb_read_ongoing()
#else
#define TALLY__URCU_READ_LOCK() urcu_memb_read_lock()
#define TALLY__URCU_READ_UNLOCK() urcu_memb_read_unlock()
#define TALLY__URCU_READ_ONGOING() urcu_memb_read_ongoing()
#endif

/* The calling thread's RCU state (lib/rcu.c); initial-exec, read on every table call. */
extern _Thread_local int tally__rcu_registered TALLY__RCU_TLS;
extern _Thread_local int tally__rcu_reclaim_due TALLY__RCU_TLS; /* inline mode: a grace
								  * period is due */
#ifdef TALLY_TSAN
extern char tally__rcu_grace_period_edge __attribute__((visibility("hidden")));
#endif
void tally__rcu_reclaim_own_inline(void);

/* Whether the calling thread is inside a read-side section (its own or tally's). */
static inline int tally__rcu_in_section(void)
{
	return tally__rcu_reader && TALLY__URCU_READ_ONGOING() != 0;
}

/* tally_rcu_read_lock() for libtally's own files: the same contract, inline. */
static inline void tally__rcu_read_lock(void)
{
	if (TALLY_UNLIKELY(!tally__rcu_registered))
		tally_rcu_thread_register();
	TALLY__URCU_READ_LOCK();
}

/* tally_rcu_read_unlock() for libtally's own files: the same contract, inline. */
static inline void tally__rcu_read_unlock(void)
{
#ifdef TALLY_TSAN
	/* what a grace period guarantees: pairs with the acquire before every reclaim */
	TALLY_TSAN_RELEASE(&tally__rcu_grace_period_edge);
#endif
	TALLY__URCU_READ_UNLOCK();
	if (TALLY_UNLIKELY(tally__rcu_reclaim_due) && !tally__rcu_in_section())
		tally__rcu_reclaim_own_inline();
}

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
