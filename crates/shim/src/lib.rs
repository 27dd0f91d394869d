//! `containerd-shim-wisp-v1`: a containerd runtime v2 shim (task API v2)
//! that runs WebAssembly on Wisp's runtime instead of starting a process.
//!
//! - **command modules** run `_start` once with the spec's args and env, on
//!   containerd's stdio FIFOs; the exit status goes back through `wait`;
//! - **HTTP functions** (`wasi:http` components, or command modules marked
//!   `wisp.abi=http`) are served on `WISP_LISTEN` (default `0.0.0.0:80`)
//!   inside the container's network namespace, a fresh instance per request;
//! - a Kubernetes pod's **sandbox** container is a placeholder that waits
//!   to be killed.
//!
//! The engine is `wisp serve`'s (pooling allocator, epoch deadlines, memory
//! limiter); compiled artifacts are cached per module SHA-256 on the node.
//! Left out on purpose: exec, pause/resume, checkpoint, terminals, cgroup
//! placement, and anything that needs SQLite or axum. docs/containerd.md has
//! the user's view.

pub mod cache;
pub mod http;
pub mod netns;
pub mod service;
pub mod shimlog;
pub mod spec;
pub mod stats;
pub mod stdio;

pub use service::WispShim;
/// Grouping, start lock and socket liveness: shared with the launcher.
pub use wisp_shim_launcher::group;
pub use wisp_shim_launcher::{DAEMON_NAME, LAUNCHER_NAME, RUNTIME_ID};
