//! Management API handlers.

use crate::guard::{Caller, scope};
use crate::openapi::ApiQuery as Query;
use crate::{ApiError, AppState};
use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use wisp_core::deploy::{DeployBody, ModuleSpec};
use wisp_core::{ErrorKind, OciSource};

type S = State<Arc<AppState>>;
type Who = Extension<Caller>;

/// `{name}` of an unscoped route, or `{ns}` and `{name}` of a namespaced one.
#[derive(Deserialize)]
pub(crate) struct FnPath {
    ns: Option<String>,
    name: String,
}

/// `{ns}` of a namespaced collection route.
#[derive(Deserialize)]
pub(crate) struct NsPath {
    ns: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "The server is up", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/metrics", tag = "ops", security(("token" = [])),
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
              (status = 401, response = crate::openapi::Unauthorized)))]
pub(crate) async fn metrics(State(st): S) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.exec.render_metrics(),
    )
        .into_response()
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "this route does not take that method (see /v1/openapi.json)",
    )
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "no such route; see /v1/functions and /fn/{name}",
    )
}

#[utoipa::path(put, path = "/v1/functions/{name}", tag = "functions", security(("token" = [])),
    params(("name" = String, Path, example = "hello", description = "1-64 characters of [a-zA-Z0-9_-], starting with a letter or digit")),
    request_body(description = "The module (default config), a multipart form with `module` and `config`, or JSON naming an OCI reference for the server to pull (`wisp serve --insecure-registry`, `--pull-timeout`; the version records the reference and the manifest digest it resolved to)",
        content((Vec<u8> = "application/wasm"), (crate::openapi::DeployForm = "multipart/form-data"), (wisp_core::deploy::DeployOci = "application/json"))),
    responses((status = 201, description = "A new version is active", body = crate::openapi::DeployedVersion),
              (status = 200, description = "The same module and config were already active", body = crate::openapi::DeployedVersion),
              (status = 400, response = crate::openapi::BadRequest),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 413, response = crate::openapi::TooLarge),
              (status = 503, response = crate::openapi::Unavailable)))]
/// `PUT /v1/functions/{name}`: `application/wasm` body (default config),
/// `multipart/form-data` with parts `module` and `config` (JSON), or
/// `application/json` `{"oci": REF, "config": …}` (the server pulls REF).
pub(crate) async fn deploy(
    State(st): S,
    Extension(who): Who,
    Path(FnPath { ns, name }): Path<FnPath>,
    req: Request,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
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
    let DeployBody { module, config } = wisp_core::deploy::parse_body(&ctype, body).map_err(bad)?;
    let (wasm, oci) = match module {
        ModuleSpec::Bytes(wasm) => (wasm, None),
        ModuleSpec::Oci(reference) => {
            // Nothing is pulled for a deploy that would be refused anyway.
            wisp_core::validate_name(&name).map_err(bad)?;
            config.validate().map_err(bad)?;
            st.oci.check(&reference).map_err(bad)?;
            let (wasm, src) = pull(&st, &reference).await?;
            (wasm, Some(src))
        }
    };
    let d = st
        .exec
        .deploy_from(
            &ns,
            &name,
            wasm,
            config,
            wisp_executor::Source { oci, meta: None },
        )
        .await?;
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

/// Pull `reference` for a deploy: bounded in size (the deploy limit), time
/// (`--pull-timeout`) and number at once; every digest verified.
async fn pull(st: &AppState, reference: &str) -> Result<(Bytes, OciSource), ApiError> {
    let Ok(_slot) = st.oci.slots.try_acquire() else {
        let mut e = ApiError::new(
            ErrorKind::Unavailable,
            format!(
                "{} registry pulls are already running; retry shortly",
                crate::OciPulls::MAX_PULLS
            ),
        );
        e.0.retry_after = Some(1);
        return Err(e);
    };
    let p = st.oci.client.pull(reference).await.map_err(oci_error)?;
    tracing::info!(reference = %p.reference, digest = %p.digest, format = p.format.as_str(),
        bytes = p.wasm.len(), "pulled a module for a deploy");
    Ok((
        Bytes::from(p.wasm),
        OciSource {
            reference: p.reference,
            digest: p.digest,
        },
    ))
}

/// A pull's failure as the API answers it. The registry refusing the
/// server's credentials is a 400 (the caller's reference can't be pulled),
/// not a 401 (which would say the caller's token is wrong).
fn oci_error(e: wisp_oci::Error) -> ApiError {
    use wisp_oci::Error as E;
    let kind = match &e {
        E::TooLarge(_) => ErrorKind::PayloadTooLarge,
        E::Registry(_) | E::Timeout(_) => ErrorKind::Unavailable,
        E::Io { .. } => ErrorKind::Internal,
        E::Invalid(_)
        | E::NotFound(_)
        | E::Unauthorized(_)
        | E::DigestMismatch { .. }
        | E::NotWasm(_) => ErrorKind::BadRequest,
    };
    ApiError::new(kind, format!("pulling the module: {e}"))
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, m)
}

