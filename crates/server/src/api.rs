//! Management API handlers.

use crate::{ApiError, AppState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use wisp_core::ErrorKind;
use wisp_core::deploy::DeployBody;

type S = State<Arc<AppState>>;

pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) async fn metrics(State(st): S) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.exec.render_metrics(),
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "no such route; see /v1/functions and /fn/{name}",
    )
}

/// `PUT /v1/functions/{name}`: `application/wasm` body (default config) or
/// `multipart/form-data` with parts `module` and `config` (JSON).
pub(crate) async fn deploy(
    State(st): S,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                "deploy body too large (wisp serve --max-module)",
            )
        } else {
            bad(format!("reading body: {e}"))
        }
    })?;
    let DeployBody { wasm, config } = wisp_core::deploy::parse_body(&ctype, body).map_err(bad)?;
    let d = st.exec.deploy(&name, wasm, config).await?;
    let status = if d.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = serde_json::to_value(&d.version).expect("serializes");
    body["created"] = d.created.into();
    body["compiled"] = d.compiled.into();
    Ok((status, Json(body)).into_response())
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, m)
}

pub(crate) async fn list_functions(State(st): S) -> Result<Response, ApiError> {
    let fns = st.exec.list().await?;
    Ok(Json(serde_json::json!({ "functions": fns })).into_response())
}

pub(crate) async fn get_function(
    State(st): S,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match st.exec.info(&name).await? {
        Some(f) => {
            let mut v = serde_json::to_value(&f).expect("serializes");
            if let Some(h) = st.exec.get(&name) {
                v["warm"] = h.is_warm().into();
            }
            Ok(Json(v).into_response())
        }
        None => Err(ApiError::new(
            ErrorKind::NotFound,
            format!("function {name:?} not found"),
        )),
    }
}

pub(crate) async fn delete_function(
    State(st): S,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if st.exec.remove(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            ErrorKind::NotFound,
            format!("function {name:?} not found"),
        ))
    }
}

#[derive(Deserialize)]
pub(crate) struct RollbackQuery {
    version: Option<u32>,
}

pub(crate) async fn rollback(
    State(st): S,
    Path(name): Path<String>,
    Query(q): Query<RollbackQuery>,
) -> Result<Response, ApiError> {
    let v = st.exec.rollback(&name, q.version).await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub(crate) struct ActivationsQuery {
    function: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn list_activations(
    State(st): S,
    Query(q): Query<ActivationsQuery>,
) -> Result<Response, ApiError> {
    // Make "I just invoked it" visible in the listing.
    st.exec.flush().await;
    let limit = q.limit.unwrap_or(50).min(10_000);
    let acts = st.exec.activations(q.function, limit).await?;
    Ok(Json(serde_json::json!({ "activations": acts })).into_response())
}

pub(crate) async fn get_activation(
    State(st): S,
    Path(id): Path<String>,
    _h: HeaderMap,
) -> Result<Response, ApiError> {
    st.exec.flush().await;
    match st.exec.activation(id.clone()).await? {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(ApiError::new(
            ErrorKind::NotFound,
            format!("activation {id:?} not found"),
        )),
    }
}
