/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/cxx.cpp: every tally structure used from C++ through its C header (no wrapper layer):
 * the inline fast paths (tally_counter_add, tally_counter_local_add, tally_series_next,
 * tally_thread_index) compiled as C++, from several std::threads, and every other call of
 * each structure at least once. Built twice, as C++11 and as C++20 (mk/cxx.am). It also
 * includes tests/abi_c.h, generated from the C compiler's layouts: if a struct's C++ layout
 * differed from C's, this file would not compile.
 */
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>
#include <tally/tally.h>
#include "abi_layouts.h"
#include "abi_c.h"
#include "tap.h"

#define THREADS 4
#define ADDS_PER_THREAD 20000

static void test_counter(void)
{
	struct tally_counter counter;
	int64_t total = -1, delta = -1;
	std::vector<std::thread> threads;
	int failures[THREADS] = { 0 };

	tap_eq(tally_counter_init(&counter, 2), TALLY_OK, "counter: init with 2 slots");
	/* 4 threads on 2 slots: two own a slot (inline path), the others share the CAS slot. */
	for (int t = 0; t < THREADS; t++)
		threads.emplace_back([&counter, &failures, t] {
			struct tally_counter_local local;

			if (tally_counter_local_init(&counter, &local) != TALLY_OK)
				failures[t]++;
			for (int i = 0; i < ADDS_PER_THREAD; i++) {
				failures[t] += tally_counter_inc(&counter) != TALLY_OK;
				failures[t] += tally_counter_local_add(&local, 2) != TALLY_OK;
			}
			failures[t] += tally_counter_sub(&counter, 1) != TALLY_OK;
			failures[t] += tally_counter_local_inc(&local) != TALLY_OK;
		});
	for (auto &thread : threads)
		thread.join();
	for (int t = 0; t < THREADS; t++)
		tap_eq(failures[t], 0, "counter: thread %d: every inline add succeeded", t);
	tap_eq(tally_counter_read(&counter, &total), TALLY_OK, "counter: read");
	tap_eq(total, (int64_t)THREADS * 3 * ADDS_PER_THREAD, "counter: every add counted once");
	tap_eq(tally_counter_drain(&counter, &delta), TALLY_OK, "counter: drain");
	tap_eq(delta, total, "counter: the first drain ships the total");
	tap_eq(tally_counter_undrain(&counter, 5), TALLY_OK, "counter: undrain");
	tap_eq(tally_counter_drain(&counter, &delta), TALLY_OK, "counter: drain again");
	tap_eq(delta, 5, "counter: the undrained delta comes back");
	tap_eq(tally_counter_add(nullptr, 1), TALLY_EINVAL, "counter: NULL is EINVAL");
	tap_eq(tally_counter_destroy(&counter), TALLY_OK, "counter: destroy");
	tap_eq(tally_counter_inc(&counter), TALLY_EDESTROYED, "counter: add after destroy");

	/* A slot keeps its value after its thread exits: overflow on a fresh counter. */
	tap_eq(tally_counter_init(&counter, 0), TALLY_OK, "counter: init with default slots");
	tap_eq(tally_counter_add(&counter, INT64_MAX), TALLY_OK, "counter: add INT64_MAX");
	tap_eq(tally_counter_add(&counter, 1), TALLY_EOVERFLOW, "counter: slot overflow reported");
	tap_eq(tally_counter_sub(&counter, INT64_MIN), TALLY_EOVERFLOW, "counter: sub INT64_MIN");
	tap_eq(tally_counter_destroy(&counter), TALLY_OK, "counter: destroy again");
}

static void test_thread_index(void)
{
	int mine = tally_thread_index(), other = -2;

	std::thread([&other] { other = tally_thread_index(); }).join();
	tap_ok(mine >= 0 && mine < TALLY_THREAD_INDEX_MAX, "thread_index: in range (%d)", mine);
	tap_eq(tally_thread_index(), mine, "thread_index: stable within a thread");
	tap_ok(other >= 0 && other != mine, "thread_index: another live thread has another");
}

