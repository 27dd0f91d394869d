//! The OpenWhisk action proxy: Wisp as a runtime container.
//!
//! OpenWhisk's invoker starts one container per action and drives it over
//! HTTP on port 8080:
//!
//! - `POST /init` `{"value": {"name", "main", "code", "binary", "env"}}`, once:
//!   the module (base64 when `binary`, else WAT text) is compiled here, ahead
//!   of every run. A second `/init` is refused with 403, as OpenWhisk's own
//!   runtimes do.
//! - `POST /run` `{"value": {...}, "namespace", "action_name",
//!   "activation_id", "deadline", "api_key", ...}`, one at a time (a fresh
//!   instance each, so overlapping runs are safe too): `value` goes to the
//!   guest as its parameters, every other field as `__OW_<FIELD>`, and the
//!   run is bounded by the earlier of `deadline` and the proxy's timeout.
//!   200 with the result object, including application errors
//!   (`{"error": ...}`); 502 with `{"error": ...}` when the action broke the
//!   contract (trap, timeout, exit, a result that isn't an object).
//! - Logs: after each activation, the guest's stderr goes to the proxy's
//!   stderr, framed by `XXX_THE_START_OF_A_WHISK_ACTIVATION_XXX with id ID`
//!   and `XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX` lines on both stdout and
//!   stderr, written before the response so the invoker finds them.

use crate::action::{self, Outcome};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wisp_core::Limits;
use wisp_runtime::{Invocation, Loaded, Runtime};

/// The log frame's end marker, on stdout and stderr after each activation.
pub const END_SENTINEL: &str = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX";
/// The log frame's start marker (followed by ` with id ACTIVATION_ID`).
pub const START_SENTINEL: &str = "XXX_THE_START_OF_A_WHISK_ACTIVATION_XXX";

/// Settings of one proxy.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Limits of every run: memory, result and log sizes, and the longest
    /// a run may take when the platform's deadline is later.
    pub limits: Limits,
    /// Largest module accepted by `/init`.
    pub max_module_bytes: usize,
    /// Largest `/run` body (the parameters).
    pub max_run_bytes: usize,
    /// `__OW_API_HOST` when the platform doesn't send `api_host`
    /// (OpenWhisk sets it in the container's environment).
    pub api_host: Option<String>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            limits: Limits::default(),
            max_module_bytes: 64 << 20,
            max_run_bytes: 16 << 20,
            api_host: None,
        }
    }
}

/// The initialized action.
struct Action {
    name: String,
    loaded: Loaded,
    env: Vec<(String, String)>,
}

struct Proxy {
    runtime: Arc<Runtime>,
    opts: ProxyOptions,
    /// An `/init` has begun and not failed: another one is refused.
    claimed: AtomicBool,
    action: OnceLock<Action>,
    logs: LogWriter,
}

/// The proxy's routes. `runtime` compiles and runs the action.
pub fn router(runtime: Arc<Runtime>, opts: ProxyOptions) -> Router {
    router_with_logs(runtime, opts, LogWriter::stdio())
}

/// As [`router`], writing activation logs to `logs`.
pub fn router_with_logs(runtime: Arc<Runtime>, opts: ProxyOptions, logs: LogWriter) -> Router {
    // base64 is 4/3 of the module, plus the JSON around it.
    let init_limit = opts.max_module_bytes / 3 * 4 + 64 * 1024;
    let run_limit = opts.max_run_bytes;
    let proxy = Arc::new(Proxy {
        runtime,
        opts,
        claimed: AtomicBool::new(false),
        action: OnceLock::new(),
        logs,
    });
    Router::new()
        .route("/init", post(init).layer(DefaultBodyLimit::max(init_limit)))
        .route("/run", post(run).layer(DefaultBodyLimit::max(run_limit)))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "unknown route: the action proxy serves POST /init and POST /run",
            )
        })
        .with_state(proxy)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": msg.into() }))).into_response()
}

#[derive(Deserialize)]
struct InitBody {
    value: Option<InitValue>,
}

#[derive(Deserialize, Default)]
struct InitValue {
    #[serde(default)]
    name: String,
    #[serde(default)]
    main: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    binary: bool,
    #[serde(default)]
    env: Map<String, Value>,
}

async fn init(State(p): State<Arc<Proxy>>, body: axum::body::Bytes) -> Response {
    if p.claimed.swap(true, Ordering::AcqRel) {
        return error(
            StatusCode::FORBIDDEN,
            "Cannot initialize the action more than once.",
        );
    }
    match prepare(&p, &body).await {
        Ok(action) => {
            tracing::info!(action = %action.name, "action initialized");
            let _ = p.action.set(action);
            (StatusCode::OK, axum::Json(json!({ "ok": true }))).into_response()
        }
        Err(msg) => {
            // A failed init may be retried (OpenWhisk destroys the
            // container instead, which is also fine).
            p.claimed.store(false, Ordering::Release);
            tracing::warn!(error = %msg, "action initialization failed");
            error(StatusCode::BAD_GATEWAY, msg)
        }
    }
}

