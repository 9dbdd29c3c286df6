//! Signed tokens: compact JWS access tokens (RFC 7519, RFC 9068 `at+jwt`) signed in the HSM by
//! a token-signing key that is managed like any key (versions, rotation, disable, deletion),
//! the JWKS that downstream services verify against, introspection and revocation by `jti`.

pub mod jwk;
pub mod jwt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use signet_hsm::{PublicKey, SignatureAlgorithm};

use self::jwt::{Claims, Confirmation, Inactive, VerificationKeys};
use super::keys::{KeyName, Keys, TOKEN_KEY};
use crate::config::TokensConfig;
use crate::error::{Error, Result};
use crate::store::{KeyRecord, RevokedToken, VersionState};
use crate::support::text::echo;
use crate::support::time::now;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// Audience.
    pub audience: String,
    /// Scopes.
    pub scope: Vec<String>,
    /// Lifetime in seconds (the configured default when `None`).
    pub ttl: Option<i64>,
    /// Subject, when not the caller.
    pub subject: Option<String>,
    /// Bind the token to the caller's certificate (RFC 8705).
    pub bind: bool,
}

impl TokenRequest {
    /// Parses a space-separated scope string.
    pub fn split_scope(scope: Option<&str>) -> Vec<String> {
        scope
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Checks the request's own rules; returns the lifetime to use.
    pub fn validate(&self, config: &TokensConfig) -> Result<i64> {
        if self.audience.is_empty() || self.audience.chars().count() > 256 {
            return Err(Error::BadRequest(
                "audience must be 1-256 characters".into(),
            ));
        }
        let ttl = self.ttl.unwrap_or(config.default_ttl_secs as i64);
        if ttl < 1 || ttl > config.max_ttl_secs as i64 {
            return Err(Error::BadRequest(format!(
                "ttl must be 1..={} seconds",
                config.max_ttl_secs
            )));
        }
        if let Some(subject) = &self.subject {
            if !signet_pki::valid_client_name(subject) {
                return Err(Error::BadRequest(format!(
                    "subject {:?} is not a valid principal name",
                    echo(subject)
                )));
            }
        }
        if self.scope.len() > 32
            || self.scope.iter().any(|s| {
                s.len() > 128
                    || !s
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            })
        {
            return Err(Error::BadRequest(
                "scope must be at most 32 space-separated printable values of up to 128 characters"
                    .into(),
            ));
        }
        Ok(ttl)
    }
}

/// What to sign into a token once the request is checked and authorised.
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

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Claims.
    pub claims: Claims,
    /// kid.
    pub kid: String,
}

/// Token operations over the key store.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    /// The keys (the token key is one of them).
    pub keys: Keys<'a>,
    /// Token settings.
    pub config: &'a TokensConfig,
}

