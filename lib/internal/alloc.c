/* SPDX-License-Identifier: BSD-2-Clause */
#include "config.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "internal/alloc.h"
#include "internal/test_hooks.h"
#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

_Atomic(tally__test_hook_fn) tally__test_hook_alloc;

static size_t round_to_line(size_t size)
{
	return (size + TALLY_CACHE_LINE - 1) & ~(size_t)(TALLY_CACHE_LINE - 1);
}

void *tally__alloc_aligned(size_t size)
{
	TALLY__TEST_HOOK(tally__test_hook_alloc);
	if (size == 0 || size > SIZE_MAX - TALLY_CACHE_LINE)
		return NULL;
#ifdef HAVE_JEMALLOC
	return mallocx(round_to_line(size), MALLOCX_ALIGN(TALLY_CACHE_LINE) | MALLOCX_ZERO);
#else
	void *ptr = aligned_alloc(TALLY_CACHE_LINE, round_to_line(size));
	if (ptr)
		memset(ptr, 0, round_to_line(size));
	return ptr;
#endif
}

void *tally__alloc_packed(size_t size)
{
	TALLY__TEST_HOOK(tally__test_hook_alloc);
	if (size == 0)
		return NULL;
#ifdef HAVE_JEMALLOC
	return mallocx(size, MALLOCX_ZERO);
#else
	return calloc(1, size);
#endif
}

void tally__free_aligned(void *ptr)
{
	if (!ptr)
		return;
#ifdef HAVE_JEMALLOC
	dallocx(ptr, 0);
#else
	free(ptr);
#endif
}
