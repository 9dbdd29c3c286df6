//! Signed tokens: compact JWS access tokens (RFC 7519, RFC 9068 `at+jwt`) signed in the HSM by a
//! token-signing key that is managed like any key (versions, rotation, disable, deletion), the
//! JWKS that downstream services verify against, introspection and revocation by `jti`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use signet_hsm::{EcdsaFormat, KeySpec, PublicKey, SignInput, SignatureAlgorithm};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::{now, Keys};
use crate::runtime::Signet;
use crate::store::{get_json, KeyRecord, VersionState};

/// The name of the token-signing key in the key store.
pub const TOKEN_KEY: &str = "token-signer";
/// Largest token accepted for introspection, revocation or verification.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `nbf` and `iat`.
pub const LEEWAY_SECS: i64 = 30;

/// The claims Signet puts in a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject (a principal).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id, 128 random bits.
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Who asked for it, when issued on behalf of someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// RFC 8705 certificate binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// `cnf` with the certificate thumbprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    /// base64url(SHA-256(certificate DER)).
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// The algorithm configured for the token key's spec.
pub fn algorithm(config: &Config) -> SignatureAlgorithm {
    config
        .tokens
        .algorithm
        .parse()
        .unwrap_or(SignatureAlgorithm::Es256)
}

/// Creates the token-signing key on first start.
pub fn ensure_key(signet: &Signet) -> Result<KeyRecord> {
    let keys = Keys(signet);
    match signet.store.key(TOKEN_KEY)? {
        Some(record) => Ok(record),
        None => {
            let spec: KeySpec = signet
                .config
                .tokens
                .key_spec
                .parse()
                .map_err(|e| Error::Internal(format!("{e}")))?;
            keys.create(TOKEN_KEY, spec)
        }
    }
}

/// Remembers, per version, the latest `exp` it signed: a disabled version stays in the JWKS until
/// then.
fn note_expiry(signet: &Signet, version: u32, exp: i64) -> Result<()> {
    let key = format!("token_last_exp:{version}");
    let tree = signet.store.meta_tree();
    tree.fetch_and_update(key.as_bytes(), |old| {
        let prev = old
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(i64::from_be_bytes)
            .unwrap_or(0);
        Some(prev.max(exp).to_be_bytes().to_vec())
    })
    .map_err(crate::store::StoreError::from)?;
    Ok(())
}

fn last_expiry(signet: &Signet, version: u32) -> Result<i64> {
    let key = format!("token_last_exp:{version}");
    Ok(signet
        .store
        .meta_tree()
        .get(key.as_bytes())
        .map_err(crate::store::StoreError::from)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0))
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// Subject.
    pub subject: String,
    /// Audience.
    pub audience: String,
    /// Scopes.
    pub scope: Vec<String>,
    /// Lifetime in seconds.
    pub ttl: i64,
    /// Certificate hash to bind to.
    pub bind_to: Option<Vec<u8>>,
    /// The requester, when not the subject.
    pub client_id: Option<String>,
}

/// An issued token.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Compact JWS.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
    /// `kid`.
    pub kid: String,
}

fn random_jti() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::getrandom(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Public keys and kids by token-key id: a version's public key never changes, so the token is
/// asked once per version, not on every issue and introspection.
static BY_KEY_ID: Mutex<BTreeMap<String, (String, PublicKey)>> = Mutex::new(BTreeMap::new());

fn public_for(signet: &Signet, record: &KeyRecord, version: u32) -> Result<(String, PublicKey)> {
    let v = record
        .version(version)
        .ok_or_else(|| Error::NotFound(format!("no version {version}")))?;
    if let Some(hit) = BY_KEY_ID
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&v.key_id)
    {
        return Ok(hit.clone());
    }
    let public = Keys(signet).public_key(v)?;
    let kid = public.jwk_thumbprint();
    BY_KEY_ID
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(v.key_id.clone(), (kid.clone(), public.clone()));
    Ok((kid, public))
}

