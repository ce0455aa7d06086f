/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally's RCU domain: automatic thread registration and annotated reclamation.
 *
 * Registration is tracked in a thread-local flag so that register is idempotent (liburcu
 * asserts on a double registration); a pthread key destructor unregisters at thread exit.
 *
 * Retire batching. Each call_rcu costs two read-modify-writes on lines that every retiring
 * thread and liburcu's call_rcu thread share (the queue tail and its length), and the
 * call_rcu thread pays a dequeue per callback (docs/session.md has what that cost a
 * connection leave). So a thread collects its retired objects in a private block, an array
 * of RETIRE_BATCH (object, reclaim) pairs, and hands the full block to call_rcu as one
 * callback, which reclaims from the array without touching the objects' cache lines (a
 * chain through the objects cost the call_rcu thread a miss per object). Correctness: each
 * object was unlinked before it joined the block, and the block's grace period starts after
 * its last retire, so it covers every reader that could see any of them. The cost is
 * retention: up to RETIRE_BATCH - 1 objects per thread wait for that thread's next retires,
 * its exit or unregistration, or any tally_rcu_barrier(), which flushes every thread's block.
 *
 * The owner takes its block by exchanging in BLOCK_BUSY and puts it back with a store (it
 * never waits for a barrier); a barrier takes a thread's block by compare-and-swap only when
 * it is not BUSY, so it never takes a block the owner is writing, and waits the few
 * instructions of a retire.
 *
 * Inline reclamation (tally_rcu_thread_set_reclaim). In the default mode a full block goes
 * to liburcu's call_rcu thread. On a machine with as many busy threads as cores that thread
 * is one runnable thread too many: it preempts a reader inside its read-side section, waits
 * for it, is woken by that reader's unlock, preempts again, and pays a membarrier (an IPI to
 * every core running the process) each time; docs/session.md has the measurements. A thread
 * in inline mode
 * keeps its full blocks chained behind the newest one and, once INLINE_BLOCKS are full and
 * it leaves its outermost read-side section, waits one grace period itself and runs the
 * reclaims: the grace period is cheap because no reader is preempted by it (a few
 * membarriers), the frees land in the thread's own allocator cache, and the memory it
 * reuses is still warm. If the thread stays inside a section past INLINE_MAX_BLOCKS, the
 * chain goes to call_rcu, so retention stays bounded.
 *
 * ThreadSanitizer: every read-side unlock releases `tally__rcu_grace_period_edge` and every
 * reclaim acquires it, which tells TSan what a grace period guarantees: all read-side
 * sections that could see an object happen before its free. Retire releases the object and
 * reclaim acquires it, the edge that liburcu's call_rcu queue carries in inline assembly.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "internal/rcu.h"
#include "internal/tsan.h"

#define RETIRE_BATCH 32
/* Inline mode: a grace period per INLINE_BLOCKS full blocks (2,048 objects): fewer grace
 * periods per free, while the freed memory is still warm when it is reused (the sizes tried
 * are in docs/session.md). */
#define INLINE_BLOCKS 64
#define INLINE_MAX_BLOCKS (4 * INLINE_BLOCKS)

struct retire_block {
	struct rcu_head head;
	struct retire_block *older; /* inline mode: the full blocks retired before this one */
	unsigned count;
	struct {
		struct tally_rcu_head *rcu;
		void (*reclaim)(struct tally_rcu_head *rcu);
	} items[RETIRE_BATCH];
};

/* The owner is writing its block (see above). */
#define BLOCK_BUSY ((struct retire_block *)1)

/* One thread's retired objects that have not been handed to call_rcu yet. */
struct retire_batch {
	_Atomic(struct retire_block *) block; /* NULL, a partial block, or BLOCK_BUSY */
	int listed;                       /* in all_batches; owner only */
	struct retire_batch *prev, *next; /* in all_batches; under batches_lock */
};

/* initial-exec: these are read on every table call; see tally/static/thread_index.h. */
_Thread_local int tally__rcu_registered TALLY__RCU_TLS;
_Thread_local struct urcu_reader *tally__rcu_reader TALLY__RCU_TLS;
/* liburcu's own name for the reader (internal/rcu.h redirects it while it reads the
 * static header); its address is taken once per registration. */
extern __thread struct urcu_reader urcu_memb_reader;
/* Inline mode state; the owner's only. */
static _Thread_local int reclaim_inline __attribute__((tls_model("initial-exec")));
_Thread_local int tally__rcu_reclaim_due TALLY__RCU_TLS;
static _Thread_local unsigned inline_full_blocks __attribute__((tls_model("initial-exec")));
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_ready;
static _Thread_local struct retire_batch my_batch __attribute__((tls_model("initial-exec")));
static pthread_mutex_t batches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct retire_batch *all_batches; /* under batches_lock */
#ifdef TALLY_TSAN
char tally__rcu_grace_period_edge;
#endif

static void flush_own_batch(void);
static void unlist_own_batch(void);

