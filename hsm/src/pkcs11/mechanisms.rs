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
use crate::spec::{Hash, KeySpec, SignatureAlgorithm};

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
        use SignatureAlgorithm::*;
        match algorithm {
            Es256 | Es384 => self.has(MechanismType::ECDSA),
            EdDsa => self.has(MechanismType::EDDSA),
            Rs256 | Rs384 | Rs512 => self.has(MechanismType::RSA_PKCS),
            Ps256 | Ps384 | Ps512 => self.has(MechanismType::RSA_PKCS_PSS),
            MlDsa44 | MlDsa65 | MlDsa87 => self.has(MechanismType::ML_DSA),
            SlhDsaSha2_128s | SlhDsaSha2_128f => self.has(MechanismType::SLH_DSA),
            // Hashed on the host, signed with the generic pre-hash mechanism.
            HashMlDsa44Sha256 | HashMlDsa65Sha256 | HashMlDsa87Sha256 | HashMlDsa44Sha384
            | HashMlDsa65Sha384 | HashMlDsa87Sha384 | HashMlDsa44Sha512 | HashMlDsa65Sha512
            | HashMlDsa87Sha512 => self.has(MechanismType::HASH_ML_DSA),
            HashSlhDsaSha2_128sSha256
            | HashSlhDsaSha2_128sSha512
            | HashSlhDsaSha2_128fSha256
            | HashSlhDsaSha2_128fSha512 => self.has(MechanismType::HASH_SLH_DSA),
        }
    }

    /// Whether the token hashes the message itself for `algorithm`.
    pub(crate) fn hashes(&self, algorithm: SignatureAlgorithm) -> bool {
        use SignatureAlgorithm::*;
        match algorithm {
            Es256 => self.has(MechanismType::ECDSA_SHA256),
            Es384 => self.has(MechanismType::ECDSA_SHA384),
            EdDsa | MlDsa44 | MlDsa65 | MlDsa87 | SlhDsaSha2_128s | SlhDsaSha2_128f => true,
            HashMlDsa44Sha256
            | HashMlDsa65Sha256
            | HashMlDsa87Sha256
            | HashMlDsa44Sha384
            | HashMlDsa65Sha384
            | HashMlDsa87Sha384
            | HashMlDsa44Sha512
            | HashMlDsa65Sha512
            | HashMlDsa87Sha512
            | HashSlhDsaSha2_128sSha256
            | HashSlhDsaSha2_128sSha512
            | HashSlhDsaSha2_128fSha256
            | HashSlhDsaSha2_128fSha512 => false,
            Rs256 => self.has(MechanismType::SHA256_RSA_PKCS),
            Rs384 => self.has(MechanismType::SHA384_RSA_PKCS),
            Rs512 => self.has(MechanismType::SHA512_RSA_PKCS),
            Ps256 => self.has(MechanismType::SHA256_RSA_PKCS_PSS),
            Ps384 => self.has(MechanismType::SHA384_RSA_PKCS_PSS),
            Ps512 => self.has(MechanismType::SHA512_RSA_PKCS_PSS),
        }
    }
}

