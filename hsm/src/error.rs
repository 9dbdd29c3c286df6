//! The one error type of the HSM boundary, and the one place where PKCS#11 return codes are mapped.

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

use crate::spec::{KeySpec, SignatureAlgorithm};

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong at the HSM boundary. No variant ever carries a PIN or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PKCS#11 module could not be loaded (missing file, not a PKCS#11 library…).
    #[error("cannot load PKCS#11 module {path}: {reason}")]
    ModuleLoad {
        /// Path that was tried.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// No slot holds a token with this label (or the slot index does not exist).
    #[error("no PKCS#11 token {0} found")]
    TokenNotFound(String),
    /// The user PIN was refused by the token. Nothing was changed.
    #[error("the token refused the PIN (incorrect PIN)")]
    PinIncorrect,
    /// The token has locked the PIN after too many failures.
    #[error("the token's PIN is locked")]
    PinLocked,
    /// No key with this label or id is in the token.
    #[error("key {0} not found in the token")]
    KeyNotFound(String),
    /// A key with this label already exists.
    #[error("a key labelled {0} already exists in the token")]
    KeyExists(String),
    /// The algorithm cannot be used with the key's spec (e.g. ES384 on a P-256 key).
    #[error("algorithm {algorithm} does not fit a {spec} key")]
    AlgorithmMismatch {
        /// Requested algorithm.
        algorithm: SignatureAlgorithm,
        /// The key's spec.
        spec: KeySpec,
    },
    /// A caller-supplied digest has the wrong length for the algorithm's hash.
    #[error("{algorithm} expects a {expected}-byte digest, got {actual} bytes")]
    DigestLength {
        /// Requested algorithm.
        algorithm: SignatureAlgorithm,
        /// Length of the algorithm's hash output.
        expected: usize,
        /// Length supplied.
        actual: usize,
    },
    /// The input to sign is empty where a message is required.
    #[error("the input to sign is empty")]
    EmptyInput,
    /// The operation is not offered (e.g. signing a digest with EdDSA, or a mechanism the token lacks).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The token returned data Signet cannot interpret (unexpected attribute encoding).
    #[error("unexpected data from the token: {0}")]
    Malformed(String),
    /// A PKCS#11 call failed; keeps the function that failed and its return code.
    #[error("PKCS#11 {function} failed: {}", rv_name(*rv))]
    Pkcs11 {
        /// The C function, e.g. `C_Sign`.
        function: String,
        /// The return code.
        rv: RvError,
    },
    /// Any other failure of the PKCS#11 wrapper (library loading, conversions).
    #[error("PKCS#11 wrapper error: {0}")]
    Wrapper(String),
}

impl Error {
    /// The `CK_RV` name when this error came from the token (for metrics and audit), e.g. `CKR_DEVICE_ERROR`.
    pub fn return_code(&self) -> Option<String> {
        match self {
            Error::Pkcs11 { rv, .. } => Some(rv_name(*rv)),
            Error::PinIncorrect => Some("CKR_PIN_INCORRECT".into()),
            Error::PinLocked => Some("CKR_PIN_LOCKED".into()),
            _ => None,
        }
    }

    /// True when the session the call ran on is no longer usable and must be replaced.
    pub(crate) fn is_session_lost(&self) -> bool {
        matches!(
            self,
            Error::Pkcs11 {
                rv: RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent,
                ..
            }
        )
    }

    /// True when the token forgot the login (another handle logged out, token reset).
    pub(crate) fn is_not_logged_in(&self) -> bool {
        matches!(
            self,
            Error::Pkcs11 {
                rv: RvError::UserNotLoggedIn,
                ..
            }
        )
    }
}

/// Converts a cryptoki error, keeping the failing function. The PIN- and key-related return codes
/// get their own variants so callers can answer them precisely.
impl From<CkError> for Error {
    fn from(err: CkError) -> Self {
        match err {
            CkError::Pkcs11(RvError::PinIncorrect, _) => Error::PinIncorrect,
            CkError::Pkcs11(RvError::PinLocked, _) => Error::PinLocked,
            CkError::Pkcs11(rv, function) => Error::Pkcs11 {
                function: format!("C_{function:?}"),
                rv,
            },
            CkError::LibraryLoading(e) => Error::Wrapper(format!("library loading: {e}")),
            other => Error::Wrapper(other.to_string()),
        }
    }
}

fn rv_name(rv: RvError) -> String {
    // RvError's Debug is the CamelCase of the CKR_ name; turn it back into the spec's spelling.
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() || (ch.is_ascii_digit() && i > 0) {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_use_spec_names() {
        assert_eq!(
            rv_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(rv_name(RvError::DeviceError), "CKR_DEVICE_ERROR");
    }

    #[test]
    fn pin_errors_get_their_own_variant() {
        let e = Error::from(CkError::Pkcs11(
            RvError::PinIncorrect,
            cryptoki::context::Function::Login,
        ));
        assert!(matches!(e, Error::PinIncorrect));
        let e = Error::from(CkError::Pkcs11(
            RvError::KeyHandleInvalid,
            cryptoki::context::Function::Sign,
        ));
        assert_eq!(
            e.to_string(),
            "PKCS#11 C_Sign failed: CKR_KEY_HANDLE_INVALID"
        );
    }
}
