//! `containerd-shim-wisp-v1`: containerd starts it as `… start`, `… delete`
//! or (the daemon it spawns) with `-socket`; containerd-shim parses that.

#[tokio::main]
async fn main() {
    containerd_shim::asynchronous::run::<wisp_shim::WispShim>(wisp_shim::RUNTIME_ID, None).await;
}
