//! SLH-DSA (FIPS 205) verification in software: pure signatures (algorithm 24, `slh_verify`)
//! with a context string, for what a token signed with `CKM_SLH_DSA`, and HashSLH-DSA's
//! (algorithm 25, as SLH-DSA's internal verification of M'), for `CKM_HASH_SLH_DSA`.

use crate::Check;

/// An SLH-DSA parameter set (those Signet makes keys for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParameterSet {
    /// SLH-DSA-SHA2-128s.
    Sha2_128s,
    /// SLH-DSA-SHA2-128f.
    Sha2_128f,
}

impl ParameterSet {
    /// The length of an encoded public key (FIPS 205, table 2: 2n).
    pub fn public_key_len(self) -> usize {
        32
    }
}

/// slh_verify (FIPS 205, algorithm 24) of `signature` over `message` with context string
/// `context` (empty when none was given). False for a key, signature or context of the wrong
/// size.
pub fn verify(
    set: ParameterSet,
    key: &[u8],
    message: &[u8],
    context: &[u8],
    signature: &[u8],
) -> bool {
    check(set, key, signature, Check::Pure { message, context })
}

/// hash_slh_verify (FIPS 205, algorithm 25) over a precomputed `digest` made with the hash whose
/// OID's DER is `hash_oid`: SLH-DSA's internal verification of [`crate::pre_hash_message`]. The
/// caller checks the digest's length against its hash. False for a key, signature or context
/// of the wrong size.
pub fn verify_prehashed(
    set: ParameterSet,
    key: &[u8],
    hash_oid: &[u8],
    digest: &[u8],
    context: &[u8],
    signature: &[u8],
) -> bool {
    match crate::pre_hash_message(hash_oid, context, digest) {
        Some(m) => check(set, key, signature, Check::Internal(&m)),
        None => false,
    }
}

/// Runs `what` with `key` over `signature`; false for a key or signature of the wrong size.
fn check(set: ParameterSet, key: &[u8], signature: &[u8], what: Check<'_>) -> bool {
    use slh_dsa::{Signature, VerifyingKey};
    fn with<P: slh_dsa::ParameterSet>(key: &[u8], sig: &[u8], what: Check<'_>) -> bool {
        let (Ok(key), Ok(sig)) = (
            VerifyingKey::<P>::try_from(key),
            Signature::<P>::try_from(sig),
        ) else {
            return false;
        };
        match what {
            Check::Pure { message, context } => {
                key.try_verify_with_context(message, context, &sig).is_ok()
            }
            // slh_verify_internal is public but hidden from the documentation ("for KAT
            // validation"); the crate is pinned exactly, and the pure path above is this same
            // function over 0x00 ‖ |ctx| ‖ ctx ‖ M.
            Check::Internal(m) => key.slh_verify_internal(&[m], &sig).is_ok(),
        }
    }
    match set {
        ParameterSet::Sha2_128s => with::<slh_dsa::Sha2_128s>(key, signature, what),
        ParameterSet::Sha2_128f => with::<slh_dsa::Sha2_128f>(key, signature, what),
    }
}
