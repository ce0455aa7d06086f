/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/abi_layouts.h: every struct of the public headers and each of its fields, as an
 * X-macro: S(struct name) then F(struct name, field) per field. tests/abi_gen.c expands it in
 * C to print the C compiler's sizes, alignments and offsets as static_asserts
 * (tests/abi_c.h, generated at build time), and the C++ tests include that file, so a header
 * whose C and C++ layouts differ fails to compile. Add a struct or field here when you add
 * one to a public header (tests/headers.sh does not catch a missing entry).
 */
#ifndef TALLY_TESTS_ABI_LAYOUTS_H
#define TALLY_TESTS_ABI_LAYOUTS_H
#include <tally/tally.h>
#include <tally/store.h>
#include <tally/writebehind.h>

#define TALLY_ABI_LAYOUTS(S, F) \
	S(tally_counter_slot) \
	F(tally_counter_slot, value) F(tally_counter_slot, pad) \
	S(tally_counter) \
	F(tally_counter, magic) F(tally_counter, slot_count) F(tally_counter, slots) \
	F(tally_counter, checkpoint) \
	S(tally_counter_local) \
	F(tally_counter_local, slot) F(tally_counter_local, counter) \
	F(tally_counter_local, shared) \
	S(tally_gauge) \
	F(tally_gauge, magic) F(tally_gauge, value) F(tally_gauge, floor) F(tally_gauge, ceiling) \
	S(tally_sgauge) \
	F(tally_sgauge, magic) F(tally_sgauge, shard_count) F(tally_sgauge, floor) \
	F(tally_sgauge, ceiling) F(tally_sgauge, above) F(tally_sgauge, headroom) \
	F(tally_sgauge, in_flight) F(tally_sgauge, returns) \
	S(tally_lease_record) \
	F(tally_lease_record, mark) F(tally_lease_record, issued) F(tally_lease_record, flags) \
	S(tally_lease_ops) \
	F(tally_lease_ops, acquire) F(tally_lease_ops, close) F(tally_lease_ops, read) \
	F(tally_lease_ops, destroy) \
	S(tally_lease_provider) \
	F(tally_lease_provider, ops) F(tally_lease_provider, impl) \
	S(tally_sequence_options) \
	F(tally_sequence_options, now_s) F(tally_sequence_options, clock_arg) \
	S(tally_series_config) \
	F(tally_series_config, format) F(tally_series_config, mode) F(tally_series_config, reset) \
	F(tally_series_config, utc_offset_minutes) F(tally_series_config, cache_block) \
	F(tally_series_config, lease) F(tally_series_config, lease_size) \
	S(tally_seq_number) \
	F(tally_seq_number, counter) F(tally_seq_number, period) \
	S(tally_seq_recovery) \
	F(tally_seq_recovery, resumed) F(tally_seq_recovery, unclean) \
	F(tally_seq_recovery, period) F(tally_seq_recovery, first_counter) \
	F(tally_seq_recovery, last_counter) F(tally_seq_recovery, count) \
	S(tally_series_stats) \
	F(tally_series_stats, last) F(tally_series_stats, lease_mark) \
	F(tally_series_stats, lease_calls) F(tally_series_stats, released_pending) \
	F(tally_series_stats, voided) \
	S(tally__seq_block) \
	F(tally__seq_block, series_id) F(tally__seq_block, next) F(tally__seq_block, end) \
	F(tally__seq_block, size) F(tally__seq_block, taken_ms) \
	S(tally__series_head) \
	F(tally__series_head, id) F(tally__series_head, inline_key) \
	F(tally__series_head, strict_max) F(tally__series_head, divert) \
	S(tally__series_hot) \
	F(tally__series_hot, head) F(tally__series_hot, head_pad) F(tally__series_hot, state) \
	F(tally__series_hot, state_pad) \
	S(tally_ratelimit_config) \
	F(tally_ratelimit_config, algorithm) F(tally_ratelimit_config, limit) \
	F(tally_ratelimit_config, period_ns) F(tally_ratelimit_config, burst) \
	F(tally_ratelimit_config, max_keys) F(tally_ratelimit_config, idle_ttl_ns) \
	F(tally_ratelimit_config, sweep_interval_ns) F(tally_ratelimit_config, now_ns) \
	F(tally_ratelimit_config, clock_arg) F(tally_ratelimit_config, expected_keys) \
	S(tally_ratelimit_result) \
	F(tally_ratelimit_result, limit) F(tally_ratelimit_result, remaining) \
	F(tally_ratelimit_result, reset_ns) F(tally_ratelimit_result, retry_after_ns) \
	S(tally_session_config) \
	F(tally_session_config, now_ms) F(tally_session_config, clock_arg) \
	F(tally_session_config, session_ttl_ms) F(tally_session_config, connection_ttl_ms) \
	F(tally_session_config, expected_sessions) F(tally_session_config, expected_connections) \
	S(tally_session_params) \
	F(tally_session_params, session_id) F(tally_session_params, speaker_connection_id) \
	F(tally_session_params, speaker_user_id) F(tally_session_params, source_language) \
	F(tally_session_params, quality_tier) F(tally_session_params, ttl_ms) \
	S(tally_session_info) \
	F(tally_session_info, session_id) F(tally_session_info, speaker_connection_id) \
	F(tally_session_info, speaker_user_id) F(tally_session_info, source_language) \
	F(tally_session_info, quality_tier) F(tally_session_info, created_at_ms) \
	F(tally_session_info, expires_at_ms) F(tally_session_info, listener_count) \
	F(tally_session_info, active) \
	S(tally_connection_params) \
	F(tally_connection_params, connection_id) F(tally_connection_params, session_id) \
	F(tally_connection_params, target_language) F(tally_connection_params, role) \
	F(tally_connection_params, client_address) F(tally_connection_params, ttl_ms) \
	S(tally_connection_info) \
	F(tally_connection_info, connection_id) F(tally_connection_info, session_id) \
	F(tally_connection_info, target_language) F(tally_connection_info, client_address) \
	F(tally_connection_info, role) F(tally_connection_info, connected_at_ms) \
	F(tally_connection_info, expires_at_ms) \
	S(tally_connection_filter) \
	F(tally_connection_filter, role) F(tally_connection_filter, target_language) \
	S(tally_session_sweep_result) \
	F(tally_session_sweep_result, sessions_deleted) \
	F(tally_session_sweep_result, connections_deleted) \
	S(tally_speaker_disconnect_result) \
	F(tally_speaker_disconnect_result, listeners) F(tally_speaker_disconnect_result, notified) \
	F(tally_speaker_disconnect_result, notify_failed) \
	F(tally_speaker_disconnect_result, connections_deleted) \
	F(tally_speaker_disconnect_result, duration_ms) \
	S(tally_store_options) \
	F(tally_store_options, writer_id) F(tally_store_options, writer_ttl_ms) \
	F(tally_store_options, timeout_ms) F(tally_store_options, create_schema) \
	S(tally_store_writer_info) \
	F(tally_store_writer_info, writer_id) F(tally_store_writer_info, epoch) \
	F(tally_store_writer_info, last_seq) F(tally_store_writer_info, expires_at_ms) \
	F(tally_store_writer_info, store_now_ms) F(tally_store_writer_info, live) \
	F(tally_store_writer_info, reaped) \
	S(tally_store_delta) \
	F(tally_store_delta, key) F(tally_store_delta, key_len) F(tally_store_delta, delta) \
	S(tally_store_gauge) \
	F(tally_store_gauge, key) F(tally_store_gauge, key_len) F(tally_store_gauge, value) \
	S(tally_store_record) \
	F(tally_store_record, kind) F(tally_store_record, op) F(tally_store_record, as) \
	F(tally_store_record, as.session) F(tally_store_record, as.connection) \
	S(tally_store_batch) \
	F(tally_store_batch, seq) F(tally_store_batch, counters) \
	F(tally_store_batch, counter_count) F(tally_store_batch, gauges) \
	F(tally_store_batch, gauge_count) F(tally_store_batch, records) \
	F(tally_store_batch, record_count) \
	S(tally_store_flush_result) \
	F(tally_store_flush_result, already_applied) F(tally_store_flush_result, rows_written) \
	F(tally_store_flush_result, store_calls) \
	S(tally_store_epoch_info) \
	F(tally_store_epoch_info, epoch) F(tally_store_epoch_info, prior_epoch) \
	F(tally_store_epoch_info, prior_last_seq) F(tally_store_epoch_info, prior_reaped) \
	S(tally_store_ops) \
	F(tally_store_ops, scheme) F(tally_store_ops, open) F(tally_store_ops, close) \
	F(tally_store_ops, writer_open) F(tally_store_ops, heartbeat) \
	F(tally_store_ops, flush) F(tally_store_ops, writer_close) \
	F(tally_store_ops, read_counter) F(tally_store_ops, read_gauge) \
	F(tally_store_ops, counters) F(tally_store_ops, writers) F(tally_store_ops, sessions) \
	F(tally_store_ops, connections) F(tally_store_ops, reap) F(tally_store_ops, take) \
	F(tally_store_ops, give) F(tally_store_ops, lease_ops) F(tally_store_ops, leases) \
	F(tally_store_ops, last_error) \
	S(tally_writebehind_config) \
	F(tally_writebehind_config, interval_ms) F(tally_writebehind_config, collect_ms) \
	F(tally_writebehind_config, heartbeat_ms) F(tally_writebehind_config, backoff_base_ms) \
	F(tally_writebehind_config, backoff_cap_ms) \
	F(tally_writebehind_config, shutdown_timeout_ms) \
	F(tally_writebehind_config, max_batch_records) \
	F(tally_writebehind_config, max_pending_tombstones) \
	F(tally_writebehind_config, on_error) F(tally_writebehind_config, on_backpressure) \
	F(tally_writebehind_config, callback_arg) F(tally_writebehind_config, jitter_seed) \
	S(tally_writebehind_stats) \
	F(tally_writebehind_stats, flushes) F(tally_writebehind_stats, already_applied) \
	F(tally_writebehind_stats, attempts) F(tally_writebehind_stats, retries) \
	F(tally_writebehind_stats, keys_written) F(tally_writebehind_stats, rows_written) \
	F(tally_writebehind_stats, heartbeats) F(tally_writebehind_stats, epochs) \
	F(tally_writebehind_stats, fenced) F(tally_writebehind_stats, resent_after_fence) \
	F(tally_writebehind_stats, fence_unresolved) \
	F(tally_writebehind_stats, transient_errors) \
	F(tally_writebehind_stats, permanent_errors) F(tally_writebehind_stats, last_error) \
	F(tally_writebehind_stats, last_error_text) \
	F(tally_writebehind_stats, flush_latency_p50_us) \
	F(tally_writebehind_stats, flush_latency_p99_us) \
	F(tally_writebehind_stats, flush_latency_max_us) F(tally_writebehind_stats, lag_ms) \
	F(tally_writebehind_stats, pending_records) \
	F(tally_writebehind_stats, pending_tombstones) \
	F(tally_writebehind_stats, backpressure_events) \
	F(tally_writebehind_stats, backpressure) F(tally_writebehind_stats, writer_open) \
	F(tally_writebehind_stats, epoch) F(tally_writebehind_stats, last_seq)
#endif
