/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/tally.hpp: a header-only C++11 layer over tally's C API (docs/cxx.md).
 *
 * - Owners. tally::counter, gauge, sgauge (the C struct inside the object) and
 *   tally::sequence, ratelimiter, session_table, lease_provider, store, writebehind (a
 *   pointer to the C object)
 *   initialise in their constructor and destroy in their destructor. None is copyable. The
 *   pointer owners are movable (the C object stays where it is); the in-place ones are not,
 *   since other threads and local handles hold the struct's address. A constructor that fails
 *   leaves an empty owner: `explicit operator bool` is false, init_status() says why, and
 *   every call on it returns TALLY_EINVAL or TALLY_EDESTROYED like the C call on a NULL or
 *   uninitialised object. Nothing throws (a visit callback's own exception is carried across
 *   the C frames and rethrown after the C call returns).
 * - Errors. Every call returns tally::status: the enum tally_err code, one int, which converts
 *   implicitly to std::error_code in tally::category() ("tally"), compares with TALLY_E*
 *   codes, and maps the codes that have a POSIX meaning to std::errc conditions
 *   (TALLY_ENOMEM == std::errc::not_enough_memory). Not std::error_code itself as the return
 *   type: its default constructor calls std::system_category(), an out-of-line library
 *   function, on every success of a fast path.
 * - Fast paths. counter::add, counter::local::add and series::next call the C inline bodies
 *   (the tally/static/ headers): the same instructions as from C.
 * - Guarantees, caller duties and errors are the C calls' (each method names its C call).
 */
#ifndef TALLY_TALLY_HPP
#define TALLY_TALLY_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <string>
#include <system_error>
#include <utility>
#include <tally/tally.h>
#include <tally/store.h>
#include <tally/writebehind.h>

namespace tally {

/* ---- errors -------------------------------------------------------------------------- */

class error_category_impl : public std::error_category {
public:
	const char *name() const noexcept override { return "tally"; }
	std::string message(int err) const override { return tally_strerror(err); }
	std::error_condition default_error_condition(int err) const noexcept override
	{
		switch (err) {
		case TALLY_EINVAL: return std::errc::invalid_argument;
		case TALLY_ENOMEM: return std::errc::not_enough_memory;
		case TALLY_EOVERFLOW: return std::errc::value_too_large;
		case TALLY_EEXIST: return std::errc::file_exists;
		case TALLY_EBUSY: return std::errc::device_or_resource_busy;
		case TALLY_EIO: return std::errc::io_error;
		case TALLY_ETIMEDOUT: return std::errc::timed_out;
		case TALLY_EPERM: return std::errc::operation_not_permitted;
		default: return std::error_condition(err, *this);
		}
	}
};

/* The "tally" error category: value() is an enum tally_err, message() tally_strerror. */
inline const std::error_category &category() noexcept
{
	static const error_category_impl instance;
	return instance;
}

/* The result of every call: an enum tally_err, convertible to std::error_code. */
class status {
public:
	constexpr status() noexcept : code_(TALLY_OK) {}
	constexpr status(int code) noexcept : code_(code) {} /* NOLINT: implicit by design */
	constexpr bool ok() const noexcept { return code_ == TALLY_OK; }
	constexpr int code() const noexcept { return code_; }
	const char *message() const noexcept { return tally_strerror(code_); }
	std::error_code error_code() const noexcept
	{
		return code_ ? std::error_code(code_, category()) : std::error_code();
	}
	operator std::error_code() const noexcept { return error_code(); }
	friend constexpr bool operator==(status a, status b) noexcept { return a.code_ == b.code_; }
	friend constexpr bool operator!=(status a, status b) noexcept { return a.code_ != b.code_; }

private:
	int code_;
};

} // namespace tally

/* std::error_code ec = TALLY_EFLOOR; ec == TALLY_EFLOOR (found by ADL on enum tally_err). */
namespace std {
template <> struct is_error_code_enum<tally_err> : true_type {};
} // namespace std
inline std::error_code make_error_code(tally_err err) noexcept
{
	return std::error_code(static_cast<int>(err), tally::category());
}

