//! Randomness from the operating system. Every caller gets an error when the generator fails;
//! nothing falls back to zeros.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The operating system's generator failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomUnavailable(pub String);

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomUnavailable> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| RandomUnavailable(e.to_string()))?;
    Ok(out)
}

/// 128 random bits as 32 hex characters (request ids).
pub fn hex_id() -> Result<String, RandomUnavailable> {
    Ok(hex::encode(bytes::<16>()?))
}

/// 128 random bits, base64url (token ids).
pub fn base64url_id() -> Result<String, RandomUnavailable> {
    Ok(URL_SAFE_NO_PAD.encode(bytes::<16>()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_128_bits_and_differ() {
        let a = hex_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, hex_id().unwrap());
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(base64url_id().unwrap())
                .unwrap()
                .len(),
            16
        );
    }
}
