//! The problem types the API answers with (RFC 9457): each error kind's HTTP status and
//! `type` slug, in one place at the front. Below the front, errors are domain errors; what a
//! client may read of one is `error::public_detail`.

use signet_hsm::Error as HsmError;
use signet_pki::Error as PkiError;

use crate::error::{public_detail, Error, StoreError};

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
    /// 422: well-formed, but a rule the API description cannot express refuses it.
    Unprocessable,
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
    pub const ALL: [ProblemType; 16] = [
        ProblemType::BadRequest,
        ProblemType::Unauthenticated,
        ProblemType::Forbidden,
        ProblemType::NotFound,
        ProblemType::MethodNotAllowed,
        ProblemType::RequestTimeout,
        ProblemType::Conflict,
        ProblemType::Unprocessable,
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
            ProblemType::Unprocessable => "unprocessable",
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
            ProblemType::Unprocessable => 422,
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
            ProblemType::Unprocessable => "the request is well-formed and matches the API description, but a rule the description cannot express refuses it: the key's algorithm or digest length, what the token supports, a field that does not go with another, a CSR or token that does not parse, a name that is not a principal; the detail says which",
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

/// The problem type of an error, and the detail safe to show a client.
pub fn classify(err: &Error) -> (ProblemType, String) {
    (kind(err), public_detail(err))
}

/// Each error's problem type; anything not classified is a 500.
fn kind(err: &Error) -> ProblemType {
    match err {
        Error::BadRequest(_) => ProblemType::BadRequest,
        Error::Unprocessable(_) => ProblemType::Unprocessable,
        Error::NotFound(_) => ProblemType::NotFound,
        Error::Conflict(_) => ProblemType::Conflict,
        Error::Forbidden(_) => ProblemType::Forbidden,
        Error::Unauthenticated(_) => ProblemType::Unauthenticated,
        Error::AuditUnavailable(_) | Error::ChainBroken { .. } | Error::AuditUncertain(_) => {
            ProblemType::AuditUnavailable
        }
        Error::StaleRead => ProblemType::NotReady,
        Error::Hsm(e) => hsm_kind(e),
        Error::Pki(e) => match e {
            PkiError::CsrRefused(_)
            | PkiError::Policy(_)
            | PkiError::Parse { .. }
            | PkiError::Pkcs12Import(_) => ProblemType::Unprocessable,
            PkiError::Hsm(inner) => hsm_kind(inner),
            _ => ProblemType::Internal,
        },
        Error::Store(StoreError::NotWritable(_) | StoreError::Unavailable(_)) => {
            ProblemType::NotReady
        }
        Error::Store(_) | Error::Random(_) | Error::Io(_) | Error::Json(_) | Error::Internal(_) => {
            ProblemType::Internal
        }
    }
}

fn hsm_kind(e: &HsmError) -> ProblemType {
    if e.is_input_error() {
        return ProblemType::Unprocessable;
    }
    match e {
        HsmError::KeyNotFound(_) => ProblemType::NotFound,
        HsmError::KeyExists(_) | HsmError::Full(_) => ProblemType::Conflict,
        _ => ProblemType::HsmUnavailable,
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
        assert!(!detail.contains("CKR_"), "{detail}");
    }
}
