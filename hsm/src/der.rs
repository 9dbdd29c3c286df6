//! The DER the boundary needs — SubjectPublicKeyInfo for the key families, the EC parameters
//! and points PKCS#11 speaks, and ECDSA signatures (DER or `r || s`, low-S) — through the
//! RustCrypto crates already in the tree: `der`, `spki`, `pkcs1`, and `p256`/`p384` for the
//! signatures' scalar arithmetic. Certificates and CSRs are the PKI crate's.

use ::der::asn1::{AnyRef, BitStringRef, ObjectIdentifier, OctetStringRef, PrintableStringRef};
use ::der::{Decode, Encode};

use crate::error::{Error, Result};
use crate::spec::{KeySpec, SignatureAlgorithm};

/// The object identifiers used in keys.
pub(crate) mod oid {
    use ::der::asn1::ObjectIdentifier as Oid;

    /// id-ecPublicKey
    pub const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    /// prime256v1
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    /// secp384r1
    pub const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
    /// id-Ed25519
    pub const ED25519: Oid = Oid::new_unwrap("1.3.101.112");
    /// rsaEncryption
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    /// id-ml-dsa-44 (FIPS 204; RFC 9881 for X.509)
    pub const ML_DSA_44: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.17");
    /// id-ml-dsa-65
    pub const ML_DSA_65: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.18");
    /// id-ml-dsa-87
    pub const ML_DSA_87: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.19");
    /// id-slh-dsa-sha2-128s (FIPS 205; RFC 9909 for X.509)
    pub const SLH_DSA_SHA2_128S: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.20");
    /// id-slh-dsa-sha2-128f
    pub const SLH_DSA_SHA2_128F: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.3.21");
}

fn encoding(e: ::der::Error) -> Error {
    Error::Malformed(format!("DER: {e}"))
}

/// The curve OID of an EC or Edwards spec.
fn curve(spec: KeySpec) -> Option<ObjectIdentifier> {
    match spec {
        KeySpec::EcP256 => Some(oid::P256),
        KeySpec::EcP384 => Some(oid::P384),
        KeySpec::Ed25519 => Some(oid::ED25519),
        _ => None,
    }
}

/// `CKA_EC_PARAMS` of an EC or Edwards spec: its curve's OID, DER.
pub(crate) fn ec_params(spec: KeySpec) -> Option<Vec<u8>> {
    curve(spec).and_then(|oid| oid.to_der().ok())
}

/// The spec a token's `CKA_EC_PARAMS` names: a curve OID, or the PrintableString
/// `edwards25519` that PKCS#11 3.0 also allows for Ed25519.
pub(crate) fn spec_of_ec_params(params: &[u8]) -> Option<KeySpec> {
    if let Ok(oid) = ObjectIdentifier::from_der(params) {
        return [KeySpec::EcP256, KeySpec::EcP384, KeySpec::Ed25519]
            .into_iter()
            .find(|spec| curve(*spec) == Some(oid));
    }
    PrintableStringRef::from_der(params)
        .ok()
        .filter(|name| name.as_str() == "edwards25519")
        .map(|_| KeySpec::Ed25519)
}

/// An OCTET STRING around `bytes` (`CKA_EC_POINT` as PKCS#11 has it).
pub(crate) fn octet_string(bytes: &[u8]) -> Result<Vec<u8>> {
    OctetStringRef::new(bytes)
        .and_then(|o| o.to_der())
        .map_err(encoding)
}

/// The content of a DER OCTET STRING that is the whole of `der`, if it is one.
pub(crate) fn read_octet_string(der: &[u8]) -> Option<&[u8]> {
    OctetStringRef::from_der(der).ok().map(|o| o.as_bytes())
}

