//! `/v1/keys`: create, inspect, rotate, enable/disable, schedule deletion, sign and verify.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use signet_hsm::{EcdsaFormat, KeySpec, SignInput, SignatureAlgorithm};

use super::problem::{base64_field, parse_json, ApiResult, Ctx, Problem};
use crate::audit::Outcome;
use crate::cli::format_time;
use crate::error::Error;
use crate::keys::{Keys, Signature};
use crate::store::KeyRecord;

/// A body, or the problem for why it could not be read (too large, …).
pub fn body(body: Result<Bytes, BytesRejection>, ctx: &Ctx) -> ApiResult<Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                413,
                "payload-too-large",
                format!(
                    "the body exceeds {} bytes",
                    ctx.state.signet.config.server.max_body_bytes
                ),
                &ctx.request_id,
            )
        } else {
            Problem::new(
                400,
                "bad-request",
                format!("cannot read the body: {e}"),
                &ctx.request_id,
            )
        }
    })
}

fn summary(r: &KeyRecord) -> Value {
    let state = if r.deletion.is_some() {
        "pending_deletion"
    } else {
        "active"
    };
    json!({
        "name": r.name,
        "spec": r.spec,
        "created": format_time(r.created),
        "primary_version": r.primary,
        "versions": r.versions.len(),
        "state": state,
    })
}

