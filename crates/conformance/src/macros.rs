//! The macros that expand the suite into one `#[tokio::test]` per case.
//!
//! Each trait's case list lives here, in one place; a listed case without a
//! function is a compile error.

/// Expands the conformance cases of the listed traits into tests
/// `<backend>::<trait>::<case>`, each running on the suite's shared
/// [`runtime`](crate::runtime) (so connections a harness keeps outlive a case).
///
/// `$harness` is an expression of type
/// `impl Future<Output = Option<Arc<dyn Harness>>>`, evaluated once per test
/// (`None` skips the case, see [`harness_from_env`](crate::harness_from_env)).
/// Trait ids: `event_store`, `session_cache`, `document_store`, `reputation_repo`,
/// `tower` (palisade-tower's session store and rate limits over the session cache)
/// and `consumers` (durable named consumers over the event store).
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ident, $harness:expr, [$($trait_id:ident),+ $(,)?]) => {
        #[allow(unused_imports)]
        mod $backend {
            use super::*;
            $( $crate::__with_cases!($trait_id, $crate::__conformance_cases, $backend, $harness,); )+
        }
    };
}

/// Calls `$cb!($($args)* <trait_id>, <open fn>, <trait type>, single: [...], pair: [...])`
/// with the case list of one trait — the one place each list is written.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    (tower, $cb:path, $($args:tt)*) => {
        $cb!($($args)* tower, open_shared_session_cache,
            ::std::sync::Arc<dyn $crate::__core::SessionCache>,
            single: [
                session_is_created_read_modified_cycled_and_deleted,
                session_key_expires_at_the_record_expiry,
                short_expiry_session_expires,
                saving_an_expired_record_deletes_it,
                create_on_a_taken_id_draws_a_new_id,
                concurrent_creates_never_share_an_id,
                concurrent_creates_of_one_id_keep_it_once,
                far_future_expiry_is_stored,
                large_sessions_round_trip,
                hostile_stored_values_and_cookies_are_refused,
                caching_store_with_a_memory_cache_behaves_the_same,
                expired_deletion_keeps_live_sessions,
                rate_limit_is_shared_by_every_instance,
                rate_limit_counts_per_client_and_rule,
                rate_limit_window_ends,
                rate_limit_store_failure_follows_the_policy,
            ],
            pair: []
        );
    };
    (consumers, $cb:path, $($args:tt)*) => {
        $cb!($($args)* consumers, open_shared_event_store,
            ::std::sync::Arc<dyn $crate::__core::EventStore>,
            single: [
                resume_after_drop_continues_after_the_last_ack,
                catch_up_then_live,
                lease_is_exclusive,
                takeover_after_heartbeats_stop,
                release_hands_over_at_once,
                a_cancelled_start_gives_the_lease_up,
                a_start_that_failed_after_claiming_gives_the_lease_up,
                no_skip_under_concurrent_appends,
                filter_applies_and_a_different_filter_conflicts,
                ack_moves_forward_only_and_never_past_delivery,
                consumers_lists_position_and_lag,
                delete_consumer_forgets_it_and_fences_the_holder,
                checkpoint_survives_purge,
                a_deleted_consumer_stops_its_holder_and_stays_deleted,
                an_expired_lease_neither_acks_nor_renews,
                filters_are_compared_as_sets,
                invalid_consumer_input_is_invalid_input,
            ],
            pair: [checkpoints_are_isolated_by_namespace]
        );
    };
    (event_store, $cb:path, $($args:tt)*) => {
        $cb!($($args)* event_store, open_event_store, dyn $crate::__core::EventStore,
            single: [
                append_stores_events_with_positions_and_recorded_at,
                append_is_atomic,
                append_is_idempotent_by_event_id,
                append_retry_of_partially_stored_batch_stores_only_new_events,
                duplicate_reports_original_position_and_version,
                duplicate_id_within_one_batch_is_invalid_input,
                empty_batch_is_invalid_input,
                invalid_event_fields_are_invalid_input_and_store_nothing,
                expected_version_no_stream_succeeds_on_new_stream,
                expected_version_no_stream_conflicts_on_existing_stream,
                expected_version_exact_succeeds_at_version_ten_and_beyond,
                expected_version_exact_mismatch_is_conflict_with_versions,
                expected_version_conflict_stores_nothing,
                expected_version_any_always_appends,
                exact_zero_expected_version_is_invalid_input,
                stream_versions_are_assigned_in_batch_order,
                retried_batch_with_expected_version_is_idempotent,
                positions_increase_in_append_order,
                gap_free_positions_are_consecutive,
                read_from_start_returns_all_in_order,
                read_after_cursor_excludes_the_cursor,
                read_respects_limit,
                read_limit_zero_is_invalid_input,
                occurred_at_is_truncated_to_milliseconds,
                event_fields_round_trip,
                ipv4_mapped_client_ip_is_stored_as_ipv4,
                query_filters_by_kind,
                query_filters_by_source,
                query_filters_by_stream,
                query_filters_by_session,
                query_filters_by_exact_client_ip,
                query_filters_by_cidr,
                query_filters_by_all_tags,
                query_filters_by_half_open_time_range,
                query_combines_filters_with_and,
                query_is_newest_first_by_default,
                query_oldest_first,
                query_paginates_without_duplicates_or_gaps,
                query_next_is_none_on_last_page,
                query_reversed_time_range_is_invalid_input,
                count_by_kind_orders_by_count_then_key,
                count_by_client_ip_returns_top_n,
                count_by_tag_counts_each_tag,
                count_by_session_skips_events_without_session,
                count_by_respects_filter_window,
                count_by_top_zero_is_invalid_input,
                purge_removes_events_before_instant_and_returns_count,
                purge_keeps_positions_of_remaining_events,
                subscribe_catches_up_then_signals_caught_up_then_streams_live,
                subscribe_after_cursor_skips_earlier_events,
                subscribe_applies_filter_to_catch_up_and_live,
                subscribe_on_empty_store_signals_caught_up_first,
                concurrent_appends_with_expected_version_admit_one_winner,
                concurrent_first_appends_expecting_no_stream_admit_one_winner,
                concurrent_appenders_lose_no_events,
                large_batch_over_bind_parameter_limit_is_atomic,
                reader_never_sees_a_position_below_one_already_seen,
                event_data_nested_beyond_the_depth_limit_is_invalid_input,
                event_data_over_the_size_limit_is_invalid_input,
                nul_in_event_data_round_trips_byte_exact,
                cursors_at_the_edges_give_empty_pages,
                event_filter_with_too_many_values_is_invalid_input,
                instants_outside_years_1_to_9999_are_invalid_input,
                purge_with_extreme_instants_removes_nothing_or_everything,
            ],
            pair: [namespaces_are_isolated]);
    };
    (session_cache, $cb:path, $($args:tt)*) => {
        $cb!($($args)* session_cache, open_session_cache, dyn $crate::__core::SessionCache,
            single: [
                set_then_get_returns_value,
                get_missing_is_none,
                set_always_overwrites,
                set_if_absent_writes_only_when_missing,
                set_if_absent_writes_over_expired_key,
                set_if_present_writes_only_when_present,
                set_if_present_on_expired_key_does_not_write,
                set_replaces_ttl_and_none_persists,
                ttl_zero_or_negative_is_invalid_input_and_changes_nothing,
                expired_key_is_invisible_immediately,
                ttl_reports_missing_persistent_and_remaining,
                expire_sets_ttl_on_existing_key,
                expire_on_missing_key_returns_false,
                expire_with_zero_ttl_is_invalid_input,
                update_refreshes_ttl,
                key_without_ttl_persists,
                delete_returns_whether_it_existed,
                delete_of_expired_key_returns_false,
                values_of_every_json_type_round_trip,
                push_keeps_newest_max_len_entries,
                range_is_newest_first_and_respects_limit,
                push_ttl_expires_history,
                push_zero_max_len_is_invalid_input,
                push_onto_value_key_is_conflict,
                get_of_history_key_is_conflict,
                incr_creates_counter_and_returns_new_value,
                incr_ttl_applies_only_on_create,
                incr_on_non_integer_is_conflict,
                incr_overflow_is_conflict,
                incr_under_32_concurrent_tasks_loses_no_update,
                counter_is_readable_with_get,
                hit_allows_up_to_limit_then_denies_with_retry_after,
                hit_window_resets_after_it_expires,
                hit_under_32_concurrent_tasks_allows_exactly_limit,
                hit_zero_limit_or_window_is_invalid_input,
                hostile_keys_stay_distinct,
                unicode_keys_round_trip,
                key_of_1024_bytes_is_accepted_and_1025_rejected,
                empty_key_is_invalid_input,
                values_nested_beyond_the_depth_limit_are_invalid_input,
                values_over_the_size_limit_are_invalid_input,
                nul_in_values_and_keys_round_trips_byte_exact,
                push_without_expiry_keeps_the_list_expiry,
                absolute_expiry_instants_are_honoured,
                past_expiry_instants_write_expired_keys,
            ],
            pair: [namespaces_are_isolated, hostile_keys_cannot_reach_another_namespace]);
    };
    (document_store, $cb:path, $($args:tt)*) => {
        $cb!($($args)* document_store, open_document_store, dyn $crate::__core::DocumentStore,
            single: [
                ensure_collection_is_idempotent,
                ensure_collection_with_different_spec_is_conflict,
                invalid_collection_name_is_invalid_input,
                unknown_collection_is_not_found,
                insert_assigns_id_and_version_one,
                insert_with_client_id_keeps_it,
                insert_duplicate_id_is_conflict,
                insert_non_object_is_invalid_input,
                insert_with_version_field_is_invalid_input,
                insert_hostile_field_names_is_invalid_input,
                insert_many_is_atomic_on_conflict,
                insert_many_is_atomic_on_schema_violation,
                get_missing_is_none,
                schema_violation_on_insert_changes_nothing,
                schema_violation_on_update_changes_nothing,
                schema_violation_on_replace_changes_nothing,
                schema_keyword_outside_subset_is_invalid_input,
                unique_index_conflict_on_insert,
                unique_index_conflict_on_update_changes_nothing,
                unique_index_treats_int_and_float_as_equal,
                unique_index_ignores_documents_missing_the_field,
                compound_unique_index_considers_all_fields,
                unique_index_compares_long_values_whole,
                replace_increments_version,
                replace_with_stale_version_is_conflict,
                replace_missing_is_not_found,
                replace_with_version_in_body_checks_it,
                filter_eq_and_implicit_eq,
                filter_ne_matches_missing_fields,
                filter_range_operators_on_numbers,
                filter_compares_int_and_float_numerically,
                filter_type_bracketing_never_matches_string_with_number,
                filter_strings_compare_by_code_point,
                filter_in_and_nin,
                filter_exists,
                filter_not,
                filter_and_or,
                filter_nested_path,
                filter_array_element_equality,
                filter_array_of_objects_path,
                filter_array_index_path,
                filter_null_matches_missing_and_null,
                filter_bool_values,
                filter_unicode_field_names_and_values,
                update_set,
                update_unset,
                update_inc_int_and_float,
                update_push,
                update_reports_matched_and_modified,
                update_inc_on_non_number_is_invalid_input_and_changes_nothing,
                update_increments_version_only_when_modified,
                delete_by_filter_returns_count,
                find_sort_asc_desc_with_id_tiebreak,
                find_sort_mixed_types_in_type_order,
                find_skip_and_limit,
                find_projection_include_and_exclude,
                find_limit_zero_is_invalid_input,
                count_matches_find,
                ttl_expired_documents_are_invisible,
                ttl_documents_without_the_field_never_expire,
                drop_collection_removes_documents,
                large_insert_many_round_trips,
                concurrent_incs_lose_no_update,
                random_filters_agree_with_reference_semantics,
                documents_over_the_limits_are_invalid_input,
                update_that_breaks_the_limits_is_invalid_input_and_changes_nothing,
                nul_in_values_round_trips_and_matches_filters,
                in_with_ten_thousand_values_matches_like_the_reference,
            ],
            pair: [namespaces_are_isolated]);
    };
    (reputation_repo, $cb:path, $($args:tt)*) => {
        $cb!($($args)* reputation_repo, open_reputation_repo, dyn $crate::__core::ReputationRepo,
            single: [
                record_returns_new_score,
                record_is_idempotent_by_id,
                score_of_unknown_subject_is_zero,
                negative_deltas_lower_the_score,
                delta_beyond_2_pow_53_is_invalid_input,
                score_overflow_is_invalid_input_and_changes_nothing,
                invalid_subject_id_is_invalid_input,
                history_is_newest_first_within_range,
                history_respects_limit,
                leaderboard_orders_by_score_then_subject_id,
                leaderboard_uses_competition_ranking,
                leaderboard_offset_and_limit,
                leaderboard_separates_users_and_engines,
                day_period_uses_utc_boundaries,
                iso_week_period_spans_year_boundary,
                month_period_boundaries,
                all_time_includes_every_period,
                period_is_decided_by_event_time_not_record_time,
                rank_of_subject,
                rank_of_unranked_subject_is_none,
                around_returns_neighbours,
                around_at_the_top_edge,
                around_unknown_subject_is_empty,
                zero_sum_subject_is_still_ranked,
                concurrent_records_lose_no_update,
                rebuild_reproduces_scores,
                invalid_period_is_invalid_input,
                leaderboard_limit_zero_is_invalid_input,
                unicode_subject_ids_order_by_code_point,
                hostile_reasons_are_invalid_input_and_record_nothing,
                leaderboard_offsets_past_any_board_are_empty,
            ],
            pair: [namespaces_are_isolated]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($backend:ident, $harness:expr, $trait_id:ident, $open:ident, $trait_ty:ty,
     single: [$($case:ident),* $(,)?], pair: [$($pcase:ident),* $(,)?]) => {
        #[allow(unused_imports)]
        mod $trait_id {
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::runtime().block_on($crate::run(
                        stringify!($backend), stringify!($trait_id), stringify!($case),
                        $harness, $crate::$open,
                        $crate::CaseBody::<$trait_ty>::Single(|s| Box::pin($crate::$trait_id::$case(s))),
                    ));
                }
            )*
            $(
                #[test]
                fn $pcase() {
                    $crate::runtime().block_on($crate::run(
                        stringify!($backend), stringify!($trait_id), stringify!($pcase),
                        $harness, $crate::$open,
                        $crate::CaseBody::<$trait_ty>::Pair(|a, b| Box::pin($crate::$trait_id::$pcase(a, b))),
                    ));
                }
            )*
        }
    };
}

/// Builds the runtime list of one trait's cases (used by `palisade check`).
#[doc(hidden)]
#[macro_export]
macro_rules! __case_registry {
    ($trait_id:ident, $open:ident, $trait_ty:ty,
     single: [$($case:ident),* $(,)?], pair: [$($pcase:ident),* $(,)?]) => {
        /// Every case of this trait, in suite order.
        pub fn $trait_id() -> Vec<$crate::Case<$trait_ty>> {
            vec![
                $( $crate::Case {
                    name: stringify!($case),
                    body: $crate::CaseBody::Single(|s| Box::pin($crate::$trait_id::$case(s))),
                }, )*
                $( $crate::Case {
                    name: stringify!($pcase),
                    body: $crate::CaseBody::Pair(|a, b| Box::pin($crate::$trait_id::$pcase(a, b))),
                }, )*
            ]
        }
    };
}
