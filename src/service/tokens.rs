//! Tokens: issue, introspect, revoke, and the documents verifiers read.

use serde_json::{json, Value};

use super::pipeline::{Operation, Recording, Refusal};
use super::{Action, Caller, Service};
use crate::domain::tokens::jwt::Inactive;
use crate::domain::tokens::{check_jti, IssueRequest, Issued, TokenRequest, Verified};
use crate::error::{Error, Result};
use crate::store::{Event, KeyRecord, Outcome};
use crate::support::random;

/// What to revoke: a token Signet signed (its subject may revoke it), or a bare `jti`.
#[derive(Debug, Clone)]
pub enum RevokeToken {
    /// The token itself.
    Token(String),
    /// Its id.
    Jti(String),
}

/// The answer to a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAnswer {
    /// Revoked now.
    Revoked(String),
    /// It was revoked already.
    AlreadyRevoked,
}

impl Service {
    /// Creates the token-signing key on first start (audited like any key creation). When
    /// `[tokens] key_spec` names another spec than the key has, or `[tokens] algorithm` another
    /// algorithm than its primary version signs with, rotates it: new tokens are signed by the
    /// new version, and the older ones stay in the JWKS, with the algorithm their tokens carry,
    /// until those tokens expire (a migration, from ES256 to ML-DSA or RS256 to PS256 say, with
    /// both verifiable).
    pub fn ensure_token_key(&self, caller: &Caller) -> Result<KeyRecord> {
        let wanted = self.config.tokens.key_spec;
        match self.tokens().key_record()? {
            Some(record) if record.spec == wanted && !self.tokens().algorithm_changed(&record) => {
                Ok(record)
            }
            Some(record) => {
                tracing::warn!(from = %record.spec, to = %wanted, algorithm = %self.config.tokens.algorithm, "[tokens] key_spec or algorithm changed: rotating the token-signing key");
                let detail = self
                    .execute(
                        caller,
                        super::ManageKey::Rotate {
                            name: record.name.clone(),
                            spec: Some(wanted),
                        },
                    )
                    .wait()?;
                Ok(detail.record)
            }
            None => self.execute(caller, CreateTokenKey).wait(),
        }
    }

    /// The request's checks: what to sign, or why not.
    fn token_plan(
        &self,
        caller: &Caller,
        req: &TokenRequest,
    ) -> Result<std::result::Result<IssueRequest, String>> {
        let ttl = req.validate(&self.config.tokens)?;
        let own = caller.client_name().map(str::to_string);
        let subject = req
            .subject
            .clone()
            .or_else(|| own.clone())
            .ok_or_else(|| Error::BadRequest("name the token's subject".into()))?;
        let on_behalf = own.as_deref() != Some(subject.as_str());
        if on_behalf && !caller.has("tokens:issue-on-behalf") {
            return Ok(Err(format!(
                "{} lacks the scope tokens:issue-on-behalf",
                caller.audit_name()
            )));
        }
        if let Some(s) = req
            .scope
            .iter()
            .find(|s| !caller.can_request_token_scope(s))
        {
            return Ok(Err(format!(
                "{} lacks the scope tokens:scope:{}",
                caller.audit_name(),
                crate::support::text::echo(s)
            )));
        }
        Ok(Ok(IssueRequest {
            subject,
            audience: req.audience.clone(),
            scope: req.scope.clone(),
            ttl,
            bind_to: if req.bind {
                caller.client_identity().map(|c| c.cert_sha256.clone())
            } else {
                None
            },
            // RFC 9068 requires it: the client that asked, also when it is the subject.
            client_id: Some(caller.audit_name()),
        }))
    }
}

/// The token-signing key, made on first start.
#[derive(Debug, Clone)]
pub struct CreateTokenKey;

impl Operation for CreateTokenKey {
    type Output = KeyRecord;
    fn action(&self) -> Action {
        Action::KeyCreate
    }
    fn target(&self) -> String {
        crate::domain::keys::TOKEN_KEY.into()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        Ok(event
            .with("spec", s.config.tokens.key_spec)
            .with("purpose", "token signing"))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.tokens().create_key()
    }
    fn describe(&self, r: &KeyRecord, event: Event) -> Event {
        event.with("key_id", &r.versions[0].key_id)
    }
}

