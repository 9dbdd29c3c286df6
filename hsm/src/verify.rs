//! Signature verification in software, from a public key: what every backend can do without its
//! device. ring for ECDSA, Ed25519 and RSA; RustCrypto's `ml-dsa` for ML-DSA, which ring lacks.

use ring::signature as rs;

use crate::der;
use crate::error::{Error, Result};
use crate::input::{EcdsaFormat, SignInput};
use crate::public::PublicKey;
use crate::spec::{KeySpec, SignatureAlgorithm};

/// ring's verifier for an algorithm and ECDSA encoding; `None` for ML-DSA.
fn verifier(
    algorithm: SignatureAlgorithm,
    format: EcdsaFormat,
) -> Option<&'static dyn rs::VerificationAlgorithm> {
    use SignatureAlgorithm::*;
    Some(match (algorithm, format) {
        (Es256, EcdsaFormat::Der) => &rs::ECDSA_P256_SHA256_ASN1,
        (Es256, EcdsaFormat::Raw) => &rs::ECDSA_P256_SHA256_FIXED,
        (Es384, EcdsaFormat::Der) => &rs::ECDSA_P384_SHA384_ASN1,
        (Es384, EcdsaFormat::Raw) => &rs::ECDSA_P384_SHA384_FIXED,
        (EdDsa, _) => &rs::ED25519,
        (Rs256, _) => &rs::RSA_PKCS1_2048_8192_SHA256,
        (Rs384, _) => &rs::RSA_PKCS1_2048_8192_SHA384,
        (Rs512, _) => &rs::RSA_PKCS1_2048_8192_SHA512,
        (Ps256, _) => &rs::RSA_PSS_2048_8192_SHA256,
        (Ps384, _) => &rs::RSA_PSS_2048_8192_SHA384,
        (Ps512, _) => &rs::RSA_PSS_2048_8192_SHA512,
        (MlDsa44 | MlDsa65 | MlDsa87, _) => return None,
    })
}

/// ML-DSA.Verify (FIPS 204, algorithm 3) of a pure signature with context string `context`
/// (empty when none was given). False for a key, signature or context of the wrong size.
pub fn verify_ml_dsa(public: &PublicKey, message: &[u8], context: &[u8], signature: &[u8]) -> bool {
    use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsaParams, Signature, VerifyingKey};
    fn check<P: MlDsaParams>(key: &[u8], message: &[u8], context: &[u8], sig: &[u8]) -> bool {
        let (Ok(key), Ok(sig)) = (
            EncodedVerifyingKey::<P>::try_from(key),
            EncodedSignature::<P>::try_from(sig),
        ) else {
            return false;
        };
        let Some(sig) = Signature::<P>::decode(&sig) else {
            return false;
        };
        VerifyingKey::<P>::decode(&key).verify_with_context(message, context, &sig)
    }
    let key = public.raw();
    match public.spec() {
        KeySpec::MlDsa44 => check::<ml_dsa::MlDsa44>(&key, message, context, signature),
        KeySpec::MlDsa65 => check::<ml_dsa::MlDsa65>(&key, message, context, signature),
        KeySpec::MlDsa87 => check::<ml_dsa::MlDsa87>(&key, message, context, signature),
        _ => false,
    }
}

/// Verifies `signature` over a message with `public`. `Ok(false)` for a signature that does not
/// match; an error for a mismatched algorithm, or a precomputed digest (which ring cannot check:
/// a backend verifies those in its device, or answers unsupported).
pub fn verify(
    public: &PublicKey,
    algorithm: SignatureAlgorithm,
    input: SignInput<'_>,
    signature: &[u8],
    format: EcdsaFormat,
) -> Result<bool> {
    if !public.spec().allows(algorithm) {
        return Err(Error::AlgorithmMismatch {
            algorithm,
            spec: public.spec(),
        });
    }
    let message = match input {
        SignInput::Message(m) => m,
        SignInput::MessageWithContext(m, context) if algorithm.is_ml_dsa() => {
            return Ok(verify_ml_dsa(public, m, context, signature));
        }
        SignInput::MessageWithContext(..) => {
            return Err(Error::Unsupported(format!(
                "a context string with {algorithm} (only ML-DSA signatures take one)"
            )))
        }
        SignInput::Digest(_) => {
            return Err(Error::Unsupported(
                "verifying a precomputed digest is not offered by this token".into(),
            ))
        }
    };
    let Some(verifier) = verifier(algorithm, format) else {
        return Ok(verify_ml_dsa(public, message, &[], signature));
    };
    Ok(rs::UnparsedPublicKey::new(verifier, public.raw())
        .verify(message, signature)
        .is_ok())
}

/// Verifies a JWS-style signature strictly: ECDSA must be raw `r || s` in low-S form, so that one
/// signed statement has exactly one valid encoding.
pub fn verify_strict(
    public: &PublicKey,
    algorithm: SignatureAlgorithm,
    message: &[u8],
    signature: &[u8],
) -> bool {
    if algorithm.is_ecdsa() && !der::ecdsa_is_low_s(algorithm, signature) {
        return false;
    }
    matches!(
        verify(
            public,
            algorithm,
            SignInput::Message(message),
            signature,
            EcdsaFormat::Raw
        ),
        Ok(true)
    )
}
