//! The OpenAPI 3.1 document of the management API, generated from the
//! handlers' annotations and the `wisp-core` types, served at
//! `/v1/openapi.json`. `scripts/api-check` runs schemathesis against a live
//! server with it: no 5xx, every answer in its documented shape.
//!
//! Also the one query extractor of the API, so a malformed query string is
//! a JSON `bad_request` like every other error, not a plain-text rejection.

use crate::{ApiError, AppState};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use wisp_core::ErrorKind;

/// A query string, parsed; a bad one is a JSON 400 naming the problem.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(ApiQuery)
            .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("invalid query string: {e}")))
    }
}

/// Every error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    #[schema(schema_with = error_codes)]
    code: String,
    /// Human-readable, safe to show.
    message: String,
}

/// The error codes, one per [`ErrorKind`] (each maps to one HTTP status).
fn error_codes() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ErrorKind::ALL.iter().map(|k| k.code())))
        .description(Some("Stable machine-readable code"))
        .build()
}

macro_rules! error_responses {
    ($($name:ident => $desc:literal),* $(,)?) => {$(
        #[doc = $desc]
        #[derive(ToResponse)]
        #[response(description = $desc)]
        #[allow(dead_code)]
        pub struct $name(ErrorBody);
    )*};
}

error_responses! {
    BadRequest => "Malformed request, module or config; the message says what",
    Unauthorized => "Missing or wrong bearer token",
    Forbidden => "A Host or Origin this server does not answer to",
    NotFound => "No such function, version, activation or route",
    TooLarge => "The body is over the deploy limit",
    Unavailable => "Too many deploys waiting; retry after Retry-After",
    Conflict => "The current state does not allow it (no earlier version to roll back to)",
}

/// The multipart form of a deploy.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeployForm {
    /// The module or component (`.wasm`), as bytes.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    module: Vec<u8>,
    /// Env, dir grants, limits and outbound hosts; defaults when absent.
    config: Option<wisp_core::FunctionConfig>,
}

/// A deploy's answer: the active version and what the deploy did.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeployedVersion {
    #[schema(inline)]
    #[serde(flatten)]
    version: wisp_core::FunctionVersion,
    /// False when the same module and config were already active.
    created: bool,
    /// Whether the module was compiled (false when an artifact was reused).
    compiled: bool,
}

/// `GET /v1/functions`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FunctionList {
    functions: Vec<wisp_core::FunctionInfo>,
}

/// `GET /v1/functions/{name}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FunctionShown {
    #[serde(flatten)]
    function: wisp_core::FunctionInfo,
    /// Whether a ready-to-instantiate template is loaded.
    warm: Option<bool>,
}

/// `GET /v1/activations`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ActivationList {
    activations: Vec<wisp_core::Activation>,
}

/// `GET /v1/namespaces`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NamespaceList {
    namespaces: Vec<NamespaceShown>,
}

/// A namespace (its key is never shown).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NamespaceShown {
    name: String,
    /// The public half of its key, if it has one.
    uuid: Option<String>,
    /// Unix milliseconds.
    created_ms: i64,
    /// When its key was last set, Unix milliseconds.
    updated_ms: i64,
}

/// A key as issued: shown this once, never stored.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IssuedKey {
    namespace: String,
    uuid: String,
    key: String,
    /// `uuid:key`, what clients send (`Authorization: Basic base64(uuid:key)`).
    auth: String,
}

/// `POST /v1/namespaces`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NewNamespace {
    /// 1-64 characters of [a-zA-Z0-9_.@-], starting with a letter or digit.
    #[schema(
        pattern = "^[a-zA-Z0-9][a-zA-Z0-9_.@-]{0,63}$",
        min_length = 1,
        max_length = 64,
        example = "team-a"
    )]
    name: String,
}

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The management API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Wisp management API", description = "Deploy, list, roll back and remove functions; read activation records. Invoke functions at ANY /fn/{name}[/{path}] (not part of this document: a function's own API is its business)."),
    paths(
        crate::api::list_functions,
        crate::api::deploy,
        crate::api::get_function,
        crate::api::delete_function,
        crate::api::get_module,
        crate::api::rollback,
        crate::api::list_activations,
        crate::api::get_activation,
        crate::api::list_namespaces,
        crate::api::create_namespace,
        crate::api::delete_namespace,
        crate::api::rotate_key,
        crate::api::healthz,
        crate::api::metrics,
        openapi_json,
    ),
    components(
        schemas(ErrorBody, ErrorDetail, wisp_core::OciSource),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Unavailable, Conflict)
    ),
    modifiers(&BearerToken)
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`: this document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops", security(("token" = [])),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
              (status = 401, response = Unauthorized),
              (status = 403, response = Forbidden)))]
pub(crate) async fn openapi_json(State(_): State<Arc<AppState>>) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