impl Tokens<'_> {
    /// The token key's record, if it exists.
    pub fn key_record(&self) -> Result<Option<KeyRecord>> {
        self.keys.store.key(TOKEN_KEY)
    }

    /// Creates the token-signing key (first start).
    pub fn create_key(&self) -> Result<KeyRecord> {
        self.keys
            .create(&KeyName::token_signer(), self.config.key_spec)
    }

    /// A version's kid, public key and the algorithm its tokens carry (the one recorded when
    /// the version was made; `[tokens] algorithm` where it fits for a version made before).
    fn kid_of(
        &self,
        record: &KeyRecord,
        version: u32,
    ) -> Result<(String, PublicKey, SignatureAlgorithm)> {
        let v = record
            .version(version)
            .ok_or_else(|| Error::NotFound(format!("no version {version}")))?;
        let public = self.keys.public_key(v)?;
        let alg = v
            .token_algorithm
            .unwrap_or_else(|| public.spec().algorithm_or_default(self.config.algorithm));
        Ok((public.jwk_thumbprint(), public, alg))
    }

    /// Whether the primary version was made for another algorithm than `[tokens] algorithm`
    /// (the setting changed since): a rotation is then due, so that no kid ever signs with two
    /// algorithms.
    pub fn algorithm_changed(&self, record: &KeyRecord) -> bool {
        record
            .version(record.primary)
            .and_then(|v| v.token_algorithm)
            .is_some_and(|alg| alg != self.config.algorithm)
    }

    /// Issues a token signed by the primary version of the token key.
    pub fn issue(&self, req: &IssueRequest, jti: String) -> Result<Issued> {
        let record = self
            .key_record()?
            .ok_or_else(|| Error::Internal("no token-signing key".into()))?;
        let version = record.primary;
        let (kid, alg) = self
            .kid_of(&record, version)
            .map(|(kid, _, alg)| (kid, alg))?;
        let iat = now();
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: req.subject.clone(),
            aud: req.audience.clone(),
            exp: iat + req.ttl,
            iat,
            nbf: iat,
            jti,
            scope: (!req.scope.is_empty()).then(|| req.scope.join(" ")),
            client_id: req.client_id.clone(),
            cnf: req.bind_to.as_ref().map(|h| Confirmation {
                x5t_s256: URL_SAFE_NO_PAD.encode(h),
            }),
        };
        let signing_input = jwt::signing_input(alg, &kid, &claims);
        // Recorded before signing: if this fails nothing is issued, and the JWKS can never drop a
        // version that still has live tokens.
        self.keys.store.note_token_expiry(version, claims.exp)?;
        let sig = self
            .keys
            .sign_token(version, alg, signing_input.as_bytes())?;
        Ok(Issued {
            token: jwt::assemble(&signing_input, &sig.bytes),
            claims,
            kid,
        })
    }

    /// Every version still valid for verification, as (kid, public key, algorithm): the
    /// primary, older enabled versions, and disabled ones until their last token has expired;
    /// never a destroyed one.
    pub fn published(&self) -> Result<Vec<(String, PublicKey, SignatureAlgorithm)>> {
        let Some(record) = self.key_record()? else {
            return Ok(Vec::new());
        };
        let now = now();
        let mut keys = Vec::new();
        for v in &record.versions {
            let store = self.keys.store;
            let include = match v.state {
                VersionState::Enabled => {
                    record.deletion.is_none() || store.token_expiry(v.version)? > now
                }
                VersionState::Disabled => store.token_expiry(v.version)? > now,
                VersionState::Destroyed => false,
            };
            if include {
                keys.push(self.kid_of(&record, v.version)?);
            }
        }
        Ok(keys)
    }

    /// The JWKS: every version still valid for verification, each with the algorithm its
    /// tokens carry.
    pub fn jwks(&self) -> Result<Value> {
        let keys: Vec<Value> = self
            .published()?
            .into_iter()
            .map(|(kid, public, alg)| {
                let mut jwk = public.jwk();
                jwk["kid"] = kid.into();
                jwk["alg"] = alg.name().into();
                jwk["use"] = "sig".into();
                jwk
            })
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// The keys currently in the JWKS, by kid.
    pub fn verification_keys(&self) -> Result<VerificationKeys> {
        Ok(self
            .published()?
            .into_iter()
            .map(|(kid, public, alg)| (kid, (alg, public)))
            .collect())
    }

    /// Verifies a token as the service sees it: signature by a JWKS key, claims, revocation.
    pub fn introspect(
        &self,
        token: &str,
        audience: Option<&str>,
    ) -> Result<std::result::Result<Verified, Inactive>> {
        let parsed = match jwt::parse(token) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let keys = self.verification_keys()?;
        let (kid, claims) = match jwt::check(&parsed, &keys, &self.config.issuer, audience, now()) {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if self.keys.store.token_revoked(&claims.jti)? {
            return Ok(Err(Inactive::Revoked));
        }
        Ok(Ok(Verified { claims, kid }))
    }

    /// Revokes a jti until `exp` (durably). Unknown expiry: kept for the longest token lifetime.
    pub fn revoke(&self, jti: &str, exp: Option<i64>) -> Result<()> {
        check_jti(jti)?;
        let exp = exp.unwrap_or_else(|| now() + self.config.max_ttl_secs as i64);
        self.keys.store.revoke_token(
            jti,
            RevokedToken {
                exp,
                revoked_at: now(),
            },
        )
    }

    /// Forgets revocations of tokens that have expired anyway. Returns how many were pruned.
    pub fn prune(&self, at: i64) -> Result<usize> {
        self.keys.store.prune_revoked_tokens(at)
    }

    /// Whether automatic rotation is due at `at`.
    pub fn rotation_due(&self, at: i64) -> Result<bool> {
        let days = self.config.rotate_every_days;
        if days == 0 {
            return Ok(false);
        }
        let Some(record) = self.key_record()? else {
            return Ok(false);
        };
        let created = record
            .version(record.primary)
            .map(|v| v.created)
            .unwrap_or(record.created);
        Ok(record.deletion.is_none() && created + (days * 24 * 3600) as i64 <= at)
    }

    /// `Cache-Control` max-age for the JWKS: short enough that a rotation reaches verifiers
    /// well before the old version's tokens run out.
    pub fn jwks_max_age(&self) -> u64 {
        match self.config.rotate_every_days {
            0 => 300,
            d => (d * 24 * 3600 / 100).clamp(60, 300),
        }
    }
}

/// A plausible token id.
pub fn check_jti(jti: &str) -> Result<()> {
    if jti.is_empty() || jti.chars().count() > 128 {
        return Err(Error::BadRequest("jti must be 1-128 characters".into()));
    }
    Ok(())
}
