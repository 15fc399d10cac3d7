//! Malformed input never panics the decision core: heartbeat datagrams off the wire, Raft
//! entries (commands as JSON) off the disk or a peer, sizes typed by an admin. Each either
//! decodes or is refused with an error; a command that decodes is applied or rejected.

use halo_core::capacity::{parse_cpu, parse_memory};
use halo_core::command::Command;
use halo_core::heartbeat::{DATAGRAM_LEN, Datagram, Heartbeat, HeartbeatCodec};
use halo_core::role::RoleSpec;
use halo_core::state::ClusterState;
use proptest::prelude::*;

fn codec() -> HeartbeatCodec {
    HeartbeatCodec::new(b"0123456789abcdef0123456789abcdef", "cluster-id")
}

/// Commands as they are stored in the log, to mutate.
fn sample_commands() -> Vec<Vec<u8>> {
    let spec = r#"{"name":"web","resources":[{"name":"main","type":"process","params":{"command":"sleep 1"}}],
        "preferred":["a"],"priority":"high","memory_mb":512}"#;
    let spec: RoleSpec = serde_json::from_str(spec).expect("sample spec");
    [
        Command::CreateRole { spec: spec.clone(), now_ms: 1 },
        Command::ApplyRoles { specs: vec![spec], now_ms: 2 },
        Command::MoveRole { role: "web".into(), to: Some(2), mode: None },
        Command::SetProperties { properties: vec![("profile".into(), "fast".into())] },
        Command::ClearFenceRequest { node: 1 },
        Command::StartCaRotation {
            cert_pem: "-----BEGIN CERTIFICATE-----".into(),
            key_pem: "k".into(),
            ca_sha256: "ab".into(),
            now_ms: 7,
        },
        Command::AcknowledgeCa { node: 1, ca_sha256: "ab".into() },
        Command::AdvanceCaRotation,
        Command::RotateHeartbeatKey { heartbeat_key_hex: "00".repeat(32) },
        Command::ReportDataDisk {
            node: 1,
            low: Some(halo_core::state::DiskSpace { free_bytes: 1 << 20, total_bytes: 1 << 30 }),
        },
        Command::RemoveNode { node: 2, heartbeat_key_hex: Some("00ff".into()), now_ms: 3 },
        Command::RenewCertificate {
            node: 1,
            certificate: halo_core::state::CertificateRecord {
                serial: "0a1b".into(),
                not_after_ms: 9,
                ca_sha256: "ab".into(),
            },
            now_ms: 4,
        },
        Command::CreateApiToken {
            name: "grafana".into(),
            token: halo_core::access::ApiToken {
                secret_sha256: "ab".into(),
                role: halo_core::access::AccessRole::Viewer,
                created_at_ms: 5,
                expires_at_ms: Some(6),
            },
        },
        Command::Attributed { by: "ops".into(), inner: Box::new(Command::RevokeApiToken { name: "grafana".into() }) },
    ]
    .iter()
    .map(|c| serde_json::to_vec(c).expect("encode"))
    .collect()
}

/// `PROPTEST_CASES` for a longer run, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]

    #[test]
    fn datagrams_of_any_bytes_are_refused_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = codec().decode(&bytes);
    }

    #[test]
    fn a_datagram_with_any_byte_changed_is_refused(index in 0..DATAGRAM_LEN, flip in 1u8..=255) {
        let hb = Heartbeat { from: 3, network: 1, sequence: 9, sent_at_ms: 1234, echo: Default::default(), report: None };
        let mut bytes = codec().encode(&Datagram::Heartbeat(hb));
        bytes[index] ^= flip;
        prop_assert!(codec().decode(&bytes).is_err());
    }

    #[test]
    fn mutated_log_entries_decode_or_fail_and_apply_or_reject(
        which in 0usize..9,
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        truncate in any::<prop::sample::Index>(),
    ) {
        let mut bytes = sample_commands()[which].clone();
        for (at, byte) in cuts {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if truncate.index(4) == 0 {
            let keep = truncate.index(bytes.len() + 1);
            bytes.truncate(keep);
        }
        if let Ok(command) = serde_json::from_slice::<Command>(&bytes) {
            let mut state = ClusterState::default();
            let _ = state.apply(&command);
        }
    }

    #[test]
    fn any_text_as_a_command_or_a_role_never_panics(text in "\\PC{0,200}") {
        let _ = serde_json::from_str::<Command>(&text);
        if let Ok(spec) = serde_json::from_str::<RoleSpec>(&text) {
            let _ = spec.validate(&ClusterState::default());
        }
    }

    #[test]
    fn sizes_of_any_text_parse_or_say_why(text in "\\PC{0,24}") {
        if let Err(e) = parse_cpu(&text) {
            prop_assert!(e.contains("invalid CPU amount"));
        }
        if let Err(e) = parse_memory(&text) {
            prop_assert!(e.contains("invalid memory amount"));
        }
    }
}
