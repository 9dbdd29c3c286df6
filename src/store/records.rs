//! The typed records every store keeps. Nothing secret is ever in them. Their JSON form is the
//! on-disk form, so field names and enum spellings are stable.

use serde::{Deserialize, Serialize};
use signet_hsm::{KeyId, KeySpec, SignatureAlgorithm};

/// The state of one version of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Usable.
    Enabled,
    /// Refuses to sign; still verifies.
    Disabled,
    /// Gone from the token.
    Destroyed,
}

impl VersionState {
    /// The name in output and in the API (`enabled`, `disabled`, `destroyed`).
    pub fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "enabled",
            VersionState::Disabled => "disabled",
            VersionState::Destroyed => "destroyed",
        }
    }
}

/// Where a version's key pair came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOrigin {
    /// Generated inside the token (records written before origins were kept are these).
    #[default]
    Generated,
    /// Made outside and imported (`signet key import`): it existed in software once.
    Imported,
}

/// One version of a key: one key pair in the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    /// 1, 2, …
    pub version: u32,
    /// The pair's id in the backend.
    pub key_id: KeyId,
    /// Its label.
    pub label: String,
    /// Unix seconds.
    pub created: i64,
    /// State.
    pub state: VersionState,
    /// Generated in the token or imported.
    #[serde(default)]
    pub origin: KeyOrigin,
    /// What the device's attestation said of the key when it was made (PIV cards), and the
    /// root it was checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<signet_pki::attestation::AttestedOrigin>,
    /// This version's spec, kept when a rotation changed the key's spec after it was made;
    /// `None`: the key's ([`KeyRecord::spec_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<KeySpec>,
    /// The JWS algorithm this version signs tokens with: set on the token-signing key's
    /// versions when they are made (`[tokens] algorithm`), so a later change of that setting
    /// neither relabels the tokens an older version signed nor signs with another algorithm
    /// under the same kid. `None` on other keys, and on token-key versions made before it was
    /// recorded (those carry `[tokens] algorithm` where it fits the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_algorithm: Option<SignatureAlgorithm>,
}

/// A pending destruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// When it was asked for (unix seconds).
    pub requested_at: i64,
    /// When the key material is destroyed (unix seconds).
    pub destroy_after: i64,
}

/// A named key with its versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Name.
    pub name: String,
    /// Key spec: that of the primary version, and of the versions a rotation makes.
    pub spec: KeySpec,
    /// Unix seconds.
    pub created: i64,
    /// The version new signatures use.
    pub primary: u32,
    /// All versions, oldest first.
    pub versions: Vec<KeyVersion>,
    /// Set while deletion is scheduled.
    #[serde(default)]
    pub deletion: Option<Deletion>,
}

impl KeyRecord {
    /// A version by number.
    pub fn version(&self, v: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|kv| kv.version == v)
    }

    /// The spec of version `v` (the key's, unless a rotation changed the key's spec after it).
    pub fn spec_of(&self, v: &KeyVersion) -> KeySpec {
        v.spec.unwrap_or(self.spec)
    }

    /// The number the next version gets.
    pub fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }
}

/// One CA key: where it is in the token and its certificate's serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaKey {
    /// The pair's id in the backend.
    pub key_id: KeyId,
    /// Key spec.
    pub spec: KeySpec,
    /// Serial of its certificate, hex.
    pub serial: String,
    /// Generated in the token, or imported (`ca import`).
    #[serde(default)]
    pub origin: KeyOrigin,
}

/// The CA as built by `ca init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRecord {
    /// Unix seconds.
    pub created: i64,
    /// Root.
    pub root: CaKey,
    /// Intermediate.
    pub intermediate: CaKey,
    /// The server's TLS key (in the token) and certificate.
    pub server: CaKey,
    /// Trust domain at creation.
    pub trust_domain: String,
    /// Organisation at creation.
    pub organization: String,
    /// Intermediates replaced by `ca rotate --intermediate`, newest first: their keys stay in
    /// the token and certificates they issued stay valid until they expire.
    #[serde(default)]
    pub previous_intermediates: Vec<CaKey>,
    /// Keys replaced by a rotation that running nodes may still use for a while (the server's
    /// TLS key), with when they may be destroyed (unix seconds).
    #[serde(default)]
    pub retired: Vec<(CaKey, i64)>,
    /// Counts rotations: nodes compare it to pick a rotation up without a restart.
    #[serde(default)]
    pub generation: u64,
}

