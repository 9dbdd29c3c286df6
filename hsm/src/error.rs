//! The one error type of the HSM boundary. It names no backend library type: a device failure
//! keeps the interface, the function that failed and the return code's name as data, so the
//! service can report it without knowing which backend produced it.

use std::path::PathBuf;

use crate::spec::{KeySpec, SignatureAlgorithm};

/// Result alias for the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a device failure affects what the backend does next. Backends set it where they map
/// their return codes; the shared code only reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The session or handle the call ran on is gone (closed underneath, device removed or
    /// reset): drop it and open a new one.
    SessionLost,
    /// The device forgot the login: log in again.
    NotLoggedIn,
    /// The key handle is stale (destroyed or replaced underneath).
    StaleHandle,
    /// The device is busy or out of a resource for now.
    Busy,
    /// Anything else.
    Other,
}

/// Everything that can go wrong at the HSM boundary. No variant ever carries a PIN, a management
/// key or key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend's library or device could not be loaded (missing file, not a PKCS#11 library…).
    #[error("cannot load PKCS#11 module {path}: {reason}")]
    ModuleLoad {
        /// Path that was tried.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// No token or device matches the configuration.
    #[error("{0}")]
    TokenNotFound(String),
    /// The PIN was refused. Nothing was changed.
    #[error("the token refused the PIN (incorrect PIN{})", retries_text(*retries_left))]
    PinIncorrect {
        /// Attempts left before the PIN locks, when the device says.
        retries_left: Option<u8>,
    },
    /// The device has locked the PIN after too many failures.
    #[error("the token's PIN is locked")]
    PinLocked,
    /// No key with this label or id is in the token.
    #[error("key {0} not found in the token")]
    KeyNotFound(String),
    /// A key with this label already exists.
    #[error("a key labelled {0} already exists in the token")]
    KeyExists(String),
    /// The device has no room for another key.
    #[error("the token has no room for another key: {0}")]
    Full(String),
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
    /// The device cannot make keys of this spec.
    #[error(
        "this token does not support {spec} keys{} (it supports: {})",
        spec.needs().map(|n| format!(": {spec} {n}")).unwrap_or_default(),
        names(supported)
    )]
    SpecUnsupported {
        /// What was asked for.
        spec: KeySpec,
        /// What the device can make.
        supported: Vec<KeySpec>,
    },
    /// The device cannot sign with this algorithm.
    #[error(
        "this token does not support {algorithm} (it supports: {})",
        names(supported)
    )]
    AlgorithmUnsupported {
        /// What was asked for.
        algorithm: SignatureAlgorithm,
        /// What the device can do.
        supported: Vec<SignatureAlgorithm>,
    },
    /// The operation is not offered (e.g. signing a digest with EdDSA, or an operation this kind
    /// of backend does not have).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The device returned data Signet cannot interpret.
    #[error("unexpected data from the token: {0}")]
    Malformed(String),
    /// A device call failed. `interface` is `PKCS#11` or `PIV`; `function` the call (e.g.
    /// `C_Sign`); `code` the return code's name (e.g. `CKR_DEVICE_ERROR`).
    #[error("{interface} {function} failed: {code}")]
    Device {
        /// The device interface.
        interface: &'static str,
        /// The call that failed.
        function: String,
        /// The return code's name.
        code: String,
        /// What it means for the session.
        fault: Fault,
    },
    /// Any other failure of the backend's library (loading, conversions).
    #[error("{0}")]
    Wrapper(String),
    /// The operating system's random number generator failed.
    #[error("the random number generator failed: {0}")]
    Random(String),
}

fn retries_text(retries: Option<u8>) -> String {
    match retries {
        Some(n) => format!(", {n} attempt(s) left"),
        None => String::new(),
    }
}

fn names<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "nothing".into();
    }
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// The device's return-code name when this error came from the device (for metrics and
    /// audit), e.g. `CKR_DEVICE_ERROR`.
    pub fn return_code(&self) -> Option<String> {
        match self {
            Error::Device { code, .. } => Some(code.clone()),
            Error::PinIncorrect { .. } => Some("PIN_INCORRECT".into()),
            Error::PinLocked => Some("PIN_LOCKED".into()),
            _ => None,
        }
    }

    /// What the failure means for the session it happened on.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            Error::Device { fault, .. } => Some(*fault),
            _ => None,
        }
    }

    /// True when the caller's input (not the device) is at fault.
    pub fn is_input_error(&self) -> bool {
        matches!(
            self,
            Error::AlgorithmMismatch { .. }
                | Error::DigestLength { .. }
                | Error::EmptyInput
                | Error::SpecUnsupported { .. }
                | Error::AlgorithmUnsupported { .. }
                | Error::Unsupported(_)
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_specs_list_what_is_supported() {
        let e = Error::SpecUnsupported {
            spec: KeySpec::Ed25519,
            supported: vec![KeySpec::EcP256, KeySpec::Rsa2048],
        };
        assert_eq!(
            e.to_string(),
            "this token does not support ed25519 keys (it supports: ec-p256, rsa-2048)"
        );
        assert!(e.is_input_error());
    }

    #[test]
    fn device_errors_keep_function_and_code() {
        let e = Error::Device {
            interface: "PKCS#11",
            function: "C_Sign".into(),
            code: "CKR_KEY_HANDLE_INVALID".into(),
            fault: Fault::StaleHandle,
        };
        assert_eq!(
            e.to_string(),
            "PKCS#11 C_Sign failed: CKR_KEY_HANDLE_INVALID"
        );
        assert_eq!(e.return_code().as_deref(), Some("CKR_KEY_HANDLE_INVALID"));
        assert_eq!(
            Error::PinIncorrect {
                retries_left: Some(2)
            }
            .to_string(),
            "the token refused the PIN (incorrect PIN, 2 attempt(s) left)"
        );
    }
}
