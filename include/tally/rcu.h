/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/rcu.h: the RCU domain behind tally's tables (sessions, connections, sequence
 * registries, rate-limit keys). tally uses liburcu's memb flavour (membarrier-based: readers
 * pay no fence; grace periods pay one membarrier syscall).
 *
 * Thread registration. A thread must be registered with RCU before it reads a tally table.
 * tally registers a thread automatically on its first table call and unregisters it when the
 * thread exits, so most callers do nothing. Call tally_rcu_thread_register() yourself to pay
 * the registration (a mutex-protected list insert) at thread start instead of on a hot call,
 * and tally_rcu_thread_unregister() if a thread stops using tally long before it exits.
 *
 * Read-side sections. Lookups that hand out pointers into a table (for example a callback
 * run "under the read lock") do so inside tally_rcu_read_lock()/unlock(): wait-free, may
 * nest, must not block for long (reclamation waits for them) and must not call
 * tally_rcu_barrier().
 *
 * Reclamation. Memory removed from tables is freed after a grace period. Each thread chooses
 * how (tally_rcu_thread_set_reclaim):
 * - DEFERRED (the default): liburcu's call_rcu thread frees it. A thread hands its removed
 *   objects to call_rcu in batches of 32 (one queue operation instead of 32 on lines every
 *   core shares), so up to 31 objects per thread wait for that thread's next removals, its
 *   exit or unregistration, or any tally_rcu_barrier(). No tally call ever waits for a grace
 *   period on this path.
 * - INLINE: the thread frees its own removed objects. After every 2,048 removals, when the
 *   thread leaves its outermost read-side section (the end of the tally call that removed,
 *   or your own tally_rcu_read_unlock), it waits for one grace period and frees them. That
 *   call blocks until every read-side section that began before it has ended: normally a few
 *   microseconds, but as long as the slowest such section. Use it for threads that do many
 *   removals on a machine whose cores are all busy, where the call_rcu thread is one
 *   runnable thread too many (measured in docs/session.md). The rule it brings: a thread in
 *   INLINE mode must not call a tally removal, or leave its outermost read-side section,
 *   while it holds a lock that another thread may wait for inside a read-side section (for
 *   example a lock your visit or notify callback takes): that wait would never end. Up to
 *   2,079 objects per thread wait (8,192 if the thread stays inside one read-side section;
 *   beyond that they go to call_rcu). Exit, unregistration and tally_rcu_barrier() hand them
 *   to call_rcu like the default mode.
 *
 * fork. fork() followed by exec() is fine. A child that does not exec must not use tally's
 * tables or these calls: liburcu's memb flavour, which tally uses, keeps the parent's
 * registered threads (which the child lacks) in its registry and its call_rcu thread state,
 * and supports fork without exec only when no thread is registered (liburcu's bp flavour is
 * the one built for it). Fork the workers before the first tally table call, or exec.
 *
 * Threads. Every call acts on the calling thread (registration, read-side sections, the
 * reclamation mode) or on the whole domain (tally_rcu_barrier), and any thread may make any
 * of them concurrently with any other, except:
 *   tally_rcu_read_unlock           in the thread that took the matching read lock
 *   tally_rcu_thread_unregister,    outside a read-side section (else TALLY_EBUSY)
 *   tally_rcu_thread_set_reclaim,
 *   tally_rcu_barrier
 *   an INLINE thread's tally        not while it holds a lock that another thread may wait
 *   removals and outermost unlock   for inside a read-side section (see Reclamation)
 *
 * Shutdown. tally_rcu_barrier() flushes every thread's batch and waits until every free
 * queued so far has run: call it after destroying tables and before exit if you check for
 * leaks.
 */
#ifndef TALLY_RCU_H
#define TALLY_RCU_H

#include <stdbool.h>
#include <tally/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the calling thread (idempotent). Blocking (a mutex-protected list insert).
 * Errors: none today; returns TALLY_OK. */
int tally_rcu_thread_register(void);
/* Unregisters the calling thread (idempotent), handing its batch of removed objects to
 * call_rcu. Blocking (a list removal). Errors: EBUSY (inside a read-side section). */
int tally_rcu_thread_unregister(void);
/* Whether the calling thread is registered. Wait-free; no errors. */
bool tally_rcu_thread_is_registered(void);

/* Enters a read-side section (sections nest); registers the thread first if needed.
 * Wait-free after the registration; no errors. */
void tally_rcu_read_lock(void);
/* Leaves the innermost read-side section. Wait-free, except that the outermost unlock of an
 * INLINE thread may wait for a grace period and reclaim (see Reclamation above); no errors.
 * Caller duty: one unlock per lock, in the same thread. */
void tally_rcu_read_unlock(void);

/* The calling thread's reclamation mode (see Reclamation above). */
enum tally_rcu_reclaim {
	TALLY_RCU_RECLAIM_DEFERRED = 0, /* liburcu's call_rcu thread frees (the default) */
	TALLY_RCU_RECLAIM_INLINE = 1    /* the thread frees its own, one grace period per 2,048 */
};
/* Sets the calling thread's mode (registers it first if needed). Leaving INLINE hands the
 * objects it holds to call_rcu. Errors: EINVAL (unknown mode), EBUSY (inside a read-side
 * section; nothing changes). */
int tally_rcu_thread_set_reclaim(enum tally_rcu_reclaim mode);
/* The calling thread's mode. Wait-free; no errors. */
enum tally_rcu_reclaim tally_rcu_thread_reclaim(void);

/* Flushes every thread's batch of removed objects and waits until all of them, and every
 * deferred free queued before, have run. Blocking; call outside a read-side section.
 * Errors: EBUSY (inside a read-side section; nothing is flushed). */
int tally_rcu_barrier(void);

#ifdef __cplusplus
}
#endif
#endif
