//! Public keys from JWKs (EC P-256/P-384, OKP Ed25519, RSA, AKP ML-DSA), for offline verification against
//! a published JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use signet_hsm::{KeySpec, PublicKey, SignatureAlgorithm};

use super::jwt::VerificationKeys;

/// Why a JWK was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadJwk(pub String);

/// A public key from a JWK.
pub fn public_from_jwk(jwk: &Value) -> Result<PublicKey, BadJwk> {
    let field = |name: &str| -> Result<Vec<u8>, BadJwk> {
        let text = jwk[name]
            .as_str()
            .ok_or_else(|| BadJwk(format!("JWK without {name}")))?;
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| BadJwk(format!("JWK {name} is not base64url")))
    };
    let key = match (jwk["kty"].as_str(), jwk["crv"].as_str()) {
        (Some("EC"), Some(crv)) => {
            let spec = match crv {
                "P-256" => KeySpec::EcP256,
                "P-384" => KeySpec::EcP384,
                other => return Err(BadJwk(format!("unsupported curve {other}"))),
            };
            let mut point = vec![4u8];
            point.extend(field("x")?);
            point.extend(field("y")?);
            PublicKey::from_ec_point(spec, &point)
        }
        (Some("OKP"), Some("Ed25519")) => PublicKey::from_ec_point(KeySpec::Ed25519, &field("x")?),
        (Some("RSA"), _) => {
            let n = field("n")?;
            let spec = match n.iter().skip_while(|b| **b == 0).count() * 8 {
                2048 => KeySpec::Rsa2048,
                3072 => KeySpec::Rsa3072,
                4096 => KeySpec::Rsa4096,
                b => return Err(BadJwk(format!("unsupported RSA size {b}"))),
            };
            PublicKey::from_rsa(spec, n, field("e")?)
        }
        (Some("AKP"), _) => {
            // draft-ietf-cose-dilithium: the algorithm names the parameter set.
            let spec = match jwk["alg"].as_str() {
                Some("ML-DSA-44") => KeySpec::MlDsa44,
                Some("ML-DSA-65") => KeySpec::MlDsa65,
                Some("ML-DSA-87") => KeySpec::MlDsa87,
                Some(other) => return Err(BadJwk(format!("unsupported AKP algorithm {other}"))),
                None => return Err(BadJwk("AKP JWK without alg".into())),
            };
            PublicKey::from_ml_dsa(spec, &field("pub")?)
        }
        _ => return Err(BadJwk("unsupported JWK".into())),
    };
    key.map_err(|e| BadJwk(e.to_string()))
}

/// The verification keys of a JWKS document: every entry with a `kid` and an `alg`.
pub fn keys_from_jwks(jwks: &Value) -> Result<VerificationKeys, BadJwk> {
    let mut keys = VerificationKeys::new();
    for jwk in jwks["keys"]
        .as_array()
        .ok_or_else(|| BadJwk("the JWKS has no keys array".into()))?
    {
        let (Some(kid), Some(alg)) = (jwk["kid"].as_str(), jwk["alg"].as_str()) else {
            continue;
        };
        let alg: SignatureAlgorithm = alg.parse().map_err(|e| BadJwk(format!("{e}")))?;
        keys.insert(kid.to_string(), (alg, public_from_jwk(jwk)?));
    }
    Ok(keys)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwks_round_trip_and_garbage_is_refused() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let key = PublicKey::from_ec_point(KeySpec::EcP256, &point).unwrap();
        let mut jwk = key.jwk();
        jwk["kid"] = "k".into();
        jwk["alg"] = "ES256".into();
        let keys = keys_from_jwks(&json!({ "keys": [jwk] })).unwrap();
        assert_eq!(keys["k"].1, key);
        assert!(public_from_jwk(&json!({"kty": "EC", "crv": "P-521"})).is_err());
        assert!(keys_from_jwks(&json!({})).is_err());
    }
}
