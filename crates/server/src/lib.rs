//! Wisp's HTTP gateway: the management API (`/v1/*`, JSON, bearer-token
//! auth), the invoke routes (`/fn/{name}/{*path}`), `/metrics` and
//! `/healthz`. It translates HTTP to executor calls and back and holds no
//! business logic of its own.

mod api;
mod error;
mod invoke;

pub use error::ApiError;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post, put};
use std::sync::Arc;
use wisp_executor::Executor;

/// Shared state of the handlers.
pub struct AppState {
    /// The executor.
    pub exec: Arc<Executor>,
    /// Bearer token required on `/v1/*`, if set.
    pub token: Option<String>,
    /// Host name reported to guests as `SERVER_NAME`.
    pub server_name: String,
    /// Port reported to guests as `SERVER_PORT`.
    pub server_port: u16,
}

/// Build the router. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so guests see
/// `REMOTE_ADDR`.
pub fn router(state: Arc<AppState>) -> Router {
    let max_module = state.exec.options().max_module_bytes;
    let v1 = Router::new()
        .route("/functions", get(api::list_functions))
        .route(
            "/functions/{name}",
            put(api::deploy)
                .get(api::get_function)
                .delete(api::delete_function),
        )
        .route("/functions/{name}/rollback", post(api::rollback))
        .route("/activations", get(api::list_activations))
        .route("/activations/{id}", get(api::get_activation))
        // Multipart framing and the config part on top of the module.
        .layer(DefaultBodyLimit::max(max_module + (1 << 20)))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::auth,
        ));
    Router::new()
        .nest("/v1", v1)
        .route("/fn/{name}", any(invoke::invoke_root))
        .route("/fn/{name}/", any(invoke::invoke_root))
        .route("/fn/{name}/{*path}", any(invoke::invoke_path))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .with_state(state)
}

/// Serve `state` on `listener` until `shutdown` resolves, then stop
/// accepting and let in-flight requests finish (the caller bounds that).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let app = router(state);
    // Streamed bodies go out as several writes; without TCP_NODELAY, Nagle
    // and delayed ACKs would hold each response's tail for ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
