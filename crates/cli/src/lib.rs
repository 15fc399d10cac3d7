//! The `halo` command line: every command talks to the REST API of an agent and prints either a
//! table for people or, with `--json`, the API's stable JSON shapes.

pub mod client;
pub mod commands;
pub mod demo;
pub mod html;
pub mod log;
pub mod output;
pub mod role;
pub mod rotation;
pub mod token;
pub mod validate;

pub use commands::{Command, run};

/// Wall-clock milliseconds since the UNIX epoch, as the API's times are given.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