/// Decode, check and compile the module of an `/init`.
async fn prepare(p: &Proxy, body: &[u8]) -> Result<Action, String> {
    let req: InitBody =
        serde_json::from_slice(body).map_err(|e| format!("the /init body is not valid: {e}"))?;
    let v = req.value.unwrap_or_default();
    if v.code.trim().is_empty() {
        return Err("Missing main/no code to execute.".into());
    }
    if !matches!(v.main.as_str(), "" | "main" | "_start") {
        return Err(format!(
            "main {:?} is not supported: a Wasm action starts at its _start export \
             (build it as a wasm32-wasip1 command and leave main unset)",
            v.main
        ));
    }
    let wasm = if v.binary {
        let text: String = v.code.split_ascii_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| format!("code is not valid base64 (binary is true): {e}"))?
    } else {
        wat::parse_str(&v.code).map_err(|e| {
            format!(
                "code is text (binary is false) but not a WebAssembly text module: {e}; \
                 send a .wasm file base64-encoded with binary: true"
            )
        })?
    };
    if wasm.len() > p.opts.max_module_bytes {
        return Err(format!(
            "the module is {} bytes, over the {}-byte limit",
            wasm.len(),
            p.opts.max_module_bytes
        ));
    }
    if wasm.starts_with(b"PK\x03\x04") {
        return Err("code is a zip archive: create the action from the .wasm file itself".into());
    }
    if !wasm.starts_with(b"\0asm") {
        return Err("code is not a WebAssembly module (no \\0asm header)".into());
    }
    let runtime = p.runtime.clone();
    let loaded = tokio::task::spawn_blocking(move || runtime.load_bytes(&wasm))
        .await
        .map_err(|e| format!("compiling the module failed: {e}"))?
        .map_err(|e| format!("the module does not compile or link: {e}"))?;
    if !matches!(loaded, Loaded::Command(_)) {
        return Err(
            "the module is a wasi:http component; an action must be a wasm32-wasip1 command \
             module (parameters on stdin, result on stdout)"
                .into(),
        );
    }
    let env = v
        .env
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    let name = if v.name.is_empty() {
        "action".into()
    } else {
        v.name
    };
    Ok(Action { name, loaded, env })
}

async fn run(State(p): State<Arc<Proxy>>, body: axum::body::Bytes) -> Response {
    let Some(action) = p.action.get() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "no action defined yet: POST /init first",
        );
    };
    let mut ctx: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "the /run body must be a JSON object",
            );
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the /run body is not valid JSON: {e}"),
            );
        }
    };
    let params = match ctx.remove("value") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return error(StatusCode::BAD_REQUEST, "value must be a JSON object"),
    };
    if !ctx.contains_key("api_host")
        && let Some(h) = &p.opts.api_host
    {
        ctx.insert("api_host".into(), Value::String(h.clone()));
    }
    let id = ctx
        .get("activation_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();

    // The earlier of the platform's deadline and the proxy's own limit.
    let mut limits = p.opts.limits.clone();
    if let Some(deadline_ms) = ctx.get("deadline").and_then(deadline_millis) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let left = deadline_ms.saturating_sub(now_ms);
        if left == 0 {
            p.logs
                .frame(
                    &id,
                    b"the activation's deadline had passed when /run arrived\n",
                )
                .await;
            return error(
                StatusCode::BAD_GATEWAY,
                "The action did not run: its deadline had passed when /run arrived.",
            );
        }
        limits.timeout_ms = limits.timeout_ms.min(left);
    }

    let input = action::input(&action.name, &params, &action.env, &ctx);
    let args = [action.name.clone()];
    let result = p
        .runtime
        .invoke(
            &action.loaded,
            Invocation {
                args: &args,
                env: &input.env,
                stdin: input.stdin,
                dirs: &[],
                limits: &limits,
            },
        )
        .await;
    let outcome = action::outcome(&result);
    p.logs.frame(&id, action::log(&result)).await;
    match outcome {
        Outcome::Success(m) | Outcome::ApplicationError(m) => {
            (StatusCode::OK, axum::Json(Value::Object(m))).into_response()
        }
        Outcome::DeveloperError(msg) => error(StatusCode::BAD_GATEWAY, msg),
    }
}

/// `deadline` is milliseconds since the epoch, as a number or a string.
fn deadline_millis(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Writes each activation's log frame on a thread of its own (the writes
/// are blocking), one frame at a time, so frames never interleave.
#[derive(Clone)]
pub struct LogWriter {
    tx: std::sync::mpsc::Sender<Frame>,
}

struct Frame {
    id: String,
    log: Vec<u8>,
    done: tokio::sync::oneshot::Sender<()>,
}

type Sink = Box<dyn Write + Send>;

impl LogWriter {
    /// Frames to this process's stdout and stderr.
    pub fn stdio() -> LogWriter {
        LogWriter::to(
            || Box::new(std::io::stdout()),
            || Box::new(std::io::stderr()),
        )
    }

    /// Frames to the writers `out` and `err` make (made on the log thread).
    pub fn to(
        out: impl FnOnce() -> Sink + Send + 'static,
        err: impl FnOnce() -> Sink + Send + 'static,
    ) -> LogWriter {
        let (tx, rx) = std::sync::mpsc::channel::<Frame>();
        std::thread::Builder::new()
            .name("wisp-ow-logs".into())
            .spawn(move || {
                let (mut out, mut err) = (out(), err());
                for f in rx {
                    // stdout carries only the markers: the action's stdout
                    // is its result, not a log.
                    let _ = write!(out, "{START_SENTINEL} with id {}\n{END_SENTINEL}\n", f.id);
                    let _ = out.flush();
                    let _ = writeln!(err, "{START_SENTINEL} with id {}", f.id);
                    let _ = err.write_all(&f.log);
                    if !f.log.is_empty() && !f.log.ends_with(b"\n") {
                        let _ = err.write_all(b"\n");
                    }
                    let _ = writeln!(err, "{END_SENTINEL}");
                    let _ = err.flush();
                    let _ = f.done.send(());
                }
            })
            .expect("spawning the log thread");
        LogWriter { tx }
    }

    /// Write one activation's frame and wait until it is out.
    async fn frame(&self, id: &str, log: &[u8]) {
        let (done, wait) = tokio::sync::oneshot::channel();
        let f = Frame {
            id: id.to_string(),
            log: log.to_vec(),
            done,
        };
        if self.tx.send(f).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
        }
    }
}
