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

use super::problem_types::{classify, ProblemType};
use super::AppState;
use crate::error::Error;
use crate::service::{Caller, ClientIdentity, Service};

/// The default prefix of problem type URIs (relative: resolved against the request's URL).
pub const DEFAULT_PROBLEM_BASE: &str = "/problems/";

static PROBLEM_BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the prefix of problem type URIs (`server.problem_type_base`), once, at start; later
/// calls change nothing.
pub fn set_problem_base(base: &str) {
    let _ = PROBLEM_BASE.set(base.to_string());
}

/// The `type` URI of a problem type.
pub fn problem_type_uri(kind: ProblemType) -> String {
    let base = PROBLEM_BASE
        .get()
        .map(String::as_str)
        .unwrap_or(DEFAULT_PROBLEM_BASE);
    format!("{base}{}", kind.slug())
}

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
    pub fn brief(&self) -> super::model::ProblemSummary {
        super::model::ProblemSummary {
            status: self.status.as_u16(),
            kind: problem_type_uri(self.kind),
            detail: self.detail.clone(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = super::model::ProblemDocument {
            kind: problem_type_uri(self.kind),
            title: self
                .status
                .canonical_reason()
                .unwrap_or("Error")
                .to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            request_id: self.request_id,
        };
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response()
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, Problem>;

/// Everything a handler needs about its request: who sent it (the verified client
/// certificate), the request id and the service. The caller is authenticated (certificate
/// expiry and revocation, its principal read) on the worker that runs the request's operation,
/// in the same hop: the store is never read on an async worker.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The connection's verified client certificate.
    identity: ClientIdentity,
    /// The `User-Agent`, recorded with the caller.
    agent: Option<String>,
    /// The request id.
    pub request_id: String,
    /// When the request's database work must be done (see `store::deadline`).
    pub deadline: Option<std::time::Instant>,
    /// The service.
    pub service: Arc<Service>,
    /// Where blocking work runs.
    pub executor: Arc<super::executor::Executor>,
}

/// The request's id (see `RequestId`), `-` before one is given.
pub(super) fn request_id(extensions: &axum::http::Extensions) -> String {
    extensions
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
        let request_id = request_id(&parts.extensions);
        let Some(identity) = parts.extensions.get::<ClientIdentity>().cloned() else {
            // Cannot happen behind the TLS listener: every connection has a verified certificate.
            return Err(Problem::new(
                ProblemType::Unauthenticated,
                "no verified client certificate",
                &request_id,
            ));
        };
        let agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Ctx {
            identity,
            agent,
            request_id,
            // The request's database work, authentication included, shares one deadline.
            deadline: state.service.request_deadline(),
            service: state.service.clone(),
            executor: state.executor.clone(),
        })
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

    /// Runs an operation through the service's pipeline on a worker (authorization, audit,
    /// metrics: see `service::pipeline`); the answer waits, on this request's task, for its
    /// records.
    pub async fn execute<O>(&self, op: O) -> ApiResult<O::Output>
    where
        O: crate::service::Operation + Send + 'static,
        O::Output: Send + 'static,
    {
        let read_ahead = op.reads_key().map(str::to_owned);
        self.authenticated(read_ahead, move |s, c| s.execute(c, op))
            .await
    }

    /// [`Ctx::execute`] for a key use (a signature, a verification: its records are written
    /// before it is answered). On a store shared by several nodes the caller's and the key's
    /// records may come from the node's cache; they are checked in the use's audit transaction
    /// and, if another node changed them meanwhile, the use is run once more on fresh reads
    /// (see `store::prefetch`).
    pub async fn execute_use<O>(&self, op: O) -> ApiResult<O::Output>
    where
        O: crate::service::Operation + Clone + Send + 'static,
        O::Output: Send + 'static,
    {
        let read_ahead = op.reads_key().map(str::to_owned);
        let again = op.clone();
        let first = self
            .attempt(read_ahead.clone(), true, move |s, c| {
                s.execute(c, op.clone())
            })
            .await;
        match first {
            Err(Error::StaleRead) => {
                let mut again = Some(again);
                self.attempt(read_ahead, false, move |s, c| match again.take() {
                    Some(op) => s.execute(c, op),
                    None => crate::service::Deferred::ready(Err(ran_twice())),
                })
                .await
            }
            other => other,
        }
        .map_err(|e| self.fail(e))
    }

    /// Authenticates the caller and runs `op` for it, in one job on a worker; the answer (or
    /// the refusal) waits, on this request's task, for its audit records: the worker is free
    /// as soon as the work is done.
    pub async fn run_deferred<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Service, &Caller) -> crate::service::Deferred<T> + Send + 'static,
    ) -> ApiResult<T> {
        self.authenticated(None, op).await
    }

    /// [`Ctx::run_deferred`], reading `read_ahead`'s key record with the caller's.
    async fn authenticated<T: Send + 'static>(
        &self,
        read_ahead: Option<String>,
        op: impl FnOnce(&Service, &Caller) -> crate::service::Deferred<T> + Send + 'static,
    ) -> ApiResult<T> {
        let mut op = Some(op);
        self.attempt(read_ahead, false, move |s, c| match op.take() {
            Some(op) => op(s, c),
            None => crate::service::Deferred::ready(Err(ran_twice())),
        })
        .await
        .map_err(|e| self.fail(e))
    }

    /// One job on a worker: authenticates the caller and runs `op` for it, with `cache` on
    /// records from the node's cache where the store keeps one; a run that relied on cached
    /// records that none of its submitted audit records vouches for is run again on fresh
    /// reads before anything is answered.
    async fn attempt<T: Send + 'static>(
        &self,
        read_ahead: Option<String>,
        cache: bool,
        mut op: impl FnMut(&Service, &Caller) -> crate::service::Deferred<T> + Send + 'static,
    ) -> Result<T, Error> {
        let service = self.service.clone();
        let identity = self.identity.clone();
        let agent = self.agent.clone();
        let request_id = self.request_id.clone();
        let deadline = self.deadline;
        let job = move || {
            crate::store::deadline::within(deadline, || {
                let mut run = |cache: bool| {
                    crate::store::prefetch::scope(cache, || {
                        service
                            .authenticate(&identity, &request_id, read_ahead.as_deref())
                            .and_then(|caller| op(&service, &caller.with_agent(agent.as_deref())))
                    })
                };
                match run(cache) {
                    (deferred, false) => deferred,
                    // Nothing of it was recorded or answered: do it on what the store holds.
                    (_, true) => run(false).0,
                }
            })
        };
        let deferred = match self.executor.run(job).await {
            Ok(deferred) => deferred,
            Err(e) => return Err(job_failed(e)),
        };
        // The records' wait is part of the request's database work: it ends at the same
        // deadline (records queued behind a stuck checkpoint, say). They may still be
        // written after it, so the answer says the outcome is unknown.
        match self.deadline {
            None => deferred.settle().await,
            Some(at) => tokio::time::timeout_at(at.into(), deferred.settle())
                .await
                .unwrap_or_else(|_| {
                    Err(Error::AuditUncertain(
                        "no answer from the audit log within the request's deadline (store.timeout_ms)"
                            .into(),
                    ))
                }),
        }
    }
}

