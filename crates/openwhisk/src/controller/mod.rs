//! The OpenWhisk controller API: the subset of `/api/v1` that `wsk` and the
//! `openwhisk` npm client use, mapped onto the executor (one executor, one
//! store, no second runtime). `wisp serve` mounts [`router`] under `/api/v1`.
//!
//! | collection | routes | where it lives |
//! |---|---|---|
//! | actions | PUT/GET/DELETE `…/actions/{name}`, GET `…/actions`, POST (invoke) | a Wasm action is a Wisp function of the namespace whose version carries the OpenWhisk fields (`meta`); a sequence is a stored document ([`entities`]) |
//! | activations | GET `…/activations[/{id}[/logs\|/result]]` | Wisp's activation records, with the result and OpenWhisk's fields |
//! | triggers, rules | PUT/GET/DELETE, POST (fire / enable-disable) | stored documents ([`triggers`]) |
//! | `/whisk.system/alarms/alarm` | POST (the feed's lifecycle events) | a built-in feed firing triggers on a cron schedule ([`alarms`]) |
//!
//! Credentials are a namespace's key, `Authorization: Basic
//! base64(uuid:key)`; `_` in a path is the caller's namespace; a key sees
//! and touches only its namespace. Non-blocking invokes go through a
//! bounded, durable queue in the store ([`queue`]); a blocking invoke that
//! outlives `--blocking-wait` turns into a 202, as in OpenWhisk.
//! Errors have OpenWhisk's shape `{"error": "...", "code": "<transaction id>"}`.
//!
//! Left out: packages (and bindings) other than the alarms feed, web
//! actions' `/api/v1/web` route (a web action is served at Wisp's
//! `/ns/{ns}/fn/{name}` instead), API gateway routes, `count=true`.

pub mod actions;
pub mod activations;
pub mod alarms;
mod entities;
pub mod invoke;
pub mod queue;
pub mod sequence;
pub mod triggers;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wisp_core::ErrorKind;
use wisp_executor::Executor;

/// Settings of the controller API.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Longest a blocking invoke waits before it answers 202 with the
    /// activation id (the activation goes on). OpenWhisk: 60 s.
    pub blocking_wait: Duration,
    /// Non-blocking activations accepted but not yet run, at most; past it
    /// an invoke gets 503.
    pub queue_max: u64,
    /// Queued activations run at once.
    pub queue_workers: usize,
    /// `__OW_API_HOST` for actions.
    pub api_host: String,
    /// The server's admin token: `Bearer <token>` acts on any namespace.
    pub admin_token: Option<String>,
    /// Largest module accepted in `exec.code` (decoded).
    pub max_module_bytes: usize,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            blocking_wait: Duration::from_secs(60),
            queue_max: 10_000,
            queue_workers: 64,
            api_host: "http://127.0.0.1:8080".into(),
            admin_token: None,
            max_module_bytes: 64 << 20,
        }
    }
}

/// The controller: the executor, the options, the queue and the alarms.
pub struct Controller {
    pub(crate) exec: Arc<Executor>,
    /// Set by [`Controller::stop`]: queued work still running is left in
    /// the queue, to run again after a restart.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    pub(crate) opts: ControllerOptions,
    pub(crate) queue: queue::Queue,
    pub(crate) alarms: alarms::Alarms,
}

impl Controller {
    /// Build the controller and start its background tasks (the queue's
    /// workers, the alarm clock). Must be called inside a Tokio runtime.
    pub fn start(exec: Arc<Executor>, opts: ControllerOptions) -> Arc<Controller> {
        let ctl = Arc::new(Controller {
            stopping: Default::default(),
            queue: queue::Queue::new(opts.queue_workers),
            alarms: alarms::Alarms::default(),
            exec,
            opts,
        });
        tokio::spawn(queue::run(Arc::downgrade(&ctl)));
        tokio::spawn(alarms::run(Arc::downgrade(&ctl)));
        ctl
    }

    /// The server is stopping: take no more queued work, and leave what is
    /// running in the queue (its guests are about to be stopped), so it
    /// runs again after a restart instead of being recorded as failed.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.queue.wake();
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The executor.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.exec
    }
}

