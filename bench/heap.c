/* SPDX-License-Identifier: BSD-2-Clause */
/* bench/heap.c: see heap.h. */
#include <dlfcn.h>
#include <malloc.h>
#include <stdint.h>

#include "heap.h"

typedef int (*mallctl_fn)(const char *name, void *old, size_t *old_len, void *new_value,
			  size_t new_len);

size_t bench_heap_bytes(void)
{
	mallctl_fn mallctl = (mallctl_fn)dlsym(RTLD_DEFAULT, "mallctl");
	struct mallinfo2 info = mallinfo2();
	size_t total = info.uordblks + info.hblkhd, allocated = 0, size = sizeof(allocated);
	uint64_t epoch = 1;

	/* jemalloc refreshes its statistics when the epoch is written */
	if (mallctl && mallctl("epoch", NULL, NULL, &epoch, sizeof(epoch)) == 0 &&
	    mallctl("stats.allocated", &allocated, &size, NULL, 0) == 0)
		total += allocated;
	return total;
}
