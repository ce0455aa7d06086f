/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Process-wide registry of dense thread indices (see tally/static/thread_index.h).
 *
 * A bitmap of TALLY_THREAD_INDEX_MAX bits: claiming is a fetch_or on a word with a clear bit,
 * releasing a fetch_and. C11 atomics rather than ck_bitmap because ThreadSanitizer cannot see
 * Concurrency Kit's inline assembly, and the acquire/release here is what orders a slot's
 * previous owner before its next one.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "tally/static/thread_index.h"

#define WORD_BITS 64
#define WORDS (TALLY_THREAD_INDEX_MAX / WORD_BITS)

_Thread_local int tally__thread_index_plus1 __attribute__((tls_model("initial-exec")));

static _Atomic uint64_t index_in_use[WORDS];
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_ready;

static void release_index(void *plus1_as_ptr)
{
	int index = (int)(intptr_t)plus1_as_ptr - 1;

	/* Any tally call made later in this thread's exit (another key's destructor) must not
	 * touch the slot we give away: route it to the shared path instead. */
	tally__thread_index_plus1 = -1;
	/* Release: pairs with the acquire in try_claim_in_word, so the next owner of this index
	 * sees our last write to every slot. */
	atomic_fetch_and_explicit(&index_in_use[index / WORD_BITS],
				  ~(UINT64_C(1) << (index % WORD_BITS)), memory_order_release);
}

static void create_exit_key(void)
{
	exit_key_ready = pthread_key_create(&exit_key, release_index) == 0;
}

static int try_claim_in_word(int word)
{
	uint64_t used = atomic_load_explicit(&index_in_use[word], memory_order_relaxed);

	while (~used != 0) {
		uint64_t bit = UINT64_C(1) << __builtin_ctzll(~used);
		uint64_t before = atomic_fetch_or_explicit(&index_in_use[word], bit,
							   memory_order_acquire);
		if (!(before & bit))
			return word * WORD_BITS + __builtin_ctzll(bit);
		used = before | bit;
	}
	return -1;
}

int tally__thread_index_claim(void)
{
	pthread_once(&key_once, create_exit_key);
	if (!exit_key_ready) {
		tally__thread_index_plus1 = -1;
		return -1;
	}
	for (int word = 0; word < WORDS; word++) {
		int index = try_claim_in_word(word);
		if (index < 0)
			continue;
		if (pthread_setspecific(exit_key, (void *)(intptr_t)(index + 1)) != 0) {
			release_index((void *)(intptr_t)(index + 1));
			return -1;
		}
		tally__thread_index_plus1 = index + 1;
		return index;
	}
	tally__thread_index_plus1 = -1;
	return -1;
}
