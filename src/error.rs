//! The service's error type, and the one function that maps errors to problem types (and so to
//! HTTP statuses). The default is conservative: anything not classified is a 500 whose detail
//! says only that an internal error happened.

use signet_hsm::Error as HsmError;
use signet_pki::Error as PkiError;

use crate::support::random::RandomUnavailable;

/// Errors of the metadata store, whatever engine is behind it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process holds the database.
    #[error(
        "the database {0} is in use by another signet process (stop it, or use another --data-dir)"
    )]
    Locked(String),
    /// The engine failed (I/O, connection…). The text is the engine's, for the log.
    #[error("database error: {0}")]
    Engine(String),
    /// The engine cannot be reached now (a database server down or cut off).
    #[error("the database cannot be reached: {0}")]
    Unavailable(String),
    /// The engine cannot write now (a full disk, a read-only file system).
    #[error("the database cannot be written: {0}")]
    NotWritable(String),
    /// A record could not be decoded.
    #[error("corrupt record {key:?} in {table}: {detail}")]
    Corrupt {
        /// Table or tree name.
        table: &'static str,
        /// Key.
        key: String,
        /// Decoder message.
        detail: String,
    },
}

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
    /// The request conflicts with the current state (exists already, disabled, scheduled for
    /// deletion…).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's identity is not (or no longer) acceptable.
    #[error("{0}")]
    Unauthenticated(String),
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
    /// The audit records may or may not have been made durable: the database connection broke
    /// after their commit was sent. Whatever they describe was not answered.
    #[error("the audit log's outcome is unknown: {0}")]
    AuditUncertain(String),
    /// The shared audit chain is behind, or diverges from, the chain this node last wrote or
    /// saw (a failover to a lagging standby, a restored backup, an old primary back): nothing
    /// is written until an operator records the loss with `signet audit reanchor`.
    #[error("the audit chain in the database (head seq {found_seq}) does not continue the chain this node last saw (seq {known_seq}, hash {known_hash}); writes stop until `signet audit reanchor` records the loss")]
    ChainBroken {
        /// This node's name.
        node: String,
        /// The head this node last wrote or saw.
        known_seq: u64,
        /// Its hash.
        known_hash: String,
        /// The database's head now.
        found_seq: u64,
    },
    /// The random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
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

/// The stable kinds of problem the API answers with. Each has one status and one `type` slug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemType {
    /// 400: the request is malformed or out of range.
    BadRequest,
    /// 401: no acceptable client identity.
    Unauthenticated,
    /// 403: the caller lacks the scope.
    Forbidden,
    /// 404: no such thing (or route).
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 409: the state does not allow it.
    Conflict,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 414: the request target is too long.
    UriTooLong,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 431: the request's header fields are too many or too large.
    HeadersTooLarge,
    /// 500: an internal error.
    Internal,
    /// 503: the audit log cannot be written; nothing was done.
    AuditUnavailable,
    /// 503: the HSM cannot complete the operation.
    HsmUnavailable,
    /// 503: the service is not ready.
    NotReady,
}

impl ProblemType {
    /// Every type, for documentation and tests.
    pub const ALL: [ProblemType; 15] = [
        ProblemType::BadRequest,
        ProblemType::Unauthenticated,
        ProblemType::Forbidden,
        ProblemType::NotFound,
        ProblemType::MethodNotAllowed,
        ProblemType::RequestTimeout,
        ProblemType::Conflict,
        ProblemType::PayloadTooLarge,
        ProblemType::UriTooLong,
        ProblemType::UnsupportedMediaType,
        ProblemType::HeadersTooLarge,
        ProblemType::Internal,
        ProblemType::AuditUnavailable,
        ProblemType::HsmUnavailable,
        ProblemType::NotReady,
    ];

    /// The last segment of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            ProblemType::BadRequest => "bad-request",
            ProblemType::Unauthenticated => "unauthenticated",
            ProblemType::Forbidden => "forbidden",
            ProblemType::NotFound => "not-found",
            ProblemType::MethodNotAllowed => "method-not-allowed",
            ProblemType::RequestTimeout => "request-timeout",
            ProblemType::Conflict => "conflict",
            ProblemType::PayloadTooLarge => "payload-too-large",
            ProblemType::UriTooLong => "uri-too-long",
            ProblemType::UnsupportedMediaType => "unsupported-media-type",
            ProblemType::HeadersTooLarge => "header-fields-too-large",
            ProblemType::Internal => "internal",
            ProblemType::AuditUnavailable => "audit-unavailable",
            ProblemType::HsmUnavailable => "hsm-unavailable",
            ProblemType::NotReady => "not-ready",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> u16 {
        match self {
            ProblemType::BadRequest => 400,
            ProblemType::Unauthenticated => 401,
            ProblemType::Forbidden => 403,
            ProblemType::NotFound => 404,
            ProblemType::MethodNotAllowed => 405,
            ProblemType::RequestTimeout => 408,
            ProblemType::Conflict => 409,
            ProblemType::PayloadTooLarge => 413,
            ProblemType::UriTooLong => 414,
            ProblemType::UnsupportedMediaType => 415,
            ProblemType::HeadersTooLarge => 431,
            ProblemType::Internal => 500,
            ProblemType::AuditUnavailable | ProblemType::HsmUnavailable | ProblemType::NotReady => {
                503
            }
        }
    }

