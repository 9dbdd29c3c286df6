//! Which mechanisms the token has, and the mechanism and bytes for each signature. The token is
//! asked (C_GetMechanismList) rather than assumed: SoftHSM2 2.6.1 has no CKM_ECDSA_SHA256, so
//! ECDSA is hashed on the host there; kryoptic has it, so it hashes in the token.

use cryptoki::mechanism::dsa::{HashSignAdditionalContext, HedgeType, SignAdditionalContext};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};

use crate::der;
use crate::error::{Error, Result};
use crate::input::Payload;
use crate::spec::{Family, Hash, KeySpec, SignatureAlgorithm};

/// The token's mechanism list.
#[derive(Debug, Clone)]
pub(crate) struct Mechanisms(Vec<MechanismType>);

impl Mechanisms {
    pub(crate) fn new(list: Vec<MechanismType>) -> Self {
        Mechanisms(list)
    }

    pub(crate) fn has(&self, mechanism: MechanismType) -> bool {
        self.0.contains(&mechanism)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The key-pair generation mechanism for a spec, when the token has it.
    pub(crate) fn keygen(&self, spec: KeySpec) -> Option<Mechanism<'static>> {
        let (kind, mechanism) = match spec {
            KeySpec::EcP256 | KeySpec::EcP384 => {
                (MechanismType::ECC_KEY_PAIR_GEN, Mechanism::EccKeyPairGen)
            }
            KeySpec::Ed25519 => (
                MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
                Mechanism::EccEdwardsKeyPairGen,
            ),
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => (
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                Mechanism::RsaPkcsKeyPairGen,
            ),
            KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => (
                MechanismType::ML_DSA_KEY_PAIR_GEN,
                Mechanism::MlDsaKeyPairGen,
            ),
            KeySpec::SlhDsaSha2_128s | KeySpec::SlhDsaSha2_128f => (
                MechanismType::SLH_DSA_KEY_PAIR_GEN,
                Mechanism::SlhDsaKeyPairGen,
            ),
        };
        self.has(kind).then_some(mechanism)
    }

    /// Whether the token can sign with `algorithm` at all.
    pub(crate) fn signs(&self, algorithm: SignatureAlgorithm) -> bool {
        self.has(match algorithm.family() {
            Family::Ecdsa => MechanismType::ECDSA,
            Family::EdDsa => MechanismType::EDDSA,
            Family::RsaPkcs1 => MechanismType::RSA_PKCS,
            Family::RsaPss => MechanismType::RSA_PKCS_PSS,
            Family::MlDsa => MechanismType::ML_DSA,
            Family::SlhDsa => MechanismType::SLH_DSA,
            // Hashed on the host, signed with the generic pre-hash mechanism.
            Family::HashMlDsa => MechanismType::HASH_ML_DSA,
            Family::HashSlhDsa => MechanismType::HASH_SLH_DSA,
        })
    }

    /// Whether the token hashes the message itself for `algorithm`.
    pub(crate) fn hashes(&self, algorithm: SignatureAlgorithm) -> bool {
        match algorithm.family() {
            Family::EdDsa | Family::MlDsa | Family::SlhDsa => true,
            Family::HashMlDsa | Family::HashSlhDsa => false,
            Family::Ecdsa | Family::RsaPkcs1 | Family::RsaPss => algorithm
                .hash()
                .is_some_and(|hash| self.has(hashing(algorithm.family(), hash).mechanism_type())),
        }
    }
}