/// An operation's closure called a second time (a bug: each is run once, or cloned).
fn ran_twice() -> Error {
    Error::Internal("an operation was run twice".into())
}

/// What a request that got no result from its worker is answered.
fn job_failed(e: super::executor::JobError) -> Error {
    match e {
        super::executor::JobError::Stopped => Error::Internal("the service is stopping".into()),
        super::executor::JobError::Panicked => {
            Error::Internal("an internal error interrupted this request".into())
        }
    }
}

/// A JSON body of type `T`; malformed input is answered with a useful 400.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

/// Whether a request says its body is JSON (`application/json`, with or without parameters).
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    has_content_type(headers, "application/json")
}

/// Whether a request's `Content-Type` is `essence` (any case, with or without parameters).
pub(super) fn has_content_type(headers: &axum::http::HeaderMap, essence: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(essence))
}

/// An oversized body is read (and thrown away) up to this many times the limit before the 413
/// is sent: a client still uploading would otherwise see its stream reset (HTTP/2) instead of
/// the answer. Beyond it the connection's stream is reset.
const DRAIN_FACTOR: usize = 8;

/// The body of a request, read within the body timeout and the size limit.
pub async fn read_body(req: Request, state: &AppState, request_id: &str) -> ApiResult<Bytes> {
    read_body_of(req.into_body(), state, request_id).await
}

