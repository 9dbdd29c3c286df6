//! Signature verification in software (ring), from a public key: what every backend can do
//! without its device.

use ring::signature as rs;

use crate::der;
use crate::error::{Error, Result};
use crate::input::{EcdsaFormat, SignInput};
use crate::public::PublicKey;
use crate::spec::SignatureAlgorithm;

/// ring's verifier for an algorithm and ECDSA encoding.
fn verifier(
    algorithm: SignatureAlgorithm,
    format: EcdsaFormat,
) -> &'static dyn rs::VerificationAlgorithm {
    use SignatureAlgorithm::*;
    match (algorithm, format) {
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
        SignInput::Digest(_) => {
            return Err(Error::Unsupported(
                "verifying a precomputed digest is not offered by this token".into(),
            ))
        }
    };
    Ok(
        rs::UnparsedPublicKey::new(verifier(algorithm, format), public.raw())
            .verify(message, signature)
            .is_ok(),
    )
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
