//! Public keys read from the token, as SubjectPublicKeyInfo (DER/PEM; RFC 9881 for ML-DSA) and
//! JWK (RFC 7517, RFC 8037, and the JOSE `AKP` key type for ML-DSA).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::der;
use crate::error::{Error, Result};
use crate::spec::KeySpec;

/// A public key with the spec it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    spec: KeySpec,
    material: Material,
    /// Its SubjectPublicKeyInfo, DER (encoded once, when the key is read).
    spki: Vec<u8>,
    /// The length of the subjectPublicKey bytes, which end the SubjectPublicKeyInfo (the BIT
    /// STRING is its last field).
    key_len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Material {
    /// Uncompressed SEC1 point (0x04 || X || Y).
    Ec(Vec<u8>),
    /// 32-byte Ed25519 public key.
    Ed25519(Vec<u8>),
    /// Big-endian modulus and public exponent.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// The FIPS 204 encoded ML-DSA public key (pkEncode: rho || t1).
    MlDsa(Vec<u8>),
    /// The FIPS 205 SLH-DSA public key (PK.seed || PK.root).
    SlhDsa(Vec<u8>),
}

/// The SLH-DSA parameter set of a spec (`None` for any other).
pub(crate) fn slh_dsa_parameter_set(spec: KeySpec) -> Option<signet_mldsa::slh::ParameterSet> {
    use signet_mldsa::slh::ParameterSet;
    match spec {
        KeySpec::SlhDsaSha2_128s => Some(ParameterSet::Sha2_128s),
        KeySpec::SlhDsaSha2_128f => Some(ParameterSet::Sha2_128f),
        _ => None,
    }
}

/// The length of an encoded ML-DSA public key (FIPS 204, table 2).
pub(crate) fn ml_dsa_public_len(spec: KeySpec) -> Option<usize> {
    match spec {
        KeySpec::MlDsa44 => Some(1312),
        KeySpec::MlDsa65 => Some(1952),
        KeySpec::MlDsa87 => Some(2592),
        _ => None,
    }
}

impl PublicKey {
    /// An EC or Ed25519 key from the token's `CKA_EC_POINT`, which PKCS#11 says is a DER OCTET
    /// STRING but some tokens return bare.
    pub fn from_ec_point(spec: KeySpec, ec_point: &[u8]) -> Result<Self> {
        let expected = match spec {
            KeySpec::EcP256 => 65,
            KeySpec::EcP384 => 97,
            KeySpec::Ed25519 => 32,
            _ => return Err(Error::Malformed(format!("{spec} has no EC point"))),
        };
        let point = if ec_point.len() == expected {
            ec_point.to_vec()
        } else {
            match der::read_octet_string(ec_point) {
                Some(body) if body.len() == expected => body.to_vec(),
                _ => {
                    return Err(Error::Malformed(format!(
                        "CKA_EC_POINT of {} bytes for a {spec} key",
                        ec_point.len()
                    )))
                }
            }
        };
        if spec != KeySpec::Ed25519 && point[0] != 0x04 {
            return Err(Error::Malformed("EC point is not uncompressed".into()));
        }
        let material = if spec == KeySpec::Ed25519 {
            Material::Ed25519(point)
        } else {
            Material::Ec(point)
        };
        PublicKey::new(spec, material)
    }

    fn new(spec: KeySpec, material: Material) -> Result<Self> {
        let key = match &material {
            Material::Ec(point) => point.clone(),
            Material::Ed25519(key) | Material::MlDsa(key) | Material::SlhDsa(key) => key.clone(),
            Material::Rsa { modulus, exponent } => der::rsa_public_key(modulus, exponent)?,
        };
        Ok(PublicKey {
            spec,
            material,
            spki: der::spki(spec, &key)?,
            key_len: key.len(),
        })
    }

    /// An RSA key from its modulus and public exponent (big-endian).
    pub fn from_rsa(spec: KeySpec, modulus: Vec<u8>, exponent: Vec<u8>) -> Result<Self> {
        let bits = spec
            .rsa_bits()
            .ok_or_else(|| Error::Malformed(format!("{spec} is not RSA")))?;
        let skip = modulus.iter().take_while(|b| **b == 0).count();
        let modulus = modulus[skip..].to_vec();
        if modulus.len() * 8 != bits as usize {
            return Err(Error::Malformed(format!(
                "RSA modulus of {} bits for a {spec} key",
                modulus.len() * 8
            )));
        }
        PublicKey::new(spec, Material::Rsa { modulus, exponent })
    }

    /// An ML-DSA key from its FIPS 204 encoding (the token's `CKA_VALUE`).
    pub fn from_ml_dsa(spec: KeySpec, encoded: &[u8]) -> Result<Self> {
        let expected = ml_dsa_public_len(spec)
            .ok_or_else(|| Error::Malformed(format!("{spec} is not ML-DSA")))?;
        if encoded.len() != expected {
            return Err(Error::Malformed(format!(
                "an ML-DSA public key of {} bytes for a {spec} key ({expected} expected)",
                encoded.len()
            )));
        }
        PublicKey::new(spec, Material::MlDsa(encoded.to_vec()))
    }

