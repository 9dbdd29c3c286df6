//! Health, readiness, metrics, the audit feed, and housekeeping.

use std::time::Duration;

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::problem::{ApiResult, Ctx, Problem};
use super::AppState;
use crate::audit::{Event, Outcome};
use crate::keys::Keys;

pub async fn healthz(_ctx: Ctx) -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz(ctx: Ctx) -> Response {
    let result = ctx
        .blocking(|s| {
            let info = s.signet.backend.info()?;
            s.signet.store.meta::<serde_json::Value>("ca")?;
            Ok(info)
        })
        .await;
    match result {
        Ok(info) => Json(json!({
            "status": "ready",
            "hsm": { "library": info.library, "token": info.token_label, "sessions_open": info.sessions_open, "pool_size": info.pool_size },
            "store": "ok",
        }))
        .into_response(),
        Err(_) => Problem::new(503, "not-ready", "the HSM session or the store is not usable", &ctx.request_id).into_response(),
    }
}

pub async fn metrics(ctx: Ctx) -> Response {
    let (open, size) = ctx
        .blocking(|s| {
            Ok(s.signet
                .backend
                .info()
                .map(|i| (i.sessions_open, i.pool_size))
                .unwrap_or((0, 0)))
        })
        .await
        .unwrap_or((0, 0));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.state.metrics.render(open, size),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// JSON lines, oldest first.
pub async fn audit(ctx: Ctx, Query(q): Query<AuditQuery>) -> ApiResult<Response> {
    ctx.require_scope("audit:read", "audit.read", "audit")
        .await?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let records = ctx.blocking(move |s| s.audit.read(after, limit)).await?;
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(&r).unwrap_or_default());
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

pub async fn not_found(ctx: Ctx) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND.as_u16(),
        "not-found",
        "no such route",
        &ctx.request_id,
    )
}

/// Destroys keys whose deletion window has passed, and writes a checkpoint when one is due.
pub fn housekeeping(state: &AppState) {
    let now = crate::keys::now();
    match Keys(&state.signet).destroy_due(now) {
        Ok(destroyed) => {
            for name in destroyed {
                tracing::info!(key = %name, "deletion window passed: key destroyed in the token");
                let _ = state.audit.append(
                    Event::new("signet", "-", "key.destroy", &name, Outcome::Ok)
                        .with("trigger", "deletion window passed"),
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "housekeeping: destroying due keys failed"),
    }
    match crate::tokens::rotate_if_due(&state.signet, now) {
        Ok(Some(version)) => {
            tracing::info!(version, "token-signing key rotated (automatic rotation)");
            let _ = state.audit.append(
                Event::new(
                    "signet",
                    "-",
                    "key.rotate",
                    crate::tokens::TOKEN_KEY,
                    Outcome::Ok,
                )
                .with("trigger", "rotate_every_days")
                .with("primary_version", version),
            );
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "housekeeping: token key rotation failed"),
    }
    // Regenerates the CRL once half its validity has passed, well before nextUpdate.
    if let Err(e) = crate::authority::current_crl(&state.signet, &state.ca) {
        tracing::error!(error = %e, "housekeeping: CRL refresh failed");
    }
    if let Err(e) = crate::tokens::prune(&state.signet, now) {
        tracing::error!(error = %e, "housekeeping: pruning revoked tokens failed");
    }
    if let Err(e) = state.audit.checkpoint_if_due() {
        tracing::error!(error = %e, "housekeeping: audit checkpoint failed");
    }
}

/// Runs [`housekeeping`] periodically (and checkpoints on the audit interval).
pub async fn housekeeping_loop(state: AppState) {
    let every = state
        .signet
        .config
        .server
        .housekeeping_interval_secs
        .min(state.signet.config.audit.checkpoint_interval_secs)
        .max(1);
    let mut ticker = tokio::time::interval(Duration::from_secs(every));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let s = state.clone();
        let _ = tokio::task::spawn_blocking(move || housekeeping(&s)).await;
    }
}
