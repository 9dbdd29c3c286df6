//! `/v1/tokens` and the `.well-known` documents.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::keys::body;
use super::problem::{parse_json, ApiResult, Ctx, Problem};
use crate::audit::Outcome;
use crate::tokens::{self, IssueRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    audience: String,
    #[serde(default)]
    scope: Option<String>,
    /// Seconds.
    #[serde(default)]
    ttl: Option<i64>,
    #[serde(default)]
    subject: Option<String>,
    /// Bind the token to the caller's certificate (RFC 8705). Default true.
    #[serde(default = "yes")]
    bind: bool,
}

fn yes() -> bool {
    true
}

pub async fn issue(ctx: Ctx, raw: Result<Bytes, BytesRejection>) -> ApiResult<Response> {
    let raw = body(raw, &ctx)?;
    let req: TokenRequest = parse_json(&raw, &ctx.request_id)?;
    ctx.require_scope("tokens:issue", "token.issue", &req.audience)
        .await?;
    let bad = |m: String| Problem::new(400, "bad-request", m, &ctx.request_id);
    if req.audience.is_empty() || req.audience.len() > 256 {
        return Err(bad("audience must be 1-256 characters".into()));
    }
    let cfg = &ctx.state.signet.config.tokens;
    let ttl = req.ttl.unwrap_or(cfg.default_ttl_secs as i64);
    if ttl < 1 || ttl > cfg.max_ttl_secs as i64 {
        return Err(bad(format!("ttl must be 1..={} seconds", cfg.max_ttl_secs)));
    }
    let subject = req
        .subject
        .clone()
        .unwrap_or_else(|| ctx.caller.name.clone());
    let on_behalf = subject != ctx.caller.name;
    if on_behalf {
        if !signet_pki::valid_client_name(&subject) {
            return Err(bad(format!(
                "subject {subject:?} is not a valid principal name"
            )));
        }
        ctx.require_scope("tokens:issue-on-behalf", "token.issue", &subject)
            .await?;
    }
    let scope: Vec<String> = req
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scope.len() > 32
        || scope.iter().any(|s| {
            s.len() > 128
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        })
    {
        return Err(bad(
            "scope must be at most 32 space-separated printable values of up to 128 characters"
                .into(),
        ));
    }
    if let Some(s) = scope
        .iter()
        .find(|s| !ctx.caller.can_request_token_scope(s))
    {
        ctx.require(
            false,
            &format!("tokens:scope:{s}"),
            "token.issue",
            &req.audience,
        )
        .await?;
    }
    let issue_req = IssueRequest {
        subject: subject.clone(),
        audience: req.audience.clone(),
        scope,
        ttl,
        bind_to: req.bind.then(|| ctx.caller.cert_sha256.clone()),
        client_id: on_behalf.then(|| ctx.caller.name.clone()),
    };
    let result = ctx
        .blocking(move |s| tokens::issue(&s.signet, &issue_req))
        .await;
    ctx.state
        .metrics
        .token("issue", if result.is_ok() { "ok" } else { "error" });
    let mut event = ctx
        .event(
            "token.issue",
            &req.audience,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
        )
        .with("sub", &subject)
        .with("bound", req.bind);
    if let Ok(issued) = &result {
        event = event
            .with("jti", &issued.claims.jti)
            .with("kid", &issued.kid)
            .with("exp", issued.claims.exp);
    }
    ctx.audit(event).await?;
    let issued = result?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({ "token": issued.token, "token_type": "Bearer", "expires_in": ttl })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IntrospectRequest {
    token: String,
    #[serde(default)]
    audience: Option<String>,
}

pub async fn introspect(ctx: Ctx, raw: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    ctx.require_scope("tokens:introspect", "token.introspect", "token")
        .await?;
    let raw = body(raw, &ctx)?;
    let req: IntrospectRequest = parse_json(&raw, &ctx.request_id)?;
    let token = req.token;
    let audience = req.audience;
    let result = ctx
        .blocking(move |s| tokens::introspect(&s.signet, &token, audience.as_deref()))
        .await?;
    let show_reason = ctx.caller.has("tokens:admin");
    Ok(Json(match result {
        Ok(v) => {
            ctx.state.metrics.token("introspect", "active");
            let mut doc = serde_json::to_value(&v.claims).unwrap_or_default();
            doc["active"] = true.into();
            doc["token_type"] = "Bearer".into();
            doc["kid"] = v.kid.into();
            doc
        }
        Err(inactive) => {
            ctx.state.metrics.token("introspect", "inactive");
            if show_reason {
                json!({ "active": false, "reason": inactive.0 })
            } else {
                json!({ "active": false })
            }
        }
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    jti: Option<String>,
}

pub async fn revoke(ctx: Ctx, raw: Result<Bytes, BytesRejection>) -> ApiResult<Json<Value>> {
    let raw = body(raw, &ctx)?;
    let req: RevokeRequest = parse_json(&raw, &ctx.request_id)?;
    let (jti, exp, subject) = match (req.token, req.jti) {
        (Some(token), None) => {
            // Only a token Signet signed can be revoked by presenting it; its subject may do so.
            let t = token.clone();
            let verified = ctx
                .blocking(move |s| tokens::introspect(&s.signet, &t, None))
                .await?;
            match verified {
                Ok(v) => (v.claims.jti, Some(v.claims.exp), Some(v.claims.sub)),
                Err(e) if e.0 == "revoked" => {
                    return Ok(Json(json!({ "revoked": true, "already": true })));
                }
                Err(e) => {
                    return Err(Problem::new(
                        400,
                        "bad-request",
                        format!("not a valid Signet token: {}", e.0),
                        &ctx.request_id,
                    ))
                }
            }
        }
        (None, Some(jti)) => (jti, None, None),
        _ => {
            return Err(Problem::new(
                400,
                "bad-request",
                "give exactly one of token or jti",
                &ctx.request_id,
            ))
        }
    };
    let own = subject.as_deref() == Some(ctx.caller.name.as_str());
    ctx.require(
        own || ctx.caller.has("tokens:revoke"),
        "tokens:revoke",
        "token.revoke",
        &jti,
    )
    .await?;
    let j = jti.clone();
    let result = ctx
        .blocking(move |s| tokens::revoke(&s.signet, &j, exp))
        .await;
    ctx.state
        .metrics
        .token("revoke", if result.is_ok() { "ok" } else { "error" });
    ctx.audit(
        ctx.event(
            "token.revoke",
            &jti,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
        )
        .with("own", own),
    )
    .await?;
    result?;
    Ok(Json(json!({ "revoked": true, "jti": jti })))
}

pub async fn jwks(ctx: Ctx) -> ApiResult<Response> {
    let doc = ctx.blocking(|s| tokens::jwks(&s.signet)).await?;
    let max_age = tokens::jwks_max_age(&ctx.state.signet.config);
    Ok((
        [
            (header::CACHE_CONTROL, format!("public, max-age={max_age}")),
            (header::CONTENT_TYPE, "application/jwk-set+json".to_string()),
        ],
        doc.to_string(),
    )
        .into_response())
}

pub async fn metadata(ctx: Ctx) -> Json<Value> {
    let cfg = &ctx.state.signet.config.tokens;
    let base = cfg.issuer.trim_end_matches('/');
    Json(json!({
        "issuer": cfg.issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/v1/tokens"),
        "introspection_endpoint": format!("{base}/v1/tokens/introspect"),
        "revocation_endpoint": format!("{base}/v1/tokens/revoke"),
        "token_endpoint_auth_methods_supported": ["tls_client_auth"],
        "tls_client_certificate_bound_access_tokens": true,
        "token_signing_alg_values_supported": [cfg.algorithm],
        "access_token_types_supported": ["at+jwt"],
    }))
}
