//! Wisp's Wasmtime embedding: one engine per process, ahead-of-time
//! compilation, loading precompiled artifacts, and running a request in a
//! fresh instance under the **command ABI** (WASI preview 1, CGI/WAGI style).
//!
//! Lifecycle:
//! - **once per process**: [`Runtime::new`] builds the `Engine` (pooling
//!   allocator with copy-on-write memory images, epoch interruption, one
//!   ticker thread) and the WASI linker;
//! - **once per function version** (deploy): [`Runtime::compile`] validates
//!   and precompiles; [`Runtime::load`] maps the artifact and links it into a
//!   ready-to-instantiate [`Loaded`] template (`InstancePre`);
//! - **once per request**: [`Runtime::invoke`] creates a new `Store`, WASI
//!   context and instance, runs `_start` under memory and time limits, and
//!   drops everything when done. Nothing survives between requests.
//! - **once per command** (`wisp run`, the containerd shim):
//!   [`Runtime::run_command`] runs `_start` with argv, env, dirs and real
//!   stdio, to its exit status, until a [`StopHandle`] stops it.
//!
//! It deliberately knows nothing about HTTP routing, SQL or where artifacts
//! live: callers hand it bytes and paths.

mod command;
mod engine;
mod http;
mod invoke;
mod lanes;
mod pipe;

pub use command::{
    CommandExit, CommandRun, EXIT_TIMEOUT, EXIT_TRAP, GuestInput, GuestOutput, StopHandle,
};
pub use engine::{Compiled, EngineOptions, Loaded, Runtime};
pub use http::{
    BoxError, Completion, GuestBody, HttpDone, HttpInvocation, HttpOutput, HttpState, ResponseBody,
};
pub use invoke::{Ahead, Invocation, Output, RunError, Teardown};
pub use lanes::{AbortOnDrop, GuestLanes, LaneHint, RateMeter, demote_when, lower_thread_priority};
pub use wisp_core::cgi::{CgiRequest, CgiResponse, build_cgi_env, parse_cgi_response, parse_query};

/// Errors of compile and load.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a valid module this runtime accepts; the message
    /// says why and is safe to show to the user.
    #[error("{0}")]
    Invalid(String),
    /// Host-side failure (I/O, engine).
    #[error("{0}")]
    Internal(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