/// Issues a token signed by the primary version of the token key.
pub fn issue(signet: &Signet, req: &IssueRequest) -> Result<Issued> {
    let record = signet
        .store
        .key(TOKEN_KEY)?
        .ok_or_else(|| Error::Internal("no token-signing key".into()))?;
    let alg = algorithm(&signet.config);
    let version = record.primary;
    let (kid, _) = public_for(signet, &record, version)?;
    let iat = now();
    let claims = Claims {
        iss: signet.config.tokens.issuer.clone(),
        sub: req.subject.clone(),
        aud: req.audience.clone(),
        exp: iat + req.ttl,
        iat,
        nbf: iat,
        jti: random_jti(),
        scope: (!req.scope.is_empty()).then(|| req.scope.join(" ")),
        client_id: req.client_id.clone(),
        cnf: req.bind_to.as_ref().map(|h| Confirmation {
            x5t_s256: URL_SAFE_NO_PAD.encode(h),
        }),
    };
    let header = json!({"alg": alg.name(), "kid": kid, "typ": "at+jwt"});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).map_err(|e| Error::Internal(e.to_string()))?)
    );
    // Recorded before signing: if this fails nothing is issued, and the JWKS can never drop a
    // version that still has live tokens.
    note_expiry(signet, version, claims.exp)?;
    let sig = Keys(signet).sign_token(
        TOKEN_KEY,
        version,
        alg,
        SignInput::Message(signing_input.as_bytes()),
        EcdsaFormat::Raw,
    )?;
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(&sig.bytes));
    Ok(Issued { token, claims, kid })
}

/// Every version still valid for verification, as (kid, public key): the primary, older
/// enabled versions, and disabled ones until their last token has expired; never a destroyed one.
fn published(signet: &Signet) -> Result<Vec<(String, PublicKey)>> {
    let Some(record) = signet.store.key(TOKEN_KEY)? else {
        return Ok(Vec::new());
    };
    let now = now();
    let mut keys = Vec::new();
    for v in &record.versions {
        let include = match v.state {
            VersionState::Enabled => {
                record.deletion.is_none() || last_expiry(signet, v.version)? > now
            }
            VersionState::Disabled => last_expiry(signet, v.version)? > now,
            VersionState::Destroyed => false,
        };
        if include {
            keys.push(public_for(signet, &record, v.version)?);
        }
    }
    Ok(keys)
}

/// The JWKS: every version still valid for verification.
pub fn jwks(signet: &Signet) -> Result<Value> {
    let alg = algorithm(&signet.config);
    let keys: Vec<Value> = published(signet)?
        .into_iter()
        .map(|(kid, public)| {
            let mut jwk = public.jwk();
            jwk["kid"] = kid.into();
            jwk["alg"] = alg.name().into();
            jwk["use"] = "sig".into();
            jwk
        })
        .collect();
    Ok(json!({ "keys": keys }))
}

/// Why a token is not active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inactive(pub String);

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Claims.
    pub claims: Claims,
    /// kid.
    pub kid: String,
}

/// The parts of a compact JWS after the structural checks.
pub struct Parsed {
    header: Value,
    signing_input: String,
    signature: Vec<u8>,
    claims: Claims,
}

impl std::fmt::Debug for Parsed {
    // A token is a bearer credential: never print it, only what identifies its key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed")
            .field("alg", &self.header["alg"])
            .field("kid", &self.header["kid"])
            .finish_non_exhaustive()
    }
}

/// Structural checks: size, three base64url parts, JSON header and claims.
pub fn parse(token: &str) -> std::result::Result<Parsed, Inactive> {
    let bad = |m: &str| Inactive(m.to_string());
    if token.len() > MAX_TOKEN_BYTES {
        return Err(bad("token too large"));
    }
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(Inactive(format!(
            "a JWS has 3 segments, this has {}",
            parts.len()
        )));
    }
    let decode = |s: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| Inactive(format!("{what} is not base64url")))
    };
    let header: Value = serde_json::from_slice(&decode(parts[0], "header")?)
        .map_err(|_| bad("header is not JSON"))?;
    let claims: Claims = serde_json::from_slice(&decode(parts[1], "payload")?)
        .map_err(|_| bad("payload is not a Signet claims set"))?;
    let signature = decode(parts[2], "signature")?;
    Ok(Parsed {
        header,
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature,
        claims,
    })
}

