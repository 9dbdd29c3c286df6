//! Compact JWS access tokens, pure: encoding the signing input, parsing, and checking a token
//! against a set of verification keys. No I/O, so all of it is unit-tested and fuzzed.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use signet_hsm::{PublicKey, SignatureAlgorithm};

/// Largest token accepted for introspection, revocation or verification.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `nbf`.
pub const LEEWAY_SECS: i64 = 30;

/// The claims Signet puts in a token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject (a principal).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id, 128 random bits.
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Who asked for it, when issued on behalf of someone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// RFC 8705 certificate binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// `cnf` with the certificate thumbprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    /// base64url(SHA-256(certificate DER)).
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// Why a token is not active. The texts are what introspection shows an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inactive {
    /// Larger than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not three dot-separated segments.
    Segments(usize),
    /// A segment is not base64url.
    NotBase64(&'static str),
    /// The header is not a JSON object.
    HeaderNotJson,
    /// The payload is not Signet's claims set.
    PayloadNotClaims,
    /// The header names no algorithm.
    NoAlgorithm,
    /// `alg: none`.
    AlgorithmNone,
    /// The header names no key.
    NoKid,
    /// The key is not (or no longer) in the JWKS.
    UnknownKid(String),
    /// The header's algorithm is not the key's.
    AlgorithmMismatch {
        /// In the header.
        header: String,
        /// The key's.
        key: SignatureAlgorithm,
    },
    /// The signature does not verify (or is not in its one valid encoding).
    BadSignature,
    /// Another issuer.
    WrongIssuer(String),
    /// Expired.
    Expired,
    /// `nbf` in the future.
    NotYetValid,
    /// Another audience.
    WrongAudience(String),
    /// Revoked by `jti`.
    Revoked,
}

impl fmt::Display for Inactive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::support::text::echo;
        match self {
            Inactive::TooLarge => f.write_str("token too large"),
            Inactive::Segments(n) => write!(f, "a JWS has 3 segments, this has {n}"),
            Inactive::NotBase64(what) => write!(f, "{what} is not base64url"),
            Inactive::HeaderNotJson => f.write_str("header is not JSON"),
            Inactive::PayloadNotClaims => f.write_str("payload is not a Signet claims set"),
            Inactive::NoAlgorithm => f.write_str("header has no alg"),
            Inactive::AlgorithmNone => f.write_str("alg none is never accepted"),
            Inactive::NoKid => f.write_str("header has no kid"),
            Inactive::UnknownKid(kid) => write!(f, "unknown kid {}", echo(kid)),
            Inactive::AlgorithmMismatch { header, key } => write!(
                f,
                "alg {} does not match the key's {}",
                echo(header),
                key.name()
            ),
            Inactive::BadSignature => f.write_str("signature does not verify"),
            Inactive::WrongIssuer(iss) => write!(f, "issuer {} is not the expected one", echo(iss)),
            Inactive::Expired => f.write_str("expired"),
            Inactive::NotYetValid => f.write_str("not yet valid"),
            Inactive::WrongAudience(aud) => {
                write!(f, "audience {} is not the expected one", echo(aud))
            }
            Inactive::Revoked => f.write_str("revoked"),
        }
    }
}

/// The header and claims as a compact JWS signing input (`base64url(header).base64url(claims)`).
pub fn signing_input(algorithm: SignatureAlgorithm, kid: &str, claims: &Claims) -> String {
    let header = json!({"alg": algorithm.name(), "kid": kid, "typ": "at+jwt"});
    // Claims are plain strings and numbers: serialising them cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

/// The complete token from its signing input and signature.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The parts of a compact JWS after the structural checks.
pub struct Parsed {
    header: Value,
    signing_input: String,
    signature: Vec<u8>,
    /// The claims (not yet checked).
    pub claims: Claims,
}

impl fmt::Debug for Parsed {
    // A token is a bearer credential: never print it, only what identifies its key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parsed")
            .field("alg", &self.header["alg"])
            .field("kid", &self.header["kid"])
            .finish_non_exhaustive()
    }
}

/// Structural checks: size, three base64url parts, a JSON header and Signet claims.
pub fn parse(token: &str) -> Result<Parsed, Inactive> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Inactive::TooLarge);
    }
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 {
        return Err(Inactive::Segments(parts.len()));
    }
    let decode = |s: &str, what: &'static str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| Inactive::NotBase64(what))
    };
    let header: Value = serde_json::from_slice(&decode(parts[0], "header")?)
        .map_err(|_| Inactive::HeaderNotJson)?;
    if !header.is_object() {
        return Err(Inactive::HeaderNotJson);
    }
    let claims: Claims = serde_json::from_slice(&decode(parts[1], "payload")?)
        .map_err(|_| Inactive::PayloadNotClaims)?;
    let signature = decode(parts[2], "signature")?;
    Ok(Parsed {
        header,
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature,
        claims,
    })
}

/// The keys a token may be signed by: kid → algorithm and public key.
pub type VerificationKeys = BTreeMap<String, (SignatureAlgorithm, PublicKey)>;

