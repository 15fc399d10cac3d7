//! `halo token`: named API tokens with a role (admin, operator, viewer), and the admin
//! token's rotation. A token is printed once, when it is made.

use anyhow::Context;
use clap::Subcommand;
use halo_api::access::AdminTokenRotated;
use halo_api::access::ApiTokenCreated;
use halo_api::access::ApiTokenRequest;
use halo_api::access::ApiTokenView;
use halo_core::access::AccessRole;

use crate::client::{Api, ClientConfig};
use crate::output;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token for a person or a program: `viewer` reads (API, /metrics, console),
    /// `operator` also starts, stops, moves, pauses, resumes and validates, `admin` may do all.
    Create {
        name: String,
        #[arg(long)]
        role: AccessRole,
        /// How long it is valid (30m, 90d...); default: until revoked.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// The named tokens (never their secrets).
    List,
    /// Revoke a token: it stops working at once.
    Revoke { name: String },
    /// Replace the admin token; the new one goes into this client config and the old one
    /// stops working at once.
    RotateAdmin,
}

pub async fn run(api: &Api, command: TokenCommand, json: bool) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { name, role, ttl } => {
            let ttl_seconds = ttl
                .map(|t| {
                    humantime::parse_duration(&t).with_context(|| format!("--ttl '{t}': expected 30m, 12h, 90d..."))
                })
                .transpose()?
                .map(|d| d.as_secs());
            let created: ApiTokenCreated =
                api.post("/api/v1/api-tokens", &ApiTokenRequest { name, role, ttl_seconds }).await?;
            if json {
                return output::print_json(&created);
            }
            println!("{}", created.token);
            eprintln!("{} token '{}' created; it is shown only now", created.view.role, created.view.name);
        }
        TokenCommand::List => {
            let tokens: Vec<ApiTokenView> = api.get("/api/v1/api-tokens").await?;
            if json {
                return output::print_json(&tokens);
            }
            println!("{}", output::tokens_table(&tokens));
        }
        TokenCommand::Revoke { name } => {
            api.delete(&format!("/api/v1/api-tokens/{name}")).await?;
            if !json {
                println!("token '{name}' revoked");
            }
        }
        TokenCommand::RotateAdmin => {
            let rotated: AdminTokenRotated = api.post("/api/v1/admin-token", &serde_json::json!({})).await?;
            let saved = ClientConfig::update_file(|config| config.token = rotated.token.clone());
            if json {
                output::print_json(&rotated)?;
            } else {
                println!("{}", rotated.token);
            }
            let saved = saved.with_context(|| {
                "the admin token was rotated, but the client config could not be written: keep the token printed above"
            })?;
            eprintln!("admin token rotated; the old one no longer works; {} has the new one", saved.display());
        }
    }
    Ok(())
}
