//! The service's error type, and the one function that maps errors to HTTP statuses and
//! problem types. The default is conservative: anything not classified is a 500 whose detail
//! says only that an internal error happened.

use signet_hsm::Error as HsmError;
use signet_pki::Error as PkiError;

use crate::store::StoreError;

/// Errors of the service's operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is malformed or out of range.
    #[error("{0}")]
    BadRequest(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (exists already, disabled, scheduled for deletion…).
    #[error("{0}")]
    Conflict(String),
    /// The principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request body is too large.
    #[error("{0}")]
    TooLarge(String),
    /// The HSM failed or refused.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// The PKI refused or failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be written: the operation is refused rather than done unaudited.
    #[error("the audit log cannot be written: {0}")]
    AuditUnavailable(String),
    /// Anything else (I/O on the data directory, …).
    #[error("{0}")]
    Internal(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(format!("I/O: {e}"))
    }
}

/// HTTP status, stable problem type slug, and the detail safe to show a client.
pub fn classify(err: &Error) -> (u16, &'static str, String) {
    match err {
        Error::BadRequest(d) => (400, "bad-request", d.clone()),
        Error::NotFound(d) => (404, "not-found", d.clone()),
        Error::Conflict(d) => (409, "conflict", d.clone()),
        Error::Forbidden(d) => (403, "forbidden", d.clone()),
        Error::TooLarge(d) => (413, "payload-too-large", d.clone()),
        Error::AuditUnavailable(_) => (
            503,
            "audit-unavailable",
            "the audit log cannot be written; the operation was not performed".into(),
        ),
        Error::Hsm(e) => classify_hsm(e),
        Error::Pki(e) => match e {
            PkiError::CsrRefused(_) | PkiError::Policy(_) | PkiError::Parse { .. } => {
                (400, "bad-request", e.to_string())
            }
            PkiError::Hsm(inner) => classify_hsm(inner),
            _ => (500, "internal", "internal error".into()),
        },
        Error::Store(_) | Error::Internal(_) => (500, "internal", "internal error".into()),
    }
}

fn classify_hsm(e: &HsmError) -> (u16, &'static str, String) {
    match e {
        HsmError::AlgorithmMismatch { .. }
        | HsmError::DigestLength { .. }
        | HsmError::EmptyInput
        | HsmError::Unsupported(_) => (400, "bad-request", e.to_string()),
        HsmError::KeyNotFound(_) => (404, "not-found", e.to_string()),
        HsmError::KeyExists(_) => (409, "conflict", e.to_string()),
        _ => (
            503,
            "hsm-unavailable",
            format!(
                "the HSM could not complete the operation{}",
                e.return_code()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        ),
    }
}
