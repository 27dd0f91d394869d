//! `containerd-shim-wisp-v1-daemon`: the shim daemon with Wisp's runtime.
//! The launcher `containerd-shim-wisp-v1` execs it, with containerd's
//! arguments, for a `start` that must spawn a daemon and for anything else
//! it does not answer itself; the daemon it spawns runs this binary again
//! with `-socket`. containerd-shim parses those.

#[tokio::main]
async fn main() {
    // containerd-shim's `run` needs TTRPC_ADDRESS even for `-v` and never
    // prints a version: answer it here, as other shims do.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if wisp_shim_launcher::args::parse(&args).is_ok_and(|f| f.version) {
        print!("{}", wisp_shim_launcher::version(wisp_shim::DAEMON_NAME));
        return;
    }
    // The daemon's stderr goes nowhere containerd shows: a panic is also
    // written to containerd's log (through the shim's logger) before the
    // default hook runs.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("{} panicked: {info}", wisp_shim::DAEMON_NAME);
        default(info);
    }));
    containerd_shim::asynchronous::run::<wisp_shim::WispShim>(wisp_shim::RUNTIME_ID, None).await;
}