static void test_gauges(void)
{
	struct tally_gauge gauge;
	struct tally_sgauge sgauge;
	int64_t value = -1;

	tap_eq(tally_gauge_init(&gauge, 1, 0, 3), TALLY_OK, "gauge: init [0, 3] at 1");
	tap_eq(tally_gauge_add(&gauge, 2, &value), TALLY_OK, "gauge: add 2");
	tap_eq(value, 3, "gauge: add reports the value it produced");
	tap_eq(tally_gauge_inc(&gauge, nullptr), TALLY_ECEILING, "gauge: the ceiling holds");
	tap_eq(tally_gauge_sub(&gauge, 3, nullptr), TALLY_OK, "gauge: sub 3");
	tap_eq(tally_gauge_dec(&gauge, nullptr), TALLY_EFLOOR, "gauge: the floor holds");
	tap_eq(tally_gauge_read(&gauge, &value), TALLY_OK, "gauge: read");
	tap_eq(value, 0, "gauge: value 0");
	tap_eq(tally_gauge_destroy(&gauge), TALLY_OK, "gauge: destroy");

	tap_eq(tally_sgauge_init(&sgauge, 0, 0, TALLY_GAUGE_NO_CEILING, 4), TALLY_OK, "sgauge: init");
	std::vector<std::thread> threads;
	for (int t = 0; t < THREADS; t++)
		threads.emplace_back([&sgauge] {
			for (int i = 0; i < 1000; i++) {
				tally_sgauge_inc(&sgauge);
				tally_sgauge_add(&sgauge, 2);
				tally_sgauge_dec(&sgauge);
			}
		});
	for (auto &thread : threads)
		thread.join();
	tap_eq(tally_sgauge_read(&sgauge, &value), TALLY_OK, "sgauge: read");
	tap_eq(value, THREADS * 1000 * 2, "sgauge: every update counted");
	tap_eq(tally_sgauge_sub(&sgauge, value + 1), TALLY_EFLOOR, "sgauge: the floor holds");
	tap_eq(tally_sgauge_destroy(&sgauge), TALLY_OK, "sgauge: destroy");
}

static int64_t fixed_seconds(void *arg)
{
	return *static_cast<int64_t *>(arg);
}