/// The mechanism and the bytes to give `C_Sign` for a checked payload. `context` is ML-DSA's
/// context string (empty for none; the caller checked it is for ML-DSA and at most 255 bytes).
pub(crate) fn for_signature<'a>(
    algorithm: SignatureAlgorithm,
    payload: Payload<'_>,
    context: &'a [u8],
) -> Result<(Mechanism<'a>, Vec<u8>)> {
    use SignatureAlgorithm::*;
    let Some(hash) = algorithm.hash() else {
        let mechanism = if algorithm.is_ml_dsa() {
            // Pure ML-DSA, hedged (the token's randomness mixed in); no parameter at all when
            // there is no context string, which every PKCS#11 3.2 token must take.
            let context = (!context.is_empty()).then_some(context);
            Mechanism::MlDsa(SignAdditionalContext::new(HedgeType::Preferred, context))
        } else if algorithm.is_slh_dsa() {
            // Pure SLH-DSA, hedged (the randomized variant: opt_rand from the token).
            let context = (!context.is_empty()).then_some(context);
            Mechanism::SlhDsa(SignAdditionalContext::new(HedgeType::Preferred, context))
        } else {
            Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
        };
        return match payload {
            Payload::Message(m) => Ok((mechanism, m.to_vec())),
            Payload::Digest(_) => Err(Error::Unsupported(format!(
                "{algorithm} signs the whole message; a precomputed digest cannot be signed"
            ))),
        };
    };
    let (hash_mech, mgf) = match hash {
        Hash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
        Hash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
        Hash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
    };
    let pss = PkcsPssParams {
        hash_alg: hash_mech,
        mgf,
        s_len: (hash.len() as u64).into(),
    };
    Ok(match (algorithm, payload) {
        (Es256 | Es384, Payload::Digest(d)) => (Mechanism::Ecdsa, d.to_vec()),
        (Es256, Payload::Message(m)) => (Mechanism::EcdsaSha256, m.to_vec()),
        (Es384, Payload::Message(m)) => (Mechanism::EcdsaSha384, m.to_vec()),
        (Rs256 | Rs384 | Rs512, Payload::Digest(d)) => {
            (Mechanism::RsaPkcs, der::rsa_digest_info(hash, d)?)
        }
        (Rs256, Payload::Message(m)) => (Mechanism::Sha256RsaPkcs, m.to_vec()),
        (Rs384, Payload::Message(m)) => (Mechanism::Sha384RsaPkcs, m.to_vec()),
        (Rs512, Payload::Message(m)) => (Mechanism::Sha512RsaPkcs, m.to_vec()),
        (Ps256 | Ps384 | Ps512, Payload::Digest(d)) => (Mechanism::RsaPkcsPss(pss), d.to_vec()),
        (Ps256, Payload::Message(m)) => (Mechanism::Sha256RsaPkcsPss(pss), m.to_vec()),
        (Ps384, Payload::Message(m)) => (Mechanism::Sha384RsaPkcsPss(pss), m.to_vec()),
        (Ps512, Payload::Message(m)) => (Mechanism::Sha512RsaPkcsPss(pss), m.to_vec()),
        // CKM_HASH_ML_DSA: the token builds FIPS 204's M' (0x01, the context, the hash's OID,
        // the digest) and signs it, hedged.
        (
            HashMlDsa44Sha256 | HashMlDsa65Sha256 | HashMlDsa87Sha256 | HashMlDsa44Sha384
            | HashMlDsa65Sha384 | HashMlDsa87Sha384 | HashMlDsa44Sha512 | HashMlDsa65Sha512
            | HashMlDsa87Sha512,
            Payload::Digest(d),
        ) => {
            let context = (!context.is_empty()).then_some(context);
            let params = HashSignAdditionalContext::new(HedgeType::Preferred, context, hash_mech);
            (Mechanism::HashMlDsa(params), d.to_vec())
        }
        // CKM_HASH_SLH_DSA: the same M' (FIPS 205 algorithm 23), signed with SLH-DSA, hedged.
        (
            HashSlhDsaSha2_128sSha256
            | HashSlhDsaSha2_128sSha512
            | HashSlhDsaSha2_128fSha256
            | HashSlhDsaSha2_128fSha512,
            Payload::Digest(d),
        ) => {
            let context = (!context.is_empty()).then_some(context);
            let params = HashSignAdditionalContext::new(HedgeType::Preferred, context, hash_mech);
            (Mechanism::HashSlhDsa(params), d.to_vec())
        }
        (
            HashMlDsa44Sha256
            | HashMlDsa65Sha256
            | HashMlDsa87Sha256
            | HashMlDsa44Sha384
            | HashMlDsa65Sha384
            | HashMlDsa87Sha384
            | HashMlDsa44Sha512
            | HashMlDsa65Sha512
            | HashMlDsa87Sha512
            | HashSlhDsaSha2_128sSha256
            | HashSlhDsaSha2_128sSha512
            | HashSlhDsaSha2_128fSha256
            | HashSlhDsaSha2_128fSha512,
            Payload::Message(_),
        ) => {
            return Err(Error::Unsupported(format!(
                "{algorithm} signs a digest made on the host"
            )))
        }
        (EdDsa | MlDsa44 | MlDsa65 | MlDsa87 | SlhDsaSha2_128s | SlhDsaSha2_128f, _) => {
            return Err(Error::Unsupported(format!("{algorithm} has no hash")))
        }
    })
}