namespace tally {

/* Base of the in-place owners: not copyable, not movable. */
class pinned {
public:
	pinned() = default;
	pinned(const pinned &) = delete;
	pinned &operator=(const pinned &) = delete;
};

/* Base of the pointer owners: not copyable, movable (the moved-from owner is empty). */
template <typename T, int (*destroy)(T *)> class owner {
public:
	owner() = default;
	owner(const owner &) = delete;
	owner &operator=(const owner &) = delete;
	owner(owner &&other) noexcept
	    : ptr_(other.ptr_), init_(other.init_)
	{
		other.ptr_ = nullptr;
	}
	owner &operator=(owner &&other) noexcept
	{
		if (this != &other) {
			reset();
			std::swap(ptr_, other.ptr_);
			init_ = other.init_;
		}
		return *this;
	}
	~owner() { reset(); }
	explicit operator bool() const noexcept { return ptr_ != nullptr; }
	status init_status() const noexcept { return init_; }
	T *get() const noexcept { return ptr_; }
	/* Destroys now, returning the C destroy's status (the destructor ignores it). */
	status reset() noexcept
	{
		T *ptr = ptr_;
		ptr_ = nullptr;
		return ptr ? status(destroy(ptr)) : status();
	}

protected:
	T *ptr_ = nullptr;
	status init_;
};

/* ---- counter (tally/counter.h) ------------------------------------------------------- */

class counter : pinned {
public:
	/* tally_counter_init: `slots` single-writer slots, 0 = TALLY_COUNTER_SLOTS_DEFAULT. */
	explicit counter(unsigned slots = 0) noexcept : init_(tally_counter_init(&c_, slots)) {}
	~counter() { tally_counter_destroy(&c_); }
	explicit operator bool() const noexcept { return init_.ok(); }
	status init_status() const noexcept { return init_; }

	status add(int64_t delta) noexcept { return tally_counter_add(&c_, delta); }
	status sub(int64_t delta) noexcept { return tally_counter_sub(&c_, delta); }
	status inc() noexcept { return tally_counter_inc(&c_); }
	status read(int64_t &total) const noexcept { return tally_counter_read(&c_, &total); }
	status drain(int64_t &delta) noexcept { return tally_counter_drain(&c_, &delta); }
	status undrain(int64_t delta) noexcept { return tally_counter_undrain(&c_, delta); }

	/* tally_counter_local: the calling thread's slot, for hot loops in that thread only. */
	class local {
	public:
		explicit local(counter &c) noexcept : init_(tally_counter_local_init(&c.c_, &l_)) {}
		local(const local &) = delete;
		local &operator=(const local &) = delete;
		explicit operator bool() const noexcept { return init_.ok(); }
		status init_status() const noexcept { return init_; }
		status add(int64_t delta) noexcept
		{
			return init_.ok() ? status(tally_counter_local_add(&l_, delta)) : init_;
		}
		status inc() noexcept { return add(1); }

	private:
		struct tally_counter_local l_ {};
		status init_;
	};

	struct tally_counter *get() noexcept { return &c_; }

private:
	struct tally_counter c_ {};
	status init_;
};

/* ---- gauges (tally/gauge.h) ---------------------------------------------------------- */

class gauge : pinned {
public:
	/* tally_gauge_init: value `initial` in [floor, ceiling]. */
	explicit gauge(int64_t initial = 0, int64_t floor = 0,
		       int64_t ceiling = TALLY_GAUGE_NO_CEILING) noexcept
	    : init_(tally_gauge_init(&g_, initial, floor, ceiling))
	{
	}
	~gauge() { tally_gauge_destroy(&g_); }
	explicit operator bool() const noexcept { return init_.ok(); }
	status init_status() const noexcept { return init_; }

