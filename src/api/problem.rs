//! `application/problem+json` (RFC 9457) responses, and the extractors every handler uses: the
//! request context (caller, request id, service) and a typed JSON body whose rejection is a
//! problem document.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::AppState;
use crate::error::{classify, Error, ProblemType};
use crate::service::{Caller, ClientIdentity, Service};

/// Base of problem type URIs.
pub const PROBLEM_BASE: &str = "https://signet.dev/problems/";

/// The request id, set by the request-context middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An error answered as a problem document.
#[derive(Debug)]
pub struct Problem {
    kind: ProblemType,
    status: StatusCode,
    detail: String,
    request_id: String,
}

impl Problem {
    /// A problem of `kind`.
    pub fn new(kind: ProblemType, detail: impl Into<String>, request_id: &str) -> Self {
        Problem {
            kind,
            status: StatusCode::from_u16(kind.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            detail: detail.into(),
            request_id: request_id.to_string(),
        }
    }

    /// From a service error, through the one mapping.
    pub fn from_error(err: &Error, request_id: &str) -> Self {
        let (kind, detail) = classify(err);
        if kind.status() >= 500 {
            // The client sees a safe summary; the log keeps the cause (never secrets: errors
            // carry none).
            tracing::error!(request_id, error = %err, "request failed");
        }
        Problem::new(kind, detail, request_id)
    }

    /// Status, type and detail, for embedding in a larger document (batch items).
    pub fn summary(&self) -> serde_json::Value {
        json!({
            "status": self.status.as_u16(),
            "type": format!("{PROBLEM_BASE}{}", self.kind.slug()),
            "detail": self.detail,
        })
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({
            "type": format!("{PROBLEM_BASE}{}", self.kind.slug()),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "request_id": self.request_id,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, Problem>;

/// Everything a handler needs about its request: the caller (its principal read now), the
/// request id and the service.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller.
    pub caller: Caller,
    /// The request id.
    pub request_id: String,
    /// The service.
    pub service: Arc<Service>,
}

fn request_id(parts: &Parts) -> String {
    parts
        .extensions
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "-".into())
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let request_id = request_id(parts);
        let Some(identity) = parts.extensions.get::<ClientIdentity>().cloned() else {
            // Cannot happen behind the TLS listener: every connection has a verified certificate.
            return Err(Problem::new(
                ProblemType::Unauthenticated,
                "no verified client certificate",
                &request_id,
            ));
        };
        let service = state.service.clone();
        let rid = request_id.clone();
        // The store lookups (revocation, principal) and, for a revoked certificate, the durable
        // denial record, off the async workers.
        let caller =
            tokio::task::spawn_blocking(move || service.authenticate(&identity, &rid)).await;
        match caller {
            Ok(Ok(caller)) => Ok(Ctx {
                caller,
                request_id,
                service: state.service.clone(),
            }),
            Ok(Err(e)) => Err(Problem::from_error(&e, &request_id)),
            Err(e) => Err(Problem::from_error(
                &Error::Internal(format!("worker failed: {e}")),
                &request_id,
            )),
        }
    }
}

impl Ctx {
    /// A problem for this request.
    pub fn fail(&self, err: Error) -> Problem {
        Problem::from_error(&err, &self.request_id)
    }

    /// A 400 for this request.
    pub fn bad(&self, detail: impl Into<String>) -> Problem {
        Problem::new(ProblemType::BadRequest, detail, &self.request_id)
    }

    /// Runs a service operation (PKCS#11, the store, the audit wait) off the async workers.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Service, &Caller) -> crate::error::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        let service = self.service.clone();
        let caller = self.caller.clone();
        match tokio::task::spawn_blocking(move || op(&service, &caller)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(e) => Err(self.fail(Error::Internal(format!("worker failed: {e}")))),
        }
    }
}

/// A JSON body of type `T`; malformed input is answered with a useful 400.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| "-".into());
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    ProblemType::PayloadTooLarge,
                    format!(
                        "the body exceeds {} bytes",
                        state.service.config().server.max_body_bytes
                    ),
                    &request_id,
                )
            } else {
                Problem::new(
                    ProblemType::BadRequest,
                    format!("cannot read the body: {e}"),
                    &request_id,
                )
            }
        })?;
        parse_json(&bytes, &request_id).map(ApiJson)
    }
}

/// Parses a JSON body into `T`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8], request_id: &str) -> ApiResult<T> {
    if body.is_empty() {
        return Err(Problem::new(
            ProblemType::BadRequest,
            "a JSON body is required",
            request_id,
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            ProblemType::BadRequest,
            format!(
                "invalid JSON body: {}",
                crate::support::text::bounded(&e.to_string(), 300)
            ),
            request_id,
        )
    })
}

/// Decodes standard base64, naming the field on error.
pub fn base64_field(value: &str, field: &str) -> crate::error::Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| Error::BadRequest(format!("{field} is not valid base64: {e}")))
}