/// Checks the signature with the public key, then the registered claims.
pub fn check(
    parsed: &Parsed,
    keys: &BTreeMap<String, (SignatureAlgorithm, PublicKey)>,
    issuer: &str,
    audience: Option<&str>,
    now: i64,
) -> std::result::Result<(String, Claims), Inactive> {
    let alg_name = parsed.header["alg"]
        .as_str()
        .ok_or_else(|| Inactive("header has no alg".into()))?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(Inactive("alg none is never accepted".into()));
    }
    let kid = parsed.header["kid"]
        .as_str()
        .ok_or_else(|| Inactive("header has no kid".into()))?;
    let (alg, public) = keys
        .get(kid)
        .ok_or_else(|| Inactive(format!("unknown kid {kid}")))?;
    if alg.name() != alg_name {
        return Err(Inactive(format!(
            "alg {alg_name} does not match the key's {}",
            alg.name()
        )));
    }
    if !verify_signature(
        *alg,
        public,
        parsed.signing_input.as_bytes(),
        &parsed.signature,
    ) {
        return Err(Inactive("signature does not verify".into()));
    }
    let c = &parsed.claims;
    if c.iss != issuer {
        return Err(Inactive(format!("issuer {} is not {issuer}", c.iss)));
    }
    if c.exp <= now {
        return Err(Inactive("expired".into()));
    }
    if c.nbf > now + LEEWAY_SECS {
        return Err(Inactive("not yet valid".into()));
    }
    if let Some(aud) = audience {
        if c.aud != aud {
            return Err(Inactive(format!("audience {} is not {aud}", c.aud)));
        }
    }
    Ok((kid.to_string(), c.clone()))
}

