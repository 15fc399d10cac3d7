//! Malformed input never panics the agent's parsers: its configuration file, an OCF agent's
//! meta-data XML and QEMU's QMP messages. Each parses or is refused with an error.

use halo_agent::AgentConfig;
use halo_agent::workload::ocf::parse_meta_data;
use halo_agent::workload::vm::qmp;
use proptest::prelude::*;

const CONFIG: &str = "name = 'a'\ndata_dir = '/var/lib/halo'\napi = '127.0.0.1:7400'\n\
                      networks = ['127.0.0.1:7401']\nmemory = '2G'\ncpu = '1.5'\n";

const QMP_LINES: [&str; 4] = [
    r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}"#,
    r#"{"return": {"status": "running", "running": true}, "id": "halo-7"}"#,
    r#"{"error": {"class": "GenericError", "desc": "x"}, "id": "halo-8"}"#,
    r#"{"event": "MIGRATION", "data": {"status": "completed"}, "timestamp": {"seconds": 1, "microseconds": 2}}"#,
];

const META: &str = r#"<?xml version="1.0"?>
<resource-agent name="Dummy" version="1.0"><parameters>
<parameter name="state" unique="1"><content type="string" default="/run/d"/></parameter>
</parameters><actions><action name="start" timeout="20s"/><action name="stop" timeout="20s"/>
<action name="monitor" timeout="20s" interval="10s"/></actions></resource-agent>"#;

fn mutate(text: &str, cuts: &[(prop::sample::Index, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, c) in cuts {
        let i = at.index(chars.len());
        chars[i] = *c;
    }
    chars.into_iter().collect()
}

/// `PROPTEST_CASES` for a longer run, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1000), ..ProptestConfig::default() })]

    #[test]
    fn config_files_parse_or_fail_with_a_reason(cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..4)) {
        let text = mutate(CONFIG, &cuts);
        if let Ok(config) = toml::from_str::<AgentConfig>(&text) {
            let _ = config.validate();
            let _ = config.offered_capacity();
        }
    }

    #[test]
    fn meta_data_parses_or_fails_with_a_reason(cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..4)) {
        let _ = parse_meta_data(&mutate(META, &cuts));
    }

    #[test]
    fn any_text_as_meta_data_never_panics(text in "\\PC{0,300}") {
        let _ = parse_meta_data(&text);
    }

    #[test]
    fn qmp_messages_parse_or_fail_with_a_reason(
        which in 0usize..4,
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..4),
    ) {
        let _ = qmp::parse(&mutate(QMP_LINES[which], &cuts));
    }

    #[test]
    fn any_text_as_qmp_never_panics(text in "\\PC{0,300}") {
        let _ = qmp::parse(&text);
    }
}
