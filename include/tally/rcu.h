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
 * Reclamation. Memory removed from tables is freed after a grace period by liburcu's call_rcu
 * thread. Each thread hands its removed objects to call_rcu in batches of 32 (one queue
 * operation instead of 32 on lines every core shares), so up to 31 objects per thread wait
 * for that thread's next removals, its exit or unregistration, or any tally_rcu_barrier().
 *
 * fork. fork() followed by exec() is fine. A child that does not exec must not use tally's
 * tables or these calls: liburcu's memb flavour, which tally uses, keeps the parent's
 * registered threads (which the child lacks) in its registry and its call_rcu thread state,
 * and supports fork without exec only when no thread is registered (liburcu's bp flavour is
 * the one built for it). Fork the workers before the first tally table call, or exec.
 *
 * Shutdown. tally_rcu_barrier() flushes every thread's batch and waits until every free
 * queued so far has run: call it after destroying tables and before exit if you check for
 * leaks.
 */
#ifndef TALLY_RCU_H
#define TALLY_RCU_H

#include <tally/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the calling thread (idempotent). Errors: none today; returns TALLY_OK. */
int tally_rcu_thread_register(void);
/* Unregisters the calling thread (idempotent). TALLY_EBUSY inside a read-side section. */
int tally_rcu_thread_unregister(void);
/* 1 if the calling thread is registered, else 0. */
int tally_rcu_thread_is_registered(void);

/* Enter/leave a read-side section; registers the thread first if needed. Wait-free. */
void tally_rcu_read_lock(void);
void tally_rcu_read_unlock(void);

/* Flushes every thread's batch of removed objects and waits until all of them, and every
 * deferred free queued before, have run. Blocking; not inside a read-side section. */
int tally_rcu_barrier(void);

#ifdef __cplusplus
}
#endif
#endif
