/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/static/compat.h: the spellings that let tally's inline headers compile as C11 and as
 * C++11 to C++20 with one layout. Included by the headers that need it; not an API.
 *
 * Atomics. C declares an atomic field `_Atomic T`. C++ has no `_Atomic` before C++23, and
 * std::atomic<T> is not guaranteed to have T's size, alignment or representation (C++11
 * leaves it to the implementation), so it cannot share a struct with C. In C++ an atomic field
 * is therefore a plain T aligned to its size (what `_Atomic T` is on every ABI GCC and Clang
 * support for the 4- and 8-byte integers used here; tests/abi_gen.c checks the layouts at
 * compile time), and the inline bodies touch it only through the GCC/Clang `__atomic`
 * builtins, which are atomic accesses to a plain object (what C++20's std::atomic_ref does).
 * TALLY__ATOMIC_LOAD/STORE/FETCH_ADD map to atomic_*_explicit in C and to the builtins in
 * C++, with the same memory orders, so both compile to the same instructions.
 *
 * Thread-local. C11 has `_Thread_local`. C++ has `thread_local`, but for an extern variable
 * C++ allows a dynamic initialiser in another translation unit, so every access goes through
 * a TLS wrapper call; GNU `__thread` is C's semantics (constant initialisation only), one
 * %fs-relative load with the initial-exec model, in both languages.
 */
#ifndef TALLY_STATIC_COMPAT_H
#define TALLY_STATIC_COMPAT_H

#include <stdint.h>

#define TALLY_LIKELY(x) __builtin_expect(!!(x), 1)
#define TALLY_UNLIKELY(x) __builtin_expect(!!(x), 0)

#ifdef __cplusplus
typedef int64_t tally__atomic_int64_t __attribute__((aligned(sizeof(int64_t))));
typedef uint64_t tally__atomic_uint64_t __attribute__((aligned(sizeof(uint64_t))));
typedef uint32_t tally__atomic_uint32_t __attribute__((aligned(sizeof(uint32_t))));
/* TALLY__ATOMIC(int64_t), TALLY__ATOMIC(uint64_t), TALLY__ATOMIC(uint32_t). */
#define TALLY__ATOMIC(type) tally__atomic_##type
#define TALLY__THREAD_LOCAL __thread
#define TALLY__RELAXED __ATOMIC_RELAXED
#define TALLY__ATOMIC_LOAD(ptr, order) __atomic_load_n((ptr), (order))
#define TALLY__ATOMIC_STORE(ptr, value, order) __atomic_store_n((ptr), (value), (order))
#define TALLY__ATOMIC_FETCH_ADD(ptr, value, order) __atomic_fetch_add((ptr), (value), (order))
#else
#include <stdatomic.h>
#define TALLY__ATOMIC(type) _Atomic type
#define TALLY__THREAD_LOCAL _Thread_local
#define TALLY__RELAXED memory_order_relaxed
#define TALLY__ATOMIC_LOAD(ptr, order) atomic_load_explicit((ptr), (order))
#define TALLY__ATOMIC_STORE(ptr, value, order) atomic_store_explicit((ptr), (value), (order))
#define TALLY__ATOMIC_FETCH_ADD(ptr, value, order) \
	atomic_fetch_add_explicit((ptr), (value), (order))
#endif

/*
 * The inline fast paths (tally_counter_add, tally_series_next, tally_thread_index, ...) are
 * declared TALLY__INLINE. By default that is `static inline`: the body is compiled into the
 * caller. libtally also exports every one of them as an ordinary function of the same name
 * (lib/inline.c), for languages that call C through a symbol table (Rust, Go, Python ctypes).
 * Define TALLY_NO_INLINE before including any tally header to get plain declarations of those
 * exported functions instead of the inline bodies (for FFI binding generators such as
 * bindgen, which cannot see static inline functions). TALLY__INLINE_DEFINE is libtally's
 * own switch, set by lib/inline.c only: the bodies become the exported definitions.
 */
#if defined(TALLY__INLINE_DEFINE)
#define TALLY__INLINE
#define TALLY__INLINE_BODIES 1
#elif defined(TALLY_NO_INLINE)
#define TALLY__INLINE
#define TALLY__INLINE_BODIES 0
#else
#define TALLY__INLINE static inline
#define TALLY__INLINE_BODIES 1
#endif

#endif /* TALLY_STATIC_COMPAT_H */