/// Verifies a JWS signature in software (ring) with a public key.
pub fn verify_signature(
    alg: SignatureAlgorithm,
    public: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> bool {
    use ring::signature as rs;
    let params: &dyn rs::VerificationAlgorithm = match alg {
        SignatureAlgorithm::Es256 => &rs::ECDSA_P256_SHA256_FIXED,
        SignatureAlgorithm::Es384 => &rs::ECDSA_P384_SHA384_FIXED,
        SignatureAlgorithm::EdDsa => &rs::ED25519,
        SignatureAlgorithm::Rs256 => &rs::RSA_PKCS1_2048_8192_SHA256,
        SignatureAlgorithm::Rs384 => &rs::RSA_PKCS1_2048_8192_SHA384,
        SignatureAlgorithm::Rs512 => &rs::RSA_PKCS1_2048_8192_SHA512,
        SignatureAlgorithm::Ps256 => &rs::RSA_PSS_2048_8192_SHA256,
        SignatureAlgorithm::Ps384 => &rs::RSA_PSS_2048_8192_SHA384,
        SignatureAlgorithm::Ps512 => &rs::RSA_PSS_2048_8192_SHA512,
        _ => return false,
    };
    rs::UnparsedPublicKey::new(params, public.raw())
        .verify(message, signature)
        .is_ok()
}

/// The keys currently in the JWKS, by kid.
fn verification_keys(signet: &Signet) -> Result<BTreeMap<String, (SignatureAlgorithm, PublicKey)>> {
    let alg = algorithm(&signet.config);
    Ok(published(signet)?
        .into_iter()
        .map(|(kid, public)| (kid, (alg, public)))
        .collect())
}

/// Verifies a token as the service sees it: signature by a JWKS key, claims, revocation.
pub fn introspect(
    signet: &Signet,
    token: &str,
    audience: Option<&str>,
) -> Result<std::result::Result<Verified, Inactive>> {
    let parsed = match parse(token) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let keys = verification_keys(signet)?;
    let (kid, claims) = match check(
        &parsed,
        &keys,
        &signet.config.tokens.issuer,
        audience,
        now(),
    ) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    if is_revoked(signet, &claims.jti)? {
        return Ok(Err(Inactive("revoked".into())));
    }
    Ok(Ok(Verified { claims, kid }))
}

#[derive(Serialize, Deserialize)]
struct RevokedToken {
    exp: i64,
    revoked_at: i64,
}

/// Whether a jti is revoked.
pub fn is_revoked(signet: &Signet, jti: &str) -> Result<bool> {
    Ok(
        get_json::<RevokedToken>(signet.store.revoked_tokens_tree(), "revoked_tokens", jti)?
            .is_some(),
    )
}

/// Revokes a jti until `exp` (durably). Unknown expiry: kept for the longest token lifetime.
pub fn revoke(signet: &Signet, jti: &str, exp: Option<i64>) -> Result<()> {
    if jti.is_empty() || jti.len() > 128 {
        return Err(Error::BadRequest("jti must be 1-128 characters".into()));
    }
    let exp = exp.unwrap_or_else(|| now() + signet.config.tokens.max_ttl_secs as i64);
    crate::store::put_json(
        signet.store.revoked_tokens_tree(),
        jti,
        &RevokedToken {
            exp,
            revoked_at: now(),
        },
    )?;
    signet.store.flush()?;
    Ok(())
}

/// Forgets revocations of tokens that have expired anyway. Returns how many were pruned.
pub fn prune(signet: &Signet, at: i64) -> Result<usize> {
    let tree = signet.store.revoked_tokens_tree();
    let mut pruned = 0;
    for entry in tree.iter() {
        let (key, bytes) = entry.map_err(crate::store::StoreError::from)?;
        let expired = serde_json::from_slice::<RevokedToken>(&bytes)
            .map(|r| r.exp <= at)
            .unwrap_or(true);
        if expired {
            tree.remove(key).map_err(crate::store::StoreError::from)?;
            pruned += 1;
        }
    }
    if pruned > 0 {
        signet.store.flush()?;
    }
    Ok(pruned)
}

/// Rotates the token key when automatic rotation is due. Returns the new version.
pub fn rotate_if_due(signet: &Signet, at: i64) -> Result<Option<u32>> {
    let days = signet.config.tokens.rotate_every_days;
    if days == 0 {
        return Ok(None);
    }
    let Some(record) = signet.store.key(TOKEN_KEY)? else {
        return Ok(None);
    };
    let created = record
        .version(record.primary)
        .map(|v| v.created)
        .unwrap_or(record.created);
    if record.deletion.is_some() || created + (days * 24 * 3600) as i64 > at {
        return Ok(None);
    }
    Ok(Some(Keys(signet).rotate(TOKEN_KEY)?.primary))
}

/// `Cache-Control` for the JWKS: short enough that a rotation reaches verifiers well before the
/// old version's tokens run out.
pub fn jwks_max_age(config: &Config) -> u64 {
    match config.tokens.rotate_every_days {
        0 => 300,
        d => (d * 24 * 3600 / 100).clamp(60, 300),
    }
}

/// `signet token verify`: offline check against a JWKS file or the data dir's token key.
pub fn cli_verify(
    config: &Config,
    token: &str,
    jwks_file: Option<&Path>,
    audience: Option<&str>,
) -> anyhow::Result<()> {
    let (jwks, issuer) = match jwks_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            (
                serde_json::from_str::<Value>(&text).context("the JWKS is not JSON")?,
                None,
            )
        }
        None => {
            let signet = Signet::open(config.clone())?;
            (jwks(&signet)?, Some(config.tokens.issuer.clone()))
        }
    };
    let mut keys = BTreeMap::new();
    for jwk in jwks["keys"]
        .as_array()
        .context("the JWKS has no keys array")?
    {
        let (Some(kid), Some(alg)) = (jwk["kid"].as_str(), jwk["alg"].as_str()) else {
            continue;
        };
        let alg: SignatureAlgorithm = alg.parse()?;
        let public = public_from_jwk(jwk)?;
        keys.insert(kid.to_string(), (alg, public));
    }
    let parsed = parse(token).map_err(|e| anyhow::anyhow!("invalid token: {}", e.0))?;
    let issuer = issuer.unwrap_or_else(|| parsed.claims.iss.clone());
    match check(&parsed, &keys, &issuer, audience, now()) {
        Ok((kid, claims)) => {
            println!("valid token (kid {kid})");
            println!("{}", serde_json::to_string_pretty(&claims)?);
            Ok(())
        }
        Err(e) => bail!("invalid token: {}", e.0),
    }
}

