//! `application/problem+json` (RFC 9457) responses, and the request context every handler gets.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::audit::{Event, Outcome};
use crate::authz::Caller;
use crate::error::{classify, Error};

/// Base of problem type URIs.
pub const PROBLEM_BASE: &str = "https://signet.dev/problems/";

/// The request id, set by the request-id middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An error answered as a problem document.
#[derive(Debug)]
pub struct Problem {
    status: u16,
    slug: &'static str,
    detail: String,
    request_id: String,
}

impl Problem {
    /// From a service error.
    pub fn from_error(err: &Error, request_id: &str) -> Self {
        let (status, slug, detail) = classify(err);
        if status >= 500 {
            // The client sees a safe summary; the log keeps the cause (never secrets: errors carry none).
            tracing::error!(request_id, error = %err, "request failed");
        }
        Problem {
            status,
            slug,
            detail,
            request_id: request_id.to_string(),
        }
    }

    /// Status, type and detail, for embedding in a larger document (batch items).
    pub fn summary(&self) -> serde_json::Value {
        json!({
            "status": self.status,
            "type": format!("{PROBLEM_BASE}{}", self.slug),
            "detail": self.detail,
        })
    }

    /// A problem with explicit parts.
    pub fn new(
        status: u16,
        slug: &'static str,
        detail: impl Into<String>,
        request_id: &str,
    ) -> Self {
        Problem {
            status,
            slug,
            detail: detail.into(),
            request_id: request_id.to_string(),
        }
    }
}

/// The problem document for a status and slug.
pub fn problem_body(status: u16, slug: &str, detail: &str, request_id: &str) -> serde_json::Value {
    let title = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    json!({
        "type": format!("{PROBLEM_BASE}{slug}"),
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
    })
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = problem_body(self.status, self.slug, &self.detail, &self.request_id);
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, Problem>;

/// Everything a handler needs about its request: the caller (principal loaded), the request id
/// and the service state.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The caller.
    pub caller: Caller,
    /// The request id.
    pub request_id: String,
    /// The service.
    pub state: AppState,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| "-".into());
        let Some(mut caller) = parts.extensions.get::<Caller>().cloned() else {
            // Cannot happen behind the TLS listener: every connection has a verified certificate.
            return Err(Problem::new(
                401,
                "unauthenticated",
                "no verified client certificate",
                &request_id,
            ));
        };
        // A sled read served from its page cache: cheaper inline than a hop to a blocking thread.
        caller.principal = crate::principals::Principals(&state.signet.store)
            .get(&caller.name)
            .map_err(|e| Problem::from_error(&e, &request_id))?;
        Ok(Ctx {
            caller,
            request_id,
            state: state.clone(),
        })
    }
}

impl Ctx {
    /// A problem for this request.
    pub fn fail(&self, err: Error) -> Problem {
        Problem::from_error(&err, &self.request_id)
    }

    /// An audit event for this request.
    pub fn event(&self, action: &str, target: &str, outcome: Outcome) -> Event {
        Event::new(&self.caller.name, &self.request_id, action, target, outcome)
    }

    /// Appends an audit record, durably, off the async workers.
    pub async fn audit(&self, event: Event) -> ApiResult<()> {
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || state.record(vec![event])).await;
        match result {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(e) => Err(self.fail(Error::AuditUnavailable(e.to_string()))),
        }
    }

    /// Refuses with 403 (audited) unless `allowed`.
    pub async fn require(
        &self,
        allowed: bool,
        needed: &str,
        action: &str,
        target: &str,
    ) -> ApiResult<()> {
        if allowed {
            return Ok(());
        }
        let detail = if self.caller.principal.is_none() {
            format!("{} is not an enrolled principal", self.caller.name)
        } else {
            format!("{} lacks the scope {needed}", self.caller.name)
        };
        self.state.metrics.denial(action);
        self.audit(
            self.event(action, target, Outcome::Denied)
                .with("reason", &detail),
        )
        .await?;
        Err(Problem::new(403, "forbidden", detail, &self.request_id))
    }

    /// Requires a plain scope.
    pub async fn require_scope(&self, scope: &str, action: &str, target: &str) -> ApiResult<()> {
        self.require(self.caller.has(scope), scope, action, target)
            .await
    }

    /// Runs blocking work (PKCS#11, sled) off the async workers.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AppState) -> crate::error::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || f(&state)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if let Error::Hsm(h) = &e {
                    if let Some(code) = h.return_code() {
                        self.state.metrics.hsm_error(&code);
                    }
                }
                Err(self.fail(e))
            }
            Err(e) => Err(self.fail(Error::Internal(format!("worker failed: {e}")))),
        }
    }
}

/// Parses a JSON body into `T`, answering malformed input with a useful 400.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], request_id: &str) -> ApiResult<T> {
    if body.is_empty() {
        return Err(Problem::new(
            400,
            "bad-request",
            "a JSON body is required",
            request_id,
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        Problem::new(
            400,
            "bad-request",
            format!("invalid JSON body: {e}"),
            request_id,
        )
    })
}

/// Decodes standard base64, naming the field on error.
pub fn base64_field(value: &str, field: &str, request_id: &str) -> ApiResult<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| {
            Problem::new(
                400,
                "bad-request",
                format!("{field} is not valid base64: {e}"),
                request_id,
            )
        })
}
