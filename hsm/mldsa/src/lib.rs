//! ML-DSA (FIPS 204) verification in software: pure signatures (algorithm 3) and HashML-DSA's
//! (algorithm 5, as ML-DSA's internal verification of M'). One implementation for Signet's HSM
//! boundary (`signet-hsm`, which checks what tokens sign) and the PKCS#11 module (its
//! `C_Verify`), which does not depend on `signet-hsm`. With the `rustls` feature, [`tls`]:
//! ring's rustls provider with these verifications added, for the server's TLS and the client
//! library.

pub mod slh;
#[cfg(feature = "rustls")]
pub mod tls;

/// An ML-DSA parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterSet {
    /// ML-DSA-44.
    MlDsa44,
    /// ML-DSA-65.
    MlDsa65,
    /// ML-DSA-87.
    MlDsa87,
}

/// M' of the pre-hash variants, the same in FIPS 204 (HashML-DSA, algorithm 4, line 23) and
/// FIPS 205 (HashSLH-DSA, algorithm 23, line 22): 0x01, the context's length and bytes, the DER
/// of the hash's OID (`hash_oid`, tag and length included), the digest. What ML-DSA or SLH-DSA
/// signs in the pre-hash variant; `None` for a context longer than 255 bytes.
pub fn pre_hash_message(hash_oid: &[u8], context: &[u8], digest: &[u8]) -> Option<Vec<u8>> {
    let context_len = u8::try_from(context.len()).ok()?;
    let mut m = Vec::with_capacity(2 + context.len() + hash_oid.len() + digest.len());
    m.push(1);
    m.push(context_len);
    m.extend_from_slice(context);
    m.extend_from_slice(hash_oid);
    m.extend_from_slice(digest);
    Some(m)
}

/// ML-DSA.Verify (algorithm 3) of a pure signature with context string `context` (empty when
/// none was given). False for a key, signature or context of the wrong size.
pub fn verify(
    set: ParameterSet,
    key: &[u8],
    message: &[u8],
    context: &[u8],
    signature: &[u8],
) -> bool {
    check(set, key, signature, Check::Pure { message, context })
}

/// HashML-DSA.Verify (algorithm 5) over a precomputed `digest` made with the hash whose OID's
/// DER is `hash_oid`: ML-DSA's internal verification of [`pre_hash_message`]. The caller
/// checks the digest's length against its hash. False for a key, signature or context of the
/// wrong size.
pub fn verify_prehashed(
    set: ParameterSet,
    key: &[u8],
    hash_oid: &[u8],
    digest: &[u8],
    context: &[u8],
    signature: &[u8],
) -> bool {
    match pre_hash_message(hash_oid, context, digest) {
        Some(m) => check(set, key, signature, Check::Internal(&m)),
        None => false,
    }
}

/// What a verification checks: a pure signature over a message and context, or the scheme's
/// internal verification of a prepared M' (ML-DSA's here, SLH-DSA's in [`slh`]).
enum Check<'a> {
    Pure {
        message: &'a [u8],
        context: &'a [u8],
    },
    Internal(&'a [u8]),
}

/// Runs `what` with `key` over `signature`; false for a key or signature of the wrong size.
fn check(set: ParameterSet, key: &[u8], signature: &[u8], what: Check<'_>) -> bool {
    use ml_dsa::{EncodedSignature, EncodedVerifyingKey, MlDsaParams, Signature, VerifyingKey};
    fn with<P: MlDsaParams>(key: &[u8], sig: &[u8], what: Check<'_>) -> bool {
        let (Ok(key), Ok(sig)) = (
            EncodedVerifyingKey::<P>::try_from(key),
            EncodedSignature::<P>::try_from(sig),
        ) else {
            return false;
        };
        let Some(sig) = Signature::<P>::decode(&sig) else {
            return false;
        };
        let key = VerifyingKey::<P>::decode(&key);
        match what {
            Check::Pure { message, context } => key.verify_with_context(message, context, &sig),
            Check::Internal(m) => key.verify_internal(m, &sig),
        }
    }
    match set {
        ParameterSet::MlDsa44 => with::<ml_dsa::MlDsa44>(key, signature, what),
        ParameterSet::MlDsa65 => with::<ml_dsa::MlDsa65>(key, signature, what),
        ParameterSet::MlDsa87 => with::<ml_dsa::MlDsa87>(key, signature, what),
    }
}