/// What a certificate is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertKind {
    /// A TLS server leaf.
    Server,
    /// A TLS client leaf.
    Client,
    /// The root CA.
    RootCa,
    /// The intermediate CA.
    IntermediateCa,
}

impl CertKind {
    /// The name in output (`server`, `client`, `root-ca`, `intermediate-ca`).
    pub fn name(self) -> &'static str {
        match self {
            CertKind::Server => "server",
            CertKind::Client => "client",
            CertKind::RootCa => "root-ca",
            CertKind::IntermediateCa => "intermediate-ca",
        }
    }

    /// True for the CA's own certificates.
    pub fn is_ca(self) -> bool {
        matches!(self, CertKind::RootCa | CertKind::IntermediateCa)
    }
}

impl From<signet_pki::Profile> for CertKind {
    fn from(p: signet_pki::Profile) -> Self {
        match p {
            signet_pki::Profile::Server => CertKind::Server,
            signet_pki::Profile::Client => CertKind::Client,
        }
    }
}

/// Lifecycle of an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    /// Valid (unless expired).
    Active,
    /// Revoked.
    Revoked,
}

impl CertStatus {
    /// The name in output (`active`, `revoked`).
    pub fn name(self) -> &'static str {
        match self {
            CertStatus::Active => "active",
            CertStatus::Revoked => "revoked",
        }
    }
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// SANs.
    pub sans: Vec<String>,
    /// What it is.
    pub profile: CertKind,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Status.
    pub status: CertStatus,
    /// Unix seconds, when revoked.
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who asked for it.
    #[serde(default)]
    pub issued_to: Option<String>,
    /// The certificate, DER (base64 in the stored form).
    #[serde(with = "base64_bytes")]
    pub der: Vec<u8>,
}

/// The stored CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlRecord {
    /// CRL number.
    pub number: u64,
    /// Unix seconds.
    pub generated: i64,
    /// DER (base64 in the stored form).
    #[serde(with = "base64_bytes")]
    pub der: Vec<u8>,
}

/// A principal: the identity in client certificates, and what it may do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Principal {
    /// Name (the last segment of its SPIFFE ID).
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// Who created it.
    pub created_by: String,
}

/// A revoked token id, kept until the token would have expired anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedToken {
    /// The token's `exp` (unix seconds).
    pub exp: i64,
    /// When it was revoked.
    pub revoked_at: i64,
}

/// The audit key's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditKeyRecord {
    /// The pair's id in the backend.
    pub key_id: KeyId,
    /// Unix seconds.
    pub created: i64,
}

/// Byte fields stored as standard base64 strings.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_the_stored_spelling() {
        let record = CertRecord {
            serial: "0a".into(),
            subject: "CN=x".into(),
            sans: vec![],
            profile: CertKind::IntermediateCa,
            not_before: 1,
            not_after: 2,
            status: CertStatus::Active,
            revoked_at: None,
            reason: None,
            issued_to: None,
            der: vec![1, 2, 3],
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"profile\":\"intermediate-ca\""), "{json}");
        assert!(json.contains("\"der\":\"AQID\""), "{json}");
        assert_eq!(serde_json::from_str::<CertRecord>(&json).unwrap(), record);
        let key: KeyVersion = serde_json::from_str(
            r#"{"version":1,"key_id":"00ff","label":"l","created":0,"state":"disabled"}"#,
        )
        .unwrap();
        assert_eq!(key.key_id, KeyId(vec![0, 0xff]));
        assert!(serde_json::from_str::<KeyVersion>(
            r#"{"version":1,"key_id":"zz","label":"l","created":0,"state":"enabled"}"#
        )
        .is_err());
    }
}