	status add(int64_t n, int64_t *value = nullptr) noexcept { return tally_gauge_add(&g_, n, value); }
	status sub(int64_t n, int64_t *value = nullptr) noexcept { return tally_gauge_sub(&g_, n, value); }
	status inc(int64_t *value = nullptr) noexcept { return tally_gauge_inc(&g_, value); }
	status dec(int64_t *value = nullptr) noexcept { return tally_gauge_dec(&g_, value); }
	status read(int64_t &value) const noexcept { return tally_gauge_read(&g_, &value); }
	struct tally_gauge *get() noexcept { return &g_; }

private:
	struct tally_gauge g_ {};
	status init_;
};

class sgauge : pinned {
public:
	/* tally_sgauge_init: as gauge, over `shards` shards (0 = one per CPU). */
	explicit sgauge(int64_t initial = 0, int64_t floor = 0,
			int64_t ceiling = TALLY_GAUGE_NO_CEILING, unsigned shards = 0) noexcept
	    : init_(tally_sgauge_init(&g_, initial, floor, ceiling, shards))
	{
	}
	~sgauge() { tally_sgauge_destroy(&g_); }
	explicit operator bool() const noexcept { return init_.ok(); }
	status init_status() const noexcept { return init_; }

	status add(int64_t n) noexcept { return tally_sgauge_add(&g_, n); }
	status sub(int64_t n) noexcept { return tally_sgauge_sub(&g_, n); }
	status inc() noexcept { return tally_sgauge_inc(&g_); }
	status dec() noexcept { return tally_sgauge_dec(&g_); }
	status read(int64_t &value) const noexcept { return tally_sgauge_read(&g_, &value); }
	struct tally_sgauge *get() noexcept { return &g_; }

private:
	struct tally_sgauge g_ {};
	status init_;
};

/* ---- RCU (tally/rcu.h) --------------------------------------------------------------- */

/* Registers the calling thread for its scope (tally_rcu_thread_register / unregister). */
class rcu_thread : pinned {
public:
	rcu_thread() noexcept : init_(tally_rcu_thread_register()) {}
	~rcu_thread() { tally_rcu_thread_unregister(); }
	status init_status() const noexcept { return init_; }

private:
	status init_;
};

/* A read-side section for its scope (tally_rcu_read_lock / unlock), like std::lock_guard. */
class rcu_read_guard : pinned {
public:
	rcu_read_guard() noexcept { tally_rcu_read_lock(); }
	~rcu_read_guard() { tally_rcu_read_unlock(); }
};

/* ---- leases (tally/lease.h) ---------------------------------------------------------- */

class lease_provider : public owner<struct tally_lease_provider, tally_lease_provider_destroy> {
public:
	lease_provider() = default;
	/* tally_lease_memory_create. */
	static lease_provider memory() noexcept
	{
		lease_provider p;
		p.init_ = tally_lease_memory_create(&p.ptr_);
		return p;
	}
	/* tally_lease_file_open. */
	static lease_provider file(const std::string &path) noexcept
	{
		lease_provider p;
		p.init_ = tally_lease_file_open(&p.ptr_, path.c_str());
		return p;
	}
	status read(const std::string &key, struct tally_lease_record &out) const noexcept
	{
		return tally_lease_read(ptr_, key.data(), key.size(), &out);
	}
};

/* ---- sequences (tally/sequence.h) ---------------------------------------------------- */

/* An open reservation (tally_series_reserve); finish() or the destructor ends it (the
 * destructor releases what was neither committed nor released). Movable, not copyable. */
class reservation {
public:
	reservation() = default;
	explicit reservation(struct tally_seq_reservation *r) noexcept : r_(r) {}
	reservation(const reservation &) = delete;
	reservation &operator=(const reservation &) = delete;
	reservation(reservation &&other) noexcept : r_(other.r_) { other.r_ = nullptr; }
	reservation &operator=(reservation &&other) noexcept
	{
		if (this != &other) {
			if (r_)
				finish(false);
			std::swap(r_, other.r_);
		}
		return *this;
	}
	~reservation()
	{
		if (r_)
			finish(false);
	}
	explicit operator bool() const noexcept { return r_ != nullptr; }

