//! The JSON the API answers with, as types: the handlers build these, and the OpenAPI document
//! (`openapi.rs`) takes its schemas from the same types, so the description cannot drift from
//! the answers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::ToSchema;

use crate::domain::keys::Signature;
use crate::service::KeyDetail;
use crate::store::{CertRecord, KeyRecord, Principal};
use crate::support::time::format_time;

/// A string schema that lists the accepted `names`.
fn names(names: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .build()
}

/// [`names`] or null (an optional field, which serde takes as null too).
fn names_or_null(names: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(
            names.into_iter().map(Value::from).chain([Value::Null]),
        ))
        .build()
}

/// A key spec, by name.
pub fn key_spec_schema() -> Object {
    names(signet_hsm::KeySpec::ALL.map(signet_hsm::KeySpec::name))
}

/// A key spec, or null.
pub fn optional_key_spec_schema() -> Object {
    names_or_null(signet_hsm::KeySpec::ALL.map(signet_hsm::KeySpec::name))
}

/// A signature algorithm by JOSE name, or null.
pub fn optional_algorithm_schema() -> Object {
    names_or_null(signet_hsm::SignatureAlgorithm::ALL.map(signet_hsm::SignatureAlgorithm::name))
}

/// A certificate profile.
pub fn profile_schema() -> Object {
    names(signet_pki::Profile::ALL.map(signet_pki::Profile::name))
}

/// An RFC 5280 revocation reason, or null.
pub fn reason_schema() -> Object {
    names_or_null(signet_pki::REVOCATION_REASONS.iter().copied())
}

/// A key in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeySummary {
    /// Name.
    pub name: String,
    /// Key spec (`ec-p256`, `ec-p384`, `ed25519`, `rsa-2048`, `rsa-3072`, `rsa-4096`).
    pub spec: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The version that signs.
    pub primary_version: u32,
    /// How many versions it has.
    pub versions: usize,
    /// `active` or `pending_deletion`.
    pub state: String,
}

impl From<&KeyRecord> for KeySummary {
    fn from(r: &KeyRecord) -> Self {
        KeySummary {
            name: r.name.clone(),
            spec: r.spec.to_string(),
            created: format_time(r.created),
            primary_version: r.primary,
            versions: r.versions.len(),
            state: if r.deletion.is_some() {
                "pending_deletion"
            } else {
                "active"
            }
            .into(),
        }
    }
}

/// Keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key the caller may read.
    pub keys: Vec<KeySummary>,
}

/// A key the caller may use.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsableKeyView {
    /// The key, its versions and their public keys.
    #[serde(flatten)]
    pub key: KeyView,
    /// The caller may sign with it (`keys:sign:<pattern>` matches); otherwise it may only read
    /// and verify.
    pub may_sign: bool,
    /// Per version, the newest unrevoked, unexpired certificate Signet issued for its public
    /// key.
    pub certificates: Vec<VersionCertificateView>,
}

/// A certificate of a key version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionCertificateView {
    /// The version.
    pub version: u32,
    /// The certificate's serial (hex).
    pub serial: String,
    /// The certificate (PEM).
    pub certificate_pem: String,
}

/// The keys the caller may use.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsableKeyList {
    /// Every key the caller may read, verify or sign with, with its versions' key ids and
    /// public keys.
    pub keys: Vec<UsableKeyView>,
}

/// A key's versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyVersionList {
    /// The key.
    pub name: String,
    /// The version that signs.
    pub primary_version: u32,
    /// The versions asked for, oldest first.
    pub versions: Vec<KeyVersionView>,
}

/// One version of a key.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyVersionView {
    /// 1, 2, …
    pub version: u32,
    /// `enabled`, `disabled` or `destroyed`.
    pub state: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// The key pair's id in the token (hex).
    pub key_id: String,
    /// `generated` (in the token) or `imported`.
    pub origin: String,
    /// The public key (SubjectPublicKeyInfo PEM), for versions not destroyed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// The public key as a JWK with `kid` (its RFC 7638 thumbprint).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub jwk: Option<Value>,
    /// What the device's attestation said when the version was made (PIV cards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestedView>,
}

/// What a device's attestation said of a key version when it was made.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttestedView {
    /// The device generated the key.
    pub generated_on_device: bool,
    /// The device's serial number.
    pub serial: Option<u32>,
    /// Its firmware.
    pub firmware: Option<String>,
    /// `never`, `once` or `always`.
    pub pin_policy: Option<String>,
    /// `never`, `always` or `cached`.
    pub touch_policy: Option<String>,
    /// The configured attestation root the chain verified against (absent: none configured).
    pub verified_by: Option<String>,
}

