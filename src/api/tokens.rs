//! `/v1/tokens` and the `.well-known` documents.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::model::{IntrospectionView, RevokedView, TokenView};
use super::problem::{ApiJson, ApiResult, Ctx, JsonOrForm};
use crate::domain::tokens::TokenRequest;
use crate::error::Error;
use crate::service::{
    Introspect, IssueToken, ReadJwks, ReadTokenMetadata, RevokeToken, RevokeTokenOp, TokenAnswer,
};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    /// 1-256 characters.
    #[schema(min_length = 1, max_length = 256)]
    audience: String,
    #[serde(default)]
    scope: Option<String>,
    /// Seconds.
    #[serde(default, deserialize_with = "super::number::option")]
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

pub async fn issue(ctx: Ctx, ApiJson(req): ApiJson<IssueBody>) -> ApiResult<Response> {
    let request = TokenRequest {
        audience: req.audience,
        scope: TokenRequest::split_scope(req.scope.as_deref()),
        ttl: req.ttl,
        subject: req.subject,
        bind: req.bind,
    };
    let issued = ctx.execute(IssueToken(request)).await?;
    let expires_in = issued.claims.exp - issued.claims.iat;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(TokenView {
            token: issued.token,
            token_type: "Bearer".into(),
            expires_in,
        }),
    )
        .into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectBody {
    token: String,
    #[serde(default)]
    audience: Option<String>,
}

pub async fn introspect(
    ctx: Ctx,
    JsonOrForm(req): JsonOrForm<IntrospectBody>,
) -> ApiResult<Json<IntrospectionView>> {
    let (result, show_reason) = ctx
        .execute(Introspect {
            token: req.token,
            audience: req.audience,
        })
        .await?;
    let inactive = |reason: Option<String>| IntrospectionView {
        active: false,
        reason,
        ..Default::default()
    };
    Ok(Json(match result {
        Ok(v) => {
            let c = v.claims;
            IntrospectionView {
                active: true,
                iss: Some(c.iss),
                sub: Some(c.sub),
                aud: Some(c.aud),
                exp: Some(c.exp),
                iat: Some(c.iat),
                nbf: Some(c.nbf),
                jti: Some(c.jti),
                scope: c.scope,
                client_id: c.client_id,
                cnf: c.cnf.and_then(|cnf| serde_json::to_value(cnf).ok()),
                token_type: Some("Bearer".into()),
                kid: Some(v.kid),
                ..Default::default()
            }
        }
        Err(why) if show_reason => inactive(Some(why.to_string())),
        Err(_) => inactive(None),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    jti: Option<String>,
}

pub async fn revoke(ctx: Ctx, ApiJson(req): ApiJson<RevokeBody>) -> ApiResult<Json<RevokedView>> {
    let what = match (req.token, req.jti) {
        (Some(token), None) => RevokeToken::Token(token),
        (None, Some(jti)) => RevokeToken::Jti(jti),
        _ => return Err(ctx.fail(Error::BadRequest("give exactly one of token or jti".into()))),
    };
    Ok(Json(
        match ctx
            .run_deferred(move |s, c| match RevokeTokenOp::new(s, what) {
                Ok(op) => s.execute(c, op),
                Err(e) => crate::service::Deferred::ready(Err(e)),
            })
            .await?
        {
            TokenAnswer::Revoked(jti) => RevokedView {
                revoked: true,
                jti: Some(jti),
                already: None,
            },
            TokenAnswer::AlreadyRevoked => RevokedView {
                revoked: true,
                jti: None,
                already: Some(true),
            },
        },
    ))
}

pub async fn jwks(ctx: Ctx) -> ApiResult<Response> {
    let (doc, max_age) = ctx.execute(ReadJwks).await?;
    Ok((
        [
            (header::CACHE_CONTROL, format!("public, max-age={max_age}")),
            (header::CONTENT_TYPE, "application/jwk-set+json".to_string()),
        ],
        doc.to_string(),
    )
        .into_response())
}

pub async fn metadata(ctx: Ctx) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.execute(ReadTokenMetadata::Signet).await?))
}

pub async fn oauth_metadata(ctx: Ctx) -> ApiResult<Json<Value>> {
    Ok(Json(ctx.execute(ReadTokenMetadata::OAuth).await?))
}