/// A public key from a JWK (EC P-256/P-384, OKP Ed25519, RSA).
pub fn public_from_jwk(jwk: &Value) -> anyhow::Result<PublicKey> {
    let field = |name: &str| -> anyhow::Result<Vec<u8>> {
        Ok(URL_SAFE_NO_PAD.decode(
            jwk[name]
                .as_str()
                .with_context(|| format!("JWK without {name}"))?,
        )?)
    };
    Ok(match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("EC"), Some(crv)) => {
            let spec = if crv == "P-256" {
                KeySpec::EcP256
            } else if crv == "P-384" {
                KeySpec::EcP384
            } else {
                bail!("unsupported curve {crv}")
            };
            let mut point = vec![4u8];
            point.extend(field("x")?);
            point.extend(field("y")?);
            PublicKey::from_ec_point(spec, &point)?
        }
        (Some("OKP"), Some("Ed25519")) => PublicKey::from_ec_point(KeySpec::Ed25519, &field("x")?)?,
        (Some("RSA"), _) => {
            let n = field("n")?;
            let spec = match n.len() * 8 {
                2048 => KeySpec::Rsa2048,
                3072 => KeySpec::Rsa3072,
                4096 => KeySpec::Rsa4096,
                b => bail!("unsupported RSA size {b}"),
            };
            PublicKey::from_rsa(spec, n, field("e")?)?
        }
        _ => bail!("unsupported JWK"),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    /// Tokens signed by a software key, so claims the service would never issue can be tested.
    fn setup() -> (
        EcdsaKeyPair,
        BTreeMap<String, (SignatureAlgorithm, PublicKey)>,
    ) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = PublicKey::from_ec_point(KeySpec::EcP256, pair.public_key().as_ref()).unwrap();
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), (SignatureAlgorithm::Es256, public));
        (pair, keys)
    }

    fn mint(pair: &EcdsaKeyPair, claims: &Claims) -> String {
        let header = json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        );
        let sig = pair
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "https://issuer".into(),
            sub: "alice".into(),
            aud: "api".into(),
            exp: now + 60,
            iat: now,
            nbf: now,
            jti: "j".into(),
            scope: None,
            client_id: None,
            cnf: None,
        }
    }

    #[test]
    fn registered_claims_are_enforced() {
        let (pair, keys) = setup();
        let now = 1_800_000_000;
        let run = |c: &Claims, aud: Option<&str>| {
            check(
                &parse(&mint(&pair, c)).unwrap(),
                &keys,
                "https://issuer",
                aud,
                now,
            )
        };
        assert!(run(&claims(now), Some("api")).is_ok());
        let mut c = claims(now);
        c.nbf = now + 120;
        assert_eq!(run(&c, None).unwrap_err().0, "not yet valid");
        c.nbf = now + 20; // within the leeway
        assert!(run(&c, None).is_ok());
        let mut c = claims(now);
        c.exp = now;
        assert_eq!(run(&c, None).unwrap_err().0, "expired");
        let mut c = claims(now);
        c.iss = "https://evil".into();
        assert!(run(&c, None).unwrap_err().0.contains("issuer"));
        assert!(run(&claims(now), Some("other"))
            .unwrap_err()
            .0
            .contains("audience"));
    }
}