/// The mechanism and the bytes to give `C_Sign` for a checked payload. `context` is ML-DSA's
/// or SLH-DSA's context string (empty for none; the caller checked it is for one of them and
/// at most 255 bytes).
pub(crate) fn for_signature<'a>(
    algorithm: SignatureAlgorithm,
    payload: Payload<'_>,
    context: &'a [u8],
) -> Result<(Mechanism<'a>, Vec<u8>)> {
    // No parameter at all when there is no context string, which every PKCS#11 3.2 token must
    // take; the post-quantum signatures are hedged (the token's randomness mixed in).
    let context = (!context.is_empty()).then_some(context);
    let family = algorithm.family();
    let whole = |mechanism| match payload {
        Payload::Message(m) => Ok((mechanism, m.to_vec())),
        Payload::Digest(_) => Err(Error::Unsupported(format!(
            "{algorithm} signs the whole message; a precomputed digest cannot be signed"
        ))),
    };
    let hash = || {
        algorithm
            .hash()
            .ok_or_else(|| Error::Unsupported(format!("{algorithm} has no hash")))
    };
    match family {
        Family::EdDsa => whole(Mechanism::Eddsa(EddsaParams::new(
            EddsaSignatureScheme::Pure,
        ))),
        Family::MlDsa => whole(Mechanism::MlDsa(SignAdditionalContext::new(
            HedgeType::Preferred,
            context,
        ))),
        Family::SlhDsa => whole(Mechanism::SlhDsa(SignAdditionalContext::new(
            HedgeType::Preferred,
            context,
        ))),
        // CKM_HASH_ML_DSA / CKM_HASH_SLH_DSA: the token builds M' (0x01, the context, the
        // hash's OID, the digest) and signs it.
        Family::HashMlDsa | Family::HashSlhDsa => {
            let Payload::Digest(d) = payload else {
                return Err(Error::Unsupported(format!(
                    "{algorithm} signs a digest made on the host"
                )));
            };
            let params = HashSignAdditionalContext::new(
                HedgeType::Preferred,
                context,
                hash_mechanism(hash()?),
            );
            let mechanism = if family == Family::HashMlDsa {
                Mechanism::HashMlDsa(params)
            } else {
                Mechanism::HashSlhDsa(params)
            };
            Ok((mechanism, d.to_vec()))
        }
        Family::Ecdsa | Family::RsaPkcs1 | Family::RsaPss => {
            let hash = hash()?;
            Ok(match payload {
                Payload::Message(m) => (hashing(family, hash), m.to_vec()),
                Payload::Digest(d) => match family {
                    Family::Ecdsa => (Mechanism::Ecdsa, d.to_vec()),
                    Family::RsaPkcs1 => (Mechanism::RsaPkcs, der::rsa_digest_info(hash, d)?),
                    _ => (Mechanism::RsaPkcsPss(pss(hash)), d.to_vec()),
                },
            })
        }
    }
}

/// The mechanism that hashes the message in the token for an ECDSA or RSA family and hash.
fn hashing(family: Family, hash: Hash) -> Mechanism<'static> {
    let pss = pss(hash);
    match (family, hash) {
        (Family::Ecdsa, Hash::Sha256) => Mechanism::EcdsaSha256,
        (Family::Ecdsa, Hash::Sha384) => Mechanism::EcdsaSha384,
        (Family::Ecdsa, Hash::Sha512) => Mechanism::EcdsaSha512,
        (Family::RsaPss, Hash::Sha256) => Mechanism::Sha256RsaPkcsPss(pss),
        (Family::RsaPss, Hash::Sha384) => Mechanism::Sha384RsaPkcsPss(pss),
        (Family::RsaPss, Hash::Sha512) => Mechanism::Sha512RsaPkcsPss(pss),
        (_, Hash::Sha256) => Mechanism::Sha256RsaPkcs,
        (_, Hash::Sha384) => Mechanism::Sha384RsaPkcs,
        (_, Hash::Sha512) => Mechanism::Sha512RsaPkcs,
    }
}

/// The hash's own mechanism (what `CK_HASH_SIGN_ADDITIONAL_CONTEXT` and PSS name).
fn hash_mechanism(hash: Hash) -> MechanismType {
    match hash {
        Hash::Sha256 => MechanismType::SHA256,
        Hash::Sha384 => MechanismType::SHA384,
        Hash::Sha512 => MechanismType::SHA512,
    }
}

/// Signet's PSS: MGF1 with the message hash, a salt as long as the hash.
fn pss(hash: Hash) -> PkcsPssParams {
    let mgf = match hash {
        Hash::Sha256 => PkcsMgfType::MGF1_SHA256,
        Hash::Sha384 => PkcsMgfType::MGF1_SHA384,
        Hash::Sha512 => PkcsMgfType::MGF1_SHA512,
    };
    PkcsPssParams {
        hash_alg: hash_mechanism(hash),
        mgf,
        s_len: (hash.len() as u64).into(),
    }
}
