//! The backend trait: what Signet asks of any key store that keeps private keys inside itself.
//! Its required methods are what every such store has; the rest have default bodies a backend
//! overrides where it can do better.

use std::fmt;

use crate::error::{Error, Result};
use crate::input::{Payload, SignInput};
use crate::public::PublicKey;
use crate::spec::{KeySpec, SignatureAlgorithm};

/// A key's identity in its backend: `CKA_ID` for PKCS#11 (16 random bytes for keys Signet
/// makes); for PIV, the slot and a fingerprint of the public key it must hold.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub Vec<u8>);

impl KeyId {
    /// Lower-case hex, the form used in metadata and output.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// Parses lower- or upper-case hex; `None` for anything else (and for the empty string).
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.is_empty() {
            return None;
        }
        hex::decode(s).ok().map(KeyId)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        KeyId::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("key id {text:?} is not hex")))
    }
}

/// What a key is for. PKCS#11 tokens ignore it; a PIV card puts each role in its own slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyRole {
    /// A named key of the key service (including the token-signing key).
    Named,
    /// The root CA key.
    RootCa,
    /// The intermediate CA key.
    IntermediateCa,
    /// The server's TLS key.
    ServerTls,
    /// The audit checkpoint key.
    Audit,
}

/// A request to make a key pair inside the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    /// The label it is found by (`CKA_LABEL`).
    pub label: String,
    /// Its kind.
    pub spec: KeySpec,
    /// What it is for.
    pub role: KeyRole,
}

impl KeyRequest {
    /// A named key of the key service.
    pub fn named(label: impl Into<String>, spec: KeySpec) -> Self {
        KeyRequest {
            label: label.into(),
            spec,
            role: KeyRole::Named,
        }
    }
}

/// What the backend knows of a key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// Its id.
    pub id: KeyId,
    /// Its label.
    pub label: String,
    /// Key spec, derived from the key's type and size.
    pub spec: KeySpec,
}

/// A device's evidence that it generated a key: a certificate for the key's public half, signed
/// by the device's attestation key, and the device's certificate for that key (DER both).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// The key's attestation certificate.
    pub certificate: Vec<u8>,
    /// The device's attestation certificate (a PIV card's slot f9), issued by its maker.
    pub intermediate: Vec<u8>,
}

/// How a private key is protected, as the device reports it. `None` where the device does not
/// say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Protection {
    /// The device refuses to reveal the private value (`CKA_SENSITIVE`).
    pub sensitive: Option<bool>,
    /// It has never been revealable since it was made (`CKA_ALWAYS_SENSITIVE`).
    pub always_sensitive: Option<bool>,
    /// It can be wrapped out of the device (`CKA_EXTRACTABLE`).
    pub extractable: Option<bool>,
    /// It has never been extractable (`CKA_NEVER_EXTRACTABLE`).
    pub never_extractable: Option<bool>,
    /// It persists in the device (`CKA_TOKEN`).
    pub persistent: Option<bool>,
    /// Using it needs a login (`CKA_PRIVATE`, or a PIV PIN policy).
    pub needs_login: Option<bool>,
    /// It was generated inside the device (`CKA_LOCAL`, or PIV metadata).
    pub generated_on_device: Option<bool>,
}

impl Protection {
    /// True when the device says the private key can never leave it in the clear.
    pub fn is_locked_in(&self) -> bool {
        self.sensitive == Some(true)
            && self.always_sensitive == Some(true)
            && self.extractable == Some(false)
            && self.never_extractable == Some(true)
            && self.persistent == Some(true)
            && self.needs_login == Some(true)
    }
}

/// Facts about a backend for `readyz`, `status`, metrics and logs. Neutral fields every backend
/// fills; the rest in `details`.
#[derive(Clone, Debug)]
pub struct BackendInfo {
    /// `pkcs11` or `yubikey`.
    pub kind: &'static str,
    /// Library or driver (manufacturer and version).
    pub library: String,
    /// Token label (or device name).
    pub token_label: String,
    /// Model and serial.
    pub token_model: String,
    /// Key specs the device can make.
    pub specs: Vec<KeySpec>,
    /// Signature algorithms it can do for Signet.
    pub algorithms: Vec<SignatureAlgorithm>,
    /// Device sessions or handles in use, and the most there can be.
    pub sessions_open: usize,
    /// The most sessions there can be.
    pub sessions_max: usize,
    /// Backend-specific facts (firmware, mechanisms, PIN retries…), as name and value.
    pub details: Vec<(String, String)>,
}