pub async fn list(ctx: Ctx) -> ApiResult<Json<Value>> {
    ctx.require_scope("keys:read", "key.list", "*").await?;
    let records = ctx.blocking(|s| Keys(&s.signet).list()).await?;
    Ok(Json(
        json!({ "keys": records.iter().map(summary).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    #[serde(default = "default_spec")]
    spec: String,
}

fn default_spec() -> String {
    "ec-p256".into()
}

pub async fn create(ctx: Ctx, raw: Result<Bytes, BytesRejection>) -> ApiResult<impl IntoResponse> {
    let raw = body(raw, &ctx)?;
    let req: CreateRequest = parse_json(&raw, &ctx.request_id)?;
    ctx.require_scope("keys:create", "key.create", &req.name)
        .await?;
    let spec: KeySpec = req
        .spec
        .parse()
        .map_err(|e: signet_hsm::UnknownSpec| ctx.fail(Error::BadRequest(e.to_string())))?;
    let name = req.name.clone();
    let record = match ctx
        .blocking(move |s| Keys(&s.signet).create(&name, spec))
        .await
    {
        Ok(r) => r,
        Err(p) => {
            ctx.audit(
                ctx.event("key.create", &req.name, Outcome::Error)
                    .with("spec", spec),
            )
            .await?;
            return Err(p);
        }
    };
    ctx.audit(
        ctx.event("key.create", &record.name, Outcome::Ok)
            .with("spec", spec)
            .with("key_id", &record.versions[0].key_id),
    )
    .await?;
    let detail = detail(&ctx, record).await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

async fn detail(ctx: &Ctx, record: KeyRecord) -> ApiResult<Value> {
    ctx.blocking(move |s| {
        let keys = Keys(&s.signet);
        let mut versions = Vec::new();
        for v in &record.versions {
            let mut entry = json!({
                "version": v.version,
                "state": v.state,
                "created": format_time(v.created),
                "key_id": v.key_id,
            });
            if v.state != crate::store::VersionState::Destroyed {
                let public = keys.public_key(v)?;
                let mut jwk = public.jwk();
                jwk["kid"] = public.jwk_thumbprint().into();
                entry["public_key_pem"] = public.spki_pem().into();
                entry["jwk"] = jwk;
            }
            versions.push(entry);
        }
        Ok(json!({
            "name": record.name,
            "spec": record.spec,
            "created": format_time(record.created),
            "primary_version": record.primary,
            "deletion": record.deletion.as_ref().map(|d| json!({
                "requested_at": format_time(d.requested_at),
                "destroy_after": format_time(d.destroy_after),
            })),
            "versions": versions,
        }))
    })
    .await
}

pub async fn show(ctx: Ctx, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    ctx.require(
        ctx.caller.has("keys:read") || ctx.caller.can_verify(&name),
        "keys:read",
        "key.read",
        &name,
    )
    .await?;
    let n = name.clone();
    let record = ctx.blocking(move |s| Keys(&s.signet).get(&n)).await?;
    Ok(Json(detail(&ctx, record).await?))
}

async fn manage(
    ctx: Ctx,
    name: String,
    action: &'static str,
    details: Vec<(&'static str, String)>,
    op: impl FnOnce(&Keys<'_>, &str) -> crate::error::Result<KeyRecord> + Send + 'static,
) -> ApiResult<Json<Value>> {
    ctx.require_scope("keys:manage", action, &name).await?;
    let n = name.clone();
    let result = ctx.blocking(move |s| op(&Keys(&s.signet), &n)).await;
    let mut event = ctx.event(
        action,
        &name,
        if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        },
    );
    for (k, v) in details {
        event = event.with(k, v);
    }
    if let Ok(record) = &result {
        event = event.with("primary_version", record.primary);
    }
    ctx.audit(event).await?;
    Ok(Json(detail(&ctx, result?).await?))
}

pub async fn rotate(ctx: Ctx, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    manage(ctx, name, "key.rotate", vec![], |k, n| k.rotate(n)).await
}

pub async fn disable(
    ctx: Ctx,
    Path((name, version)): Path<(String, u32)>,
) -> ApiResult<Json<Value>> {
    manage(
        ctx,
        name,
        "key.disable",
        vec![("version", version.to_string())],
        move |k, n| k.set_state(n, version, false),
    )
    .await
}

pub async fn enable(
    ctx: Ctx,
    Path((name, version)): Path<(String, u32)>,
) -> ApiResult<Json<Value>> {
    manage(
        ctx,
        name,
        "key.enable",
        vec![("version", version.to_string())],
        move |k, n| k.set_state(n, version, true),
    )
    .await
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    pending_days: Option<String>,
}

pub async fn schedule_deletion(
    ctx: Ctx,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Json<Value>> {
    let days = match q.pending_days.as_deref() {
        None => crate::keys::DEFAULT_PENDING_DAYS,
        Some(d) => d.parse().map_err(|_| {
            Problem::new(
                400,
                "bad-request",
                format!("pending_days must be an integer, got {d:?}"),
                &ctx.request_id,
            )
        })?,
    };
    manage(
        ctx,
        name,
        "key.delete-scheduled",
        vec![("pending_days", days.to_string())],
        move |k, n| k.schedule_deletion(n, days),
    )
    .await
}

pub async fn cancel_deletion(ctx: Ctx, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    manage(ctx, name, "key.cancel-deletion", vec![], |k, n| {
        k.cancel_deletion(n)
    })
    .await
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum InputType {
    #[default]
    Message,
    Digest,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Der,
    Raw,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct SignItem {
    input: String,
    #[serde(default)]
    input_type: InputType,
    algorithm: Option<String>,
    version: Option<u32>,
    #[serde(default)]
    encoding: Encoding,
}

struct ParsedSign {
    input: Vec<u8>,
    digest: bool,
    algorithm: Option<SignatureAlgorithm>,
    version: Option<u32>,
    format: EcdsaFormat,
}

fn parse_item(item: &SignItem, request_id: &str) -> ApiResult<ParsedSign> {
    let input = base64_field(&item.input, "input", request_id)?;
    let algorithm = item
        .algorithm
        .as_deref()
        .map(|a| a.parse::<SignatureAlgorithm>())
        .transpose()
        .map_err(|e| Problem::new(400, "bad-request", e.to_string(), request_id))?;
    Ok(ParsedSign {
        input,
        digest: item.input_type == InputType::Digest,
        algorithm,
        version: item.version,
        format: if item.encoding == Encoding::Raw {
            EcdsaFormat::Raw
        } else {
            EcdsaFormat::Der
        },
    })
}

fn sign_blocking(
    s: &super::AppState,
    name: &str,
    p: &ParsedSign,
) -> crate::error::Result<Signature> {
    let input = if p.digest {
        SignInput::Digest(&p.input)
    } else {
        SignInput::Message(&p.input)
    };
    Keys(&s.signet).sign(name, p.version, p.algorithm, input, p.format)
}

fn sign_event(
    principal: &str,
    request_id: &str,
    name: &str,
    p: &ParsedSign,
    result: &Result<Signature, Problem>,
) -> crate::audit::Event {
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    };
    let mut event = crate::audit::Event::new(principal, request_id, "key.sign", name, outcome)
        .with("input_type", if p.digest { "digest" } else { "message" })
        .with("input_sha256", crate::audit::sha256_hex(&p.input));
    match result {
        Ok(sig) => event
            .with("version", sig.version)
            .with("algorithm", sig.algorithm)
            .with("key_id", &sig.key_id),
        Err(problem) => {
            event = event.with(
                "error",
                format!("{problem:?}").chars().take(200).collect::<String>(),
            );
            if let Some(a) = p.algorithm {
                event = event.with("algorithm", a);
            }
            event
        }
    }
}

/// Signs one item, counts it, and describes it for the audit log (blocking).
fn sign_and_describe(
    state: &super::AppState,
    principal: &str,
    request_id: &str,
    name: &str,
    p: &ParsedSign,
) -> (Result<Signature, Problem>, crate::audit::Event) {
    let result = sign_blocking(state, name, p).map_err(|e| Problem::from_error(&e, request_id));
    let alg = result
        .as_ref()
        .map(|s| s.algorithm.name())
        .unwrap_or("unknown");
    state.metrics.sign(alg, result.is_ok());
    let event = sign_event(principal, request_id, name, p, &result);
    (result, event)
}

fn signature_json(sig: &Signature) -> Value {
    json!({
        "signature": STANDARD.encode(&sig.bytes),
        "version": sig.version,
        "algorithm": sig.algorithm.name(),
        "key_id": sig.key_id,
    })
}

pub async fn sign(
    ctx: Ctx,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    ctx.require(
        ctx.caller.can_sign(&name),
        &format!("keys:sign:{name}"),
        "key.sign",
        &name,
    )
    .await?;
    let raw = body(raw, &ctx)?;
    let item: SignItem = parse_json(&raw, &ctx.request_id)?;
    let parsed = parse_item(&item, &ctx.request_id)?;
    // One blocking task signs and then makes the audit record durable: the signature is handed
    // out only once its record is on disk.
    let state = ctx.state.clone();
    let request_id = ctx.request_id.clone();
    let principal = ctx.caller.name.clone();
    let n = name.clone();
    let (result, audited) = tokio::task::spawn_blocking(move || {
        let (result, event) = sign_and_describe(&state, &principal, &request_id, &n, &parsed);
        let audited = state.record(vec![event]);
        (result, audited)
    })
    .await
    .map_err(|e| ctx.fail(Error::Internal(e.to_string())))?;
    audited.map_err(|e| ctx.fail(e))?;
    Ok(Json(signature_json(&result?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    items: Vec<Value>,
}

pub async fn sign_batch(
    ctx: Ctx,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    ctx.require(
        ctx.caller.can_sign(&name),
        &format!("keys:sign:{name}"),
        "key.sign",
        &name,
    )
    .await?;
    let raw = body(raw, &ctx)?;
    let req: BatchRequest = parse_json(&raw, &ctx.request_id)?;
    let max = ctx.state.signet.config.server.sign_batch_max;
    if req.items.is_empty() || req.items.len() > max {
        return Err(Problem::new(
            400,
            "bad-request",
            format!("items must hold 1..={max} entries, got {}", req.items.len()),
            &ctx.request_id,
        ));
    }
    // Each item stands alone: a malformed or failing item gets its own error.
    let parsed: Vec<ApiResult<ParsedSign>> = req
        .items
        .iter()
        .map(|v| {
            serde_json::from_value::<SignItem>(v.clone())
                .map_err(|e| {
                    Problem::new(
                        400,
                        "bad-request",
                        format!("invalid item: {e}"),
                        &ctx.request_id,
                    )
                })
                .and_then(|item| parse_item(&item, &ctx.request_id))
        })
        .collect();
    // One blocking task signs every item, then makes all their audit records durable with a
    // single flush; no signature is returned before that.
    let state = ctx.state.clone();
    let n = name.clone();
    let request_id = ctx.request_id.clone();
    let principal = ctx.caller.name.clone();
    let (results, audited) = tokio::task::spawn_blocking(move || {
        let mut results = Vec::with_capacity(parsed.len());
        let mut events = Vec::with_capacity(parsed.len());
        for (index, p) in parsed.into_iter().enumerate() {
            let result = match p {
                Ok(p) => {
                    let (r, event) = sign_and_describe(&state, &principal, &request_id, &n, &p);
                    events.push(event.with("batch_index", index));
                    r
                }
                Err(problem) => {
                    state.metrics.sign("unknown", false);
                    Err(problem)
                }
            };
            results.push(match result {
                Ok(sig) => {
                    let mut v = signature_json(&sig);
                    v["index"] = index.into();
                    v
                }
                Err(problem) => json!({ "index": index, "error": problem.summary() }),
            });
        }
        let audited = state.record(events);
        (results, audited)
    })
    .await
    .map_err(|e| ctx.fail(Error::Internal(e.to_string())))?;
    audited.map_err(|e| ctx.fail(e))?;
    Ok(Json(json!({ "results": results })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    input: String,
    #[serde(default)]
    input_type: InputType,
    signature: String,
    algorithm: Option<String>,
    version: Option<u32>,
    #[serde(default)]
    encoding: Encoding,
}

pub async fn verify(
    ctx: Ctx,
    Path(name): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    ctx.require(
        ctx.caller.can_verify(&name),
        &format!("keys:verify:{name}"),
        "key.verify",
        &name,
    )
    .await?;
    let raw = body(raw, &ctx)?;
    let req: VerifyRequest = parse_json(&raw, &ctx.request_id)?;
    let parsed = parse_item(
        &SignItem {
            input: req.input,
            input_type: req.input_type,
            algorithm: req.algorithm,
            version: req.version,
            encoding: req.encoding,
        },
        &ctx.request_id,
    )?;
    let signature = base64_field(&req.signature, "signature", &ctx.request_id)?;
    let n = name.clone();
    let digest_hex = crate::audit::sha256_hex(&parsed.input);
    let result = ctx
        .blocking(move |s| {
            let input = if parsed.digest {
                SignInput::Digest(&parsed.input)
            } else {
                SignInput::Message(&parsed.input)
            };
            Keys(&s.signet).verify(
                &n,
                parsed.version,
                parsed.algorithm,
                input,
                &signature,
                parsed.format,
            )
        })
        .await;
    let mut event = ctx
        .event(
            "key.verify",
            &name,
            if result.is_ok() {
                Outcome::Ok
            } else {
                Outcome::Error
            },
        )
        .with("input_sha256", digest_hex);
    if let Ok((valid, version)) = &result {
        event = event.with("valid", valid).with("version", version);
    }
    ctx.audit(event).await?;
    let (valid, version) = result?;
    Ok(Json(json!({ "valid": valid, "version": version })))
}
