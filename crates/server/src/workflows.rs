//! Workflows over HTTP: `PUT/GET/DELETE /v1/workflows/{name}`, the list,
//! a workflow's runs, and `POST /wf/{name}` to run one (public, like
//! `/fn`, under the same `Host` check and body limits).
//!
//! A workflow belongs to a namespace and its steps are that namespace's
//! functions. As for functions, the unscoped routes act on the caller's
//! namespace (`default` for the admin), `/v1/namespaces/{ns}/workflows/...`
//! names one (`_`: the caller's; a key reaches only its own), and
//! `/ns/{ns}/wf/{name}` runs another namespace's workflow than `default`'s.

use crate::guard::{Caller, scope};
use crate::openapi::ApiQuery as Query;
use crate::{ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use wisp_core::ErrorKind;
use wisp_executor::{WorkflowHandle, WorkflowInput};
use wisp_workflow::Source;

type S = State<Arc<AppState>>;
type Who = Extension<Caller>;

/// `{name}` of an unscoped route, or `{ns}` and `{name}` of a namespaced one.
#[derive(Deserialize)]
pub(crate) struct WfPath {
    ns: Option<String>,
    name: String,
}

/// `{ns}` of a namespaced collection route.
#[derive(Deserialize)]
pub(crate) struct NsPath {
    ns: Option<String>,
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("workflow {name:?} not found"))
}

/// A workflow as the API shows it: the stored definition (canonical JSON
/// and as uploaded), and how it resolves now (or why it can't run).
async fn shown(st: &AppState, wf: &WorkflowHandle, full: bool) -> Value {
    let s = wf.stored();
    let mut v = json!({
        "namespace": s.namespace,
        "name": s.name,
        "version": s.version,
        "created_ms": s.created_ms,
        "updated_ms": s.updated_ms,
    });
    if let Ok(d) = wf.definition() {
        v["description"] = json!(d.description);
        v["steps"] = json!(d.steps.len());
        if full {
            v["definition"] = serde_json::to_value(d).expect("serialises");
        }
    }
    if full {
        v["source"] = json!(s.source);
    }
    match st.exec.prepare_workflow(wf).await {
        Ok(p) => {
            if full {
                let plan = p.plan();
                let steps: Vec<Value> = plan
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, step)| {
                        json!({
                            "step": step.name,
                            "function": step.function.name,
                            "version": step.resolved.version,
                            "abi": step.resolved.abi,
                            "inputs": step.inputs.iter().map(|s| match s {
                                Source::Input => wisp_workflow::INPUT.to_string(),
                                Source::Step(k) => plan.steps[*k].name.clone(),
                            }).collect::<Vec<_>>(),
                            "stream": step.stream,
                            "output": i == plan.output,
                            "limits": step.limits,
                        })
                    })
                    .collect();
                v["plan"] = json!(steps);
                v["max_input_bytes"] = json!(plan.max_input_bytes());
            }
        }
        Err(e) => v["broken"] = json!(e.message),
    }
    v
}

#[utoipa::path(put, path = "/v1/workflows/{name}", tag = "workflows", security(("token" = [])),
    params(("name" = String, Path, example = "frames", description = "1-64 characters of [a-zA-Z0-9_-], starting with a letter or digit")),
    request_body(description = "The definition, YAML or JSON (JSON when it starts with `{`); see docs/workflows.md",
        content((String = "application/yaml"), (wisp_workflow::Workflow = "application/json"))),
    responses((status = 201, description = "Stored: a new version of the definition", body = Object),
              (status = 200, description = "The same definition was stored already", body = Object),
              (status = 400, response = crate::openapi::BadRequest),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 413, response = crate::openapi::TooLarge)))]
/// `PUT /v1/workflows/{name}`: validate and store a definition.
pub(crate) async fn deploy(
    State(st): S,
    Extension(who): Who,
    Path(WfPath { ns, name }): Path<WfPath>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let body = Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorKind::PayloadTooLarge, "the definition is too large")
        } else {
            ApiError::new(ErrorKind::BadRequest, format!("reading body: {e}"))
        }
    })?;
    let (wf, changed) = st.exec.deploy_workflow(&ns, &name, body).await?;
    let mut v = shown(&st, &wf, true).await;
    v["created"] = json!(changed);
    let status = if changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)).into_response())
}

#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", security(("token" = [])),
    responses((status = 200, description = "Every workflow: name, version, step count, and `broken` when it can't run now", body = Object),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden)))]
pub(crate) async fn list(
    State(st): S,
    Extension(who): Who,
    Path(NsPath { ns }): Path<NsPath>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let mut out = Vec::new();
    for wf in st.exec.workflows(Some(&ns)) {
        out.push(shown(&st, &wf, false).await);
    }
    Ok(Json(json!({ "workflows": out })).into_response())
}