/// Issues a token; it is handed out once its record is durable. The caller may name another
/// subject with `tokens:issue-on-behalf`, and may put only scope values its
/// `tokens:scope:<pattern>` scopes allow.
#[derive(Debug, Clone)]
pub struct IssueToken(pub TokenRequest);

impl Operation for IssueToken {
    type Output = Issued;
    fn action(&self) -> Action {
        Action::TokenIssue
    }
    fn target(&self) -> String {
        self.0.audience.clone()
    }
    fn recording(&self) -> Recording {
        Recording::Use
    }
    fn rules(&self, s: &Service, caller: &Caller) -> Result<Option<Refusal>> {
        Ok(s.token_plan(caller, &self.0)?.err().map(Refusal::Forbidden))
    }
    fn run(&mut self, s: &Service, caller: &Caller) -> Result<Self::Output> {
        let issue = s.token_plan(caller, &self.0)?.map_err(Error::Forbidden)?;
        let result = random::base64url_id()
            .map_err(Error::from)
            .and_then(|jti| s.tokens().issue(&issue, jti));
        s.metrics
            .token("issue", if result.is_ok() { "ok" } else { "error" });
        result
    }
    fn records(&self, caller: &Caller, result: &Result<Issued>) -> Vec<Event> {
        let subject = self
            .0
            .subject
            .clone()
            .or_else(|| caller.client_name().map(str::to_string))
            .unwrap_or_default();
        let mut event = caller
            .event(
                Action::TokenIssue.name(),
                &self.0.audience,
                if result.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                },
            )
            .with("sub", &subject)
            .with("bound", self.0.bind);
        if let Ok(issued) = result {
            event = event
                .with("jti", &issued.claims.jti)
                .with("kid", &issued.kid)
                .with("exp", issued.claims.exp);
        }
        vec![event]
    }
}

/// Checks a token: signature by a JWKS key, claims, revocation. Only `tokens:admin` learns why
/// a token is inactive (the second value).
#[derive(Debug, Clone)]
pub struct Introspect {
    /// The compact JWS.
    pub token: String,
    /// The audience expected, if any.
    pub audience: Option<String>,
}

impl Operation for Introspect {
    type Output = (std::result::Result<Verified, Inactive>, bool);
    fn action(&self) -> Action {
        Action::TokenIntrospect
    }
    fn target(&self) -> String {
        "token".into()
    }
    fn run(&mut self, s: &Service, caller: &Caller) -> Result<Self::Output> {
        let result = s
            .tokens()
            .introspect(&self.token, self.audience.as_deref())?;
        s.metrics.token(
            "introspect",
            if result.is_ok() { "active" } else { "inactive" },
        );
        Ok((result, caller.has("tokens:admin")))
    }
}

/// Whether a token id has been revoked (for `signet token verify` on the data directory).
#[derive(Debug, Clone)]
pub struct TokenRevoked {
    /// The token's `jti`.
    pub jti: String,
}

impl Operation for TokenRevoked {
    type Output = bool;
    fn action(&self) -> Action {
        Action::TokenIntrospect
    }
    fn target(&self) -> String {
        "token".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.store.token_revoked(&self.jti)
    }
}

/// Revokes a token until it expires. Presenting the token lets its subject revoke it (the
/// route's `OwnTokenOr` requirement, decided by [`Operation::owned_by`]).
#[derive(Debug, Clone)]
pub struct RevokeTokenOp {
    what: RevokeToken,
    /// The token's id, expiry and subject once looked at (`None`: already revoked).
    found: Option<(String, Option<i64>, Option<String>)>,
}

impl RevokeTokenOp {
    /// The revocation of `what`: the token is looked at now (its id, expiry and subject).
    pub fn new(s: &Service, what: RevokeToken) -> Result<Self> {
        let found = match &what {
            RevokeToken::Token(token) => match s.tokens().introspect(token, None)? {
                Ok(v) => Some((v.claims.jti, Some(v.claims.exp), Some(v.claims.sub))),
                Err(Inactive::Revoked) => None,
                Err(e) => {
                    return Err(Error::Unprocessable(format!(
                        "not a valid Signet token: {e}"
                    )))
                }
            },
            RevokeToken::Jti(jti) => {
                check_jti(jti)?;
                Some((jti.clone(), None, None))
            }
        };
        Ok(RevokeTokenOp { what, found })
    }
}