/// PKCS#1 `RSAPublicKey` from the big-endian modulus and exponent.
pub(crate) fn rsa_public_key(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>> {
    let key = pkcs1::RsaPublicKey {
        modulus: pkcs1::UintRef::new(modulus).map_err(encoding)?,
        public_exponent: pkcs1::UintRef::new(exponent).map_err(encoding)?,
    };
    key.to_der().map_err(encoding)
}

/// SubjectPublicKeyInfo of a spec's `subjectPublicKey` bytes: id-ecPublicKey with the curve,
/// the bare OID for Ed25519, ML-DSA and SLH-DSA (RFC 8410, RFC 9881, RFC 9909: no
/// parameters), rsaEncryption with NULL.
pub(crate) fn spki(spec: KeySpec, subject_public_key: &[u8]) -> Result<Vec<u8>> {
    let curve_oid = curve(spec);
    let (algorithm, parameters) = match spec {
        KeySpec::EcP256 | KeySpec::EcP384 => {
            (oid::EC_PUBLIC_KEY, curve_oid.as_ref().map(AnyRef::from))
        }
        KeySpec::Ed25519 => (oid::ED25519, None),
        KeySpec::MlDsa44 => (oid::ML_DSA_44, None),
        KeySpec::MlDsa65 => (oid::ML_DSA_65, None),
        KeySpec::MlDsa87 => (oid::ML_DSA_87, None),
        KeySpec::SlhDsaSha2_128s => (oid::SLH_DSA_SHA2_128S, None),
        KeySpec::SlhDsaSha2_128f => (oid::SLH_DSA_SHA2_128F, None),
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            (oid::RSA_ENCRYPTION, Some(AnyRef::NULL))
        }
    };
    spki::SubjectPublicKeyInfoRef {
        algorithm: spki::AlgorithmIdentifierRef {
            oid: algorithm,
            parameters,
        },
        subject_public_key: BitStringRef::from_bytes(subject_public_key).map_err(encoding)?,
    }
    .to_der()
    .map_err(encoding)
}

/// An ECDSA signature on P-256 or P-384, told apart by its field length.
enum EcdsaSignature {
    P256(p256::ecdsa::Signature),
    P384(p384::ecdsa::Signature),
}

impl EcdsaSignature {
    fn field_len(algorithm: SignatureAlgorithm) -> Result<usize> {
        match algorithm {
            SignatureAlgorithm::Es256 => Ok(32),
            SignatureAlgorithm::Es384 => Ok(48),
            other => Err(Error::Malformed(format!("{other} is not ECDSA"))),
        }
    }

    /// From raw `r || s` (both in 1..n).
    fn from_raw(raw: &[u8]) -> Result<Self> {
        let bad = |_| Error::Malformed("ECDSA signature with r or s out of range".into());
        match raw.len() {
            64 => p256::ecdsa::Signature::from_slice(raw)
                .map(Self::P256)
                .map_err(bad),
            96 => p384::ecdsa::Signature::from_slice(raw)
                .map(Self::P384)
                .map_err(bad),
            n => Err(Error::Malformed(format!(
                "ECDSA signature of {n} bytes (64 for P-256, 96 for P-384)"
            ))),
        }
    }

    fn raw(&self) -> Vec<u8> {
        match self {
            Self::P256(sig) => sig.to_vec(),
            Self::P384(sig) => sig.to_vec(),
        }
    }

    /// The low-S twin, or `None` when `s` is low already.
    fn normalize_s(&self) -> Option<Self> {
        match self {
            Self::P256(sig) => sig.normalize_s().map(Self::P256),
            Self::P384(sig) => sig.normalize_s().map(Self::P384),
        }
    }
}

/// Converts a raw `r || s` ECDSA signature (P-256 or P-384) to the DER `ECDSA-Sig-Value` used
/// by X.509 and TLS.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>> {
    Ok(match EcdsaSignature::from_raw(raw)? {
        EcdsaSignature::P256(sig) => sig.to_der().as_bytes().to_vec(),
        EcdsaSignature::P384(sig) => sig.to_der().as_bytes().to_vec(),
    })
}

/// Converts a DER `ECDSA-Sig-Value` to raw `r || s`, each `field_len` bytes (32 for P-256, 48
/// for P-384).
pub fn ecdsa_der_to_raw(der: &[u8], field_len: usize) -> Result<Vec<u8>> {
    let bad = |_| Error::Malformed("ECDSA signature is not a DER ECDSA-Sig-Value".into());
    match field_len {
        32 => p256::ecdsa::Signature::from_der(der)
            .map(|s| s.to_vec())
            .map_err(bad),
        48 => p384::ecdsa::Signature::from_der(der)
            .map(|s| s.to_vec())
            .map_err(bad),
        n => Err(Error::Malformed(format!(
            "no ECDSA curve with {n}-byte fields"
        ))),
    }
}

