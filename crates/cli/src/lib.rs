//! The `wisp` command line: `serve` runs the platform; the other commands
//! talk to a running server over its HTTP API (`--server`), except `run`
//! and `compile`, which work locally without a server.
//!
//! The binary (`main.rs`) only parses and dispatches; each subcommand lives
//! in `commands/<name>.rs`. The small HTTP client in [`client`] is also used
//! by the integration tests.

pub mod client;
pub mod commands;
