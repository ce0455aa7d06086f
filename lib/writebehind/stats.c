/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The flusher's stats (tally/writebehind.h): the counters the thread keeps under wb->lock,
 * the flush latency window and its percentiles, and the lag bound.
 */
#include <stdlib.h>
#include <string.h>
#include "writebehind/internal.h"

void tally__wb_note_latency(struct tally_writebehind *wb, int64_t us)
{
	wb->latency_us[wb->latency_count++ % WB_LATENCY_WINDOW] = us;
	if (us > wb->stats.flush_latency_max_us)
		wb->stats.flush_latency_max_us = us;
}

static int compare_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Lock held: p50 and p99 of the latency window. */
static void latency_percentiles(struct tally_writebehind *wb,
				struct tally_writebehind_stats *stats)
{
	size_t count = wb->latency_count < WB_LATENCY_WINDOW ? (size_t)wb->latency_count
							      : WB_LATENCY_WINDOW;
	int64_t sorted[WB_LATENCY_WINDOW];

	if (count == 0)
		return;
	memcpy(sorted, wb->latency_us, count * sizeof(*sorted));
	qsort(sorted, count, sizeof(*sorted), compare_int64);
	stats->flush_latency_p50_us = sorted[(count - 1) / 2];
	stats->flush_latency_p99_us = sorted[(count - 1) * 99 / 100];
}

int tally_writebehind_get_stats(struct tally_writebehind *wb, struct tally_writebehind_stats *stats)
{
	if (!wb || !stats)
		return TALLY_EINVAL;
	pthread_mutex_lock(&wb->lock);
	*stats = wb->stats;
	latency_percentiles(wb, stats);
	stats->lag_ms = tally__wb_now_ms() - wb->durable_ms;
	stats->pending_records = (int64_t)wb->pending_records;
	stats->pending_tombstones = (int64_t)wb->pending_tombstones;
	stats->backpressure = wb->tombstones_over;
	stats->writer_open = wb->writer_open;
	stats->epoch = wb->epoch;
	stats->last_seq = wb->last_seq;
	pthread_mutex_unlock(&wb->lock);
	return TALLY_OK;
}
