//! Who is calling, and what they may do. The identity comes only from the verified client
//! certificate: its `spiffe://<trust-domain>/<name>` URI SAN, or its CN when it has none. Scopes
//! come from the principal's record in the store, looked up on every request, so a change takes
//! effect at once.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::principals::{pattern_matches, Principal};

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Principal name from the certificate.
    pub name: String,
    /// Certificate serial, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER (RFC 8705 `x5t#S256`).
    pub cert_sha256: Vec<u8>,
    /// The principal record, when it exists.
    pub principal: Option<Principal>,
}

/// The principal name a certificate carries, for `trust_domain`.
pub fn identity(der: &[u8], trust_domain: &str) -> Option<(String, String)> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let serial = hex::encode(cert.raw_serial());
    let prefix = format!("spiffe://{trust_domain}/");
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(rest) = uri.strip_prefix(&prefix) {
                    if signet_pki::valid_client_name(rest) {
                        return Some((rest.to_string(), serial));
                    }
                }
            }
        }
    }
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    signet_pki::valid_client_name(cn).then(|| (cn.to_string(), serial))
}

/// Builds the caller from the peer certificate.
pub fn caller_from_cert(der: &[u8], trust_domain: &str) -> Option<Caller> {
    let (name, serial) = identity(der, trust_domain)?;
    Some(Caller {
        name,
        serial,
        cert_sha256: Sha256::digest(der).to_vec(),
        principal: None,
    })
}

impl Caller {
    fn scopes(&self) -> &[String] {
        self.principal
            .as_ref()
            .map(|p| p.scopes.as_slice())
            .unwrap_or(&[])
    }

    /// Whether the caller holds `scope` (admin holds every scope).
    pub fn has(&self, scope: &str) -> bool {
        self.scopes().iter().any(|s| s == "admin" || s == scope)
    }

    /// May sign with the key `name`.
    pub fn can_sign(&self, key: &str) -> bool {
        self.scopes().iter().any(|s| {
            s == "admin"
                || s.strip_prefix("keys:sign:")
                    .is_some_and(|p| pattern_matches(p, key))
        })
    }

    /// May verify with the key `name` (signing rights include verifying).
    pub fn can_verify(&self, key: &str) -> bool {
        self.can_sign(key)
            || self.scopes().iter().any(|s| {
                s == "keys:read"
                    || s == "keys:verify"
                    || s.strip_prefix("keys:verify:")
                        .is_some_and(|p| pattern_matches(p, key))
            })
    }

    /// May put `scope` in a token it asks for.
    pub fn can_request_token_scope(&self, scope: &str) -> bool {
        self.scopes().iter().any(|s| {
            s == "admin"
                || s.strip_prefix("tokens:scope:")
                    .is_some_and(|p| pattern_matches(p, scope))
        })
    }
}