#[utoipa::path(get, path = "/v1/workflows/{name}", tag = "workflows", security(("token" = [])),
    params(("name" = String, Path, example = "frames", description = "Workflow name")),
    responses((status = 200, description = "The definition (canonical and as uploaded), the plan it resolves to now, or `broken`", body = Object),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
pub(crate) async fn get(
    State(st): S,
    Extension(who): Who,
    Path(WfPath { ns, name }): Path<WfPath>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let wf = st
        .exec
        .workflow(&ns, &name)
        .ok_or_else(|| not_found(&name))?;
    Ok(Json(shown(&st, &wf, true).await).into_response())
}

#[utoipa::path(delete, path = "/v1/workflows/{name}", tag = "workflows", security(("token" = [])),
    params(("name" = String, Path, example = "frames", description = "Workflow name")),
    responses((status = 204, description = "Removed (runs in flight finish)"),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
pub(crate) async fn delete(
    State(st): S,
    Extension(who): Who,
    Path(WfPath { ns, name }): Path<WfPath>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    if st.exec.remove_workflow(&ns, &name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found(&name))
    }
}

#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/workflows/{name}/runs", tag = "workflows", security(("token" = [])),
    params(("name" = String, Path, example = "frames", description = "Workflow name"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "At most this many, newest first (default 20)")),
    responses((status = 200, description = "Recent runs with their step timings", body = Object),
              (status = 400, response = crate::openapi::BadRequest),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden)))]
pub(crate) async fn runs(
    State(st): S,
    Extension(who): Who,
    Path(WfPath { ns, name }): Path<WfPath>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            format!("limit must be between 1 and 10000, got {limit}"),
        ));
    }
    let runs = st.exec.workflow_runs(ns, Some(name), limit).await?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// `GET /v1/activations/{id}` for a workflow run: its record plus its
/// steps' activation records; `None` for another namespace's run.
pub(crate) async fn run_record(
    st: &AppState,
    who: &Caller,
    id: String,
) -> Result<Option<Value>, ApiError> {
    Ok(st
        .exec
        .workflow_run(id)
        .await?
        .filter(|(rec, _)| who.may(&rec.namespace))
        .map(|(rec, steps)| {
            let mut v = serde_json::to_value(rec).expect("serialises");
            v["activations"] = json!(steps);
            v
        }))
}

#[derive(Deserialize)]
pub(crate) struct RunQuery {
    after: Option<String>,
}

/// `POST /wf/{name}[?after=STEP]` (`default`'s workflow) or
/// `POST /ns/{ns}/wf/{name}[?after=STEP]`: run a workflow on the request body.
/// The answer is the output step's (status, headers, body) with the run's
/// `Wisp-Activation-Id` and a `Server-Timing` of every step's delay and
/// run time and the makespan. With `after`, only the steps after that one
/// run, on the body as its output (the hybrid placement).
pub(crate) async fn run(
    State(st): S,
    Path(WfPath { ns, name }): Path<WfPath>,
    Query(q): Query<RunQuery>,
    req: Request,
) -> Response {
    let ns = ns.unwrap_or_else(|| wisp_core::DEFAULT_NAMESPACE.to_string());
    run_inner(st, ns, name, q, req)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn run_inner(
    st: Arc<AppState>,
    ns: String,
    name: String,
    q: RunQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let remote_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let wf = st.exec.workflow(&ns, &name).ok_or_else(|| {
        st.exec.metrics().error(ErrorKind::NotFound);
        not_found(&name)
    })?;
    let prepared = st.exec.prepare_workflow(&wf).await?;
    let plan = prepared.plan();
    let source = match &q.after {
        None => Source::Input,
        Some(a) => Source::Step(plan.index_of(a).ok_or_else(|| {
            ApiError::new(
                ErrorKind::BadRequest,
                format!("after={a:?} is not a step of workflow {name:?}"),
            )
        })?),
    };
    let max = plan.max_read_bytes(source);
    let (parts, body) = req.into_parts();
    let too_large = |len: u64| {
        st.exec.metrics().error(ErrorKind::PayloadTooLarge);
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            if max == 0 {
                format!("workflow {name:?} takes no input (no step reads it), got {len} bytes")
            } else {
                format!(
                    "the input is {len} bytes; the steps reading it take at most {max} (their max_body_bytes)"
                )
            },
        )
    };
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max
    {
        return Err(too_large(len));
    }
    let (input, buffered) = st
        .exec
        .read_input(
            body.map_err(|e| Box::new(e) as wisp_runtime::BoxError)
                .boxed_unsync(),
            max,
        )
        .await?;
    let abi = plan.steps[plan.output].resolved.abi;
    let out = st
        .exec
        .run_workflow_on_guests(
            wf,
            prepared.clone(),
            WorkflowInput {
                body: input,
                buffered,
                content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
                after: q.after,
                remote_addr,
                server_name: st.server_name.clone(),
                server_port: st.server_port,
            },
        )
        .await?;
    let mut resp = Response::new(Body::from(out.body));
    *resp.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK);
    let hs = resp.headers_mut();
    *hs = out.headers;
    crate::invoke::served_headers(hs, abi);
    if let Ok(v) = HeaderValue::from_str(&out.record.id) {
        hs.insert("wisp-activation-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&wisp_workflow::server_timing(&out.record)) {
        hs.insert("server-timing", v);
    }
    Ok(resp)
}