/// A store of private keys that signs without ever giving them out. One method per operation; a
/// backend answers `Error::Unsupported` (or a more precise unsupported variant) for what it
/// cannot do. Callers sign through [`crate::sign`], which does the checks every backend needs.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Describes the backend and checks that it can be used now.
    fn info(&self) -> Result<BackendInfo>;

    /// Generates a key pair inside the device: non-extractable, sensitive, persistent.
    fn generate(&self, request: &KeyRequest) -> Result<KeyInfo>;

    /// Finds a key pair by its id.
    fn find(&self, id: &KeyId) -> Result<KeyInfo>;

    /// Every key pair in the device Signet can use.
    fn list(&self) -> Result<Vec<KeyInfo>>;

    /// The public half of a key pair.
    fn public_key(&self, id: &KeyId) -> Result<PublicKey>;

    /// Signs a payload already checked by [`crate::sign`]. ECDSA signatures come back as raw
    /// `r || s`. A [`Payload::Message`] reaches a backend only for EdDSA and for algorithms it
    /// said it hashes itself ([`Backend::hashes_in_device`]).
    fn sign_payload(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        payload: Payload<'_>,
    ) -> Result<Vec<u8>>;

    /// Signs with ML-DSA or SLH-DSA and a non-empty context string (FIPS 204/205 `ctx`,
    /// checked by [`crate::sign_with_context`]): `message` is the message for pure ML-DSA and
    /// SLH-DSA, its digest for HashML-DSA. Devices without them answer unsupported.
    fn sign_with_context_string(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>> {
        let _ = (id, message, context);
        Err(Error::Unsupported(format!(
            "{algorithm} with a context string on this backend"
        )))
    }

    /// Destroys a key pair so it can never be used again.
    fn destroy(&self, id: &KeyId) -> Result<()>;

    /// Creates a key pair from outside key material (bring your own key): the private half
    /// sensitive and non-extractable from then on. The device marks it as not generated inside
    /// (`CKA_LOCAL` false), and [`Protection`] says so.
    fn import(&self, request: &KeyRequest, key: &crate::KeyMaterial) -> Result<KeyInfo> {
        let _ = (request, key);
        Err(Error::Unsupported("this backend cannot import keys".into()))
    }

    /// Whether the device hashes the message itself for `algorithm`. When false the host hashes
    /// and the device signs the digest.
    fn hashes_in_device(&self, algorithm: SignatureAlgorithm) -> bool {
        let _ = algorithm;
        false
    }

    /// Finds a key pair by label.
    fn find_by_label(&self, label: &str) -> Result<KeyInfo> {
        self.list()?
            .into_iter()
            .find(|k| k.label == label)
            .ok_or_else(|| Error::KeyNotFound(label.to_string()))
    }

    /// Verifies a signature with the key's public half, in software. `Ok(false)` for a signature
    /// that does not match.
    fn verify(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        signature: &[u8],
        format: crate::input::EcdsaFormat,
    ) -> Result<bool> {
        let public = self.public_key(id)?;
        crate::verify::verify(&public, algorithm, input, signature, format)
    }

    /// The device's attestation that it generated this key. PKCS#11 has no standard for it.
    fn attest(&self, id: &KeyId) -> Result<Attestation> {
        let _ = id;
        Err(Error::Unsupported(
            "this backend cannot attest keys (PKCS#11 has no standard key attestation)".into(),
        ))
    }

    /// How the private key is protected, as far as the device says.
    fn protection(&self, id: &KeyId) -> Result<Protection> {
        self.find(id)?;
        Ok(Protection::default())
    }

    /// Stores a small named record in the device: state the host's disk cannot roll back (on
    /// a device that is not itself files on that disk). The new value is added and read back
    /// on a fresh session before any older value goes; then the older values for which
    /// `superseded` answers true are removed (the others — another writer's newer value — are
    /// kept). A failure leaves the older values in place, never none.
    fn write_record(
        &self,
        name: &str,
        data: &[u8],
        superseded: &dyn Fn(&[u8]) -> bool,
    ) -> Result<()> {
        let _ = (name, data, superseded);
        Err(Error::Unsupported(
            "this backend keeps no records in the device".into(),
        ))
    }

    /// Every value stored under `name` with [`Backend::write_record`]: normally one, none
    /// before the first write, more after a replacement the device was interrupted in or while
    /// several writers add theirs.
    fn read_records(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        let _ = name;
        Err(Error::Unsupported(
            "this backend keeps no records in the device".into(),
        ))
    }
}