/* Registered thread: hands its batch to call_rcu and leaves liburcu's registry. */
static void unregister_registered(void)
{
	flush_own_batch();
	unlist_own_batch();
	urcu_memb_unregister_thread();
	tally__rcu_reader = NULL;
	tally__rcu_registered = 0;
}

static void unregister_at_exit(void *unused)
{
	if (tally__rcu_registered)
		unregister_registered();
}

static void create_exit_key(void)
{
	exit_key_ready = pthread_key_create(&exit_key, unregister_at_exit) == 0;
}

int tally_rcu_thread_register(void)
{
	if (tally__rcu_registered)
		return TALLY_OK;
	pthread_once(&exit_key_once, create_exit_key);
	urcu_memb_register_thread();
	tally__rcu_reader = &urcu_memb_reader;
	tally__rcu_registered = 1;
	if (exit_key_ready)
		pthread_setspecific(exit_key, &tally__rcu_registered);
	return TALLY_OK;
}

int tally_rcu_thread_unregister(void)
{
	if (tally__rcu_in_section())
		return TALLY_EBUSY;
	if (tally__rcu_registered) {
		unregister_registered();
		if (exit_key_ready)
			pthread_setspecific(exit_key, NULL);
	}
	return TALLY_OK;
}

bool tally_rcu_thread_is_registered(void)
{
	return tally__rcu_registered;
}

void tally__rcu_ensure_registered(void)
{
	if (!tally__rcu_registered)
		tally_rcu_thread_register();
}

void tally_rcu_read_lock(void)
{
	tally__rcu_read_lock();
}

void tally_rcu_read_unlock(void)
{
	tally__rcu_read_unlock();
}

/* Runs a reclaim once a grace period has passed since the object's retire. */
static void reclaim_after_grace_period(struct tally_rcu_head *rcu,
				       void (*reclaim)(struct tally_rcu_head *rcu))
{
#ifdef TALLY_TSAN
	TALLY_TSAN_ACQUIRE(&tally__rcu_grace_period_edge);
#endif
	TALLY_TSAN_ACQUIRE(rcu);
	reclaim(rcu);
}

/* Reclaims a block and the older blocks chained behind it: a grace period has passed since
 * the newest one's last retire. */
static void run_chain(struct retire_block *block)
{
	while (block) {
		struct retire_block *older;

		TALLY_TSAN_ACQUIRE(block); /* pairs with hand_block_to_call_rcu / our own retires */
		older = block->older;
		for (unsigned i = 0; i < block->count; i++)
			reclaim_after_grace_period(block->items[i].rcu, block->items[i].reclaim);
		free(block);
		block = older;
	}
}

/* The call_rcu callback of a chain of blocks. */
static void run_block(struct rcu_head *head)
{
	run_chain(caa_container_of(head, struct retire_block, head));
}

/* The callback of an object retired alone (no memory for a block). */
static void run_one(struct rcu_head *head)
{
	struct tally_rcu_head *rcu = caa_container_of(head, struct tally_rcu_head, head);

	reclaim_after_grace_period(rcu, rcu->reclaim);
}

static void hand_block_to_call_rcu(struct retire_block *block)
{
	if (block && block != BLOCK_BUSY) {
		TALLY_TSAN_RELEASE(block); /* the chain's writes: pairs with run_chain */
		urcu_memb_call_rcu(&block->head, run_block);
	}
}

static void list_own_batch(void)
{
	pthread_mutex_lock(&batches_lock);
	my_batch.next = all_batches;
	my_batch.prev = NULL;
	if (all_batches)
		all_batches->prev = &my_batch;
	all_batches = &my_batch;
	pthread_mutex_unlock(&batches_lock);
	my_batch.listed = 1;
}

static void unlist_own_batch(void)
{
	if (!my_batch.listed)
		return;
	pthread_mutex_lock(&batches_lock);
	if (my_batch.prev)
		my_batch.prev->next = my_batch.next;
	else
		all_batches = my_batch.next;
	if (my_batch.next)
		my_batch.next->prev = my_batch.prev;
	pthread_mutex_unlock(&batches_lock);
	my_batch.listed = 0;
}

/* Hands the thread's chain to call_rcu; an inline thread's count starts over. */
static void flush_own_batch(void)
{
	tally__rcu_reclaim_due = 0;
	inline_full_blocks = 0;
	/* acquire: pairs with the release store of our own last retire (same thread; kept for
	 * symmetry with the barrier's take) */
	hand_block_to_call_rcu(atomic_exchange_explicit(&my_batch.block, NULL,
							memory_order_acquire));
}

/* A fresh empty block in front of `older` (a full chain or NULL); NULL without memory. */
static struct retire_block *new_block(struct retire_block *older)
{
	struct retire_block *block = malloc(sizeof(*block));

	if (block) {
		block->count = 0;
		block->older = older;
	}
	return block;
}

/* The newest block is full: the default mode hands the chain to call_rcu; inline mode keeps
 * it, unless the thread has been inside a read-side section for INLINE_MAX_BLOCKS. Returns
 * what the thread keeps. */
