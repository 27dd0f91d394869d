//! Invoking an action: `POST …/actions/{name}[?blocking=true[&result=true]]`.
//!
//! A run merges the action's default parameters under the invoke's, builds
//! the guest's input with the shared action contract ([`crate::action`]),
//! runs it through [`wisp_executor::Executor::call`] (admission, warm
//! template, guest runtime, the record's `Draft`), judges the output with
//! [`crate::action::outcome`] and completes the record with OpenWhisk's
//! fields. Blocking invokes run at once and wait up to the blocking limit;
//! past it they answer 202 and the activation goes on. Non-blocking ones go
//! through the durable queue ([`super::queue`]).

use super::actions::{Action, Ow, flag};
use super::activations::{activation_json, response_of};
use super::entities::kv_map;
use super::{Controller, NsName, OwError, Subject, json_object, ok_json};
use crate::action::{self, Outcome};
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wisp_core::{Activation, ErrorKind};
use wisp_executor::Call;

/// One activation to run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Namespace and name of the action.
    pub ns: String,
    pub name: String,
    /// The invoke's parameters (the action's defaults go under them).
    pub params: Map<String, Value>,
    /// Its activation id (chosen before it runs: the client may have it).
    pub id: String,
    /// The activation that caused it (a sequence, a trigger).
    pub cause: Option<String>,
    /// Who invoked it (the namespace whose key was used).
    pub subject: String,
    /// Time already spent waiting (in the durable queue), milliseconds.
    pub queued_ms: u64,
    /// 0 for an invoke; a sequence's components are one deeper.
    pub depth: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Why a run did not produce an activation: refused before running
/// (429/503, the action is gone), with the status OpenWhisk would answer.
pub(crate) type Refused = OwError;

impl Controller {
    /// Run an action (or a sequence) once; the finished record, not yet
    /// written. Nested sequences and components count against
    /// `budget` atomic actions.
    pub(crate) async fn run(self: &Arc<Self>, run: Run) -> Result<Activation, Refused> {
        let action = self
            .resolve(&run.ns, &run.name)
            .await?
            .ok_or_else(OwError::not_found)?;
        match action {
            Action::Wasm(h, ow) => self.run_wasm(&run, &h, &ow).await,
            Action::Sequence { ow, components, .. } => {
                Box::pin(self.run_sequence(&run, &ow, &components)).await
            }
        }
    }

    async fn run_wasm(
        &self,
        run: &Run,
        h: &Arc<wisp_executor::FunctionHandle>,
        ow: &Ow,
    ) -> Result<Activation, Refused> {
        let mut params = kv_map(&ow.parameters);
        params.extend(run.params.clone());
        let deadline = now_ms() + ow.limits.timeout;
        let mut ctx = Map::new();
        ctx.insert("namespace".into(), run.ns.clone().into());
        ctx.insert(
            "action_name".into(),
            format!("/{}/{}", run.ns, run.name).into(),
        );
        ctx.insert("action_version".into(), ow.version.clone().into());
        ctx.insert("activation_id".into(), run.id.clone().into());
        ctx.insert("transaction_id".into(), run.id.clone().into());
        ctx.insert("deadline".into(), deadline.into());
        ctx.insert("api_host".into(), self.opts.api_host.clone().into());
        let input = action::input(&run.name, &params, h.env(), &ctx);
        let called = self
            .exec
            .call(
                h,
                Call {
                    stdin: input.stdin,
                    env: input.env,
                    id: Some(run.id.clone()),
                },
            )
            .await
            .map_err(refused)?;
        let outcome = action::outcome(&called.result);
        let timed_out = matches!(called.result, Err(wisp_runtime::RunError::Timeout(..)));
        let mut rec = called.record;
        let wait_ms = run.queued_ms + called.wait.as_millis() as u64;
        let mut annotations = vec![
            json!({"key": "path", "value": format!("{}/{}", run.ns, run.name)}),
            json!({"key": "waitTime", "value": wait_ms}),
            json!({"key": "kind", "value": ow.kind}),
            json!({"key": "timeout", "value": timed_out}),
            json!({"key": "limits", "value": ow.limits.json()}),
        ];
        if called.cold {
            annotations.push(json!({"key": "initTime", "value": called.init.as_millis() as u64}));
        }
        complete(&mut rec, run, ow, &outcome, annotations, None);
        Ok(rec)
    }
}