/// Whether `s` of a raw ECDSA signature is at most half the group order (the low-S form).
/// False for anything that is not a valid raw signature of the algorithm's size.
pub fn ecdsa_is_low_s(algorithm: SignatureAlgorithm, raw: &[u8]) -> bool {
    EcdsaSignature::field_len(algorithm).is_ok_and(|field| raw.len() == 2 * field)
        && EcdsaSignature::from_raw(raw).is_ok_and(|sig| sig.normalize_s().is_none())
}

/// The low-S form of a raw ECDSA signature: `s` replaced by `n - s` when it is above half the
/// group order. Both forms verify; Signet hands out only this one.
pub fn ecdsa_low_s(algorithm: SignatureAlgorithm, raw: &[u8]) -> Result<Vec<u8>> {
    let field = EcdsaSignature::field_len(algorithm)?;
    if raw.len() != 2 * field {
        return Err(Error::Malformed(format!(
            "{algorithm} signature of {} bytes",
            raw.len()
        )));
    }
    let sig = EcdsaSignature::from_raw(raw)?;
    Ok(sig.normalize_s().unwrap_or(sig).raw())
}

/// RSASSA-PKCS1-v1_5's DigestInfo (RFC 8017 §9.2 step 2), encoded by `der`.
#[derive(der::Sequence)]
struct DigestInfo<'a> {
    algorithm: spki::AlgorithmIdentifierRef<'a>,
    digest: der::asn1::OctetStringRef<'a>,
}