static void test_sequence(void)
{
	int64_t now = INT64_C(1795392000); /* 2026-11-23T00:00:00Z */
	struct tally_sequence_options options = {};
	struct tally_sequence *seq = nullptr;
	struct tally_lease_provider *lease = nullptr;
	struct tally_series *strict = nullptr, *cached = nullptr;
	struct tally_seq_number number = {};
	struct tally_seq_recovery recovery = {};
	struct tally_series_stats stats = {};
	char text[64];

	options.now_s = fixed_seconds;
	options.clock_arg = &now;
	tap_eq(tally_sequence_create(&seq, &options), TALLY_OK, "sequence: create");
	tap_eq(tally_lease_memory_create(&lease), TALLY_OK, "lease: memory provider");

	struct tally_series_config config = {};
	config.format = "N-{counter:06}";
	config.mode = TALLY_SEQ_STRICT;
	config.reset = TALLY_SEQ_RESET_NEVER;
	tap_eq(tally_sequence_series_create(seq, "acme", "plain", &config, nullptr), TALLY_OK,
	       "sequence: strict series without a lease (inline fetch_add path)");
	config.mode = TALLY_SEQ_CACHED;
	config.cache_block = 16;
	tap_eq(tally_sequence_series_create(seq, "acme", "cached", &config, nullptr), TALLY_OK,
	       "sequence: cached series (inline block path)");
	config.mode = TALLY_SEQ_STRICT;
	config.format = "INV-{date:%Y%m%d}-{counter:04}";
	config.reset = TALLY_SEQ_RESET_DAILY;
	config.lease = lease;
	config.lease_size = 10;
	tap_eq(tally_sequence_series_create(seq, "acme", "invoice", &config, &recovery), TALLY_OK,
	       "sequence: daily series with a lease");
	tap_ok(!recovery.resumed && !recovery.unclean, "sequence: a new lease key resumes nothing");

	tap_eq(tally_sequence_series_find(seq, "acme", "plain", &strict), TALLY_OK, "find plain");
	tap_eq(tally_sequence_series_find(seq, "acme", "cached", &cached), TALLY_OK, "find cached");
	std::vector<std::thread> threads;
	std::vector<std::vector<uint64_t>> issued(THREADS);
	for (int t = 0; t < THREADS; t++)
		threads.emplace_back([&issued, strict, cached, t] {
			struct tally_seq_number n;

			for (int i = 0; i < 500; i++) {
				if (tally_series_next(strict, &n) == TALLY_OK)
					issued[t].push_back(n.counter);
				if (tally_series_next(cached, &n) == TALLY_OK)
					issued[t].push_back(n.counter << 32);
			}
		});
	for (auto &thread : threads)
		thread.join();
	std::vector<bool> seen_strict(THREADS * 500 + 1), seen_cached(8192);
	int duplicates = 0, strict_count = 0, cached_count = 0;
	for (auto &numbers : issued)
		for (uint64_t n : numbers) {
			std::vector<bool> &seen = n >> 32 ? seen_cached : seen_strict;
			uint64_t counter = n >> 32 ? n >> 32 : n;
			if (counter >= seen.size() || seen[counter])
				duplicates++;
			else
				seen[counter] = true;
			(n >> 32 ? cached_count : strict_count)++;
		}
	tap_eq(strict_count, THREADS * 500, "sequence: every strict next issued");
	tap_eq(cached_count, THREADS * 500, "sequence: every cached next issued");
	tap_eq(duplicates, 0, "sequence: no number issued twice, none out of range");
	tap_eq(tally_series_next(strict, &number), TALLY_OK, "sequence: one more strict");
	tap_eq(number.counter, THREADS * 500 + 1, "sequence: strict numbers are 1..N, no gaps");
	tap_eq(tally_series_format(strict, &number, text, sizeof text), TALLY_OK, "series_format");
	tap_ok(strcmp(text, "N-002001") == 0, "sequence: rendered %s", text);

	tap_eq(tally_sequence_next_text(seq, "acme", "invoice", text, sizeof text, &number),
	       TALLY_OK, "sequence: next_text on the leased daily series");
	tap_ok(strcmp(text, "INV-20261123-0001") == 0, "sequence: rendered %s", text);
	struct tally_series *invoice = nullptr;
	struct tally_seq_reservation *reservation = nullptr;
	const struct tally_seq_number *numbers = nullptr;
	uint32_t count = 0;
	tally_sequence_series_find(seq, "acme", "invoice", &invoice);
	tap_eq(tally_series_reserve(invoice, 3, &reservation), TALLY_OK, "sequence: reserve 3");
	tap_eq(tally_seq_reservation_numbers(reservation, &numbers, &count), TALLY_OK,
	       "sequence: reservation numbers");
	tap_eq(count, 3, "sequence: 3 reserved");
	tap_eq(tally_seq_reservation_commit(reservation, &numbers[0]), TALLY_OK, "commit one");
	tap_eq(tally_seq_reservation_release(reservation, &numbers[2]), TALLY_OK, "release one");
	tap_eq(tally_seq_reservation_finish(reservation, true), TALLY_OK, "finish, commit the rest");
	tap_eq(tally_sequence_next(seq, "acme", "invoice", &number), TALLY_OK, "next by name");
	tap_eq(number.counter, 4, "sequence: the released number is issued again");
	tap_eq(tally_series_checkpoint(invoice), TALLY_OK, "sequence: checkpoint");
	tap_eq(tally_series_get_stats(invoice, &stats), TALLY_OK, "sequence: stats");
	tap_eq(stats.lease_calls >= 1, 1, "sequence: the lease was acquired");
	tap_eq(tally_seq_period_of(now, TALLY_SEQ_RESET_DAILY, 0), now / 86400, "period_of");
	tap_eq(tally_sequence_series_remove(seq, "acme", "invoice", &stats), TALLY_OK, "remove");
	tap_eq(tally_sequence_next(seq, "acme", "invoice", &number), TALLY_ENOTFOUND,
	       "sequence: removed series is gone");
	struct tally_lease_record record = {};
	tap_eq(tally_lease_read(lease, "acme\0invoice", 12, &record), TALLY_OK, "lease: read");
	tap_ok(record.flags & TALLY_LEASE_CLEAN, "lease: removal closed the key cleanly");
	tap_eq(tally_sequence_destroy(seq), TALLY_OK, "sequence: destroy");
	tap_eq(tally_lease_provider_destroy(lease), TALLY_OK, "lease: destroy");
}