#[utoipa::path(get, path = "/v1/functions", tag = "functions", security(("token" = [])),
    responses((status = 200, description = "Every function with its active version", body = crate::openapi::FunctionList),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden)))]
pub(crate) async fn list_functions(
    State(st): S,
    Extension(who): Who,
    Path(NsPath { ns }): Path<NsPath>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let fns = st.exec.list(Some(&ns)).await?;
    Ok(Json(serde_json::json!({ "functions": fns })).into_response())
}

#[utoipa::path(get, path = "/v1/functions/{name}", tag = "functions", security(("token" = [])),
    params(("name" = String, Path, example = "hello", description = "Function name")),
    responses((status = 200, description = "The function, its versions, and whether it is warm", body = crate::openapi::FunctionShown),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
pub(crate) async fn get_function(
    State(st): S,
    Extension(who): Who,
    Path(FnPath { ns, name }): Path<FnPath>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    match st.exec.info(&ns, &name).await? {
        Some(f) => {
            let mut v = serde_json::to_value(&f).expect("serializes");
            if let Some(h) = st.exec.get(&ns, &name) {
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

#[utoipa::path(delete, path = "/v1/functions/{name}", tag = "functions", security(("token" = [])),
    params(("name" = String, Path, example = "hello", description = "Function name")),
    responses((status = 204, description = "Removed"),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
pub(crate) async fn delete_function(
    State(st): S,
    Extension(who): Who,
    Path(FnPath { ns, name }): Path<FnPath>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    if st.exec.remove(&ns, &name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            ErrorKind::NotFound,
            format!("function {name:?} not found"),
        ))
    }
}

#[derive(Deserialize)]
pub(crate) struct ModuleQuery {
    version: Option<u32>,
}

#[utoipa::path(get, path = "/v1/functions/{name}/module", tag = "functions", security(("token" = [])),
    params(("name" = String, Path, example = "hello", description = "Function name"),
           ("version" = Option<u32>, Query, minimum = 1, maximum = 4294967295u64, description = "Which version's module (default: the active one)")),
    responses((status = 200, description = "The module or component exactly as deployed (checked against its digest). \
                `ETag` is the digest, `X-Wisp-Version` the version, `X-Wisp-Abi` its ABI.",
               content_type = "application/wasm", body = Vec<u8>),
              (status = 400, response = crate::openapi::BadRequest),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
pub(crate) async fn get_module(
    State(st): S,
    Extension(who): Who,
    Path(FnPath { ns, name }): Path<FnPath>,
    Query(q): Query<ModuleQuery>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let Some((v, wasm)) = st.exec.module(&ns, &name, q.version).await? else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            match q.version {
                Some(n) => format!("function {name:?} has no version {n}"),
                None => format!("function {name:?} not found"),
            },
        ));
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/wasm".to_string()),
            (header::ETAG, format!("\"{}\"", v.digest)),
            (
                header::HeaderName::from_static("x-wisp-version"),
                v.version.to_string(),
            ),
            (
                header::HeaderName::from_static("x-wisp-abi"),
                v.abi.as_str().to_string(),
            ),
        ],
        wasm,
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct RollbackQuery {
    version: Option<u32>,
}

#[utoipa::path(post, path = "/v1/functions/{name}/rollback", tag = "functions", security(("token" = [])),
    params(("name" = String, Path, example = "hello", description = "Function name"),
           ("version" = Option<u32>, Query, minimum = 1, maximum = 4294967295u64, description = "The version to activate (default: the one before the active one)")),
    responses((status = 200, description = "The version now active", body = wisp_core::FunctionVersion),
              (status = 400, response = crate::openapi::BadRequest),
              (status = 409, response = crate::openapi::Conflict),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
pub(crate) async fn rollback(
    State(st): S,
    Extension(who): Who,
    Path(FnPath { ns, name }): Path<FnPath>,
    Query(q): Query<RollbackQuery>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let v = st.exec.rollback(&ns, &name, q.version).await?;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub(crate) struct ActivationsQuery {
    function: Option<String>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/v1/activations", tag = "activations", security(("token" = [])),
    params(("function" = Option<String>, Query, description = "Only this function's"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "At most this many, newest first (default 50)")),
    responses((status = 200, description = "Recent activation records, without logs", body = crate::openapi::ActivationList),
              (status = 400, response = crate::openapi::BadRequest),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden)))]
pub(crate) async fn list_activations(
    State(st): S,
    Extension(who): Who,
    Path(NsPath { ns }): Path<NsPath>,
    Query(q): Query<ActivationsQuery>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    // Make "I just invoked it" visible in the listing.
    st.exec.flush().await;
    let limit = q.limit.unwrap_or(50);
    if !(1..=10_000).contains(&limit) {
        return Err(bad(format!(
            "limit must be between 1 and 10000, got {limit}"
        )));
    }
    let acts = st
        .exec
        .activations(Some(ns), q.function, None, None, limit, 0)
        .await?;
    Ok(Json(serde_json::json!({ "activations": acts })).into_response())
}

#[utoipa::path(get, path = "/v1/activations/{id}", tag = "activations", security(("token" = [])),
    params(("id" = String, Path, description = "Activation id (32 hex digits)")),
    responses((status = 200, description = "One activation record with its log", body = wisp_core::Activation),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
pub(crate) async fn get_activation(
    State(st): S,
    Extension(who): Who,
    Path(id): Path<String>,
    _h: HeaderMap,
) -> Result<Response, ApiError> {
    st.exec.flush().await;
    // Another namespace's record is as absent as one that never was.
    match st.exec.activation(id.clone()).await? {
        Some(a) if who.may(&a.namespace) => Ok(Json(a).into_response()),
        _ => Err(ApiError::new(
            ErrorKind::NotFound,
            format!("activation {id:?} not found"),
        )),
    }
}

fn admin_only(who: &Caller) -> Result<(), ApiError> {
    match who {
        Caller::Admin => Ok(()),
        Caller::Namespace(_) => Err(ApiError::new(
            ErrorKind::Forbidden,
            "managing namespaces takes the server's admin token",
        )),
    }
}

#[utoipa::path(get, path = "/v1/namespaces", tag = "namespaces", security(("token" = [])),
    responses((status = 200, description = "Every namespace, without its key", body = crate::openapi::NamespaceList),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden)))]
/// `GET /v1/namespaces` (admin): every namespace, without its key.
pub(crate) async fn list_namespaces(
    State(st): S,
    Extension(who): Who,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let all = st.exec.namespaces().await?;
    Ok(Json(serde_json::json!({ "namespaces": all })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct NewNamespace {
    name: String,
}

#[utoipa::path(post, path = "/v1/namespaces", tag = "namespaces", security(("token" = [])),
    request_body(content = crate::openapi::NewNamespace, content_type = "application/json"),
    responses((status = 201, description = "Created; its key, shown this once", body = crate::openapi::IssuedKey),
              (status = 400, response = crate::openapi::BadRequest),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 409, response = crate::openapi::Conflict)))]
/// `POST /v1/namespaces` `{"name"}` (admin): create it and issue its key,
/// shown this once.
pub(crate) async fn create_namespace(
    State(st): S,
    Extension(who): Who,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let n: NewNamespace = serde_json::from_slice(&body)
        .map_err(|e| bad(format!("expected {{\"name\": \"...\"}}: {e}")))?;
    let issued = st.exec.create_namespace(&n.name).await?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

#[utoipa::path(post, path = "/v1/namespaces/{ns}/key", tag = "namespaces", security(("token" = [])),
    params(("ns" = String, Path, description = "The namespace (`_`: the caller's)")),
    responses((status = 200, description = "A new key; the old one stops working", body = crate::openapi::IssuedKey),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound)))]
