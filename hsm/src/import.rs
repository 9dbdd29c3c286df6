//! Private keys brought in from outside (bring your own key): the key material as a backend
//! needs it to create the key inside the device, read from PKCS#8 with the RustCrypto `pkcs8`,
//! `sec1` and `pkcs1` parsers. Every secret byte lives in a zeroizing buffer, wiped when the
//! material is dropped (right after the device has the key).

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::public::PublicKey;
use crate::spec::KeySpec;

/// A private key to create inside a device, with its public half.
pub struct KeyMaterial {
    spec: KeySpec,
    public: PublicKey,
    secret: Secret,
}

/// The private parts, per family (big-endian integers, as PKCS#11 wants them).
pub(crate) enum Secret {
    /// The private scalar of a P-256/P-384 key, padded to the field size.
    Ec(Zeroizing<Vec<u8>>),
    /// The 32-byte Ed25519 seed.
    Ed25519(Zeroizing<Vec<u8>>),
    /// The RSA private exponent, primes, CRT exponents and coefficient.
    Rsa(Box<RsaSecret>),
}

/// The private parts of an RSA key.
pub(crate) struct RsaSecret {
    pub d: Zeroizing<Vec<u8>>,
    pub p: Zeroizing<Vec<u8>>,
    pub q: Zeroizing<Vec<u8>>,
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub qinv: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("spec", &self.spec)
            .field("secret", &"<redacted>")
            .finish()
    }
}

const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const ID_P256: &str = "1.2.840.10045.3.1.7";
const ID_P384: &str = "1.3.132.0.34";
const ID_ED25519: &str = "1.3.101.112";
const ID_RSA: &str = "1.2.840.113549.1.1.1";

fn malformed(what: impl std::fmt::Display) -> Error {
    Error::Malformed(format!("the private key is not valid PKCS#8: {what}"))
}

/// Unsigned big-endian bytes without leading zeros.
fn unsigned(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    Zeroizing::new(bytes[skip..].to_vec())
}

