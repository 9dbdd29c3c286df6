//! The service's error type, and the one function that maps errors to problem types (and so to
//! HTTP statuses). The default is conservative: anything not classified is a 500 whose detail
//! says only that an internal error happened.

use signet_hsm::Error as HsmError;
use signet_hsm::Fault;
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
    /// The request is well-formed and matches the API description, but a rule the description
    /// cannot express refuses it: one that depends on the key (its algorithm, its digest
    /// length), on what the token can do, on another field, or on a name that must exist.
    #[error("{0}")]
    Unprocessable(String),
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
    /// A request ran on records from the node's cache that another node changed meanwhile: its
    /// records were written discarded and it is run again on fresh reads (never answered).
    #[error("the records this request relied on changed while it was under way")]
    StaleRead,
    /// The random number generator failed.
    #[error(transparent)]
    Random(#[from] RandomUnavailable),
    /// I/O on the data directory failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A record could not be encoded or decoded as JSON.
    #[error("a record as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a client may be told of an error: the error's own text for the caller's mistakes and
/// for states it can act on, a fixed sentence for the rest (internal causes stay in the log).
pub fn public_detail(err: &Error) -> String {
    match err {
        Error::BadRequest(d)
        | Error::Unprocessable(d)
        | Error::NotFound(d)
        | Error::Conflict(d)
        | Error::Forbidden(d)
        | Error::Unauthenticated(d) => d.clone(),
        Error::AuditUnavailable(_) | Error::ChainBroken { .. } => {
            "the audit log cannot be written; the operation was not performed".into()
        }
        Error::StaleRead => "the caller's certificate or principal, or the key, changed while the request was under way; it was not performed; retry".into(),
        Error::AuditUncertain(_) => "the audit record was not confirmed (the database connection broke while it was being committed, or no answer came within the request's deadline): the record may be in the log, but nothing was answered (a signature, if asked for, was not returned); retry".into(),
        Error::Hsm(e) => hsm_detail(e),
        Error::Pki(e) => match e {
            PkiError::CsrRefused(_)
            | PkiError::Policy(_)
            | PkiError::Parse { .. }
            | PkiError::Pkcs12Import(_) => e.to_string(),
            PkiError::Hsm(inner) => hsm_detail(inner),
            _ => "internal error".into(),
        },
        Error::Store(StoreError::NotWritable(_)) => {
            "the metadata store cannot be written now; nothing was changed".into()
        }
        Error::Store(StoreError::Unavailable(_)) => {
            "the metadata store cannot be reached now; the request was not performed".into()
        }
        Error::Store(_)
        | Error::Random(_)
        | Error::Io(_)
        | Error::Json(_)
        | Error::Internal(_) => "internal error".into(),
    }
}

fn hsm_detail(e: &HsmError) -> String {
    if e.is_input_error() {
        return e.to_string();
    }
    match e {
        HsmError::KeyNotFound(_) | HsmError::KeyExists(_) | HsmError::Full(_) => e.to_string(),
        // What the failure means, in words: the device's return code (CKR_…) is for the log and
        // the `signet_hsm_errors` metric, not for the caller.
        _ => match e.fault() {
            Some(Fault::SessionLost) => {
                "the HSM could not complete the operation: the connection to it was lost; retry"
            }
            Some(Fault::NotLoggedIn) => {
                "the HSM could not complete the operation: its session was logged out; retry"
            }
            Some(Fault::StaleHandle) => {
                "the HSM could not complete the operation: the key's handle was no longer valid; retry"
            }
            Some(Fault::Busy) => {
                "the HSM could not complete the operation: it is busy or out of a resource; retry later"
            }
            _ => "the HSM could not complete the operation",
        }
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_causes_are_not_shown() {
        assert_eq!(
            public_detail(&Error::Internal("disk path /secret".into())),
            "internal error"
        );
        // I/O keeps its cause for the log (a source chain), and the client sees none of it.
        let io = Error::from(std::io::Error::other("/secret/path: disk full"));
        assert_eq!(public_detail(&io), "internal error");
        let source = std::error::Error::source(&io).map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("/secret/path: disk full"));
        let detail = public_detail(&Error::Hsm(HsmError::Device {
            interface: "PKCS#11",
            function: "C_Sign".into(),
            code: "CKR_DEVICE_ERROR".into(),
            fault: signet_hsm::Fault::SessionLost,
        }));
        assert_eq!(
            detail,
            "the HSM could not complete the operation: the connection to it was lost; retry"
        );
        let other = public_detail(&Error::Hsm(HsmError::Device {
            interface: "PKCS#11",
            function: "C_GenerateKeyPair".into(),
            code: "CKR_GENERAL_ERROR".into(),
            fault: signet_hsm::Fault::Other,
        }));
        assert_eq!(other, "the HSM could not complete the operation");
    }
}