impl From<&signet_pki::attestation::AttestedOrigin> for AttestedView {
    fn from(o: &signet_pki::attestation::AttestedOrigin) -> Self {
        AttestedView {
            generated_on_device: o.generated_on_device,
            serial: o.serial,
            firmware: o.firmware.clone(),
            pin_policy: o.pin_policy.clone(),
            touch_policy: o.touch_policy.clone(),
            verified_by: o.verified_by.clone(),
        }
    }
}

/// A device's attestation of a key version.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttestationView {
    /// The key.
    pub name: String,
    /// The version.
    pub version: u32,
    /// The key's attestation certificate (PEM).
    pub certificate_pem: String,
    /// The device's attestation certificate (PIV slot f9), which signed it (PEM).
    pub intermediate_pem: String,
    /// Both, leaf first: `openssl verify -CAfile ROOT -untrusted chain.pem chain.pem`.
    pub chain_pem: String,
    /// What the attestation says.
    pub origin: AttestedView,
}

impl From<&crate::service::KeyAttestation> for AttestationView {
    fn from(a: &crate::service::KeyAttestation) -> Self {
        let pem = |der: &[u8]| signet_pki::pem_encode("CERTIFICATE", der);
        let certificate_pem = pem(&a.attestation.certificate);
        let intermediate_pem = pem(&a.attestation.intermediate);
        AttestationView {
            name: a.name.clone(),
            version: a.version,
            chain_pem: format!("{certificate_pem}{intermediate_pem}"),
            certificate_pem,
            intermediate_pem,
            origin: AttestedView::from(&a.origin),
        }
    }
}

/// A pending destruction.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionView {
    /// When it was asked for.
    pub requested_at: String,
    /// When the key material is destroyed.
    pub destroy_after: String,
}

/// A key with its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Name.
    pub name: String,
    /// Key spec.
    pub spec: String,
    /// When it was created.
    pub created: String,
    /// The version that signs.
    pub primary_version: u32,
    /// Set while destruction is scheduled.
    pub deletion: Option<DeletionView>,
    /// Its versions, oldest first.
    pub versions: Vec<KeyVersionView>,
}

fn snake(v: impl Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl From<&KeyDetail> for KeyView {
    fn from(d: &KeyDetail) -> Self {
        let r = &d.record;
        KeyView {
            name: r.name.clone(),
            spec: r.spec.to_string(),
            created: format_time(r.created),
            primary_version: r.primary,
            deletion: r.deletion.as_ref().map(|d| DeletionView {
                requested_at: format_time(d.requested_at),
                destroy_after: format_time(d.destroy_after),
            }),
            versions: r
                .versions
                .iter()
                .map(|v| {
                    let public = d.public_keys.iter().find(|(n, _)| *n == v.version);
                    KeyVersionView {
                        version: v.version,
                        state: snake(v.state),
                        created: format_time(v.created),
                        key_id: v.key_id.to_hex(),
                        origin: snake(v.origin),
                        public_key_pem: public.map(|(_, p)| p.spki_pem()),
                        jwk: public.map(|(_, p)| {
                            let mut jwk = p.jwk();
                            jwk["kid"] = p.jwk_thumbprint().into();
                            jwk
                        }),
                        attestation: v.attestation.as_ref().map(AttestedView::from),
                    }
                })
                .collect(),
        }
    }
}

/// A signature.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignatureView {
    /// The signature, base64 (ECDSA as DER unless `encoding` was `raw`).
    pub signature: String,
    /// The key version that signed.
    pub version: u32,
    /// The algorithm used.
    pub algorithm: String,
    /// The key pair's id in the token.
    pub key_id: String,
}

impl From<&Signature> for SignatureView {
    fn from(s: &Signature) -> Self {
        SignatureView {
            signature: STANDARD.encode(&s.bytes),
            version: s.version,
            algorithm: s.algorithm.name().into(),
            key_id: s.key_id.to_hex(),
        }
    }
}

/// A problem in brief, inside a larger answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemSummary {
    /// HTTP status it would have had alone.
    pub status: u16,
    /// Problem type URI.
    #[serde(rename = "type")]
    pub kind: String,
    /// What to change.
    pub detail: String,
}

/// One item of a batch: its signature (the fields of a single signature), or its own error.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemView {
    /// Position in the request.
    pub index: usize,
    /// The signature, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The key version that signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The algorithm used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// The key pair's id in the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Why this item was not signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ProblemSummary>,
}

impl BatchItemView {
    /// A signed item.
    pub fn signed(index: usize, s: &Signature) -> Self {
        let view = SignatureView::from(s);
        BatchItemView {
            index,
            signature: Some(view.signature),
            version: Some(view.version),
            algorithm: Some(view.algorithm),
            key_id: Some(view.key_id),
            error: None,
        }
    }