static int64_t fixed_ns(void *arg)
{
	return *static_cast<int64_t *>(arg);
}

static void test_ratelimit(void)
{
	int64_t now = 1000, retry = -1, removed = -1, keys = -1;
	struct tally_ratelimit_config config = {};
	struct tally_ratelimit *limiter = nullptr;
	struct tally_ratelimit_result result = {};
	const std::string key = "client-1";

	config.algorithm = TALLY_RATELIMIT_FIXED_WINDOW;
	config.limit = 3;
	config.period_ns = 1000000;
	config.now_ns = fixed_ns;
	config.clock_arg = &now;
	tap_eq(tally_ratelimit_create(&limiter, &config), TALLY_OK, "ratelimit: create");
	for (int i = 0; i < 3; i++)
		tap_eq(tally_ratelimit_allow(limiter, key.data(), key.size(), 1, &retry), TALLY_OK,
		       "ratelimit: request %d admitted", i);
	tap_eq(tally_ratelimit_allow(limiter, key.data(), key.size(), 1, &retry), TALLY_ELIMITED,
	       "ratelimit: the fourth is limited");
	tap_eq(retry, 1000000 - 1000, "ratelimit: retry at the window's end");
	tap_eq(tally_ratelimit_peek(limiter, key.data(), key.size(), &result), TALLY_OK, "peek");
	tap_eq(result.remaining, 0, "ratelimit: nothing remains");
	tap_eq(tally_ratelimit_reset(limiter, key.data(), key.size()), TALLY_OK, "reset");
	tap_eq(tally_ratelimit_allow_result(limiter, key.data(), key.size(), 1, &result), TALLY_OK,
	       "ratelimit: admitted after reset");
	tap_eq(result.remaining, 2, "ratelimit: a fresh quota");
	tap_eq(tally_ratelimit_key_count(limiter, &keys), TALLY_OK, "key_count");
	tap_eq(keys, 1, "ratelimit: one key");
	now += 3000000;
	tap_eq(tally_ratelimit_sweep(limiter, &removed), TALLY_OK, "ratelimit: sweep");
	tap_eq(removed, 1, "ratelimit: the idle key is swept");
	tap_ok(tally_ratelimit_entry_size() > 0 && tally_ratelimit_entry_size() + 32 <= 64,
	       "ratelimit: entry size (a 32-byte key fits one line)");
	tap_eq(tally_ratelimit_destroy(limiter), TALLY_OK, "ratelimit: destroy");
}

static int64_t fixed_ms(void *arg)
{
	return *static_cast<int64_t *>(arg);
}

