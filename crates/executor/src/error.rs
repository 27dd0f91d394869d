//! The executor's error: a kind (which decides the HTTP status) and a
//! message that is safe to show.

use wisp_core::ErrorKind;

/// An error with the kind that decides its HTTP status.
#[derive(Debug, Clone)]
pub struct Error {
    /// What went wrong, for status and code.
    pub kind: ErrorKind,
    /// Human message, safe to show.
    pub message: String,
    /// Activation id when the request got that far.
    pub activation_id: Option<String>,
    /// Seconds after which a retry may succeed (429/503).
    pub retry_after: Option<u32>,
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            activation_id: None,
            retry_after: None,
        }
    }

    /// A 429/503 that says when to come back.
    pub(crate) fn retry(kind: ErrorKind, message: impl Into<String>) -> Error {
        let mut e = Error::new(kind, message);
        e.retry_after = Some(1);
        e
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Error {}

pub(crate) fn store_err(e: wisp_store::Error) -> Error {
    match e {
        wisp_store::Error::NotFound(m) => Error::new(ErrorKind::NotFound, m),
        wisp_store::Error::Conflict(m) => Error::new(ErrorKind::Conflict, m),
        other => Error::new(ErrorKind::Internal, other.to_string()),
    }
}

pub(crate) fn join_err(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Internal, format!("background task failed: {e}"))
}

pub(crate) fn rt_err(e: wisp_runtime::Error) -> Error {
    match e {
        wisp_runtime::Error::Invalid(m) => Error::new(ErrorKind::BadRequest, m),
        wisp_runtime::Error::Internal(m) => Error::new(ErrorKind::Internal, m),
    }
}

/// What a failed run means for the client.
pub(crate) fn run_error(e: &wisp_runtime::RunError) -> Error {
    use wisp_runtime::RunError;
    let kind = match e {
        RunError::Timeout(..) => ErrorKind::Timeout,
        RunError::Trap(..) => ErrorKind::Trap,
        RunError::Exit(..) => ErrorKind::Exit,
        RunError::ResponseTooLarge(..) => ErrorKind::ResponseTooLarge,
        RunError::PoolExhausted(_) => {
            return Error::retry(
                ErrorKind::Unavailable,
                "the node is at its instance limit; retry shortly",
            );
        }
        RunError::Internal(_) => ErrorKind::Internal,
    };
    Error::new(kind, e.to_string())
}
