//! `halo cluster rotate-ca` and `halo cluster rotate-heartbeat-key`.

use std::time::Duration;

use anyhow::Context;
use halo_api::cluster::CaRotationView;

use crate::client::{Api, ClientConfig};
use crate::output;

const PATH: &str = "/api/v1/cluster/ca-rotation";

/// Start a CA rotation (or take up the one under way) and, unless `no_wait`, follow it to the
/// end. The client config trusts what the nodes trust at each step, so this command and every
/// later one keep reaching the cluster while the nodes' certificates change.
pub async fn rotate_ca(json: bool, no_wait: bool, timeout: &str) -> anyhow::Result<()> {
    let timeout =
        humantime::parse_duration(timeout).with_context(|| format!("invalid --timeout '{timeout}': e.g. 5m"))?;
    let api = Api::from_config(&ClientConfig::load()?)?;
    let now: CaRotationView = api.get(PATH).await?;
    let started = if now.stage.is_some() {
        eprintln!("a CA rotation is already under way; following it");
        now
    } else {
        api.post(PATH, &serde_json::json!({})).await?
    };
    trust(&started)?;
    if !json {
        eprintln!(
            "CA rotation started: new CA {}; the client config trusts both CAs until it ends",
            short(&started.ca_sha256)
        );
    }
    if no_wait {
        return if json { output::print_json(&started) } else { Ok(()) };
    }
    let api = Api::from_config(&ClientConfig::load()?)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut told = None;
    loop {
        match api.get::<CaRotationView>(PATH).await {
            Ok(view) if view.stage.is_none() && view.ca_sha256 == started.ca_sha256 => {
                trust(&view)?;
                return if json {
                    output::print_json(&view)
                } else {
                    println!("CA rotation finished: every node's certificate is from CA {}", short(&view.ca_sha256));
                    Ok(())
                };
            }
            Ok(view) if view.stage.is_none() => {
                anyhow::bail!("the CA rotation ended without CA {}: another one replaced it", short(&started.ca_sha256))
            }
            Ok(view) => {
                let stage = view.stage.map(|s| s.as_str()).unwrap_or_default();
                let now = format!("{stage}: {}", view.waiting_for.as_deref().unwrap_or("taking the next step"));
                if !json && told.as_ref() != Some(&now) {
                    eprintln!("  {now}");
                }
                told = Some(now);
            }
            Err(e) => told = Some(format!("{e:#}")),
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the CA rotation is still under way after {} ({}); it goes on by itself: run \
                 `halo cluster rotate-ca` again to follow it (a node that is down holds it back)",
                humantime::format_duration(timeout),
                told.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keep the client config trusting what the nodes trust now.
fn trust(view: &CaRotationView) -> anyhow::Result<()> {
    ClientConfig::update_file(|config| config.ca_cert_pem = view.trust_pem.clone())
        .context("the client config could not be updated with the cluster's CA certificates")?;
    Ok(())
}

fn short(sha256: &str) -> &str {
    sha256.get(..16).unwrap_or(sha256)
}

pub async fn rotate_heartbeat_key(json: bool) -> anyhow::Result<()> {
    let api = Api::from_config(&ClientConfig::load()?)?;
    api.post_no_reply("/api/v1/cluster/heartbeat-key", &serde_json::json!({})).await?;
    if json {
        output::print_json(&serde_json::json!({ "rotated": "heartbeat-key" }))
    } else {
        println!("heartbeat key rotated; nodes accept the old one for two node timeouts");
        Ok(())
    }
}