static void test_session(void)
{
	int64_t now = 5000, count = -1, deleted = -1;
	struct tally_session_config config = {};
	struct tally_session_table *table = nullptr;
	struct tally_session_info info;
	struct tally_connection_info connection;
	size_t visited = 0;

	config.now_ms = fixed_ms;
	config.clock_arg = &now;
	tap_eq(tally_session_table_create(&table, &config), TALLY_OK, "session: table create");
	struct tally_session_params session = {};
	session.session_id = "s1";
	session.speaker_connection_id = "speaker";
	session.source_language = "en";
	tap_eq(tally_session_create(table, &session), TALLY_OK, "session: create");
	const char *languages[] = { "fr", "de", "fr" };
	for (int i = 0; i < 3; i++) {
		std::string id = "listener-" + std::to_string(i);
		struct tally_connection_params join = {};
		join.connection_id = id.c_str();
		join.session_id = "s1";
		join.target_language = languages[i];
		tap_eq(tally_session_join(table, &join), TALLY_OK, "session: join %d", i);
	}
	tap_eq(tally_session_listener_count(table, "s1", &count), TALLY_OK, "listener_count");
	tap_eq(count, 3, "session: three listeners");
	tap_eq(tally_session_get(table, "s1", &info), TALLY_OK, "session: get");
	tap_ok(strcmp(info.source_language, "en") == 0 && info.active, "session: copied fields");
	tap_eq(tally_connection_get(table, "listener-1", &connection), TALLY_OK, "connection get");
	tap_ok(strcmp(connection.target_language, "de") == 0, "session: connection fields");
	struct tally_connection_filter french = {};
	french.target_language = "fr";
	std::vector<std::string> seen;
	tap_eq(tally_session_visit_connections(
		       table, "s1", &french,
		       [](const struct tally_connection_info *c, void *arg) {
			       static_cast<std::vector<std::string> *>(arg)->push_back(c->connection_id);
			       return 0;
		       },
		       &seen, &visited),
	       TALLY_OK, "session: visit with a lambda callback");
	tap_eq(visited, 2, "session: two French listeners visited");
	tap_eq(seen.size(), 2, "session: the callback ran twice");
	tap_eq(tally_session_leave(table, "listener-0"), TALLY_OK, "session: leave");
	tap_eq(tally_session_leave(table, "listener-0"), TALLY_ENOTFOUND, "session: leave once");
	struct tally_speaker_disconnect_result result = {};
	tap_eq(tally_session_speaker_disconnect(table, "s1", nullptr, nullptr, &result), TALLY_OK,
	       "session: speaker disconnect");
	tap_eq(result.listeners, 2, "session: the remaining listeners notified");
	tap_ok(!tally_session_is_active(table, "s1"), "session: inactive after disconnect");
	tap_eq(tally_session_delete(table, "s1", &deleted), TALLY_OK, "session: delete");
	tap_ok(!tally_session_exists(table, "s1"), "session: gone");
	tap_eq(tally_session_table_destroy(table), TALLY_OK, "session: table destroy");
}

static void test_rcu_and_errors(void)
{
	tap_eq(tally_rcu_thread_register(), TALLY_OK, "rcu: register");
	tap_ok(tally_rcu_thread_is_registered(), "rcu: registered");
	tally_rcu_read_lock();
	tap_eq(tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE), TALLY_EBUSY,
	       "rcu: set_reclaim inside a read-side section is EBUSY");
	tally_rcu_read_unlock();
	tap_eq(tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE), TALLY_OK, "rcu: inline mode");
	tap_eq(tally_rcu_thread_reclaim(), TALLY_RCU_RECLAIM_INLINE, "rcu: mode reads back");
	tap_eq(tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_DEFERRED), TALLY_OK, "rcu: deferred");
	tap_ok(strcmp(tally_strerror(TALLY_EFLOOR), tally_strerror(TALLY_OK)) != 0, "strerror");
	tap_ok(tally_strerror(-1) != nullptr, "strerror: unknown code");
}

int main(void)
{
	std::printf("# C++ %ld\n", static_cast<long>(__cplusplus));
	test_counter();
	test_thread_index();
	test_gauges();
	test_sequence();
	test_ratelimit();
	test_session();
	test_rcu_and_errors();
	tap_eq(tally_rcu_barrier(), TALLY_OK, "rcu: barrier");
	tally_rcu_thread_unregister();
	return tap_done();
}