static struct retire_block *block_filled(struct retire_block *block)
{
	if (reclaim_inline) {
		if (++inline_full_blocks >= INLINE_BLOCKS)
			tally__rcu_reclaim_due = 1;
		if (inline_full_blocks < INLINE_MAX_BLOCKS)
			return block;
	}
	inline_full_blocks = 0;
	hand_block_to_call_rcu(block);
	return NULL;
}

/* Never waits for another thread: an exchange and a store on the thread's own line, plus a
 * malloc (the allocator's own locking) every RETIRE_BATCH retires and a call_rcu (default
 * mode) or, in inline mode, a grace period every INLINE_BLOCKS * RETIRE_BATCH retires, which
 * waits at the thread's outermost read-side unlock (or here, outside any section). */
void tally__rcu_retire(struct tally_rcu_head *rcu, void (*reclaim)(struct tally_rcu_head *rcu))
{
	struct retire_block *block, *fresh;

	tally__rcu_ensure_registered();
	rcu->reclaim = reclaim;
	TALLY_TSAN_RELEASE(rcu); /* the object's last write: pairs with run_chain / run_one */
	if (exit_key_ready && !my_batch.listed)
		list_own_batch();
	/* No exit hook means a block could outlive its thread: then no block at all. */
	block = exit_key_ready ? atomic_exchange_explicit(&my_batch.block, BLOCK_BUSY,
							  memory_order_acquire)
			       : NULL;
	fresh = exit_key_ready && (!block || block->count == RETIRE_BATCH) ? new_block(block)
									 : block;
	if (!fresh) {
		urcu_memb_call_rcu(&rcu->head, run_one);
		if (exit_key_ready)
			atomic_store_explicit(&my_batch.block, block, memory_order_release);
		return;
	}
	block = fresh;
	block->items[block->count].rcu = rcu;
	block->items[block->count++].reclaim = reclaim;
	if (block->count == RETIRE_BATCH)
		block = block_filled(block);
	/* release: a barrier that takes the block sees the items written above */
	atomic_store_explicit(&my_batch.block, block, memory_order_release);
	if (tally__rcu_reclaim_due && !tally__rcu_in_section())
		tally__rcu_reclaim_own_inline();
}

/* Inline mode, outside every read-side section: waits one grace period and runs the
 * thread's own chain (whatever a barrier has not taken meanwhile). */
void tally__rcu_reclaim_own_inline(void)
{
	struct retire_block *chain;

	tally__rcu_reclaim_due = 0;
	inline_full_blocks = 0;
	/* acquire: pairs with our own release stores (same thread) */
	chain = atomic_exchange_explicit(&my_batch.block, NULL, memory_order_acquire);
	if (!chain)
		return;
	urcu_memb_synchronize_rcu();
	run_chain(chain);
}

int tally_rcu_thread_set_reclaim(enum tally_rcu_reclaim mode)
{
	if (mode != TALLY_RCU_RECLAIM_DEFERRED && mode != TALLY_RCU_RECLAIM_INLINE)
		return TALLY_EINVAL;
	if (tally__rcu_in_section())
		return TALLY_EBUSY;
	tally__rcu_ensure_registered();
	if (reclaim_inline && mode == TALLY_RCU_RECLAIM_DEFERRED)
		flush_own_batch();
	reclaim_inline = mode == TALLY_RCU_RECLAIM_INLINE;
	return TALLY_OK;
}

enum tally_rcu_reclaim tally_rcu_thread_reclaim(void)
{
	return reclaim_inline ? TALLY_RCU_RECLAIM_INLINE : TALLY_RCU_RECLAIM_DEFERRED;
}

/* Takes another thread's block unless that thread is writing it (then waits for it). */
static struct retire_block *take_block(struct retire_batch *batch)
{
	struct retire_block *block = atomic_load_explicit(&batch->block, memory_order_acquire);

	for (;;) {
		if (block == BLOCK_BUSY) { /* a few instructions, unless the owner is preempted */
			sched_yield();
			block = atomic_load_explicit(&batch->block, memory_order_acquire);
			continue;
		}
		/* acquire: pairs with the owner's release store of the block */
		if (atomic_compare_exchange_weak_explicit(&batch->block, &block, NULL,
							  memory_order_acquire,
							  memory_order_acquire))
			return block;
	}
}

/* Hands every thread's partial block to call_rcu (the calling thread is registered). */
static void flush_all_batches(void)
{
	pthread_mutex_lock(&batches_lock);
	for (struct retire_batch *batch = all_batches; batch; batch = batch->next)
		hand_block_to_call_rcu(batch == &my_batch
					       ? atomic_exchange_explicit(&batch->block, NULL,
									  memory_order_acquire)
					       : take_block(batch));
	pthread_mutex_unlock(&batches_lock);
}

int tally_rcu_barrier(void)
{
	if (tally__rcu_in_section())
		return TALLY_EBUSY;
	tally__rcu_ensure_registered();
	flush_all_batches();
	urcu_memb_barrier();
	return TALLY_OK;
}
