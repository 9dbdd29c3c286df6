//! Signature verification in software, from a public key: what every backend can do without its
//! device. ring for ECDSA, Ed25519 and RSA; RustCrypto's `ml-dsa` and `slh-dsa` for ML-DSA and
//! SLH-DSA, which ring lacks.

use ring::signature as rs;

use crate::der;
use crate::error::{Error, Result};
use crate::input::{EcdsaFormat, SignInput};
use crate::public::PublicKey;
use crate::spec::{Family, Hash, KeySpec, SignatureAlgorithm};

/// ring's verifier for an ECDSA, EdDSA or RSA algorithm and ECDSA encoding; `None` for the
/// others (ring has no ML-DSA or SLH-DSA).
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
        _ => return None,
    })
}

/// M' of HashML-DSA (FIPS 204, algorithm 4, line 23) and HashSLH-DSA (FIPS 205, algorithm 23)
/// with `hash`: 0x01, the context's length and bytes, the DER of the hash's OID, the digest.
/// What ML-DSA or SLH-DSA signs in the pre-hash variant.
pub fn pre_hash_message(hash: Hash, context: &[u8], digest: &[u8]) -> Option<Vec<u8>> {
    use ::der::Encode;
    signet_mldsa::pre_hash_message(&hash.oid().to_der().ok()?, context, digest)
}

/// The parameter set of an ML-DSA key (`None` for any other).
fn parameter_set(public: &PublicKey) -> Option<signet_mldsa::ParameterSet> {
    use signet_mldsa::ParameterSet;
    match public.spec() {
        KeySpec::MlDsa44 => Some(ParameterSet::MlDsa44),
        KeySpec::MlDsa65 => Some(ParameterSet::MlDsa65),
        KeySpec::MlDsa87 => Some(ParameterSet::MlDsa87),
        _ => None,
    }
}

/// A pre-hash signature's verification with `hash` over a precomputed `digest`, by the key's
/// scheme: HashML-DSA.Verify (FIPS 204, algorithm 5) for an ML-DSA key, hash_slh_verify
/// (FIPS 205, algorithm 25) for an SLH-DSA key; each is its scheme's internal verification of
/// [`pre_hash_message`]. False for a digest, key, signature or context of the wrong size, and
/// for a key of any other spec.
pub fn verify_pre_hashed(
    public: &PublicKey,
    hash: Hash,
    digest: &[u8],
    context: &[u8],
    signature: &[u8],
) -> bool {
    use ::der::Encode;
    let Ok(oid) = hash.oid().to_der() else {
        return false;
    };
    if digest.len() != hash.len() {
        return false;
    }
    let key = public.raw();
    if let Some(set) = parameter_set(public) {
        signet_mldsa::verify_prehashed(set, &key, &oid, digest, context, signature)
    } else if let Some(set) = crate::public::slh_dsa_parameter_set(public.spec()) {
        signet_mldsa::slh::verify_prehashed(set, &key, &oid, digest, context, signature)
    } else {
        false
    }
}

/// ML-DSA.Verify (FIPS 204, algorithm 3) of a pure signature with context string `context`
/// (empty when none was given). False for a key, signature or context of the wrong size.
pub fn verify_ml_dsa(public: &PublicKey, message: &[u8], context: &[u8], signature: &[u8]) -> bool {
    parameter_set(public)
        .is_some_and(|set| signet_mldsa::verify(set, &public.raw(), message, context, signature))
}

/// slh_verify (FIPS 205, algorithm 24) of a pure SLH-DSA signature with context string
/// `context` (empty when none was given). False for a key, signature or context of the wrong
/// size.
pub fn verify_slh_dsa(
    public: &PublicKey,
    message: &[u8],
    context: &[u8],
    signature: &[u8],
) -> bool {
    crate::public::slh_dsa_parameter_set(public.spec()).is_some_and(|set| {
        signet_mldsa::slh::verify(set, &public.raw(), message, context, signature)
    })
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
    let family = algorithm.family();
    match family {
        Family::HashMlDsa | Family::HashSlhDsa => {
            let Some(hash) = algorithm.hash() else {
                return Err(Error::Unsupported(format!("{algorithm} has no hash")));
            };
            // The digest is the algorithm's hash's: given, or made here from the message.
            let (message, context) = match input {
                SignInput::Digest(d) => {
                    return Ok(verify_pre_hashed(public, hash, d, &[], signature))
                }
                SignInput::Message(m) => (m, &[][..]),
                SignInput::MessageWithContext(m, context) => (m, context),
            };
            let digest = hash.digest(message);
            Ok(verify_pre_hashed(public, hash, &digest, context, signature))
        }
        Family::MlDsa | Family::SlhDsa => {
            let (message, context) = match input {
                SignInput::Message(m) => (m, &[][..]),
                SignInput::MessageWithContext(m, context) => (m, context),
                SignInput::Digest(_) => {
                    return Err(Error::Unsupported(format!(
                    "{algorithm} signs the whole message; a precomputed digest cannot be verified"
                )))
                }
            };
            Ok(if family == Family::MlDsa {
                verify_ml_dsa(public, message, context, signature)
            } else {
                verify_slh_dsa(public, message, context, signature)
            })
        }
        Family::Ecdsa | Family::EdDsa | Family::RsaPkcs1 | Family::RsaPss => {
            let message = match input {
                SignInput::Message(m) => m,
                SignInput::MessageWithContext(..) => {
                    return Err(Error::Unsupported(format!(
                        "a context string with {algorithm} (only ML-DSA and SLH-DSA signatures take one)"
                    )))
                }
                SignInput::Digest(_) => {
                    return Err(Error::Unsupported(
                        "verifying a precomputed digest is not offered by this token".into(),
                    ))
                }
            };
            let verifier = verifier(algorithm, format).ok_or_else(|| {
                Error::Unsupported(format!("{algorithm} has no software verifier"))
            })?;
            Ok(rs::UnparsedPublicKey::new(verifier, public.raw())
                .verify(message, signature)
                .is_ok())
        }
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// M' is FIPS 204's (algorithm 4, line 23; algorithm 5, line 18): the byte 1, the context's
    /// length and bytes, then SHA-512's OID 2.16.840.1.101.3.4.2.3 in DER, then the digest.
    #[test]
    fn pre_hash_message_is_fips_204s() {
        let digest: Vec<u8> = (0..64).collect();
        let mut expected = vec![1, 2, b'a', b'b'];
        expected.extend([
            0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
        ]);
        expected.extend(&digest);
        assert_eq!(
            pre_hash_message(Hash::Sha512, b"ab", &digest).unwrap(),
            expected
        );
        let empty = pre_hash_message(Hash::Sha512, &[], &digest).unwrap();
        assert_eq!(&empty[..3], &[1, 0, 0x06]);
        assert!(pre_hash_message(Hash::Sha512, &[0; 256], &digest).is_none());
        assert_eq!(
            pre_hash_message(Hash::Sha512, &[0; 255], &digest).unwrap()[1],
            255
        );
        // SHA-256 and SHA-384 differ only in the OID's last byte (2.16.840.1.101.3.4.2.1, .2).
        for (hash, last) in [(Hash::Sha256, 0x01), (Hash::Sha384, 0x02)] {
            let m = pre_hash_message(hash, &[], &digest[..hash.len()]).unwrap();
            let oid = [
                0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, last,
            ];
            assert_eq!(&m[2..13], &oid[..]);
            assert_eq!(m.len(), 13 + hash.len());
        }
    }
}