    /// An item refused on its own.
    pub fn failed(index: usize, error: ProblemSummary) -> Self {
        BatchItemView {
            index,
            signature: None,
            version: None,
            algorithm: None,
            key_id: None,
            error: Some(error),
        }
    }
}

/// A batch's results, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchView {
    /// One per item.
    pub results: Vec<BatchItemView>,
}

/// A verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyView {
    /// Whether the signature is valid.
    pub valid: bool,
    /// The key version checked.
    pub version: u32,
}

/// A certificate Signet issued (or its CA's).
#[derive(Debug, Serialize, ToSchema)]
pub struct CertView {
    /// Serial, hex.
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// Subject alternative names (`DNS:`, `IP:`, `URI:`).
    pub sans: Vec<String>,
    /// `client`, `server`, `root-ca`, `intermediate-ca`.
    pub profile: String,
    /// Start of validity.
    pub not_before: String,
    /// End of validity.
    pub not_after: String,
    /// `active` or `revoked`.
    pub status: String,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// Why (RFC 5280 reason name).
    pub reason: Option<String>,
    /// The principal it was issued to.
    pub issued_to: Option<String>,
    /// The certificate, PEM.
    pub certificate: String,
}

impl From<&CertRecord> for CertView {
    fn from(rec: &CertRecord) -> Self {
        CertView {
            serial: rec.serial.clone(),
            subject: rec.subject.clone(),
            sans: rec.sans.clone(),
            profile: rec.profile.name().into(),
            not_before: format_time(rec.not_before),
            not_after: format_time(rec.not_after),
            status: snake(rec.status),
            revoked_at: rec.revoked_at.map(format_time),
            reason: rec.reason.clone(),
            issued_to: rec.issued_to.clone(),
            certificate: signet_pki::pem_cert(&rec.der),
        }
    }
}

/// A certificate just issued.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedView {
    /// Serial, hex.
    pub serial: String,
    /// Leaf + intermediate, PEM: what a client presents.
    pub certificate_chain: String,
    /// The leaf alone, PEM.
    pub certificate: String,
    /// Intermediate + root, PEM.
    pub chain: String,
    /// End of validity.
    pub not_after: String,
    /// The names it carries.
    pub sans: Vec<String>,
}

/// A principal.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalView {
    /// Name (the last segment of its SPIFFE ID).
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// When it was created (RFC 3339, as every other time in the API).
    pub created: String,
    /// Who created it.
    pub created_by: String,
}

impl From<&Principal> for PrincipalView {
    fn from(p: &Principal) -> Self {
        PrincipalView {
            name: p.name.clone(),
            scopes: p.scopes.clone(),
            created: format_time(p.created),
            created_by: p.created_by.clone(),
        }
    }
}

/// Principals.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalList {
    /// Every principal.
    pub principals: Vec<PrincipalView>,
}

/// An access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// Compact JWS (`typ: at+jwt`).
    pub token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

/// RFC 7662 introspection: `active`, and the token's claims when active.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct IntrospectionView {
    /// Whether the token is valid now.
    pub active: bool,
    /// Why not (only for a caller who may revoke tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject (a principal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Expiry (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Who asked for it, when issued on behalf of someone else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// RFC 8705 binding: `{"x5t#S256": <certificate thumbprint>}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub cnf: Option<Value>,
    /// `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The signing key version's `kid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// A revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedView {
    /// Always true.
    pub revoked: bool,
    /// The revoked token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Set when it was revoked before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already: Option<bool>,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// `ok`.
    pub status: String,
}

/// The HSM part of readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyHsm {
    /// `pkcs11`.
    pub backend: Option<String>,
    /// Library.
    pub library: Option<String>,
    /// Token label.
    pub token: Option<String>,
    /// Sessions in use.
    pub sessions_open: Option<usize>,
    /// Most sessions.
    pub pool_size: Option<usize>,
}

/// Readiness (a 503 `not-ready` problem when not ready).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    /// `ready`.
    pub status: String,
    /// The key store.
    pub hsm: ReadyHsm,
    /// `ok`.
    pub store: String,
    /// `ok`.
    pub audit: String,
}

/// What a problem type means.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemTypeView {
    /// Its `type` URI.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The HTTP status it comes with.
    pub status: u16,
    /// The status's reason phrase.
    pub title: String,
    /// What it means.
    pub meaning: String,
}

/// An RFC 9457 problem document: every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDocument {
    /// `/problems/<name>` (see `GET /problems/{name}`), or under `server.problem_type_base`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What to change.
    pub detail: String,
    /// The request id (also in `x-request-id`).
    pub request_id: String,
}