    /// What the type means, for the README and the API description.
    pub fn meaning(self) -> &'static str {
        match self {
            ProblemType::BadRequest => "the request is malformed or out of range; the detail says which field and why",
            ProblemType::Unauthenticated => "the client certificate was revoked, or expired, after its connection was opened (the connection is then closed)",
            ProblemType::Forbidden => "the principal lacks the scope the detail names",
            ProblemType::NotFound => "no such key, version, certificate, principal or route",
            ProblemType::MethodNotAllowed => "the route exists but not with this method",
            ProblemType::RequestTimeout => "the request body did not arrive within server.body_read_timeout_secs",
            ProblemType::Conflict => "the current state does not allow it (exists already, disabled, scheduled for deletion…)",
            ProblemType::PayloadTooLarge => "the body exceeds server.max_body_bytes",
            ProblemType::UriTooLong => "the request target (path and query) is longer than 8 KiB",
            ProblemType::UnsupportedMediaType => "the body is not sent as application/json (or, on a route without a body, is sent as a type a cross-site form can send)",
            ProblemType::HeadersTooLarge => "the request has more than 100 header fields or more than 32 KiB of them",
            ProblemType::Internal => "an internal error; the server log has the cause under the request id",
            ProblemType::AuditUnavailable => "the audit record could not be written, so nothing was done",
            ProblemType::HsmUnavailable => "the HSM could not complete the operation; retry later",
            ProblemType::NotReady => "the HSM, the store or the audit log is not usable now",
        }
    }
}

/// The problem type and the detail safe to show a client.
pub fn classify(err: &Error) -> (ProblemType, String) {
    match err {
        Error::BadRequest(d) => (ProblemType::BadRequest, d.clone()),
        Error::NotFound(d) => (ProblemType::NotFound, d.clone()),
        Error::Conflict(d) => (ProblemType::Conflict, d.clone()),
        Error::Forbidden(d) => (ProblemType::Forbidden, d.clone()),
        Error::Unauthenticated(d) => (ProblemType::Unauthenticated, d.clone()),
        Error::TooLarge(d) => (ProblemType::PayloadTooLarge, d.clone()),
        Error::AuditUnavailable(_) | Error::ChainBroken { .. } => (
            ProblemType::AuditUnavailable,
            "the audit log cannot be written; the operation was not performed".into(),
        ),
        Error::AuditUncertain(_) => (
            ProblemType::AuditUnavailable,
            "the connection to the database broke while the audit record was being committed: the record may be in the log, but nothing was answered (a signature, if asked for, was not returned); retry".into(),
        ),
        Error::Hsm(e) => classify_hsm(e),
        Error::Pki(e) => match e {
            PkiError::CsrRefused(_)
            | PkiError::Policy(_)
            | PkiError::Parse { .. }
            | PkiError::Pkcs12Import(_) => (ProblemType::BadRequest, e.to_string()),
            PkiError::Hsm(inner) => classify_hsm(inner),
            _ => (ProblemType::Internal, "internal error".into()),
        },
        Error::Store(StoreError::NotWritable(_)) => (
            ProblemType::NotReady,
            "the metadata store cannot be written now; nothing was changed".into(),
        ),
        Error::Store(StoreError::Unavailable(_)) => (
            ProblemType::NotReady,
            "the metadata store cannot be reached now; the request was not performed".into(),
        ),
        Error::Store(_) | Error::Random(_) | Error::Internal(_) => {
            (ProblemType::Internal, "internal error".into())
        }
    }
}

fn classify_hsm(e: &HsmError) -> (ProblemType, String) {
    if e.is_input_error() {
        return (ProblemType::BadRequest, e.to_string());
    }
    match e {
        HsmError::KeyNotFound(_) => (ProblemType::NotFound, e.to_string()),
        HsmError::KeyExists(_) | HsmError::Full(_) => (ProblemType::Conflict, e.to_string()),
        _ => (
            ProblemType::HsmUnavailable,
            format!(
                "the HSM could not complete the operation{}",
                e.return_code()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_statuses_are_unique_per_type() {
        let mut slugs: Vec<_> = ProblemType::ALL.iter().map(|t| t.slug()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemType::ALL.len());
        assert!(ProblemType::ALL
            .iter()
            .all(|t| (400..600).contains(&t.status()) && !t.meaning().is_empty()));
    }

    #[test]
    fn internal_causes_are_not_shown() {
        let (kind, detail) = classify(&Error::Internal("disk path /secret".into()));
        assert_eq!(kind, ProblemType::Internal);
        assert!(!detail.contains("secret"));
        let (kind, detail) = classify(&Error::Hsm(HsmError::Device {
            interface: "PKCS#11",
            function: "C_Sign".into(),
            code: "CKR_DEVICE_ERROR".into(),
            fault: signet_hsm::Fault::SessionLost,
        }));
        assert_eq!(kind, ProblemType::HsmUnavailable);
        assert_eq!(
            detail,
            "the HSM could not complete the operation (CKR_DEVICE_ERROR)"
        );
    }
}
