//! `/v1/ca`, `/v1/certificates` and `/v1/principals`.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use signet_pki::Profile;

use super::model::{CertView, IssuedView, PrincipalList, PrincipalView};
use super::problem::{ApiJson, ApiPath, ApiResult, Ctx, MaybeJson};
use crate::service::{
    CertificateRequest, DeletePrincipal, IssueCertificate, IssuedWithChain, ListPrincipals,
    PutPrincipal, ReadCertificate, ReadChain, ReadCrl, RevokeCertificate,
};
use crate::support::time::format_time;

pub async fn chain(ctx: Ctx) -> ApiResult<Response> {
    let chain = ctx.execute(ReadChain).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        chain.pem,
    )
        .into_response())
}

pub async fn crl(ctx: Ctx, headers: HeaderMap) -> ApiResult<Response> {
    crl_of(ctx, headers, ReadCrl::Intermediate).await
}

pub async fn arl(ctx: Ctx, headers: HeaderMap) -> ApiResult<Response> {
    crl_of(ctx, headers, ReadCrl::Root).await
}

async fn crl_of(ctx: Ctx, headers: HeaderMap, which: ReadCrl) -> ApiResult<Response> {
    let der = ctx.execute(which).await?;
    let wants_pem = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-pem-file") || a.contains("text/plain"));
    Ok(if wants_pem {
        (
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            signet_pki::pem_crl(&der),
        )
            .into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response()
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    csr: String,
    #[schema(schema_with = super::model::profile_schema)]
    profile: Profile,
    /// The principal (client) or the server's name, 1-64 characters.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    ips: Vec<IpAddr>,
    /// Seconds.
    #[serde(default, deserialize_with = "super::number::option")]
    ttl: Option<u64>,
}

pub async fn issue(ctx: Ctx, ApiJson(req): ApiJson<IssueRequest>) -> ApiResult<impl IntoResponse> {
    let request = CertificateRequest {
        csr: req.csr.into_bytes(),
        profile: req.profile,
        name: req.name,
        dns: req.dns,
        ips: req.ips,
        ttl: req.ttl.map(Duration::from_secs),
    };
    let IssuedWithChain {
        issued,
        chain,
        intermediate,
    } = ctx.execute(IssueCertificate(request)).await?;
    let certificate = signet_pki::pem_cert(&issued.der);
    Ok((
        StatusCode::CREATED,
        Json(IssuedView {
            serial: issued.serial,
            certificate_chain: format!("{certificate}{intermediate}"),
            certificate,
            chain,
            not_after: format_time(issued.not_after),
            sans: issued.sans,
        }),
    ))
}

pub async fn show(ctx: Ctx, ApiPath(serial): ApiPath<String>) -> ApiResult<Json<CertView>> {
    let rec = ctx.execute(ReadCertificate { serial }).await?;
    Ok(Json(CertView::from(&rec)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default, deserialize_with = "reason")]
    #[schema(schema_with = super::model::reason_schema)]
    reason: Option<String>,
}

/// An RFC 5280 reason name, refused at parsing when it is not one.
fn reason<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    if let Some(name) = &name {
        signet_pki::parse_reason(name).map_err(serde::de::Error::custom)?;
    }
    Ok(name)
}

pub async fn revoke(
    ctx: Ctx,
    ApiPath(serial): ApiPath<String>,
    MaybeJson(req): MaybeJson<RevokeRequest>,
) -> ApiResult<Json<CertView>> {
    // No body is a revocation without a reason.
    let req = req.unwrap_or_default();
    let rec = ctx
        .execute(RevokeCertificate::new(serial, req.reason))
        .await?;
    Ok(Json(CertView::from(&rec)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRequest {
    /// 1-64 of A-Z a-z 0-9 - _ . (not starting with a dot).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
    )]
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

pub async fn list_principals(ctx: Ctx) -> ApiResult<Json<PrincipalList>> {
    let list = ctx.execute(ListPrincipals).await?;
    Ok(Json(PrincipalList {
        principals: list.iter().map(PrincipalView::from).collect(),
    }))
}

pub async fn create_principal(
    ctx: Ctx,
    ApiJson(req): ApiJson<PrincipalRequest>,
) -> ApiResult<impl IntoResponse> {
    let principal = ctx.execute(PutPrincipal::new(req.name, req.scopes)).await?;
    Ok((StatusCode::CREATED, Json(PrincipalView::from(&principal))))
}

pub async fn delete_principal(ctx: Ctx, ApiPath(name): ApiPath<String>) -> ApiResult<StatusCode> {
    ctx.execute(DeletePrincipal::new(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
