//! OpenWhisk compatibility.
//!
//! [`proxy`]: Wisp as an OpenWhisk *runtime*: the action proxy protocol
//! (`POST /init` once, then `POST /run` per activation, log sentinels), so an
//! unmodified OpenWhisk deployment runs Wasm actions in a Wisp runtime
//! container (`wisp openwhisk-runtime`). See `docs/openwhisk.md`.
//!
//! [`action`]: the action contract shared with the controller API side:
//! parameters in as one JSON object on stdin, one JSON object out on
//! stdout, `{"error": ...}` an application error, stderr the log.

pub mod action;
pub mod proxy;