impl Operation for RevokeTokenOp {
    type Output = TokenAnswer;
    fn action(&self) -> Action {
        Action::TokenRevoke
    }
    fn target(&self) -> String {
        match (&self.found, &self.what) {
            (Some((jti, _, _)), _) => jti.clone(),
            (None, RevokeToken::Jti(jti)) => jti.clone(),
            (None, RevokeToken::Token(_)) => "token".into(),
        }
    }
    fn owned_by(&self, caller: &Caller) -> bool {
        matches!(&self.found, Some((_, _, Some(sub))) if Some(sub.as_str()) == caller.client_name())
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, _: &Service, event: Event) -> Result<Event> {
        let Some((_, exp, subject)) = &self.found else {
            return Ok(event.with("already", true));
        };
        let mut event = event.with("own", subject.is_some());
        if let Some(exp) = exp {
            // Kept so that `audit replay-revocations` can re-apply it after a restore.
            event = event.with("exp", exp);
        }
        Ok(event)
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let Some((jti, exp, _)) = &self.found else {
            return Ok(TokenAnswer::AlreadyRevoked);
        };
        let result = s.tokens().revoke(jti, *exp);
        s.metrics
            .token("revoke", if result.is_ok() { "ok" } else { "error" });
        result?;
        Ok(TokenAnswer::Revoked(jti.clone()))
    }
}

/// The JWKS and its `Cache-Control` max-age.
#[derive(Debug, Clone)]
pub struct ReadJwks;

impl Operation for ReadJwks {
    type Output = (Value, u64);
    fn action(&self) -> Action {
        Action::Jwks
    }
    fn target(&self) -> String {
        "jwks".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let tokens = s.tokens();
        Ok((tokens.jwks()?, tokens.jwks_max_age()))
    }
}

/// The issuer metadata: Signet's own document (`/.well-known/signet`), or the RFC 8414
/// authorization server metadata (`/.well-known/oauth-authorization-server`). Endpoints are
/// built from `server.public_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTokenMetadata {
    /// `/.well-known/signet`.
    Signet,
    /// RFC 8414.
    OAuth,
}

impl Operation for ReadTokenMetadata {
    type Output = Value;
    fn action(&self) -> Action {
        Action::Metadata
    }
    fn target(&self) -> String {
        "metadata".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let cfg = &s.config.tokens;
        let base = s.config.server.public_url();
        let mut doc = json!({
            "issuer": cfg.issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "introspection_endpoint": format!("{base}/v1/tokens/introspect"),
            "revocation_endpoint": format!("{base}/v1/tokens/revoke"),
            "tls_client_certificate_bound_access_tokens": true,
        });
        match self {
            ReadTokenMetadata::Signet => {
                doc["token_endpoint"] = json!(format!("{base}/v1/tokens"));
                doc["token_endpoint_auth_methods_supported"] = json!(["tls_client_auth"]);
                doc["token_signing_alg_values_supported"] = json!([cfg.algorithm]);
                doc["access_token_types_supported"] = json!(["at+jwt"]);
            }
            ReadTokenMetadata::OAuth => {
                // Tokens are issued by Signet's own JSON operation (`signet_token_endpoint`),
                // to the client certificate's principal: no OAuth grant is offered, so no
                // `token_endpoint` and no `authorization_endpoint`.
                doc["response_types_supported"] = json!([]);
                doc["grant_types_supported"] = json!([]);
                doc["introspection_endpoint_auth_methods_supported"] = json!(["tls_client_auth"]);
                doc["revocation_endpoint_auth_methods_supported"] = json!(["tls_client_auth"]);
                doc["signet_token_endpoint"] = json!(format!("{base}/v1/tokens"));
                doc["signet_access_token_signing_alg_values_supported"] = json!([cfg.algorithm]);
                doc["service_documentation"] = json!(format!("{base}/v1/openapi.json"));
            }
        }
        Ok(doc)
    }
}
