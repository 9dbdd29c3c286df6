//! What goes into a signature: the caller's input, what a backend is given, and the encoding
//! asked for. Plain data, so the backend trait, the signing path and the verifier share it
//! without depending on each other.

/// What a caller asks to sign.
#[derive(Clone, Copy, Debug)]
pub enum SignInput<'a> {
    /// The message; hashed by the device where it can, else on the host.
    Message(&'a [u8]),
    /// A digest the caller computed with the algorithm's hash (not for EdDSA or ML-DSA).
    Digest(&'a [u8]),
    /// The message and an ML-DSA context string (FIPS 204 `ctx`, at most 255 bytes), which the
    /// signature is bound to. Only for ML-DSA.
    MessageWithContext(&'a [u8], &'a [u8]),
}

/// What a backend is given to sign, after the checks in [`crate::sign`].
#[derive(Clone, Copy, Debug)]
pub enum Payload<'a> {
    /// The message itself (EdDSA, or an algorithm the device hashes itself).
    Message(&'a [u8]),
    /// The algorithm's hash of the message, of the right length.
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