/// The DER DigestInfo of a precomputed `digest` made with `hash` (what RSASSA-PKCS1-v1_5 pads
/// and signs: `T` in RFC 8017 §9.2); the hash's OID is the `sha2` crate's.
pub(crate) fn rsa_digest_info(hash: crate::spec::Hash, digest: &[u8]) -> Result<Vec<u8>> {
    use der::Encode;
    let oid = hash.oid();
    let info = DigestInfo {
        algorithm: spki::AlgorithmIdentifierRef {
            oid,
            parameters: Some(der::AnyRef::NULL),
        },
        digest: der::asn1::OctetStringRef::new(digest)
            .map_err(|_| Error::Malformed("a digest too long to encode".into()))?,
    };
    info.to_der()
        .map_err(|e| Error::Malformed(format!("encoding a DigestInfo: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The DigestInfo encodings are RFC 8017's (the headers of §9.2 note 1, then the digest),
    /// byte for byte.
    #[test]
    fn digest_infos_are_rfc_8017s() {
        use crate::spec::Hash;
        let expected = |oid_last: u8, len: u8, digest: &[u8]| {
            let mut h = vec![0x30, len + 0x11, 0x30, 0x0d, 0x06, 0x09];
            h.extend_from_slice(&[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, oid_last]);
            h.extend_from_slice(&[0x05, 0x00, 0x04, len]);
            h.extend_from_slice(digest);
            h
        };
        for (hash, last, len) in [
            (Hash::Sha256, 1, 0x20u8),
            (Hash::Sha384, 2, 0x30),
            (Hash::Sha512, 3, 0x40),
        ] {
            let digest: Vec<u8> = (0..len).collect();
            assert_eq!(
                rsa_digest_info(hash, &digest).unwrap(),
                expected(last, len, &digest),
                "{hash:?}"
            );
        }
    }

    /// n - 1 for P-256, the highest valid s.
    const P256_ORDER_MINUS_ONE: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x50,
    ];
    /// floor(n / 2) for P-384: the highest low s.
    const P384_HALF_ORDER: [u8; 48] = [
        0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe3, 0xb1, 0xa6, 0xc0, 0xfa, 0x1b,
        0x96, 0xef, 0xac, 0x0d, 0x06, 0xd9, 0x24, 0x58, 0x53, 0xbd, 0x76, 0x76, 0x0c, 0xb5, 0x66,
        0x62, 0x94, 0xb9,
    ];

    #[test]
    fn ecdsa_conversion_round_trips_with_high_bits_and_leading_zeros() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a 0x00 pad
        raw[34] = 0x7f; // s starts with zeros
        raw[63] = 1;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(der[0], 0x30);
        // SEQUENCE { INTEGER 00 80 …, INTEGER 7f … } : r padded, s trimmed.
        assert_eq!(&der[2..5], &[0x02, 0x21, 0x00]);
        assert_eq!(ecdsa_der_to_raw(&der, 32).unwrap(), raw);
        let p384 = [vec![0x42; 48], vec![0x01; 48]].concat();
        assert_eq!(
            ecdsa_der_to_raw(&ecdsa_raw_to_der(&p384).unwrap(), 48).unwrap(),
            p384
        );
    }

    #[test]
    fn public_key_structures_are_what_openssl_writes() {
        // `openssl pkey -pubout -outform DER` of an Ed25519 key starts with these 12 bytes.
        let ed = spki(KeySpec::Ed25519, &[9u8; 32]).unwrap();
        assert_eq!(
            &ed[..12],
            &[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]
        );
        let params = ec_params(KeySpec::EcP384).unwrap();
        assert_eq!(params, [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]);
        assert_eq!(spec_of_ec_params(&params), Some(KeySpec::EcP384));
        assert_eq!(
            spec_of_ec_params(&[
                0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9'
            ]),
            Some(KeySpec::Ed25519)
        );
        assert_eq!(spec_of_ec_params(&[0x06, 0x03, 0x2b, 0x65, 0x71]), None); // Ed448
        let long = octet_string(&[0xaa; 300]).unwrap();
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(read_octet_string(&long).map(<[u8]>::len), Some(300));
        assert_eq!(read_octet_string(&long[..long.len() - 1]), None);
        // A modulus with its top bit set gets its 0x00 pad; a leading zero of the input goes.
        let rsa = rsa_public_key(&[0x00, 0xc0, 0x01], &[0x01, 0x00, 0x01]).unwrap();
        assert_eq!(
            rsa,
            [0x30, 0x0a, 0x02, 0x03, 0x00, 0xc0, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01]
        );
    }

    #[test]
    fn high_s_is_folded_to_low_s() {
        let alg = SignatureAlgorithm::Es256;
        // s = n - 1 is high; its twin is 1.
        let raw = [vec![0x11u8; 32], P256_ORDER_MINUS_ONE.to_vec()].concat();
        assert!(!ecdsa_is_low_s(alg, &raw));
        let low = ecdsa_low_s(alg, &raw).unwrap();
        assert_eq!(&low[..32], &raw[..32]);
        assert_eq!(low[63], 1);
        assert!(low[32..63].iter().all(|b| *b == 0));
        assert!(ecdsa_is_low_s(alg, &low));
        assert_eq!(ecdsa_low_s(alg, &low).unwrap(), low);
        // Exactly half the order (rounded down) is low; one more is high.
        let es384 = SignatureAlgorithm::Es384;
        let sig = [vec![1u8; 48], P384_HALF_ORDER.to_vec()].concat();
        assert!(ecdsa_is_low_s(es384, &sig));
        let mut above = P384_HALF_ORDER;
        above[47] += 1;
        assert!(!ecdsa_is_low_s(
            es384,
            &[vec![1u8; 48], above.to_vec()].concat()
        ));
        assert!(ecdsa_low_s(alg, &[0u8; 10]).is_err());
        // s = n is no signature at all.
        let mut n = P256_ORDER_MINUS_ONE;
        n[31] += 1;
        assert!(ecdsa_low_s(alg, &[vec![0x11u8; 32], n.to_vec()].concat()).is_err());
        assert!(!ecdsa_is_low_s(
            alg,
            &[vec![0x11u8; 32], n.to_vec()].concat()
        ));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(ecdsa_der_to_raw(&[0x30, 0x05, 0x02], 32).is_err());
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
        assert!(ecdsa_der_to_raw(&[0x30, 0x00], 66).is_err());
    }
}
