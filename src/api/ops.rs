//! Health, readiness, metrics, the audit feed and the problem types.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::model::{HealthView, ProblemTypeView, ReadyHsm, ReadyView};
use super::problem::{ApiPath, ApiQuery, ApiResult, Ctx, Problem};
use super::problem_types::ProblemType;
use crate::service::{
    Health, ReadApiDescription, ReadAudit, ReadMetrics, ReadProblemType, ReadReadiness, ReadStatus,
};

pub async fn healthz(ctx: Ctx) -> ApiResult<Json<HealthView>> {
    ctx.execute(Health).await?;
    Ok(Json(HealthView {
        status: "ok".into(),
    }))
}

pub async fn readyz(ctx: Ctx) -> ApiResult<Response> {
    let r = ctx.execute(ReadReadiness).await?;
    if !r.ready() {
        let mut down = Vec::new();
        if let Err(e) = &r.hsm {
            down.push(format!("HSM: {e}"));
        }
        if r.store.is_err() {
            down.push("store: not writable".to_string());
        }
        if r.audit.is_err() {
            down.push("audit log: not writable".to_string());
        }
        return Ok(Problem::new(
            ProblemType::NotReady,
            format!("not ready: {}", down.join("; ")),
            &ctx.request_id,
        )
        .into_response());
    }
    let info = r.hsm.as_ref().ok();
    Ok(Json(ReadyView {
        status: "ready".into(),
        hsm: ReadyHsm {
            backend: info.map(|i| i.kind.to_string()),
            library: info.map(|i| i.library.clone()),
            token: info.map(|i| i.token_label.clone()),
            sessions_open: info.map(|i| i.sessions_open),
            pool_size: info.map(|i| i.sessions_max),
        },
        store: "ok".into(),
        audit: "ok".into(),
    })
    .into_response())
}

/// `GET /metrics`: OpenMetrics to a scraper that asks for it (Prometheus does), else the
/// classic text format (0.0.4), which every tool reads.
pub async fn metrics(ctx: Ctx, headers: axum::http::HeaderMap) -> ApiResult<Response> {
    let text = ctx.execute(ReadMetrics).await?;
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    Ok(if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::service::metrics::classic_text(&text),
        )
            .into_response()
    })
}

/// The API's description, generated when the router is built.
pub static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `GET /v1/openapi.json`: the API's description, generated at start.
pub async fn openapi(ctx: Ctx) -> ApiResult<Response> {
    ctx.execute(ReadApiDescription).await?;
    let text = DOCUMENT.get().map(String::as_str).unwrap_or("{}");
    // One copy for every answer: a response shares the document instead of copying it.
    let body = axum::body::Bytes::from_static(text.as_bytes());
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /v1/status`: the status report as JSON.
pub async fn status(ctx: Ctx) -> ApiResult<Json<crate::service::Status>> {
    Ok(Json(ctx.execute(ReadStatus).await?))
}

/// `GET /problems/{name}`: what a problem type means (the target of the relative `type` URIs).
pub async fn problem(ctx: Ctx, ApiPath(name): ApiPath<String>) -> ApiResult<Json<ProblemTypeView>> {
    ctx.execute(ReadProblemType { name: name.clone() }).await?;
    let kind = ProblemType::ALL
        .into_iter()
        .find(|k| k.slug() == name)
        .ok_or_else(|| {
            ctx.fail(crate::error::Error::NotFound(format!(
                "no problem type named {}",
                crate::support::text::echo(&name)
            )))
        })?;
    Ok(Json(ProblemTypeView {
        kind: super::problem_type_uri(kind),
        name: kind.slug().into(),
        status: kind.status(),
        title: axum::http::StatusCode::from_u16(kind.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error")
            .into(),
        meaning: kind.meaning().into(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Records after this sequence number (default 0: from the first).
    #[param(value_type = Option<i64>, minimum = 0)]
    after: Option<u64>,
    /// How many records at most (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

/// JSON lines, oldest first.
pub async fn audit(ctx: Ctx, ApiQuery(q): ApiQuery<AuditQuery>) -> ApiResult<Response> {
    let after = q.after.unwrap_or(0);
    if after > i64::MAX as u64 {
        return Err(ctx.bad(format!(
            "after must be a sequence number, at most {}",
            i64::MAX
        )));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ctx.bad("limit must be 1..=10000"));
    }
    let records = ctx.execute(ReadAudit { after, limit }).await?;
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(&r.to_line());
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}
