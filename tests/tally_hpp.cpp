/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/tally_hpp.cpp: the C++ layer (tally/tally.hpp): RAII owners destroy what they made
 * (ASan's leak check fails the run otherwise), moves hand the C object over, a failed
 * constructor leaves an empty owner whose calls fail cleanly, tally::status converts to
 * std::error_code in the "tally" category with std::errc equivalences, the inline fast paths
 * count exactly from several threads, and visit callbacks take lambdas, captures and all,
 * with an exception carried across the C frames. Built as C++11 and as C++17 (mk/cxx.am).
 */
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>
#include <tally/tally.hpp>
#include "tap.h"

#define THREADS 4

static_assert(!std::is_copy_constructible<tally::counter>::value, "counter: not copyable");
static_assert(!std::is_move_constructible<tally::counter>::value, "counter: pinned");
static_assert(!std::is_copy_constructible<tally::sequence>::value, "sequence: not copyable");
static_assert(std::is_nothrow_move_constructible<tally::sequence>::value, "sequence: movable");
static_assert(std::is_nothrow_move_assignable<tally::ratelimiter>::value, "ratelimiter: movable");
static_assert(std::is_nothrow_move_constructible<tally::reservation>::value, "reservation");
static_assert(sizeof(tally::status) == sizeof(int), "status is one int");

static void test_status(void)
{
	tally::status ok, floor = TALLY_EFLOOR;
	std::error_code ec = floor;
	std::error_code nomem = TALLY_ENOMEM;

	tap_ok(ok.ok() && !std::error_code(ok), "status: default is TALLY_OK, no error_code");
	tap_ok(!floor.ok() && floor == TALLY_EFLOOR, "status: compares with a code");
	tap_ok(std::strcmp(ec.category().name(), "tally") == 0, "error_code: category \"tally\"");
	tap_eq(ec.value(), TALLY_EFLOOR, "error_code: value is the tally code");
	tap_ok(ec.message() == tally_strerror(TALLY_EFLOOR), "error_code: message is tally_strerror");
	tap_ok(ec == TALLY_EFLOOR, "error_code: compares with enum tally_err");
	tap_ok(nomem == std::errc::not_enough_memory, "error_code: ENOMEM is errc::not_enough_memory");
	tap_ok(std::error_code(TALLY_EINVAL) == std::errc::invalid_argument, "EINVAL is invalid_argument");
	tap_ok(ec != std::errc::invalid_argument, "error_code: EFLOOR has no errc equivalent");
}

static void test_counter(void)
{
	tally::counter counter(2);
	int64_t total = -1, delta = -1;
	int failures = 0;
	std::vector<std::thread> threads;

	tap_ok(bool(counter), "counter: constructed");
	for (int t = 0; t < THREADS; t++)
		threads.emplace_back([&counter, &failures] {
			tally::counter::local local(counter);
			int mine = !local;

			for (int i = 0; i < 10000; i++)
				mine += !counter.inc().ok() + !local.add(3).ok();
			__atomic_fetch_add(&failures, mine, __ATOMIC_RELAXED);
		});
	for (auto &thread : threads)
		thread.join();
	tap_eq(failures, 0, "counter: every add succeeded");
	tap_ok(counter.read(total).ok(), "counter: read");
	tap_eq(total, THREADS * 10000 * 4, "counter: exact total from 4 threads on 2 slots");
	tap_ok(counter.drain(delta).ok() && delta == total, "counter: drain");
	tap_ok(counter.sub(INT64_MIN) == TALLY_EOVERFLOW, "counter: sub INT64_MIN is EOVERFLOW");

	tally::counter bad(TALLY_COUNTER_SLOTS_MAX + 1);
	tap_ok(!bad && bad.init_status() == TALLY_EINVAL, "counter: bad slots leave it empty");
	tap_ok(bad.add(1) == TALLY_EDESTROYED, "counter: a call on the empty owner fails");
	tally::counter::local orphan(bad);
	tap_ok(!orphan && orphan.add(1) == TALLY_EDESTROYED, "counter: local of an empty owner");
}

static void test_gauges(void)
{
	tally::gauge gauge(0, 0, 2);
	tally::sgauge sgauge(5, 0, 10, 2);
	int64_t value = -1;

	tap_ok(gauge.inc().ok() && gauge.add(1, &value).ok() && value == 2, "gauge: inc, add");
	tap_ok(gauge.inc() == TALLY_ECEILING, "gauge: ceiling");
	tap_ok(gauge.sub(2).ok() && gauge.dec() == TALLY_EFLOOR, "gauge: floor");
	tap_ok(gauge.read(value).ok() && value == 0, "gauge: read 0");
	tap_ok(sgauge.sub(5).ok() && sgauge.dec() == TALLY_EFLOOR, "sgauge: floor");
	tap_ok(sgauge.add(10).ok() && sgauge.inc() == TALLY_ECEILING, "sgauge: ceiling");
	tap_ok(sgauge.read(value).ok() && value == 10, "sgauge: read 10");
	tally::gauge bad(5, 0, 2);
	tap_ok(!bad && std::error_code(bad.init_status()) == std::errc::invalid_argument,
	       "gauge: initial above the ceiling leaves it empty, EINVAL");
}

static int64_t fixed_seconds(void *arg)
{
	return *static_cast<int64_t *>(arg);
}

static void test_sequence(void)
{
	int64_t now = INT64_C(1795392000); /* 2026-11-23T00:00:00Z */
	struct tally_sequence_options options = {};
	options.now_s = fixed_seconds;
	options.clock_arg = &now;
	tally::lease_provider lease = tally::lease_provider::memory();
	tally::sequence moved_from(&options);

	tap_ok(bool(lease) && bool(moved_from), "sequence: provider and registry constructed");
	tally::sequence seq(std::move(moved_from));
	tap_ok(!moved_from && bool(seq), "sequence: a move hands the registry over");
	tap_ok(moved_from.create_series("t", "s", {}) == TALLY_EINVAL,
	       "sequence: a moved-from owner's calls fail with EINVAL");

	struct tally_series_config config = {};
	config.format = "INV-{date:%Y%m%d}-{counter:04}";
	config.reset = TALLY_SEQ_RESET_DAILY;
	config.lease = lease.get();
	config.lease_size = 5;
	tap_ok(seq.create_series("acme", "invoice", config).ok(), "sequence: create_series");
	config.format = "{counter}";
	config.reset = TALLY_SEQ_RESET_NEVER;
	config.lease = nullptr;
	tap_ok(seq.create_series("acme", "plain", config).ok(), "sequence: plain series");
	tap_ok(seq.create_series("acme", "plain", config) == TALLY_EEXIST, "sequence: EEXIST");

	std::string text;
	tap_ok(seq.next_text("acme", "invoice", text).ok(), "sequence: next_text");
	tap_ok(text == "INV-20261123-0001", "sequence: rendered %s", text.c_str());

	tally::series plain;
	tap_ok(seq.find("acme", "plain", plain).ok() && bool(plain), "sequence: find");
	std::vector<std::vector<uint64_t>> issued(THREADS);
	std::vector<std::thread> threads;
	for (int t = 0; t < THREADS; t++)
		threads.emplace_back([&issued, plain, t]() mutable {
			struct tally_seq_number n;
			for (int i = 0; i < 1000; i++)
				if (plain.next(n).ok())
					issued[t].push_back(n.counter);
		});
	for (auto &thread : threads)
		thread.join();
	std::set<uint64_t> all;
	for (auto &numbers : issued)
		all.insert(numbers.begin(), numbers.end());
	tap_eq(all.size(), THREADS * 1000, "sequence: inline next, every number distinct");
	tap_ok(*all.begin() == 1 && *all.rbegin() == THREADS * 1000, "sequence: 1..N, no gap");

	tally::series invoice;
	seq.find("acme", "invoice", invoice);
	{
		tally::reservation reservation;
		const struct tally_seq_number *numbers = nullptr;
		uint32_t count = 0;
		tap_ok(invoice.reserve(2, reservation).ok() && bool(reservation), "reserve 2");
		tap_ok(reservation.numbers(numbers, count).ok() && count == 2, "reservation: 2");
		tap_ok(reservation.commit(numbers[0]).ok(), "reservation: commit the first");
	} /* the destructor releases the second */
	struct tally_seq_number n;
	tap_ok(invoice.next(n).ok() && n.counter == 3, "sequence: the destructor released #3");
	struct tally_series_stats stats;
	tap_ok(invoice.get_stats(stats).ok() && stats.lease_calls >= 1, "sequence: stats");
	tap_ok(seq.remove_series("acme", "invoice").ok(), "sequence: remove_series");
	struct tally_lease_record record;
	tap_ok(lease.read(std::string("acme\0invoice", 12), record).ok() &&
		       (record.flags & TALLY_LEASE_CLEAN),
	       "lease: the removal closed the key cleanly");
	tap_ok(seq.reset().ok() && !seq, "sequence: reset destroys now");
}

static int64_t fixed_ns(void *arg)
{
	return *static_cast<int64_t *>(arg);
}

static void test_ratelimit(void)
{
	int64_t now = 0, retry = -1, keys = -1, removed = -1;
	struct tally_ratelimit_config config = {};
	config.algorithm = TALLY_RATELIMIT_GCRA;
	config.limit = 10;
	config.period_ns = 1000;
	config.burst = 2;
	config.now_ns = fixed_ns;
	config.clock_arg = &now;
	tally::ratelimiter limiter(config);
	struct tally_ratelimit_result result;

	tap_ok(bool(limiter), "ratelimit: constructed");
	tap_ok(limiter.allow("k").ok() && limiter.allow("k").ok(), "ratelimit: the burst of 2");
	tap_ok(limiter.allow("k", 1, &retry) == TALLY_ELIMITED && retry == 100,
	       "ratelimit: the third waits one emission interval (%lld ns)", (long long)retry);
	tap_ok(limiter.peek("k", result).ok() && result.remaining == 0, "ratelimit: peek");
	tap_ok(limiter.reset_key("k").ok() && limiter.allow("k", 1, result).ok() &&
		       result.remaining == 1,
	       "ratelimit: reset_key gives the quota back");
	tap_ok(limiter.key_count(keys).ok() && keys == 1, "ratelimit: one key");
	now = 1000000;
	tap_ok(limiter.sweep(&removed).ok() && removed == 1, "ratelimit: sweep");
	tally::ratelimiter other(std::move(limiter));
	tap_ok(!limiter && bool(other) && other.allow("k").ok(), "ratelimit: moved");
	config.period_ns = 0;
	tally::ratelimiter bad(config);
	tap_ok(!bad && bad.init_status() == TALLY_EINVAL, "ratelimit: bad config, EINVAL");
}

static void test_session(void)
{
	tally::rcu_thread registration;
	tally::session_table table;

	tap_ok(registration.init_status().ok() && tally_rcu_thread_is_registered(),
	       "rcu_thread: registered for its scope");
	tap_ok(bool(table), "session: table constructed");
	struct tally_session_params params = {};
	params.session_id = "s";
	params.speaker_connection_id = "spk";
	params.source_language = "en";
	tap_ok(table.create_session(params).ok(), "session: create_session");
	for (int i = 0; i < 4; i++) {
		std::string id = "l" + std::to_string(i);
		struct tally_connection_params join = {};
		join.connection_id = id.c_str();
		join.session_id = "s";
		join.target_language = i % 2 ? "fr" : "de";
		tap_ok(table.join(join).ok(), "session: join %s", id.c_str());
	}
	int64_t count = -1;
	tap_ok(table.listener_count("s", count).ok() && count == 4, "session: 4 listeners");

	std::set<std::string> french;
	struct tally_connection_filter filter = {};
	filter.target_language = "fr";
	size_t visited = 0;
	tap_ok(table.visit_connections(
			    "s",
			    [&french](const struct tally_connection_info &c) {
				    french.insert(c.connection_id);
				    return false;
			    },
			    &filter, &visited)
		       .ok(),
	       "session: visit with a capturing lambda");
	tap_ok(visited == 2 && french.count("l1") && french.count("l3"), "session: the French two");

	int calls = 0;
	bool caught = false;
	try {
		table.visit_connections("s", [&calls](const struct tally_connection_info &) -> bool {
			calls++;
			throw std::runtime_error("stop");
		});
	} catch (const std::runtime_error &) {
		caught = true;
	}
	tap_ok(caught && calls == 1, "session: an exception stops the walk and reaches the caller");
	{
		tally::rcu_read_guard guard;
		tap_ok(table.exists("s") && table.is_active("s"), "session: lookups inside a guard");
	}
	tap_ok(table.leave("l0").ok() && table.leave("l0") == TALLY_ENOTFOUND, "session: leave once");
	int notified = 0;
	struct tally_speaker_disconnect_result result = {};
	tap_ok(table.speaker_disconnect(
			    "s",
			    [&notified](const struct tally_connection_info &) {
				    notified++;
				    return false;
			    },
			    &result)
		       .ok(),
	       "session: speaker_disconnect with a lambda");
	tap_ok(notified == 3 && result.notified == 3, "session: 3 listeners notified");
	tap_ok(!table.is_active("s"), "session: inactive");
	int64_t sessions = -1, connections = -1;
	tap_ok(table.counts(sessions, connections).ok() && sessions == 1 && connections == 0,
	       "session: counts");
}

static void test_store_writebehind(void)
{
	char dir[] = "/tmp/tally-hpp-XXXXXX";
	int64_t total = -1;

	if (!tap_ok(mkdtemp(dir) != nullptr, "store: a scratch directory"))
		return;
	std::string path = std::string(dir) + "/counters.db";
	struct tally_store_options options = {};
	options.create_schema = true;
	{
		tally::store db("sqlite://" + path, &options);
		tally::counter hits;
		if (!tap_ok(bool(db), "store: a real SQLite file opened"))
			std::printf("# %s\n", db.last_error());
		tally::writebehind flusher(db);
		tap_ok(bool(flusher), "writebehind: started over the store");
		tap_ok(flusher.add_counter("hits", hits).ok(), "writebehind: add_counter");
		tap_ok(flusher.add_counter("hits", hits) == TALLY_EEXIST, "writebehind: EEXIST");
		hits.add(5);
		hits.inc();
		tap_ok(flusher.flush(10000).ok(), "writebehind: flush");
		tally::status read = db.read_counter("hits", total);
		tap_ok(read.ok() && total == 6, "store: the flushed total is 6 (got %lld)",
		       (long long)total);
		struct tally_writebehind_stats stats;
		tap_ok(flusher.get_stats(stats).ok() && stats.flushes >= 1, "writebehind: stats");
	} /* flusher, counter, store: destroyed in that order */
	tally::store bad("nosuch:///x");
	tap_ok(!bad && bad.init_status() == TALLY_EINVAL, "store: an unknown scheme, EINVAL");
	unlink(path.c_str());
	std::string journal = path + "-journal", wal = path + "-wal", shm = path + "-shm";
	unlink(journal.c_str());
	unlink(wal.c_str());
	unlink(shm.c_str());
	tap_ok(rmdir(dir) == 0, "store: the scratch directory is removed");
}

int main(void)
{
	test_status();
	test_counter();
	test_gauges();
	test_sequence();
	test_ratelimit();
	test_session();
	test_store_writebehind();
	tap_ok(tally_rcu_barrier() == TALLY_OK, "rcu: barrier");
	return tap_done();
}