/// Who is calling: a namespace's key, or the admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    Admin,
    Namespace(String),
}

impl Subject {
    /// The namespace `_` stands for.
    pub(crate) fn namespace(&self) -> &str {
        match self {
            Subject::Admin => wisp_core::DEFAULT_NAMESPACE,
            Subject::Namespace(n) => n,
        }
    }

    /// Resolve a path's namespace (`_` is the caller's) and check the
    /// caller may act on it: 403 otherwise, as OpenWhisk answers.
    pub(crate) fn scope(&self, ns: &str) -> Result<String, OwError> {
        let ns = if ns == "_" { self.namespace() } else { ns };
        match self {
            Subject::Namespace(n) if n != ns => Err(OwError::forbidden()),
            _ => Ok(ns.to_string()),
        }
    }
}

/// An error in OpenWhisk's shape: `{"error": "...", "code": "<transaction id>"}`.
#[derive(Debug)]
pub struct OwError {
    /// HTTP status.
    pub status: StatusCode,
    /// The message.
    pub error: String,
}

impl OwError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> OwError {
        OwError {
            status,
            error: error.into(),
        }
    }
    pub(crate) fn not_found() -> OwError {
        OwError::new(
            StatusCode::NOT_FOUND,
            "The requested resource does not exist.",
        )
    }
    pub(crate) fn forbidden() -> OwError {
        OwError::new(
            StatusCode::FORBIDDEN,
            "The supplied authentication is not authorized to access this resource.",
        )
    }
    pub(crate) fn unauthorized() -> OwError {
        OwError::new(
            StatusCode::UNAUTHORIZED,
            "The supplied authentication is invalid.",
        )
    }
    pub(crate) fn conflict() -> OwError {
        OwError::new(
            StatusCode::CONFLICT,
            "Concurrent modification to resource detected.",
        )
    }
    pub(crate) fn bad(msg: impl Into<String>) -> OwError {
        OwError::new(StatusCode::BAD_REQUEST, msg)
    }
    /// A body that does not fit what the route takes: OpenWhisk's words.
    pub(crate) fn malformed(msg: impl std::fmt::Display) -> OwError {
        OwError::bad(format!("The request content was malformed:\n{msg}"))
    }
}

/// An executor error in OpenWhisk's terms.
impl From<wisp_executor::Error> for OwError {
    fn from(e: wisp_executor::Error) -> OwError {
        let status = match e.kind {
            ErrorKind::NotFound => return OwError::not_found(),
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(message = %e.message, "openwhisk api: internal error");
        }
        OwError::new(status, e.message)
    }
}

impl IntoResponse for OwError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "code": wisp_executor::new_activation_id() });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"whisk rest service\""),
            );
        }
        r
    }
}

/// Path `/namespaces/{ns}/{collection}/{name}`.
#[derive(serde::Deserialize)]
pub(crate) struct NsName {
    pub(crate) ns: String,
    pub(crate) name: String,
}

/// Path `/namespaces/{ns}/{collection}`.
#[derive(serde::Deserialize)]
pub(crate) struct NsOnly {
    pub(crate) ns: String,
}

/// `?overwrite=true` of a PUT.
#[derive(serde::Deserialize, Default)]
pub(crate) struct PutQuery {
    #[serde(default)]
    pub(crate) overwrite: Option<String>,
}

/// A JSON answer.
pub(crate) fn ok_json(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

type Ctl = State<Arc<Controller>>;

/// A request body; one over the limit is OpenWhisk's 413, in its shape.
pub(crate) struct Body(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = OwError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(OwError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request content was too large.",
            )),
            Err(e) => Err(OwError::bad(format!(
                "Failed extracting request body. ({e})"
            ))),
        }
    }
}

/// Parse a JSON object body (an absent body is `{}`).
pub(crate) fn json_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, OwError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(OwError::malformed("the body must be a JSON object")),
        Err(e) => Err(OwError::malformed(e)),
    }
}

