//! `containerd-shim-wisp-v1`: containerd starts it as `… start`, `… delete`
//! or (the daemon it spawns) with `-socket`; containerd-shim parses that.

#[tokio::main]
async fn main() {
    // The daemon's stderr goes nowhere containerd shows: a panic is also
    // written to containerd's log (through the shim's logger) before the
    // default hook runs.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        log::error!("containerd-shim-wisp-v1 panicked: {info}");
        default(info);
    }));
    containerd_shim::asynchronous::run::<wisp_shim::WispShim>(wisp_shim::RUNTIME_ID, None).await;
}
