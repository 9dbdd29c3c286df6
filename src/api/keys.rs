//! `/v1/keys`: translate requests to the service's key operations and its answers to JSON.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use signet_hsm::{EcdsaFormat, KeySpec, SignatureAlgorithm};

use super::model::{
    BatchItemView, BatchView, KeyList, KeySummary, KeyVersionList, KeyView, SignatureView,
    UsableKeyList, UsableKeyView, VerifyView, VersionCertificateView,
};
use super::problem::{base64_field, ApiJson, ApiPath, ApiQuery, ApiResult, Ctx, MaybeJson, Object};
use crate::domain::keys::{KeyName, DEFAULT_PENDING_DAYS};
use crate::error::{Error, Result};
use crate::service::{
    AttestKey, CreateKey, ListKeyVersions, ListKeys, ListUsableKeys, ManageKey, ReadKey, Sign,
    SignBatch, SignItem, Verify, VerifyItem,
};
use crate::store::VersionState;

pub async fn list(ctx: Ctx) -> ApiResult<Json<KeyList>> {
    let records = ctx.execute(ListKeys).await?;
    Ok(Json(KeyList {
        keys: records.iter().map(KeySummary::from).collect(),
    }))
}

pub async fn usable(ctx: Ctx) -> ApiResult<Json<UsableKeyList>> {
    let keys = ctx.execute(ListUsableKeys).await?;
    Ok(Json(UsableKeyList {
        keys: keys
            .iter()
            .map(|k| UsableKeyView {
                key: KeyView::from(&k.detail),
                may_sign: k.may_sign,
                certificates: k
                    .certificates
                    .iter()
                    .map(|(version, cert)| VersionCertificateView {
                        version: *version,
                        serial: cert.serial.clone(),
                        certificate_pem: signet_pki::pem_cert(&cert.der),
                    })
                    .collect(),
            })
            .collect(),
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// 1-64 of A-Z a-z 0-9 - _ . (not starting with a dot).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
    )]
    name: String,
    #[serde(default = "default_spec")]
    #[schema(schema_with = super::model::key_spec_schema)]
    spec: KeySpec,
}

fn default_spec() -> KeySpec {
    KeySpec::EcP256
}

pub async fn create(
    ctx: Ctx,
    ApiJson(req): ApiJson<CreateRequest>,
) -> ApiResult<impl IntoResponse> {
    let name = KeyName::parse(&req.name).map_err(|e| ctx.fail(e))?;
    let d = ctx
        .execute(CreateKey {
            name,
            spec: req.spec,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(KeyView::from(&d))))
}

pub async fn show(ctx: Ctx, ApiPath(name): ApiPath<String>) -> ApiResult<Json<KeyView>> {
    let d = ctx.execute(ReadKey { name }).await?;
    Ok(Json(KeyView::from(&d)))
}

#[derive(Deserialize, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    Enabled,
    Disabled,
    Destroyed,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionsQuery {
    /// Only the versions in this state.
    #[param(inline)]
    state: Option<StateFilter>,
}

pub async fn versions(
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionsQuery>,
) -> ApiResult<Json<KeyVersionList>> {
    let state = q.state.map(|s| match s {
        StateFilter::Enabled => VersionState::Enabled,
        StateFilter::Disabled => VersionState::Disabled,
        StateFilter::Destroyed => VersionState::Destroyed,
    });
    let d = ctx.execute(ListKeyVersions { name, state }).await?;
    let view = KeyView::from(&d);
    Ok(Json(KeyVersionList {
        name: view.name,
        primary_version: view.primary_version,
        versions: view.versions,
    }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// A new spec for the new version and the key (an ES256 key moving to ML-DSA, say); the
    /// older versions keep theirs and still verify. Without it, the key's spec.
    #[schema(schema_with = super::model::optional_key_spec_schema)]
    spec: Option<KeySpec>,
}

pub async fn rotate(
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
    MaybeJson(req): MaybeJson<RotateRequest>,
) -> ApiResult<Json<KeyView>> {
    let spec = req.unwrap_or_default().spec;
    let d = ctx.execute(ManageKey::Rotate { name, spec }).await?;
    Ok(Json(KeyView::from(&d)))
}

pub async fn disable(
    ctx: Ctx,
    ApiPath((name, v)): ApiPath<(String, u32)>,
) -> ApiResult<Json<KeyView>> {
    let d = ctx
        .execute(ManageKey::SetState {
            name,
            version: v,
            enabled: false,
        })
        .await?;
    Ok(Json(KeyView::from(&d)))
}

pub async fn enable(
    ctx: Ctx,
    ApiPath((name, v)): ApiPath<(String, u32)>,
) -> ApiResult<Json<KeyView>> {
    let d = ctx
        .execute(ManageKey::SetState {
            name,
            version: v,
            enabled: true,
        })
        .await?;
    Ok(Json(KeyView::from(&d)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// The version (default: the primary).
    version: Option<u32>,
}

pub async fn attestation(
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> ApiResult<Json<super::model::AttestationView>> {
    let a = ctx
        .execute(AttestKey {
            name,
            version: q.version,
        })
        .await?;
    Ok(Json(super::model::AttestationView::from(&a)))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDeletionRequest {
    /// Days until the key is destroyed (default 7).
    #[schema(minimum = 1, maximum = 30)]
    #[serde(default, deserialize_with = "super::number::option")]
    pending_days: Option<u32>,
}

pub async fn schedule_deletion(
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
    MaybeJson(req): MaybeJson<ScheduleDeletionRequest>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    let days = req
        .unwrap_or_default()
        .pending_days
        .unwrap_or(DEFAULT_PENDING_DAYS);
    let d = ctx
        .execute(ManageKey::ScheduleDeletion { name, days })
        .await?;
    // Accepted: the key stays (readable, unusable) until its deletion window has passed.
    Ok((StatusCode::ACCEPTED, Json(KeyView::from(&d))))
}

pub async fn cancel_deletion(ctx: Ctx, ApiPath(name): ApiPath<String>) -> ApiResult<Json<KeyView>> {
    let d = ctx.execute(ManageKey::CancelDeletion { name }).await?;
    Ok(Json(KeyView::from(&d)))
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    #[default]
    Message,
    Digest,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Der,
    Raw,
}

#[derive(Deserialize, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    input: String,
    #[serde(default)]
    input_type: InputType,
    #[schema(schema_with = super::model::optional_algorithm_schema)]
    algorithm: Option<SignatureAlgorithm>,
    #[serde(default, deserialize_with = "super::number::version")]
    version: Option<u32>,
    #[serde(default)]
    encoding: Encoding,
    /// ML-DSA and SLH-DSA only, pure or pre-hash: a context string (FIPS 204/205 `ctx`,
    /// base64, at most 255 bytes) the signature is bound to; a verifier must give the same one.
    context: Option<String>,
}

impl SignRequest {
    /// The item, its syntax checked before the rules between its fields.
    fn item(&self) -> Result<SignItem> {
        let input = base64_field(&self.input, "input")?;
        let context = match &self.context {
            None => None,
            Some(text) => {
                let context = base64_field(text, "context")?;
                if context.len() > signet_hsm::MAX_CONTEXT {
                    return Err(Error::BadRequest(format!(
                        "context is {} bytes; at most {} are allowed",
                        context.len(),
                        signet_hsm::MAX_CONTEXT
                    )));
                }
                if self.input_type == InputType::Digest {
                    return Err(Error::Unprocessable(
                        "context goes with a message, not a digest (only ML-DSA and SLH-DSA take one; with HashML-DSA or HashSLH-DSA Signet makes the digest of the message itself)".into(),
                    ));
                }
                Some(context)
            }
        };
        Ok(SignItem {
            input,
            digest: self.input_type == InputType::Digest,
            algorithm: self.algorithm,
            version: self.version,
            format: match self.encoding {
                Encoding::Raw => EcdsaFormat::Raw,
                Encoding::Der => EcdsaFormat::Der,
            },
            context,
        })
    }
}

pub async fn sign(
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SignRequest>,
) -> ApiResult<Json<SignatureView>> {
    let item = req.item().map_err(|e| ctx.fail(e))?;
    let sig = ctx.execute_use(Sign { name, item }).await?;
    Ok(Json(SignatureView::from(&sig)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to `server.sign_batch_max` sign requests; each is answered on its own. An item the
    /// description refuses (a wrong type, an unknown field, bad base64) refuses the whole batch
    /// (400); one the key refuses (an algorithm it does not have, a digest of the wrong length)
    /// gets its own error (422) in its result.
    #[schema(value_type = Vec<SignRequest>)]
    items: Vec<Object<SignRequest>>,
}

pub async fn sign_batch(
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<BatchRequest>,
) -> ApiResult<Json<BatchView>> {
    let items: Vec<Result<SignItem>> = req.items.iter().map(|i| i.0.item()).collect();
    // What the description refuses (bad base64, a context too long) refuses the batch, as a
    // wrong type does; what depends on the key is each item's own answer.
    if let Some((index, Err(Error::BadRequest(why)))) = items
        .iter()
        .enumerate()
        .find(|(_, r)| matches!(r, Err(Error::BadRequest(_))))
    {
        return Err(ctx.fail(Error::BadRequest(format!("items[{index}]: {why}"))));
    }
    let results = ctx.execute_use(SignBatch::new(name, items)).await?;
    let results = results
        .iter()
        .enumerate()
        .map(|(index, r)| match r {
            Ok(sig) => BatchItemView::signed(index, sig),
            Err(e) => BatchItemView::failed(
                index,
                super::problem::Problem::from_error(e, &ctx.request_id).brief(),
            ),
        })
        .collect();
    Ok(Json(BatchView { results }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    input: String,
    #[serde(default)]
    input_type: InputType,
    signature: String,
    #[schema(schema_with = super::model::optional_algorithm_schema)]
    algorithm: Option<SignatureAlgorithm>,
    #[serde(default, deserialize_with = "super::number::version")]
    version: Option<u32>,
    #[serde(default)]
    encoding: Encoding,
    /// ML-DSA and SLH-DSA only: the context string the signature was made with (base64).
    context: Option<String>,
}

pub async fn verify(
    ctx: Ctx,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> ApiResult<Json<VerifyView>> {
    let item = SignRequest {
        input: req.input,
        input_type: req.input_type,
        algorithm: req.algorithm,
        version: req.version,
        encoding: req.encoding,
        context: req.context,
    }
    .item()
    .and_then(|item| Ok((item, base64_field(&req.signature, "signature")?)));
    let (item, signature) = item.map_err(|e| ctx.fail(e))?;
    let (valid, version) = ctx
        .execute_use(Verify {
            name,
            check: VerifyItem { item, signature },
        })
        .await?;
    Ok(Json(VerifyView { valid, version }))
}