async fn authenticate(State(ctl): Ctl, mut req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let subject = match (&ctl.opts.admin_token, auth.strip_prefix("Bearer ")) {
        (Some(t), Some(given)) if same_secret(t, given) => Some(Subject::Admin),
        _ => basic_key(auth)
            .and_then(|(uuid, key)| ctl.exec.authenticate(&uuid, &key))
            .map(Subject::Namespace),
    };
    let Some(subject) = subject else {
        return OwError::unauthorized().into_response();
    };
    req.extensions_mut().insert(subject);
    next.run(req).await
}

fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `uuid:key` of `Basic base64(uuid:key)`.
fn basic_key(auth: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(auth.strip_prefix("Basic ")?.trim())
        .ok()?;
    let pair = String::from_utf8(raw).ok()?;
    let (u, k) = pair.split_once(':')?;
    Some((u.to_string(), k.to_string()))
}

/// `GET /namespaces`: the caller's namespace (every one for the admin).
async fn list_namespaces(
    State(ctl): Ctl,
    axum::Extension(who): axum::Extension<Subject>,
) -> Result<Response, OwError> {
    let names: Vec<String> = match who {
        Subject::Namespace(n) => vec![n],
        Subject::Admin => ctl
            .exec
            .namespaces()
            .await?
            .into_iter()
            .map(|n| n.name)
            .collect(),
    };
    Ok(ok_json(StatusCode::OK, json!(names)))
}

/// The routes, to be nested under `/api/v1`.
pub fn router(ctl: Arc<Controller>) -> Router {
    // An action's module travels as base64 in JSON.
    let put_limit = ctl.opts.max_module_bytes / 3 * 4 + (1 << 20);
    Router::new()
        .route("/namespaces", get(list_namespaces))
        .route("/namespaces/{ns}/actions", get(actions::list))
        .route(
            "/namespaces/{ns}/actions/{name}",
            get(actions::get)
                .put(actions::put)
                .delete(actions::delete)
                .post(invoke::invoke),
        )
        .route(
            "/namespaces/{ns}/actions/{package}/{name}",
            post(alarms::feed_action),
        )
        .route("/namespaces/{ns}/activations", get(activations::list))
        .route("/namespaces/{ns}/activations/{id}", get(activations::get))
        .route(
            "/namespaces/{ns}/activations/{id}/logs",
            get(activations::logs),
        )
        .route(
            "/namespaces/{ns}/activations/{id}/result",
            get(activations::result),
        )
        .route("/namespaces/{ns}/triggers", get(triggers::list_triggers))
        .route(
            "/namespaces/{ns}/triggers/{name}",
            get(triggers::get_trigger)
                .put(triggers::put_trigger)
                .delete(triggers::delete_trigger)
                .post(triggers::fire),
        )
        .route("/namespaces/{ns}/rules", get(triggers::list_rules))
        .route(
            "/namespaces/{ns}/rules/{name}",
            get(triggers::get_rule)
                .put(triggers::put_rule)
                .delete(triggers::delete_rule)
                .post(triggers::set_rule_status),
        )
        .fallback(|| async { OwError::not_found() })
        .method_not_allowed_fallback(|| async {
            OwError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP method not allowed, supported methods: GET, PUT, POST, DELETE",
            )
        })
        .layer(DefaultBodyLimit::max(put_limit))
        .route_layer(axum::middleware::from_fn_with_state(
            ctl.clone(),
            authenticate,
        ))
        .with_state(ctl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_as_basic_auth() {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::STANDARD.encode("u-1:s3cret:x");
        assert_eq!(
            basic_key(&format!("Basic {b}")),
            Some(("u-1".into(), "s3cret:x".into()))
        );
        assert_eq!(basic_key("Basic !!!"), None);
        assert_eq!(basic_key("Bearer u:k"), None);
        let ns = Subject::Namespace("a".into());
        assert_eq!(ns.scope("_").unwrap(), "a");
        assert_eq!(ns.scope("b").unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(Subject::Admin.scope("_").unwrap(), "default");
        assert_eq!(Subject::Admin.scope("b").unwrap(), "b");
    }
}
