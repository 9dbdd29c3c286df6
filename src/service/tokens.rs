//! Tokens: issue, introspect, revoke, and the documents verifiers read.

use serde_json::{json, Value};

use super::{Action, Caller, Deferred, Service};
use crate::domain::tokens::jwt::Inactive;
use crate::domain::tokens::{check_jti, IssueRequest, Issued, TokenRequest, Verified};
use crate::error::{Error, Result};
use crate::store::{KeyRecord, Outcome};
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
    /// Creates the token-signing key on first start (audited like any key creation).
    pub fn ensure_token_key(&self, caller: &Caller) -> Result<KeyRecord> {
        let tokens = self.tokens();
        if let Some(record) = tokens.key_record()? {
            return Ok(record);
        }
        let requested = caller
            .event(
                Action::KeyCreate.name(),
                crate::domain::keys::TOKEN_KEY,
                Outcome::Requested,
            )
            .with("spec", self.config.tokens.key_spec)
            .with("purpose", "token signing");
        self.change(
            requested,
            || tokens.create_key(),
            |r, e| e.with("key_id", &r.versions[0].key_id),
        )
    }

    /// Issues a token. The caller may name another subject with `tokens:issue-on-behalf`, and
    /// may put only scope values its `tokens:scope:<pattern>` scopes allow.
    pub fn issue_token(&self, caller: &Caller, req: &TokenRequest) -> Result<Issued> {
        self.issue_token_deferred(caller, req).wait()
    }

    /// As [`Service::issue_token`], deferred: the token waits for its record.
    pub fn issue_token_deferred(&self, caller: &Caller, req: &TokenRequest) -> Deferred<Issued> {
        match self.prepare_token(caller, req) {
            Ok(issue) => self.sign_token(caller, req, issue),
            Err(e) => Deferred::ready(Err(e)),
        }
    }

    /// The request's checks and authorisation; what to sign.
    fn prepare_token(&self, caller: &Caller, req: &TokenRequest) -> Result<IssueRequest> {
        self.authorize(caller, Action::TokenIssue, &req.audience)?;
        let ttl = req.validate(&self.config.tokens)?;
        let own = caller.client_name().map(str::to_string);
        let subject = req
            .subject
            .clone()
            .or_else(|| own.clone())
            .ok_or_else(|| Error::BadRequest("name the token's subject".into()))?;
        let on_behalf = own.as_deref() != Some(subject.as_str());
        if on_behalf && !caller.has("tokens:issue-on-behalf") {
            let reason = format!(
                "{} lacks the scope tokens:issue-on-behalf",
                caller.audit_name()
            );
            self.deny(caller, Action::TokenIssue, &subject, reason)?;
        }
        if let Some(s) = req
            .scope
            .iter()
            .find(|s| !caller.can_request_token_scope(s))
        {
            let reason = format!(
                "{} lacks the scope tokens:scope:{}",
                caller.audit_name(),
                crate::support::text::echo(s)
            );
            self.deny(caller, Action::TokenIssue, &req.audience, reason)?;
        }
        Ok(IssueRequest {
            subject,
            audience: req.audience.clone(),
            scope: req.scope.clone(),
            ttl,
            bind_to: if req.bind {
                caller.client_identity().map(|c| c.cert_sha256.clone())
            } else {
                None
            },
            client_id: if on_behalf {
                Some(caller.audit_name())
            } else {
                None
            },
        })
    }

    fn sign_token(
        &self,
        caller: &Caller,
        req: &TokenRequest,
        issue: IssueRequest,
    ) -> Deferred<Issued> {
        let subject = issue.subject.clone();
        let result = random::base64url_id()
            .map_err(Error::from)
            .and_then(|jti| self.tokens().issue(&issue, jti));
        self.metrics
            .token("issue", if result.is_ok() { "ok" } else { "error" });
        let mut event = caller
            .event(
                Action::TokenIssue.name(),
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
        // A token is handed out only once its record is durable.
        let pending = self.audit.submit(vec![event]);
        Deferred::new(result, pending)
    }

    /// Checks a token: signature by a JWKS key, claims, revocation. Only `tokens:admin` learns
    /// why a token is inactive.
    pub fn introspect(
        &self,
        caller: &Caller,
        token: &str,
        audience: Option<&str>,
    ) -> Result<(std::result::Result<Verified, Inactive>, bool)> {
        self.authorize(caller, Action::TokenIntrospect, "token")?;
        let result = self.tokens().introspect(token, audience)?;
        self.metrics.token(
            "introspect",
            if result.is_ok() { "active" } else { "inactive" },
        );
        Ok((result, caller.has("tokens:admin")))
    }

    /// Revokes a token until it expires. Presenting the token lets its subject revoke it.
    pub fn revoke_token(&self, caller: &Caller, what: &RevokeToken) -> Result<TokenAnswer> {
        let (jti, exp, subject) = match what {
            RevokeToken::Token(token) => match self.tokens().introspect(token, None)? {
                Ok(v) => (v.claims.jti, Some(v.claims.exp), Some(v.claims.sub)),
                Err(Inactive::Revoked) => return Ok(TokenAnswer::AlreadyRevoked),
                Err(e) => return Err(Error::BadRequest(format!("not a valid Signet token: {e}"))),
            },
            RevokeToken::Jti(jti) => {
                check_jti(jti)?;
                (jti.clone(), None, None)
            }
        };
        let own = subject.is_some() && subject.as_deref() == caller.client_name();
        if !own {
            self.authorize(caller, Action::TokenRevoke, &jti)?;
        }
        let mut requested = caller
            .event(Action::TokenRevoke.name(), &jti, Outcome::Requested)
            .with("own", own);
        if let Some(exp) = exp {
            // Kept so that `audit replay-revocations` can re-apply it after a restore.
            requested = requested.with("exp", exp);
        }
        let result = self.change(requested, || self.tokens().revoke(&jti, exp), |_, e| e);
        self.metrics
            .token("revoke", if result.is_ok() { "ok" } else { "error" });
        result?;
        Ok(TokenAnswer::Revoked(jti))
    }

    /// The JWKS and its `Cache-Control` max-age.
    pub fn jwks(&self, caller: &Caller) -> Result<(Value, u64)> {
        self.authorize(caller, Action::Jwks, "jwks")?;
        let tokens = self.tokens();
        Ok((tokens.jwks()?, tokens.jwks_max_age()))
    }

    /// The issuer metadata (RFC 8414 style).
    pub fn token_metadata(&self, caller: &Caller) -> Result<Value> {
        self.authorize(caller, Action::Metadata, "metadata")?;
        let cfg = &self.config.tokens;
        let base = cfg.issuer.trim_end_matches('/');
        Ok(json!({
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
}
