//! `/v1/ca`, `/v1/certificates` and `/v1/principals`.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use signet_pki::{LeafRequest, Profile};

use super::keys::body;
use super::problem::{parse_json, ApiResult, Ctx, Problem};
use crate::audit::Outcome;
use crate::authority;
use crate::cli::format_time;
use crate::error::Error;
use crate::principals::Principals;
use crate::store::CertRecord;

pub async fn chain(ctx: Ctx) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        ctx.state.ca.chain_pem(),
    )
        .into_response()
}

pub async fn crl(ctx: Ctx, headers: HeaderMap) -> ApiResult<Response> {
    let der = ctx
        .blocking(|s| authority::current_crl(&s.signet, &s.ca))
        .await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    csr: String,
    profile: String,
    name: String,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    ips: Vec<IpAddr>,
    /// Seconds.
    ttl: Option<u64>,
}

fn cert_json(rec: &CertRecord) -> Value {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(&rec.der)
        .unwrap_or_default();
    json!({
        "serial": rec.serial,
        "subject": rec.subject,
        "sans": rec.sans,
        "profile": rec.profile,
        "not_before": format_time(rec.not_before),
        "not_after": format_time(rec.not_after),
        "status": rec.status,
        "revoked_at": rec.revoked_at.map(format_time),
        "reason": rec.reason,
        "issued_to": rec.issued_to,
        "certificate": signet_pki::pem_cert(&der),
    })
}

pub async fn issue(ctx: Ctx, raw: Result<Bytes, BytesRejection>) -> ApiResult<impl IntoResponse> {
    let raw = body(raw, &ctx)?;
    let req: IssueRequest = parse_json(&raw, &ctx.request_id)?;
    ctx.require_scope("certs:issue", "cert.issue", &req.name)
        .await?;
    let profile: Profile = req
        .profile
        .parse()
        .map_err(|e: signet_pki::Error| ctx.fail(Error::Pki(e)))?;
    let leaf = LeafRequest {
        profile,
        name: req.name.clone(),
        dns: if profile == Profile::Server && req.dns.is_empty() && req.ips.is_empty() {
            vec![req.name.clone()]
        } else {
            req.dns
        },
        ips: req.ips,
        ttl: req.ttl.map(Duration::from_secs),
    };
    let issuer = ctx.caller.name.clone();
    let csr = req.csr;
    let result = ctx
        .blocking(move |s| {
            if profile == Profile::Client && Principals(&s.signet.store).get(&leaf.name)?.is_none() {
                return Err(Error::BadRequest(format!(
                    "no principal named {:?}: create it (POST /v1/principals) before issuing its client certificate",
                    leaf.name
                )));
            }
            authority::issue_from_csr(&s.signet, &s.ca, &leaf, csr.as_bytes(), &issuer)
        })
        .await;
    let mut event = ctx
        .event(
            "cert.issue",
            &req.name,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
        )
        .with("profile", profile);
    if let Ok(issued) = &result {
        event = event
            .with("serial", &issued.serial)
            .with("not_after", format_time(issued.not_after));
    }
    ctx.audit(event).await?;
    let issued = result?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "serial": issued.serial,
            "certificate": signet_pki::pem_cert(&issued.der),
            "chain": ctx.state.ca.chain_pem(),
            "not_after": format_time(issued.not_after),
            "sans": issued.sans,
        })),
    ))
}

pub async fn show(ctx: Ctx, Path(serial): Path<String>) -> ApiResult<Json<Value>> {
    ctx.require_scope("certs:read", "cert.read", &serial)
        .await?;
    let s2 = serial.to_ascii_lowercase();
    let rec = ctx
        .blocking(move |s| {
            s.signet
                .store
                .cert(&s2)?
                .ok_or_else(|| Error::NotFound(format!("no certificate with serial {s2}")))
        })
        .await?;
    Ok(Json(cert_json(&rec)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: Option<String>,
}

pub async fn revoke(
    ctx: Ctx,
    Path(serial): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    ctx.require_scope("certs:revoke", "cert.revoke", &serial)
        .await?;
    let raw = body(raw, &ctx)?;
    let req: RevokeRequest = if raw.is_empty() {
        RevokeRequest::default()
    } else {
        parse_json(&raw, &ctx.request_id)?
    };
    let reason = req.reason.clone();
    let s2 = serial.clone();
    let result = ctx
        .blocking(move |s| authority::revoke(&s.signet, &s.ca, &s2, reason.as_deref()))
        .await;
    ctx.audit(
        ctx.event(
            "cert.revoke",
            &serial,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
        )
        .with("reason", req.reason.as_deref().unwrap_or("unspecified")),
    )
    .await?;
    if result.is_ok() {
        ctx.audit(
            ctx.event("crl.generate", "crl", Outcome::Ok)
                .with("trigger", "revocation"),
        )
        .await?;
    }
    Ok(Json(cert_json(&result?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalRequest {
    name: String,
    #[serde(default)]
    scopes: Vec<String>,
}

pub async fn list_principals(ctx: Ctx) -> ApiResult<Json<Value>> {
    ctx.require_scope("principals:manage", "principal.list", "*")
        .await?;
    let list = ctx.blocking(|s| Principals(&s.signet.store).list()).await?;
    Ok(Json(json!({ "principals": list })))
}

pub async fn create_principal(
    ctx: Ctx,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<impl IntoResponse> {
    let raw = body(raw, &ctx)?;
    let req: PrincipalRequest = parse_json(&raw, &ctx.request_id)?;
    ctx.require_scope("principals:manage", "principal.create", &req.name)
        .await?;
    // Only an admin may hand out admin.
    if req.scopes.iter().any(|s| s == "admin") && !ctx.caller.has("admin") {
        return ctx
            .require(false, "admin", "principal.create", &req.name)
            .await
            .map(|_| unreachable_response());
    }
    let by = ctx.caller.name.clone();
    let name = req.name.clone();
    let scopes = req.scopes.clone();
    let result = ctx
        .blocking(move |s| Principals(&s.signet.store).put(&name, scopes, &by))
        .await;
    ctx.audit(
        ctx.event(
            "principal.create",
            &req.name,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
        )
        .with("scopes", req.scopes.join(" ")),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!(result?))))
}

fn unreachable_response() -> (StatusCode, Json<Value>) {
    (StatusCode::FORBIDDEN, Json(json!({})))
}

pub async fn delete_principal(ctx: Ctx, Path(name): Path<String>) -> ApiResult<StatusCode> {
    ctx.require_scope("principals:manage", "principal.delete", &name)
        .await?;
    if name == ctx.caller.name {
        return Err(Problem::new(
            409,
            "conflict",
            "a principal cannot delete itself",
            &ctx.request_id,
        ));
    }
    let n = name.clone();
    let existed = ctx
        .blocking(move |s| Principals(&s.signet.store).remove(&n))
        .await?;
    ctx.audit(ctx.event(
        "principal.delete",
        &name,
        if existed { Outcome::Ok } else { Outcome::Error },
    ))
    .await?;
    if existed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::new(
            404,
            "not-found",
            format!("no principal named {name:?}"),
            &ctx.request_id,
        ))
    }
}
