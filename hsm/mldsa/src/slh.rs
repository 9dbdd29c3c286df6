//! SLH-DSA (FIPS 205) verification in software: pure signatures (algorithm 24, `slh_verify`)
//! with a context string, for what a token signed with `CKM_SLH_DSA`.

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
    use slh_dsa::{Signature, VerifyingKey};
    fn with<P: slh_dsa::ParameterSet>(key: &[u8], msg: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
        let (Ok(key), Ok(sig)) = (
            VerifyingKey::<P>::try_from(key),
            Signature::<P>::try_from(sig),
        ) else {
            return false;
        };
        key.try_verify_with_context(msg, ctx, &sig).is_ok()
    }
    match set {
        ParameterSet::Sha2_128s => with::<slh_dsa::Sha2_128s>(key, message, context, signature),
        ParameterSet::Sha2_128f => with::<slh_dsa::Sha2_128f>(key, message, context, signature),
    }
}
