//! What every backend needs around signing, done once: input checks, hashing on the host when
//! the device cannot, ECDSA signatures in low-S form and raw `r || s` <-> DER. And the small
//! object-safe [`Signer`] that the TLS stack and the certificate builder adapt to.

use std::sync::Arc;

use crate::backend::{Backend, KeyId};
use crate::der;
use crate::error::{Error, Result};
use crate::input::{EcdsaFormat, Payload, SignInput};
use crate::public::PublicKey;
use crate::spec::SignatureAlgorithm;

/// Checks the input, hashes on the host where the device does not, signs with the backend and
/// encodes the signature. Every signature Signet makes goes through here.
pub fn sign(
    backend: &dyn Backend,
    id: &KeyId,
    algorithm: SignatureAlgorithm,
    input: SignInput<'_>,
    format: EcdsaFormat,
) -> Result<Vec<u8>> {
    let digest;
    let payload = match (algorithm.hash(), input) {
        (_, SignInput::Message([])) => return Err(Error::EmptyInput),
        (_, SignInput::MessageWithContext(message, context)) => {
            return sign_with_context(backend, id, algorithm, message, context)
        }
        (None, SignInput::Message(m)) => Payload::Message(m),
        (None, SignInput::Digest(_)) => {
            return Err(Error::Unsupported(format!(
                "{algorithm} signs the whole message; a precomputed digest cannot be signed"
            )))
        }
        (Some(hash), SignInput::Digest(d)) => {
            if d.len() != hash.len() {
                return Err(Error::DigestLength {
                    algorithm,
                    expected: hash.len(),
                    actual: d.len(),
                });
            }
            Payload::Digest(d)
        }
        (Some(_), SignInput::Message(m)) if backend.hashes_in_device(algorithm) => {
            Payload::Message(m)
        }
        (Some(hash), SignInput::Message(m)) => {
            digest = hash.digest(m);
            Payload::Digest(&digest)
        }
    };
    let signature = backend.sign_payload(id, algorithm, payload)?;
    if !algorithm.is_ecdsa() {
        return Ok(signature);
    }
    // One signature, one encoding: the high-S twin of a valid ECDSA signature is also valid, so
    // Signet always hands out the low-S form (and its verifiers accept only that).
    let raw = der::ecdsa_low_s(algorithm, &signature)?;
    match format {
        EcdsaFormat::Raw => Ok(raw),
        EcdsaFormat::Der => der::ecdsa_raw_to_der(&raw),
    }
}

/// The longest ML-DSA or SLH-DSA context string (FIPS 204/205: one length byte).
pub const MAX_CONTEXT: usize = 255;

/// Signs a whole message with an algorithm that takes a context string (ML-DSA, SLH-DSA),
/// binding the signature to `context` (FIPS 204/205 `ctx`; empty is the same as none).
pub fn sign_with_context(
    backend: &dyn Backend,
    id: &KeyId,
    algorithm: SignatureAlgorithm,
    message: &[u8],
    context: &[u8],
) -> Result<Vec<u8>> {
    if !algorithm.is_post_quantum() {
        return Err(Error::Unsupported(format!(
            "a context string with {algorithm} (only ML-DSA and SLH-DSA signatures take one)"
        )));
    }
    if context.len() > MAX_CONTEXT {
        return Err(Error::Unsupported(format!(
            "a context string of {} bytes (at most {MAX_CONTEXT})",
            context.len()
        )));
    }
    if message.is_empty() {
        return Err(Error::EmptyInput);
    }
    if context.is_empty() {
        return sign(
            backend,
            id,
            algorithm,
            SignInput::Message(message),
            EcdsaFormat::Der,
        );
    }
    if let Some(hash) = algorithm.hash().filter(|_| algorithm.is_pre_hash()) {
        let digest = hash.digest(message);
        return backend.sign_with_context_string(id, algorithm, &digest, context);
    }
    backend.sign_with_context_string(id, algorithm, message, context)
}

/// Something that signs messages with one fixed key and algorithm: the shape the TLS stack and
/// the certificate builder need.
pub trait Signer: Send + Sync + std::fmt::Debug {
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
    /// Binds a device key to an algorithm, checking that they fit.
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

    /// The key's id in the device.
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
        sign(
            self.backend.as_ref(),
            &self.id,
            self.algorithm,
            SignInput::Message(message),
            EcdsaFormat::Der,
        )
    }
}