/// Checks the signature with the key the header names, then the registered claims. ECDSA
/// signatures must be in their low-S form: one token has exactly one valid encoding.
pub fn check(
    parsed: &Parsed,
    keys: &VerificationKeys,
    issuer: &str,
    audience: Option<&str>,
    now: i64,
) -> Result<(String, Claims), Inactive> {
    let alg_name = parsed.header["alg"].as_str().ok_or(Inactive::NoAlgorithm)?;
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(Inactive::AlgorithmNone);
    }
    let kid = parsed.header["kid"].as_str().ok_or(Inactive::NoKid)?;
    let (alg, public) = keys
        .get(kid)
        .ok_or_else(|| Inactive::UnknownKid(kid.to_string()))?;
    if alg.name() != alg_name {
        return Err(Inactive::AlgorithmMismatch {
            header: alg_name.to_string(),
            key: *alg,
        });
    }
    if !signet_hsm::verify::verify_strict(
        public,
        *alg,
        parsed.signing_input.as_bytes(),
        &parsed.signature,
    ) {
        return Err(Inactive::BadSignature);
    }
    let c = &parsed.claims;
    if c.iss != issuer {
        return Err(Inactive::WrongIssuer(c.iss.clone()));
    }
    if c.exp <= now {
        return Err(Inactive::Expired);
    }
    if c.nbf > now + LEEWAY_SECS {
        return Err(Inactive::NotYetValid);
    }
    if let Some(aud) = audience {
        if c.aud != aud {
            return Err(Inactive::WrongAudience(c.aud.clone()));
        }
    }
    Ok((kid.to_string(), c.clone()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use signet_hsm::KeySpec;

    /// Tokens signed by a software key, so claims the service would never issue can be tested.
    fn setup() -> (EcdsaKeyPair, VerificationKeys) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = PublicKey::from_ec_point(KeySpec::EcP256, pair.public_key().as_ref()).unwrap();
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), (SignatureAlgorithm::Es256, public));
        (pair, keys)
    }

    /// A token with a low-S signature (what Signet hands out).
    fn mint(pair: &EcdsaKeyPair, claims: &Claims) -> String {
        let input = signing_input(SignatureAlgorithm::Es256, "k1", claims);
        let sig = pair
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        let low = signet_hsm::der::ecdsa_low_s(SignatureAlgorithm::Es256, sig.as_ref()).unwrap();
        assemble(&input, &low)
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "https://issuer".into(),
            sub: "alice".into(),
            aud: "api".into(),
            exp: now + 60,
            iat: now,
            nbf: now,
            jti: "j".into(),
            scope: None,
            client_id: None,
            cnf: None,
        }
    }

    #[test]
    fn registered_claims_are_enforced() {
        let (pair, keys) = setup();
        let now = 1_800_000_000;
        let run = |c: &Claims, aud: Option<&str>| {
            check(
                &parse(&mint(&pair, c)).unwrap(),
                &keys,
                "https://issuer",
                aud,
                now,
            )
        };
        assert!(run(&claims(now), Some("api")).is_ok());
        let mut c = claims(now);
        c.nbf = now + 120;
        assert_eq!(run(&c, None).unwrap_err(), Inactive::NotYetValid);
        c.nbf = now + 20; // within the leeway
        assert!(run(&c, None).is_ok());
        let mut c = claims(now);
        c.exp = now;
        assert_eq!(run(&c, None).unwrap_err().to_string(), "expired");
        let mut c = claims(now);
        c.iss = "https://evil".into();
        assert!(run(&c, None).unwrap_err().to_string().contains("issuer"));
        assert!(run(&claims(now), Some("other"))
            .unwrap_err()
            .to_string()
            .contains("audience"));
    }

    #[test]
    fn the_high_s_twin_of_a_valid_signature_is_refused() {
        let (pair, keys) = setup();
        let now = 1_800_000_000;
        let token = mint(&pair, &claims(now));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        // s' = n - s: mathematically valid too, but a second encoding of the same token.
        let order = hex::decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551")
            .unwrap();
        let mut s = sig[32..].to_vec();
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = i16::from(order[i]) - i16::from(s[i]) - borrow;
            borrow = 0;
            if d < 0 {
                d += 256;
                borrow = 1;
            }
            s[i] = d as u8;
        }
        let twin = assemble(input, &[&sig[..32], &s].concat());
        // ring itself accepts the twin …
        let (_, (_, public)) = keys.iter().next().unwrap();
        assert!(signet_hsm::verify::verify(
            public,
            SignatureAlgorithm::Es256,
            signet_hsm::SignInput::Message(input.as_bytes()),
            &[&sig[..32], &s].concat(),
            signet_hsm::EcdsaFormat::Raw
        )
        .unwrap());
        // … the token check does not.
        assert_eq!(
            check(&parse(&twin).unwrap(), &keys, "https://issuer", None, now).unwrap_err(),
            Inactive::BadSignature
        );
        assert!(check(&parse(&token).unwrap(), &keys, "https://issuer", None, now).is_ok());
    }
}