    /// An SLH-DSA key from its FIPS 205 encoding (the token's `CKA_VALUE`: PK.seed || PK.root).
    pub fn from_slh_dsa(spec: KeySpec, encoded: &[u8]) -> Result<Self> {
        let expected = slh_dsa_parameter_set(spec)
            .ok_or_else(|| Error::Malformed(format!("{spec} is not SLH-DSA")))?
            .public_key_len();
        if encoded.len() != expected {
            return Err(Error::Malformed(format!(
                "an SLH-DSA public key of {} bytes for a {spec} key ({expected} expected)",
                encoded.len()
            )));
        }
        PublicKey::new(spec, Material::SlhDsa(encoded.to_vec()))
    }

    /// The key's spec.
    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    /// The subjectPublicKey bytes: the SEC1 point, the Ed25519 key, PKCS#1 RSAPublicKey DER, or
    /// the encoded ML-DSA key.
    pub fn raw(&self) -> Vec<u8> {
        self.spki[self.spki.len() - self.key_len..].to_vec()
    }

    /// The modulus and public exponent of an RSA key (big-endian), `None` for other keys.
    pub fn rsa_parts(&self) -> Option<(&[u8], &[u8])> {
        match &self.material {
            Material::Rsa { modulus, exponent } => Some((modulus, exponent)),
            _ => None,
        }
    }

    /// SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    /// SubjectPublicKeyInfo, PEM (`PUBLIC KEY`).
    pub fn spki_pem(&self) -> String {
        pem::encode_config(
            &pem::Pem::new("PUBLIC KEY", self.spki_der()),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    }

    /// The JWK curve name and the X and Y coordinates of an uncompressed point.
    fn ec_parts<'a>(&self, point: &'a [u8]) -> (&'static str, &'a [u8], &'a [u8]) {
        let coord = (point.len() - 1) / 2;
        let crv = if self.spec == KeySpec::EcP256 {
            "P-256"
        } else {
            "P-384"
        };
        (crv, &point[1..1 + coord], &point[1 + coord..])
    }

    /// The public JWK (RFC 7517 / RFC 8037), without `kid` or `use`; without `alg` but for
    /// ML-DSA and SLH-DSA, whose `AKP` key type (draft-ietf-cose-dilithium,
    /// draft-ietf-cose-sphincs-plus) carries it as a required member.
    pub fn jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.material {
            Material::Ec(point) => {
                let (crv, x, y) = self.ec_parts(point);
                json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)})
            }
            Material::Ed25519(key) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key)}),
            Material::Rsa { modulus, exponent } => {
                json!({"kty": "RSA", "n": b64(modulus), "e": b64(exponent)})
            }
            Material::MlDsa(key) | Material::SlhDsa(key) => json!({
                "kty": "AKP",
                "alg": self.spec.default_algorithm().name(),
                "pub": b64(key),
            }),
        }
    }

    /// RFC 7638 JWK thumbprint (SHA-256), base64url: the canonical `kid` of this key.
    pub fn jwk_thumbprint(&self) -> String {
        // RFC 7638: only the required members, in lexicographic order, no whitespace. Written out
        // rather than relying on a JSON map's ordering.
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let canonical = match &self.material {
            Material::Ec(point) => {
                let (crv, x, y) = self.ec_parts(point);
                format!(
                    r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                    b64(x),
                    b64(y)
                )
            }
            Material::Ed25519(key) => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(key))
            }
            Material::Rsa { modulus, exponent } => {
                format!(
                    r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                    b64(exponent),
                    b64(modulus)
                )
            }
            // The AKP thumbprint members: alg, kty, pub.
            Material::MlDsa(key) | Material::SlhDsa(key) => format!(
                r#"{{"alg":"{}","kty":"AKP","pub":"{}"}}"#,
                self.spec.default_algorithm().name(),
                b64(key)
            ),
        };
        b64(&crate::spec::Hash::Sha256.digest(canonical.as_bytes()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_and_bare_points_are_accepted() {
        let mut point = vec![0x04];
        point.extend([7u8; 64]);
        let bare = PublicKey::from_ec_point(KeySpec::EcP256, &point).unwrap();
        let wrapped =
            PublicKey::from_ec_point(KeySpec::EcP256, &der::octet_string(&point).unwrap()).unwrap();
        assert_eq!(bare, wrapped);
        assert!(PublicKey::from_ec_point(KeySpec::EcP384, &point).is_err());
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // The RSA key of RFC 7638 §3.1, whose thumbprint the RFC gives.
        let n = URL_SAFE_NO_PAD.decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw").unwrap();
        let key = PublicKey::from_rsa(KeySpec::Rsa2048, n, vec![1, 0, 1]).unwrap();
        assert_eq!(
            key.jwk_thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