/// Reads a request body whole, within `server.max_body_bytes` and the body timeout.
pub async fn read_body_of(
    mut body: axum::body::Body,
    state: &AppState,
    request_id: &str,
) -> ApiResult<Bytes> {
    use http_body_util::BodyExt;
    let server = &state.service.config().server;
    let limit = server.max_body_bytes;
    let timeout = std::time::Duration::from_secs(server.body_read_timeout_secs);
    let read = tokio::time::timeout(timeout, async {
        let mut buf = Vec::new();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("cannot read the body: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total <= limit {
                buf.extend_from_slice(&data);
            } else if total > limit.saturating_mul(DRAIN_FACTOR) {
                break;
            }
        }
        Ok::<_, String>((buf, total))
    })
    .await;
    match read {
        Err(_) => Err(Problem::new(
            ProblemType::RequestTimeout,
            format!("the body did not arrive within {}s", timeout.as_secs()),
            request_id,
        )),
        Ok(Err(detail)) => Err(Problem::new(ProblemType::BadRequest, detail, request_id)),
        Ok(Ok((_, total))) if total > limit => Err(Problem::new(
            ProblemType::PayloadTooLarge,
            format!("the body exceeds {limit} bytes"),
            request_id,
        )),
        Ok(Ok((buf, _))) => Ok(Bytes::from(buf)),
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let request_id = request_id(req.extensions());
        // A browser can send a form cross-site without asking; it cannot send application/json.
        if !is_json(req.headers()) {
            return Err(Problem::new(
                ProblemType::UnsupportedMediaType,
                "send the body as application/json (Content-Type: application/json; curl --json)",
                &request_id,
            ));
        }
        let bytes = read_body(req, state, &request_id).await?;
        parse_json(&bytes, &request_id).map(ApiJson)
    }
}

/// Whether a request says its body is an HTML form (`application/x-www-form-urlencoded`).
fn is_form(headers: &axum::http::HeaderMap) -> bool {
    has_content_type(headers, "application/x-www-form-urlencoded")
}

/// A body of type `T` sent as JSON or as a form (`application/x-www-form-urlencoded`), for
/// the one operation whose standard sends forms: RFC 7662 introspection, which reads only (a
/// form is what a cross-site page can send unasked, so no state change takes one).
#[derive(Debug)]
pub struct JsonOrForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonOrForm<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_form(req.headers()) {
            return ApiJson::from_request(req, state)
                .await
                .map(|ApiJson(v)| JsonOrForm(v));
        }
        let request_id = request_id(req.extensions());
        let bytes = read_body(req, state, &request_id).await?;
        serde_urlencoded::from_bytes(&bytes)
            .map(JsonOrForm)
            .map_err(|e| {
                Problem::new(
                    ProblemType::BadRequest,
                    format!(
                        "invalid form body: {}",
                        crate::support::text::echo(&e.to_string())
                    ),
                    &request_id,
                )
            })
    }
}

/// An optional JSON body: none when the request has no body, else as [`ApiJson`].
#[derive(Debug)]
pub struct MaybeJson<T>(pub Option<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for MaybeJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == "0")
            || (req.headers().get(header::CONTENT_LENGTH).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none()
                && !is_json(req.headers()));
        if empty {
            return Ok(MaybeJson(None));
        }
        ApiJson::from_request(req, state)
            .await
            .map(|j| MaybeJson(Some(j.0)))
    }
}

/// A query string of type `T`; a bad one is answered with a 400 problem.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(ApiQuery(q.0)),
            Err(e) => Err(Problem::new(
                ProblemType::BadRequest,
                format!(
                    "invalid query string: {}",
                    crate::support::text::echo(&e.body_text())
                ),
                &request_id(&parts.extensions),
            )),
        }
    }
}

/// Path parameters of type `T`; a bad one is answered with a 400 problem.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(ApiPath(p.0)),
            Err(e) => Err(Problem::new(
                ProblemType::BadRequest,
                format!(
                    "invalid path: {}",
                    crate::support::text::echo(&e.body_text())
                ),
                &request_id(&parts.extensions),
            )),
        }
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
    // Every body is a JSON object; serde would also build a struct from an array of its fields.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::new(
            ProblemType::BadRequest,
            "the JSON body must be an object",
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

/// A `T` written as a JSON object, and only so (serde also builds a struct from an array of
/// its fields, which no API description allows): for structs nested in a body.
#[derive(Debug, Clone)]
pub struct Object<T>(pub T);

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        T::deserialize(serde_json::Value::Object(map))
            .map(Object)
            .map_err(serde::de::Error::custom)
    }
}

/// Decodes standard base64, naming the field on error.
pub fn base64_field(value: &str, field: &str) -> crate::error::Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| Error::BadRequest(format!("{field} is not valid base64: {e}")))
}
