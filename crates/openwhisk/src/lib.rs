//! OpenWhisk compatibility.
//!
//! [`proxy`]: Wisp as an OpenWhisk *runtime*: the action proxy protocol
//! (`POST /init` once, then `POST /run` per activation, log sentinels), so an
//! unmodified OpenWhisk deployment runs Wasm actions in a Wisp runtime
//! container (`wisp openwhisk-runtime`). See `docs/openwhisk.md`.
//!
//! [`controller`]: Wisp as an OpenWhisk *controller*: the REST API
//! (`/api/v1`) that `wsk` and the `openwhisk` npm client use, with
//! namespaces' keys, actions, sequences, activations, a durable queue for
//! non-blocking invokes, triggers, rules and an alarm feed, over the
//! executor. `wisp serve` mounts it.
//!
//! [`action`]: the action contract shared by both sides:
//! parameters in as one JSON object on stdin, one JSON object out on
//! stdout, `{"error": ...}` an application error, stderr the log.

pub mod action;
pub mod controller;
pub mod proxy;
