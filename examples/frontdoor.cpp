/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/frontdoor.cpp: a C++ server's hot shared state with tally/tally.hpp. Worker
 * threads take requests from clients: a per-client rate limit (GCRA, 20 per second, bursts
 * of 5), a gauge of requests in flight capped at 64 (a request past the cap is shed), a
 * sharded counter of served requests that a flusher drains, and an order number per served
 * request from a daily sequence. Every object is an RAII owner: nothing to destroy by hand.
 *
 * Build against an installed tally:
 *   c++ -std=c++11 frontdoor.cpp $(pkg-config --cflags --libs tally) -pthread
 */
#include <cstdio>
#include <string>
#include <thread>
#include <vector>
#include <tally/tally.hpp>

#define WORKERS 4
#define REQUESTS_PER_WORKER 50

int main()
{
	struct tally_ratelimit_config rule = {};
	rule.algorithm = TALLY_RATELIMIT_GCRA;
	rule.limit = 20;
	rule.period_ns = 1000000000;
	rule.burst = 5;
	tally::ratelimiter limiter(rule);
	tally::gauge in_flight(0, 0, 64);
	tally::counter served;
	tally::sequence orders;
	struct tally_series_config daily = {};
	daily.format = "ORD-{date:%Y%m%d}-{counter:06}";
	daily.reset = TALLY_SEQ_RESET_DAILY;

	if (!limiter || !in_flight || !served || !orders) {
		std::fprintf(stderr, "init: %s\n", limiter.init_status().message());
		return 1;
	}
	tally::status st = orders.create_series("shop", "orders", daily);
	if (!st.ok()) {
		std::error_code ec = st; /* a tally::status is a std::error_code in "tally" */
		std::fprintf(stderr, "series: %s (%s)\n", ec.message().c_str(), ec.category().name());
		return 1;
	}

	std::vector<std::thread> workers;
	for (int w = 0; w < WORKERS; w++)
		workers.emplace_back([&, w] {
			std::string client = "10.0.0." + std::to_string(w % 2); /* two clients */
			for (int i = 0; i < REQUESTS_PER_WORKER; i++) {
				int64_t retry_ns = 0;
				if (limiter.allow(client, 1, &retry_ns) == TALLY_ELIMITED)
					continue; /* 429, Retry-After: retry_ns */
				if (in_flight.inc() == TALLY_ECEILING)
					continue; /* 503: shed load */
				std::string order;
				if (orders.next_text("shop", "orders", order).ok())
					served.inc();
				in_flight.dec();
			}
		});
	for (auto &worker : workers)
		worker.join();

	int64_t delta = 0;
	served.drain(delta); /* what a write-behind flusher ships in one store write */
	std::printf("served %lld of %d requests (two clients, burst 5 each)\n", (long long)delta,
		    WORKERS * REQUESTS_PER_WORKER);
	return 0;
}