/// `POST /v1/namespaces/{ns}/key` (admin, or the namespace's own key): a
/// new key; the old one stops working at once.
pub(crate) async fn rotate_key(
    State(st): S,
    Extension(who): Who,
    Path(NsPath { ns }): Path<NsPath>,
) -> Result<Response, ApiError> {
    let ns = scope(&st, &who, ns.as_deref())?;
    let issued = st.exec.rotate_key(&ns).await?;
    Ok(Json(issued).into_response())
}

#[utoipa::path(delete, path = "/v1/namespaces/{ns}", tag = "namespaces", security(("token" = [])),
    params(("ns" = String, Path, description = "The namespace")),
    responses((status = 204, description = "Removed, with everything in it"),
              (status = 401, response = crate::openapi::Unauthorized),
              (status = 403, response = crate::openapi::Forbidden),
              (status = 404, response = crate::openapi::NotFound),
              (status = 409, response = crate::openapi::Conflict)))]
/// `DELETE /v1/namespaces/{ns}` (admin): the namespace and everything in it.
pub(crate) async fn delete_namespace(
    State(st): S,
    Extension(who): Who,
    Path(NsPath { ns }): Path<NsPath>,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let ns = scope(&st, &who, ns.as_deref())?;
    if st.exec.delete_namespace(&ns).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            ErrorKind::NotFound,
            format!("namespace {ns:?} not found"),
        ))
    }
}
