//! The committed OpenAPI document (`crates/api/openapi.json`) is what the agent serves: a
//! change to a route or a shape shows up in review as a change to that file.
//!
//! After changing the API on purpose: `HALO_BLESS=1 cargo test -p halo-agent --test openapi`,
//! then commit the file.

use std::path::Path;

#[test]
fn the_committed_openapi_document_is_the_one_the_agent_serves() {
    let served = serde_json::to_string_pretty(&halo_agent::api::openapi()).expect("the document serialises") + "\n";
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/openapi.json");
    if std::env::var_os("HALO_BLESS").is_some() {
        std::fs::write(&committed, &served).expect("writing crates/api/openapi.json");
        return;
    }
    let on_disk = std::fs::read_to_string(&committed).expect("crates/api/openapi.json is committed");
    if on_disk != served {
        let first = on_disk.lines().zip(served.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "crates/api/openapi.json differs from the routes and shapes the agent serves (first at line {}: \
             committed {:?}, served {:?}). If the change is meant, run \
             `HALO_BLESS=1 cargo test -p halo-agent --test openapi` and commit the file.",
            first + 1,
            on_disk.lines().nth(first).unwrap_or("<end>"),
            served.lines().nth(first).unwrap_or("<end>"),
        );
    }
}