/// Fill in OpenWhisk's part of a record.
pub(crate) fn complete(
    rec: &mut Activation,
    run: &Run,
    ow: &Ow,
    outcome: &Outcome,
    annotations: Vec<Value>,
    logs: Option<Vec<String>>,
) {
    rec.result = Some(outcome.result());
    let mut m = json!({
        "status": outcome.status(),
        "statusCode": outcome.status_code(),
        "annotations": annotations,
        "version": ow.version,
        "subject": run.subject,
        "kind": ow.kind,
    });
    if let Some(c) = &run.cause {
        m["cause"] = c.clone().into();
    }
    if let Some(l) = logs {
        m["logs"] = json!(l);
    }
    rec.meta = Some(json!({ "openwhisk": m }));
}

/// A refusal before running, in OpenWhisk's words.
fn refused(e: wisp_executor::Error) -> OwError {
    match e.kind {
        ErrorKind::TooManyRequests => OwError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many concurrent requests in flight: {}", e.message),
        ),
        ErrorKind::Unavailable => OwError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("System is overloaded, try again later. ({})", e.message),
        ),
        _ => e.into(),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct InvokeQuery {
    #[serde(default)]
    blocking: Option<String>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    timeout: Option<u64>,
}

/// The answer to a blocking invoke that finished: 200 for success, 502
/// for an application or action developer error, 500 for a platform
/// error, as OpenWhisk answers; the record, or only its result with
/// `result=true`.
pub(crate) fn finished(rec: &Activation, result_only: bool) -> Response {
    let resp = response_of(rec);
    let status = match resp["statusCode"].as_u64() {
        Some(0) => StatusCode::OK,
        Some(1) | Some(2) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = if result_only {
        resp["result"].clone()
    } else {
        activation_json(rec, true)
    };
    with_id(ok_json(status, body), &rec.id)
}

pub(crate) fn with_id(mut r: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert("x-openwhisk-activation-id", v);
    }
    r
}

pub(crate) fn accepted(id: &str) -> Response {
    with_id(
        ok_json(StatusCode::ACCEPTED, json!({ "activationId": id })),
        id,
    )
}

/// `POST /namespaces/{ns}/actions/{name}`.
pub(crate) async fn invoke(
    State(ctl): State<Arc<Controller>>,
    Extension(who): Extension<Subject>,
    Path(p): Path<NsName>,
    Query(q): Query<InvokeQuery>,
    super::Body(body): super::Body,
) -> Result<Response, OwError> {
    let ns = who.scope(&p.ns)?;
    if body.len() > (1 << 20) {
        return Err(OwError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request entity too large: {} > 1048576 bytes.", body.len()),
        ));
    }
    let params = json_object(&body)?;
    if ctl.resolve(&ns, &p.name).await?.is_none() {
        return Err(OwError::not_found());
    }
    let run = Run {
        ns: ns.clone(),
        name: p.name.clone(),
        params,
        id: wisp_executor::new_activation_id(),
        cause: None,
        subject: who.namespace().to_string(),
        queued_ms: 0,
        depth: 0,
    };
    if !flag(&q.blocking) {
        let id = run.id.clone();
        ctl.enqueue(run).await?;
        return Ok(accepted(&id));
    }
    let wait = q
        .timeout
        .map(Duration::from_millis)
        .unwrap_or(ctl.opts.blocking_wait)
        .min(ctl.opts.blocking_wait);
    Ok(ctl.blocking(run, wait, flag(&q.result)).await)
}

impl Controller {
    /// Run now and wait up to `wait`: the finished answer, or 202 with the
    /// id while the activation goes on (its record is written when it ends).
    pub(crate) async fn blocking(
        self: &Arc<Self>,
        run: Run,
        wait: Duration,
        result_only: bool,
    ) -> Response {
        let id = run.id.clone();
        let ctl = self.clone();
        // Its own task: neither the wait limit nor a client that leaves
        // stops the activation.
        let task = tokio::spawn(async move {
            let r = ctl.run(run).await;
            if let Ok(rec) = &r {
                ctl.exec.record(rec.clone());
            }
            r
        });
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(Ok(rec))) => finished(&rec, result_only),
            Ok(Ok(Err(refusal))) => refusal.into_response(),
            Ok(Err(join)) => {
                OwError::new(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()).into_response()
            }
            Err(_) => accepted(&id),
        }
    }
}
