//! `containerd-shim-wisp-v1`, the binary containerd execs: the launcher.
//! It links `wisp_shim_launcher` only (no Wasmtime, no Tokio), answers
//! `start` for a live shared daemon and `delete` itself, and execs
//! `containerd-shim-wisp-v1-daemon` (next to it) for everything else.

fn main() {
    wisp_shim_launcher::main()
}
