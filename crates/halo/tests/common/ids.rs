//! Every real-process test's id, in one table. An id names a test's addresses (127.ID.x.y
//! for agents, 10.ID.x.y and namespaces for a LAN), so two tests with one id would collide
//! when they run at once. `Cluster::new` and `Lan::new` check that their id is the running
//! test's own here ([`claim`]); a new test takes the next free id (the table says which).

/// (id, test file, test): ids are unique, the order is the ids'.
pub const TEST_IDS: &[(u8, &str, &str)] = &[
    (101, "failover", "leader_killed_new_leader_elected_writes_continue_and_node_rejoins"),
    (102, "failover", "whole_cluster_restart_keeps_every_acknowledged_write"),
    (103, "networks", "one_blocked_network_is_degraded_both_blocked_is_down"),
    (104, "witness", "two_nodes_and_a_witness_survive_any_single_loss"),
    (105, "security", "api_requires_a_valid_bearer_token_and_changes_nothing_without_one"),
    (106, "security", "join_tokens_are_checked_single_use_and_expire"),
    (107, "security", "raft_rpc_refuses_peers_without_a_cluster_certificate"),
    (108, "security", "raft_rpc_refuses_peers_without_a_cluster_certificate"),
    (109, "bad_input", "duplicate_names_foreign_members_and_unreachable_peers_are_refused"),
    (110, "bad_input", "duplicate_names_foreign_members_and_unreachable_peers_are_refused"),
    (111, "membership", "remove_a_follower_and_refuse_bad_removals"),
    (112, "compaction", "lagging_and_new_nodes_catch_up_from_a_snapshot"),
    (113, "fencing", "host_crash_moves_the_role_to_another_node"),
    (114, "fencing", "a_hung_agent_is_fenced_before_the_role_starts_elsewhere"),
    (115, "fencing", "an_isolated_node_stops_its_roles_and_the_majority_restarts_them"),
    (116, "roles", "a_dying_process_is_restarted_in_place_then_fails_over_within_its_possible_owners"),
    (117, "roles", "placement_rules_stop_delete_and_bad_input"),
    (118, "operations", "drain_resume_with_failback_and_move"),
    (119, "ocf", "dummy_runs_is_monitored_moves_and_fails_over"),
    (120, "bench_core", "bench_leader_loss_to_new_leader"),
    (121, "bench_core", "bench_committed_writes_per_second"),
    (122, "bench_core", "bench_idle_agent_footprint"),
    (123, "bench_core", "bench_whole_cluster_cold_start_to_quorum"),
    (124, "fence_agent", "a_hung_node_is_powered_off_and_its_role_restarts_at_once"),
    (125, "probe", "a_service_that_stops_answering_its_probe_is_restarted"),
    (126, "fencing", "a_restarted_agent_first_sweeps_up_what_its_previous_run_left"),
    (127, "ocf", "a_leader_that_cannot_stop_a_resource_fences_itself"),
    (128, "roles", "capacity_priorities_and_manual_roles"),
    (129, "ocf", "a_resource_that_cannot_be_stopped_gets_its_node_fenced"),
    (130, "bench_roles", "bench_node_crash_to_role_online_default_profile"),
    (131, "bench_roles", "bench_node_crash_to_role_online_fast_profile"),
    (132, "bench_roles", "bench_restart_in_place_and_planned_move"),
    (133, "bench_roles", "bench_drain_of_50_roles"),
    (134, "bench_roles", "bench_node_crash_with_fence_agent_default_profile"),
    (135, "bench_roles", "bench_node_crash_with_fence_agent_fast_profile"),
    (140, "soak", "soak_default_profile"),
    (141, "soak", "soak_fast_profile"),
    (142, "nemesis", "a_seeded_nemesis_breaks_neither_s1_nor_s2_nor_l1"),
    (143, "bad_input", "malformed_request_bodies_get_a_client_error_and_change_nothing"),
    (144, "vm", "a_vm_moves_live_quick_and_cold_and_its_guest_keeps_running"),
    (145, "vm", "a_crashed_node_s_vm_boots_elsewhere_and_a_hung_guest_is_restarted"),
    (146, "vm", "a_disk_locked_by_another_qemu_is_refused_and_reported"),
    (147, "vm", "drain_live_migrates_every_vm_and_failback_brings_them_back"),
    (148, "vm", "a_migration_that_cannot_happen_leaves_the_guest_running_where_it_was"),
    (149, "vm", "bad_vm_definitions_are_refused_and_change_nothing"),
    (150, "bench_vm", "live_migration_of_an_idle_guest"),
    (151, "bench_vm", "drain_of_a_node_with_four_vms"),
    (152, "bench_vm", "node_crash_to_vm_running_elsewhere"),
    (153, "membership", "a_one_node_cluster_keeps_its_quorum_and_lease_while_idle"),
    (154, "validate", "a_healthy_cluster_passes_under_load_and_validation_changes_nothing"),
    (155, "validate", "an_even_count_of_voters_without_a_witness_fails_and_says_how_to_fix_it"),
    (156, "validate", "a_role_no_node_can_host_fails_with_its_name"),
    (157, "validate", "one_network_blocked_for_one_node_is_named"),
    (158, "validate", "shared_storage_missing_read_only_or_not_shared_on_one_node_is_named"),
    (159, "validate", "an_ocf_agent_missing_on_one_node_fails_the_roles_that_need_it"),
    (160, "validate", "agents_are_validated_before_the_cluster_exists_and_the_html_report_renders"),
    (161, "validate", "the_cluster_validates_itself_and_status_shows_the_result_and_its_age"),
    (162, "validate", "a_vm_disk_that_one_possible_owner_cannot_see_fails"),
    (163, "observability", "metrics_parse_and_describe_the_cluster_and_events_stream_live"),
    (164, "observability", "halo_log_merges_every_nodes_lines_in_time_order"),
    (165, "console", "the_console_logs_in_shows_the_cluster_and_moves_a_role_live"),
    (166, "security", "replayed_heartbeats_do_not_keep_a_dead_node_up"),
    (167, "membership", "every_node_runs_the_cluster_s_raft_timing"),
    (168, "vm", "vms_start_under_the_fast_profile_and_no_lease_lapses"),
    (169, "ocf", "a_hung_node_s_guard_stops_its_ocf_resources_and_disarms_its_watchdog"),
    (170, "address", "a_hung_node_drops_its_floating_address_before_another_takes_it"),
    (171, "address", "a_hung_node_s_guard_drops_an_ipaddr2_address_before_another_takes_it"),
    (172, "membership", "every_node_runs_the_cluster_s_raft_timing"),
    (173, "failover", "a_hung_leaders_role_comes_back_by_the_voters_reports_and_never_runs_twice"),
    (174, "security", "data_directories_and_the_client_config_are_private_and_workloads_keep_a_service_umask"),
    (175, "security", "bogus_joins_are_refused_without_growing_the_log_and_are_rate_limited_per_address"),
    (176, "compaction", "a_new_node_installs_a_snapshot_larger_than_any_default_body_limit"),
    (177, "compaction", "a_follower_catches_up_over_entries_of_megabytes_in_bounded_appends"),
    (178, "security", "idle_and_slow_connections_are_dropped_and_one_client_cannot_hold_every_place"),
    (179, "security", "a_removed_nodes_certificate_is_refused_on_every_peer_route_and_a_member_speaks_only_for_itself"),
    (180, "security", "node_certificates_expire_and_are_renewed_before_they_do"),
    (181, "security", "bootstrap_pins_the_agents_fingerprint_and_trusts_only_root_locally"),
    (182, "security", "a_link_planted_in_shared_storage_is_not_followed"),
    (183, "security", "a_viewer_reads_an_operator_operates_and_revoked_or_rotated_tokens_stop_working"),
    (184, "security", "a_flooding_workload_does_not_grow_its_log_beyond_its_bound"),
    (185, "security", "a_secret_parameter_is_absent_from_every_output"),
    (186, "vm", "a_live_migration_refuses_a_forged_target_and_hangs_up_on_a_plain_text_stream"),
    (187, "data_disk", "a_nearly_full_data_disk_is_reported_and_survived_and_a_full_one_stops_only_its_node"),
    (188, "security", "the_cluster_ca_and_the_heartbeat_key_rotate_while_the_cluster_runs"),
    (189, "failover", "a_deposed_leader_that_wakes_up_answers_reads_with_the_current_state"),
    (190, "ocf", "a_hanging_agent_is_killed_at_its_timeout_and_bad_agents_are_refused"),
    (191, "apply", "apply_is_declarative_idempotent_and_all_or_nothing"),
    (192, "demo", "the_demo_forms_a_cluster_with_sample_roles"),
];

/// Panics unless `id` is in [`TEST_IDS`] for the test running now (libtest names the test's
/// thread after it).
pub fn claim(id: u8) {
    let thread = std::thread::current();
    let running = thread.name().unwrap_or("");
    // A test inside a module runs as `module::test`.
    let test = running.rsplit("::").next().unwrap_or(running);
    let owners: Vec<&(u8, &str, &str)> = TEST_IDS.iter().filter(|(i, _, _)| *i == id).collect();
    assert!(
        owners.iter().any(|(_, _, name)| *name == test),
        "test id {id} is not {test}'s: {} (tests/common/ids.rs; the next free id is {})",
        if owners.is_empty() { "it is in no row".to_string() } else { format!("it belongs to {owners:?}") },
        next_free()
    );
}

pub fn next_free() -> u8 {
    TEST_IDS.iter().map(|(id, _, _)| *id).max().map_or(100, |m| m + 1)
}

// Checked when the tests compile: ids rise, each once.
const _: () = {
    let mut i = 1;
    while i < TEST_IDS.len() {
        assert!(TEST_IDS[i - 1].0 < TEST_IDS[i].0, "tests/common/ids.rs: ids must rise, each once");
        i += 1;
    }
};
