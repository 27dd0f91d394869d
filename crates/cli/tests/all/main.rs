//! Integration tests of Wisp: the real `wisp` binary, started on
//! 127.0.0.1:0, driven over HTTP and through its CLI. One test binary for
//! the crate (link time matters on 2 cores).

mod support;

mod api;
mod bench;
mod cli;
mod functions;
mod hardening;
mod http;
mod limits;
mod namespaces;
mod oci;
mod openwhisk;
mod openwhisk_api;
mod store;
