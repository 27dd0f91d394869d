//! Wisp's HTTP gateway: the management API (`/v1/*`, JSON, bearer-token
//! auth), the invoke routes (`/fn/{name}/{*path}`), `/metrics` and
//! `/healthz`, served by [`conn`]'s accept loop with its connection cap and
//! timeouts. It translates HTTP to executor calls and back and holds no
//! business logic of its own.

mod api;
pub mod conn;
mod error;
mod guard;
mod invoke;
pub mod openapi;

pub use conn::{Demotion, HttpLimits};
pub use error::ApiError;
pub use guard::{Access, Caller, HostCheck, namespace_key};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, post, put};
use std::sync::Arc;
use wisp_executor::Executor;

/// Shared state of the handlers.
pub struct AppState {
    /// The executor.
    pub exec: Arc<Executor>,
    /// Who may use the management API and `/metrics`.
    pub access: Access,
    /// Host name reported to guests as `SERVER_NAME`.
    pub server_name: String,
    /// Port reported to guests as `SERVER_PORT`.
    pub server_port: u16,
    /// How `oci://` deploys are pulled.
    pub oci: OciPulls,
    /// The OpenWhisk controller API, served under `/api/v1` when set.
    pub openwhisk: Option<Arc<wisp_openwhisk::controller::Controller>>,
}

/// The server's registry client for `oci://` deploys, and the few pulls
/// it runs at once (each holds up to the module limit in memory).
pub struct OciPulls {
    /// The client: the server's own credentials (Docker config of the user
    /// running `wisp serve`), its insecure-registry list, size and time bounds.
    pub client: wisp_oci::RegistryClient,
    /// Pulls in flight; past it a deploy gets 503 with Retry-After.
    pub slots: tokio::sync::Semaphore,
    /// Registries (`host[:port]`) deploys may pull from; empty: any.
    pub allowed: Vec<String>,
}

impl OciPulls {
    /// Most pulls at once.
    pub const MAX_PULLS: usize = 4;

    /// Pulls with `opts` (its progress callback is ignored).
    pub fn new(mut opts: wisp_oci::RegistryOptions, allowed: Vec<String>) -> OciPulls {
        opts.progress = None;
        OciPulls {
            client: wisp_oci::RegistryClient::new(opts),
            slots: tokio::sync::Semaphore::new(Self::MAX_PULLS),
            allowed,
        }
    }

    /// Refuse a reference whose registry isn't allowed, before any traffic.
    pub fn check(&self, reference: &str) -> Result<(), String> {
        let r = wisp_oci::registry::parse_reference(reference).map_err(|e| e.to_string())?;
        if self.allowed.is_empty()
            || self.allowed.iter().any(|a| {
                a.eq_ignore_ascii_case(r.registry()) || a.eq_ignore_ascii_case(r.resolve_registry())
            })
        {
            return Ok(());
        }
        Err(format!(
            "registry {} is not allowed on this server (wisp serve --allow-registry: {})",
            r.registry(),
            self.allowed.join(", ")
        ))
    }
}

/// Build the router. Each request must carry `ConnectInfo<SocketAddr>`
/// ([`serve`] inserts it) so guests see `REMOTE_ADDR`.
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
        .route("/functions/{name}/module", get(api::get_module))
        .route("/functions/{name}/rollback", post(api::rollback))
        .route("/activations", get(api::list_activations))
        .route("/activations/{id}", get(api::get_activation))
        // The same, in a named namespace (`_`: the caller's); and the
        // namespaces themselves.
        .route(
            "/namespaces",
            get(api::list_namespaces).post(api::create_namespace),
        )
        .route("/namespaces/{ns}", delete(api::delete_namespace))
        .route("/namespaces/{ns}/key", post(api::rotate_key))
        .route("/namespaces/{ns}/functions", get(api::list_functions))
        .route(
            "/namespaces/{ns}/functions/{name}",
            put(api::deploy)
                .get(api::get_function)
                .delete(api::delete_function),
        )
        .route(
            "/namespaces/{ns}/functions/{name}/module",
            get(api::get_module),
        )
        .route(
            "/namespaces/{ns}/functions/{name}/rollback",
            post(api::rollback),
        )
        .route("/namespaces/{ns}/activations", get(api::list_activations))
        .route("/openapi.json", get(openapi::openapi_json))
        // Multipart framing and the config part on top of the module.
        .layer(DefaultBodyLimit::max(max_module + (1 << 20)))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::api_auth,
        ));
    let metrics = Router::new()
        .route("/metrics", get(api::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::metrics_auth,
        ));
    let mut app = Router::new().nest("/v1", v1);
    if let Some(ow) = &state.openwhisk {
        // Its own credentials (a namespace's key) and error shape.
        app = app.nest_service("/api/v1", wisp_openwhisk::controller::router(ow.clone()));
    }
    app.merge(metrics)
        .route("/fn/{name}", any(invoke::invoke))
        .route("/fn/{name}/", any(invoke::invoke))
        .route("/fn/{name}/{*path}", any(invoke::invoke))
        // Functions of other namespaces (see docs/architecture.md, "Namespaces").
        .route("/ns/{ns}/fn/{name}", any(invoke::invoke))
        .route("/ns/{ns}/fn/{name}/", any(invoke::invoke))
        .route("/ns/{ns}/fn/{name}/{*path}", any(invoke::invoke))
        .route("/healthz", get(api::healthz))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::host_check,
        ))
        .with_state(state)
}

/// Serve `state` on `listener` under `limits` until `shutdown` resolves,
/// then stop accepting and let in-flight requests finish (the caller
/// bounds that).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve(listener, router(state), limits, shutdown).await
}