	status numbers(const struct tally_seq_number *&numbers, uint32_t &count) const noexcept
	{
		return tally_seq_reservation_numbers(r_, &numbers, &count);
	}
	status commit(const struct tally_seq_number &n) noexcept
	{
		return tally_seq_reservation_commit(r_, &n);
	}
	status release(const struct tally_seq_number &n) noexcept
	{
		return tally_seq_reservation_release(r_, &n);
	}
	status finish(bool commit_rest) noexcept
	{
		struct tally_seq_reservation *r = r_;
		r_ = nullptr;
		return tally_seq_reservation_finish(r, commit_rest);
	}

private:
	struct tally_seq_reservation *r_ = nullptr;
};

/* A series handle (tally_sequence_series_find): not an owner; the lifetime rule of
 * tally/sequence.h applies (no use during or after the series' remove). Copyable. */
class series {
public:
	series() = default;
	explicit series(struct tally_series *s) noexcept : s_(s) {}
	explicit operator bool() const noexcept { return s_ != nullptr; }

	/* tally_series_next, inline. */
	status next(struct tally_seq_number &out) noexcept { return tally_series_next(s_, &out); }
	status format(const struct tally_seq_number &n, char *buf, size_t size) const noexcept
	{
		return tally_series_format(s_, &n, buf, size);
	}
	/* tally_series_reserve: on success `out` holds the reservation. */
	status reserve(uint32_t n, reservation &out) noexcept
	{
		struct tally_seq_reservation *r = nullptr;
		status st = tally_series_reserve(s_, n, &r);
		if (st.ok())
			out = reservation(r);
		return st;
	}
	status checkpoint() noexcept { return tally_series_checkpoint(s_); }
	status get_stats(struct tally_series_stats &out) const noexcept
	{
		return tally_series_get_stats(s_, &out);
	}
	struct tally_series *get() const noexcept { return s_; }

private:
	struct tally_series *s_ = nullptr;
};

class sequence : public owner<struct tally_sequence, tally_sequence_destroy> {
public:
	/* tally_sequence_create; options may be NULL. */
	explicit sequence(const struct tally_sequence_options *options = nullptr) noexcept
	{
		init_ = tally_sequence_create(&ptr_, options);
	}
	status create_series(const std::string &tenant, const std::string &name,
			     const struct tally_series_config &config,
			     struct tally_seq_recovery *recovery = nullptr) noexcept
	{
		return tally_sequence_series_create(ptr_, tenant.c_str(), name.c_str(), &config,
						    recovery);
	}
	status remove_series(const std::string &tenant, const std::string &name,
			     struct tally_series_stats *final_stats = nullptr) noexcept
	{
		return tally_sequence_series_remove(ptr_, tenant.c_str(), name.c_str(), final_stats);
	}
	status find(const std::string &tenant, const std::string &name, series &out) noexcept
	{
		struct tally_series *s = nullptr;
		status st = tally_sequence_series_find(ptr_, tenant.c_str(), name.c_str(), &s);
		if (st.ok())
			out = series(s);
		return st;
	}
	status next(const std::string &tenant, const std::string &name,
		    struct tally_seq_number &out) noexcept
	{
		return tally_sequence_next(ptr_, tenant.c_str(), name.c_str(), &out);
	}
	/* tally_sequence_next_text into `text`; out (may be NULL) gets the number. */
	status next_text(const std::string &tenant, const std::string &name, std::string &text,
			 struct tally_seq_number *out = nullptr)
	{
		/* The longest rendering: 32 pieces, each at most an id, plus the literals. */
		char buf[32 * TALLY_SEQ_ID_MAX + TALLY_SEQ_FORMAT_MAX + 1];
		status st = tally_sequence_next_text(ptr_, tenant.c_str(), name.c_str(), buf,
						     sizeof buf, out);
		if (st.ok())
			text.assign(buf);
		return st;
	}
};

/* ---- rate limiter (tally/ratelimit.h) ------------------------------------------------ */

class ratelimiter : public owner<struct tally_ratelimit, tally_ratelimit_destroy> {
public:
	/* tally_ratelimit_create. */
	explicit ratelimiter(const struct tally_ratelimit_config &config) noexcept
	{
		init_ = tally_ratelimit_create(&ptr_, &config);
	}
	status allow(const char *key, size_t key_len, int64_t cost = 1,
		     int64_t *retry_after_ns = nullptr) noexcept
	{
		return tally_ratelimit_allow(ptr_, key, key_len, cost, retry_after_ns);
	}
	status allow(const std::string &key, int64_t cost = 1,
		     int64_t *retry_after_ns = nullptr) noexcept
	{
		return allow(key.data(), key.size(), cost, retry_after_ns);
	}
	status allow(const std::string &key, int64_t cost,
		     struct tally_ratelimit_result &result) noexcept
	{
		return tally_ratelimit_allow_result(ptr_, key.data(), key.size(), cost, &result);
	}
	status peek(const std::string &key, struct tally_ratelimit_result &result) noexcept
	{
		return tally_ratelimit_peek(ptr_, key.data(), key.size(), &result);
	}
	status reset_key(const std::string &key) noexcept
	{
		return tally_ratelimit_reset(ptr_, key.data(), key.size());
	}
	status sweep(int64_t *removed = nullptr) noexcept
	{
		return tally_ratelimit_sweep(ptr_, removed);
	}
	status key_count(int64_t &count) const noexcept
	{
		return tally_ratelimit_key_count(ptr_, &count);
	}
};

/* ---- session tables (tally/session.h) ------------------------------------------------ */

namespace detail {
/* Calls a C++ callable from a tally_connection_fn; an exception stops the walk and is
 * rethrown by the caller once the C call has returned. */
template <typename F> struct connection_visit {
	F *fn;
	std::exception_ptr error;

	static int call(const struct tally_connection_info *info, void *arg) noexcept
	{
		connection_visit *self = static_cast<connection_visit *>(arg);
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
		try {
			return (*self->fn)(*info) ? 1 : 0;
		} catch (...) {
			self->error = std::current_exception();
			return 1;
		}
#else
		return (*self->fn)(*info) ? 1 : 0;
#endif
	}
	void rethrow() const
	{
		if (error)
			std::rethrow_exception(error);
	}
};
} // namespace detail

class session_table : public owner<struct tally_session_table, tally_session_table_destroy> {
public:
	/* tally_session_table_create; config may be NULL. */
	explicit session_table(const struct tally_session_config *config = nullptr) noexcept
	{
		init_ = tally_session_table_create(&ptr_, config);
	}
	status create_session(const struct tally_session_params &params) noexcept
	{
		return tally_session_create(ptr_, &params);
	}
	status get_session(const std::string &id, struct tally_session_info &info) noexcept
	{
		return tally_session_get(ptr_, id.c_str(), &info);
	}
	bool exists(const std::string &id) noexcept { return tally_session_exists(ptr_, id.c_str()); }
	bool is_active(const std::string &id) noexcept
	{
		return tally_session_is_active(ptr_, id.c_str());
	}
	status listener_count(const std::string &id, int64_t &count) noexcept
	{
		return tally_session_listener_count(ptr_, id.c_str(), &count);
	}
	status join(const struct tally_connection_params &params) noexcept
	{
		return tally_session_join(ptr_, &params);
	}
	status leave(const std::string &connection_id) noexcept
	{
		return tally_session_leave(ptr_, connection_id.c_str());
	}
	status create_connection(const struct tally_connection_params &params) noexcept
	{
		return tally_connection_create(ptr_, &params);
	}
	status get_connection(const std::string &id, struct tally_connection_info &info) noexcept
	{
		return tally_connection_get(ptr_, id.c_str(), &info);
	}
	status mark_inactive(const std::string &id) noexcept
	{
		return tally_session_mark_inactive(ptr_, id.c_str());
	}
	status delete_session(const std::string &id, int64_t *connections_deleted = nullptr) noexcept
	{
		return tally_session_delete(ptr_, id.c_str(), connections_deleted);
	}
	status sweep(struct tally_session_sweep_result *result = nullptr) noexcept
	{
		return tally_session_table_sweep(ptr_, result);
	}
	/* tally_session_visit_connections with any callable bool(const tally_connection_info &)
	 * (true stops the walk), run inside an RCU read-side section (see tally/session.h). */
	template <typename F>
	status visit_connections(const std::string &session_id, F &&fn,
				 const struct tally_connection_filter *filter = nullptr,
				 size_t *visited = nullptr)
	{
		typedef typename std::remove_reference<F>::type callable;
		detail::connection_visit<callable> visit{ &fn, nullptr };
		status st = tally_session_visit_connections(ptr_, session_id.c_str(), filter,
							    &detail::connection_visit<callable>::call,
							    &visit, visited);
		visit.rethrow();
		return st;
	}
	/* tally_session_speaker_disconnect; notify as for visit_connections, but returning
	 * true counts a failed notification (the others are still notified). */
	template <typename F>
	status speaker_disconnect(const std::string &session_id, F &&notify,
				  struct tally_speaker_disconnect_result *result = nullptr)
	{
		typedef typename std::remove_reference<F>::type callable;
		detail::connection_visit<callable> visit{ &notify, nullptr };
		status st = tally_session_speaker_disconnect(
			ptr_, session_id.c_str(), &detail::connection_visit<callable>::call, &visit,
			result);
		visit.rethrow();
		return st;
	}
	status speaker_disconnect(const std::string &session_id,
				  struct tally_speaker_disconnect_result *result = nullptr) noexcept
	{
		return tally_session_speaker_disconnect(ptr_, session_id.c_str(), nullptr, nullptr,
							result);
	}
	status counts(int64_t &sessions, int64_t &connections) noexcept
	{
		return tally_session_table_counts(ptr_, &sessions, &connections);
	}
};

/* ---- store and write-behind (tally/store.h, tally/writebehind.h) --------------------- */

/* tally_store_open / tally_store_close. */
class store : public owner<struct tally_store, tally_store_close> {
public:
	explicit store(const std::string &url,
		       const struct tally_store_options *options = nullptr) noexcept
	{
		init_ = tally_store_open(&ptr_, url.c_str(), options);
	}
	/* tally_store_last_error: this handle's last failure, or (empty owner) the thread's last
	 * failed open; never a secret. */
	const char *last_error() const noexcept { return tally_store_last_error(ptr_); }
	status read_counter(const std::string &key, int64_t &total) noexcept
	{
		return tally_store_read_counter(ptr_, key.data(), key.size(), &total);
	}
};

/* A flusher over a store it borrows (tally_writebehind_create / destroy): declare the store
 * first, so the flusher is destroyed (its final flush included) before the store closes. The
 * objects it ships are borrowed too: declare them before it as well. */
class writebehind : public owner<struct tally_writebehind, tally_writebehind_destroy> {
public:
	explicit writebehind(store &target,
			     const struct tally_writebehind_config *config = nullptr) noexcept
	{
		init_ = tally_writebehind_create(&ptr_, target.get(), config);
	}
	status add_counter(const std::string &key, counter &c) noexcept
	{
		return tally_writebehind_add_counter(ptr_, key.data(), key.size(), c.get());
	}
	status add_gauge(const std::string &key, gauge &g) noexcept
	{
		return tally_writebehind_add_gauge(ptr_, key.data(), key.size(), g.get());
	}
	status add_sgauge(const std::string &key, sgauge &g) noexcept
	{
		return tally_writebehind_add_sgauge(ptr_, key.data(), key.size(), g.get());
	}
	status remove_counter(const std::string &key) noexcept
	{
		return tally_writebehind_remove_counter(ptr_, key.data(), key.size());
	}
	status remove_gauge(const std::string &key) noexcept
	{
		return tally_writebehind_remove_gauge(ptr_, key.data(), key.size());
	}
	status add_sessions(session_table &table) noexcept
	{
		return tally_writebehind_add_sessions(ptr_, table.get());
	}
	status remove_sessions(session_table &table) noexcept
	{
		return tally_writebehind_remove_sessions(ptr_, table.get());
	}
	status flush(int64_t timeout_ms = TALLY_WRITEBEHIND_FOREVER) noexcept
	{
		return tally_writebehind_flush(ptr_, timeout_ms);
	}
	status get_stats(struct tally_writebehind_stats &stats) noexcept
	{
		return tally_writebehind_get_stats(ptr_, &stats);
	}
	status unflushed_counter(const std::string &key, int64_t &amount) noexcept
	{
		return tally_writebehind_unflushed_counter(ptr_, key.data(), key.size(), &amount);
	}
};

} // namespace tally

#endif /* TALLY_TALLY_HPP */
