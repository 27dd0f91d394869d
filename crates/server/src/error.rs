//! The one error type of the HTTP edge: a stable JSON shape
//! `{"error":{"code":"...","message":"..."}}`, never a panic or Debug dump.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use wisp_core::ErrorKind;

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError(pub wisp_executor::Error);

impl ApiError {
    /// Build from a kind and message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError(wisp_executor::Error {
            kind,
            message: message.into(),
            activation_id: None,
            retry_after: None,
        })
    }
}

impl From<wisp_executor::Error> for ApiError {
    fn from(e: wisp_executor::Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status =
            StatusCode::from_u16(e.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if e.kind == ErrorKind::Internal {
            tracing::error!(message = %e.message, "internal error");
        }
        let body = serde_json::json!({ "error": { "code": e.kind.code(), "message": e.message } });
        let mut resp = (status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let Some(id) = e
            .activation_id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            h.insert("wisp-activation-id", id);
        }
        if let Some(secs) = e.retry_after {
            h.insert("retry-after", HeaderValue::from(secs));
        }
        if e.kind == ErrorKind::Unauthorized {
            h.insert("www-authenticate", HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
