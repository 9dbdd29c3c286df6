//! The backend trait: what Signet asks of any key store that keeps private keys inside itself.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::public::PublicKey;
use crate::spec::{KeySpec, SignatureAlgorithm};

/// A key's identity in the token (`CKA_ID`), 16 random bytes for keys Signet makes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(pub Vec<u8>);

impl KeyId {
    /// Lower-case hex, the form used in metadata and output.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses lower- or upper-case hex.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() % 2 != 0 || s.is_empty() {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
            .map(KeyId)
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

/// What the backend knows of a key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// `CKA_ID`.
    pub id: KeyId,
    /// `CKA_LABEL`.
    pub label: String,
    /// Key spec, derived from the key's type and size.
    pub spec: KeySpec,
}

/// How a private key is protected, as the token reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protection {
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_TOKEN`: persistent in the token.
    pub token: bool,
    /// `CKA_PRIVATE`: needs login.
    pub private: bool,
}

impl Protection {
    /// True when the private key can never leave the token in the clear.
    pub fn is_locked_in(&self) -> bool {
        self.sensitive
            && self.always_sensitive
            && !self.extractable
            && self.never_extractable
            && self.token
            && self.private
    }
}

/// What is being signed.
#[derive(Clone, Copy, Debug)]
pub enum SignInput<'a> {
    /// The message; hashed by the token where it can, else on the host.
    Message(&'a [u8]),
    /// A digest the caller computed with the algorithm's hash (not for EdDSA).
    Digest(&'a [u8]),
}

/// The two encodings of an ECDSA signature. Ignored for other algorithms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EcdsaFormat {
    /// `ECDSA-Sig-Value` DER, as in X.509 and TLS.
    #[default]
    Der,
    /// Fixed-size `r || s`, as in JWS.
    Raw,
}

/// Facts about the backend for `readyz`, `info` and logs.
#[derive(Clone, Debug)]
pub struct BackendInfo {
    /// Library description (manufacturer and version).
    pub library: String,
    /// Token label.
    pub token_label: String,
    /// Token model and serial.
    pub token_model: String,
    /// Signature algorithms this token can do for Signet.
    pub algorithms: Vec<SignatureAlgorithm>,
    /// Session pool size.
    pub pool_size: usize,
    /// Sessions currently open.
    pub sessions_open: usize,
}

/// A store of private keys that signs without ever giving them out. One method per operation; a
/// backend answers `Error::Unsupported` for what it cannot do.
pub trait Backend: Send + Sync + fmt::Debug {
    /// Describes the backend and checks that a session can be had.
    fn info(&self) -> Result<BackendInfo>;

    /// Generates a key pair inside the token, non-extractable and sensitive.
    fn generate(&self, label: &str, spec: KeySpec) -> Result<KeyInfo>;

    /// Finds a key pair by its `CKA_ID`.
    fn find(&self, id: &KeyId) -> Result<KeyInfo>;

    /// Finds a key pair by its `CKA_LABEL`.
    fn find_by_label(&self, label: &str) -> Result<KeyInfo>;

    /// Every private key in the token Signet can use.
    fn list(&self) -> Result<Vec<KeyInfo>>;

    /// The public half of a key pair.
    fn public_key(&self, id: &KeyId) -> Result<PublicKey>;

    /// Signs inside the token.
    fn sign(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        format: EcdsaFormat,
    ) -> Result<Vec<u8>>;

    /// Verifies a signature with the key's public half, inside the token. `Ok(false)` for a
    /// signature that does not match; errors only for unusable input.
    fn verify(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        signature: &[u8],
        format: EcdsaFormat,
    ) -> Result<bool>;

    /// How the private key is protected.
    fn protection(&self, id: &KeyId) -> Result<Protection>;

    /// Destroys both halves of a key pair.
    fn destroy(&self, id: &KeyId) -> Result<()>;
}

/// Something that signs messages with one fixed key and algorithm: the shape the TLS stack and the
/// certificate builder need.
pub trait Signer: Send + Sync + fmt::Debug {
    /// The algorithm every signature uses.
    fn algorithm(&self) -> SignatureAlgorithm;
    /// The public key matching the signatures.
    fn public_key(&self) -> &PublicKey;
    /// Signs `message`; ECDSA signatures come out as DER.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>>;
}

/// A [`Signer`] over a key held by a [`Backend`].
#[derive(Clone, Debug)]
pub struct HsmSigner {
    backend: Arc<dyn Backend>,
    id: KeyId,
    algorithm: SignatureAlgorithm,
    public: PublicKey,
}

impl HsmSigner {
    /// Binds a token key to an algorithm, checking that they fit.
    pub fn new(
        backend: Arc<dyn Backend>,
        id: KeyId,
        algorithm: SignatureAlgorithm,
    ) -> Result<Self> {
        let public = backend.public_key(&id)?;
        if !public.spec().allows(algorithm) {
            return Err(Error::AlgorithmMismatch {
                algorithm,
                spec: public.spec(),
            });
        }
        Ok(HsmSigner {
            backend,
            id,
            algorithm,
            public,
        })
    }

    /// The key's id in the token.
    pub fn id(&self) -> &KeyId {
        &self.id
    }
}

impl Signer for HsmSigner {
    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.backend.sign(
            &self.id,
            self.algorithm,
            SignInput::Message(message),
            EcdsaFormat::Der,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_id_hex_round_trips() {
        let id = KeyId(vec![0, 1, 0xab, 0xff]);
        assert_eq!(id.to_hex(), "0001abff");
        assert_eq!(KeyId::from_hex("0001ABff"), Some(id));
        assert_eq!(KeyId::from_hex("abc"), None);
        assert_eq!(KeyId::from_hex("zz"), None);
        assert_eq!(KeyId::from_hex(""), None);
    }
}