impl KeyMaterial {
    /// Reads a PKCS#8 `PrivateKeyInfo` (DER): EC P-256/P-384, Ed25519 or RSA 2048/3072/4096.
    /// Anything else is refused with the reason, and an EC key whose embedded public key does
    /// not match its private scalar is refused as corrupted.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self> {
        use pkcs8::der::Decode;
        let info = pkcs8::PrivateKeyInfo::from_der(der).map_err(malformed)?;
        let algorithm = info.algorithm.oid.to_string();
        match algorithm.as_str() {
            ID_EC_PUBLIC_KEY => {
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .map_err(|_| malformed("an EC key without a named curve"))?
                    .to_string();
                let (spec, ring_alg, size) = match curve.as_str() {
                    ID_P256 => (
                        KeySpec::EcP256,
                        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                        32,
                    ),
                    ID_P384 => (
                        KeySpec::EcP384,
                        &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                        48,
                    ),
                    other => {
                        return Err(Error::Unsupported(format!(
                            "EC keys on curve {other} (Signet holds P-256 and P-384)"
                        )))
                    }
                };
                let ec = sec1::EcPrivateKey::try_from(info.private_key).map_err(malformed)?;
                if ec.public_key.is_none() {
                    return Err(Error::Unsupported(
                        "an EC private key stored without its public key (export it with the public key)"
                            .into(),
                    ));
                }
                if ec.private_key.len() > size {
                    return Err(malformed("an EC private scalar longer than its curve"));
                }
                let mut scalar = Zeroizing::new(vec![0u8; size]);
                scalar[size - ec.private_key.len()..].copy_from_slice(ec.private_key);
                // ring checks the scalar and the public point against each other (and derives
                // the point when the file leaves it out).
                let rng = ring::rand::SystemRandom::new();
                let pair = ring::signature::EcdsaKeyPair::from_pkcs8(ring_alg, der, &rng)
                    .map_err(|e| malformed(format!("the EC key does not check out ({e})")))?;
                use ring::signature::KeyPair;
                let public = PublicKey::from_ec_point(spec, pair.public_key().as_ref())?;
                Ok(KeyMaterial {
                    spec,
                    public,
                    secret: Secret::Ec(scalar),
                })
            }
            ID_ED25519 => {
                // CurvePrivateKey ::= OCTET STRING (the 32-byte seed), inside the outer one.
                let seed = pkcs8::der::asn1::OctetStringRef::from_der(info.private_key)
                    .map_err(malformed)?;
                if seed.as_bytes().len() != 32 {
                    return Err(malformed("an Ed25519 seed that is not 32 bytes"));
                }
                let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed.as_bytes())
                    .map_err(|e| malformed(format!("the Ed25519 seed ({e})")))?;
                use ring::signature::KeyPair;
                let public =
                    PublicKey::from_ec_point(KeySpec::Ed25519, pair.public_key().as_ref())?;
                Ok(KeyMaterial {
                    spec: KeySpec::Ed25519,
                    public,
                    secret: Secret::Ed25519(Zeroizing::new(seed.as_bytes().to_vec())),
                })
            }
            ID_RSA => {
                let rsa = pkcs1::RsaPrivateKey::try_from(info.private_key).map_err(malformed)?;
                if rsa.other_prime_infos.is_some() {
                    return Err(Error::Unsupported("multi-prime RSA keys".into()));
                }
                let modulus = unsigned(rsa.modulus.as_bytes());
                let spec = match modulus.len() * 8 {
                    2048 => KeySpec::Rsa2048,
                    3072 => KeySpec::Rsa3072,
                    4096 => KeySpec::Rsa4096,
                    other => {
                        return Err(Error::Unsupported(format!(
                            "RSA keys of {other} bits (Signet holds 2048, 3072 and 4096)"
                        )))
                    }
                };
                // ring checks the primes and exponents against each other.
                ring::rsa::KeyPair::from_pkcs8(der)
                    .map_err(|e| malformed(format!("the RSA key does not check out ({e})")))?;
                let public = PublicKey::from_rsa(
                    spec,
                    modulus.to_vec(),
                    unsigned(rsa.public_exponent.as_bytes()).to_vec(),
                )?;
                Ok(KeyMaterial {
                    spec,
                    public,
                    secret: Secret::Rsa(Box::new(RsaSecret {
                        d: unsigned(rsa.private_exponent.as_bytes()),
                        p: unsigned(rsa.prime1.as_bytes()),
                        q: unsigned(rsa.prime2.as_bytes()),
                        dp: unsigned(rsa.exponent1.as_bytes()),
                        dq: unsigned(rsa.exponent2.as_bytes()),
                        qinv: unsigned(rsa.coefficient.as_bytes()),
                    })),
                })
            }
            other => Err(Error::Unsupported(format!(
                "private keys of algorithm {other} (Signet holds EC P-256/P-384, Ed25519 and RSA)"
            ))),
        }
    }

    /// The key's spec.
    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ec_and_ed25519_keys_made_by_ring_are_read_with_their_public_keys() {
        let rng = ring::rand::SystemRandom::new();
        let doc = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            doc.as_ref(),
            &rng,
        )
        .unwrap();
        let material = KeyMaterial::from_pkcs8(doc.as_ref()).unwrap();
        assert_eq!(material.spec(), KeySpec::EcP256);
        use ring::signature::KeyPair;
        assert_eq!(material.public_key().raw(), pair.public_key().as_ref());
        assert!(!format!("{material:?}").contains("Ec("));

        let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let material = KeyMaterial::from_pkcs8(doc.as_ref()).unwrap();
        assert_eq!(material.spec(), KeySpec::Ed25519);
    }

    #[test]
    fn garbage_and_foreign_algorithms_are_refused_clearly() {
        let err = KeyMaterial::from_pkcs8(b"\x30\x03\x02\x01\x00").unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
    }
}
