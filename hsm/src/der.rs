//! The little DER that the boundary needs: SubjectPublicKeyInfo for the key families and
//! ECDSA signature conversion. Everything else (certificates, CSRs) is left to the PKI crate's
//! libraries.

use crate::error::{Error, Result};
use crate::spec::SignatureAlgorithm;

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// DER encodings of the object identifiers used in keys (tag and length included).
pub(crate) mod oid {
    /// id-ecPublicKey 1.2.840.10045.2.1
    pub const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// prime256v1 1.2.840.10045.3.1.7
    pub const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// secp384r1 1.3.132.0.34
    pub const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    /// id-Ed25519 1.3.101.112
    pub const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
    /// rsaEncryption 1.2.840.113549.1.1.1
    pub const RSA_ENCRYPTION: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    /// id-ml-dsa-44 2.16.840.1.101.3.4.3.17 (FIPS 204; RFC 9881 for X.509)
    pub const ML_DSA_44: &[u8] = &[
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x11,
    ];
    /// id-ml-dsa-65 2.16.840.1.101.3.4.3.18
    pub const ML_DSA_65: &[u8] = &[
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x12,
    ];
    /// id-ml-dsa-87 2.16.840.1.101.3.4.3.19
    pub const ML_DSA_87: &[u8] = &[
        0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x13,
    ];
}

/// One tag-length-value.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes.
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed = {
        let skip = magnitude.iter().take_while(|b| **b == 0).count();
        &magnitude[skip.min(magnitude.len().saturating_sub(1))..]
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.is_empty() || trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(TAG_INTEGER, &content)
}

pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &parts.concat())
}

pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0); // no unused bits
    content.extend_from_slice(bytes);
    tlv(TAG_BIT_STRING, &content)
}

/// Reads one TLV at the start of `input`: (tag, content, rest).
pub(crate) fn read_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let bad = || Error::Malformed("truncated or invalid DER".into());
    let (&tag, rest) = input.split_first().ok_or_else(bad)?;
    let (&first, rest) = rest.split_first().ok_or_else(bad)?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(bad());
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Converts a raw `r || s` ECDSA signature to the DER `ECDSA-Sig-Value` used by X.509 and TLS.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return Err(Error::Malformed(format!(
            "ECDSA signature of odd length {}",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Ok(sequence(&[&unsigned_integer(r), &unsigned_integer(s)]))
}

/// Converts a DER `ECDSA-Sig-Value` to raw `r || s`, each padded to `field_len` bytes.
pub fn ecdsa_der_to_raw(der: &[u8], field_len: usize) -> Result<Vec<u8>> {
    let (tag, body, rest) = read_tlv(der)?;
    if tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(Error::Malformed(
            "ECDSA signature is not a DER SEQUENCE".into(),
        ));
    }
    let mut out = Vec::with_capacity(field_len * 2);
    let mut cursor = body;
    for _ in 0..2 {
        let (tag, int, rest) = read_tlv(cursor)?;
        if tag != TAG_INTEGER {
            return Err(Error::Malformed(
                "ECDSA signature component is not an INTEGER".into(),
            ));
        }
        let skip = int.iter().take_while(|b| **b == 0).count();
        let magnitude = &int[skip..];
        if magnitude.len() > field_len {
            return Err(Error::Malformed(
                "ECDSA signature component too long".into(),
            ));
        }
        out.extend(std::iter::repeat_n(0u8, field_len - magnitude.len()));
        out.extend_from_slice(magnitude);
        cursor = rest;
    }
    if !cursor.is_empty() {
        return Err(Error::Malformed("trailing data in ECDSA signature".into()));
    }
    Ok(out)
}

/// The group orders of the ECDSA curves, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
const P384_ORDER: [u8; 48] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73,
];

fn curve_order(algorithm: SignatureAlgorithm) -> Option<&'static [u8]> {
    match algorithm {
        SignatureAlgorithm::Es256 => Some(&P256_ORDER),
        SignatureAlgorithm::Es384 => Some(&P384_ORDER),
        _ => None,
    }
}

/// `a - b` for big-endian numbers of equal length with `a >= b`.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        out[i] = d as u8;
    }
    out
}

/// Whether `s` of a raw ECDSA signature is at most half the group order (the low-S form).
/// False for anything that is not a raw signature of the algorithm's size.
pub fn ecdsa_is_low_s(algorithm: SignatureAlgorithm, raw: &[u8]) -> bool {
    let Some(order) = curve_order(algorithm) else {
        return false;
    };
    if raw.len() != order.len() * 2 {
        return false;
    }
    let s = &raw[order.len()..];
    // s <= n/2  <=>  2s <= n  <=>  s <= n - s.
    s < order && s <= sub_be(order, s).as_slice()
}

/// The low-S form of a raw ECDSA signature: `s` replaced by `n - s` when it is above half the
/// group order. Both forms verify; Signet hands out only this one.
pub fn ecdsa_low_s(algorithm: SignatureAlgorithm, raw: &[u8]) -> Result<Vec<u8>> {
    let order = curve_order(algorithm)
        .ok_or_else(|| Error::Malformed(format!("{algorithm} is not ECDSA")))?;
    if raw.len() != order.len() * 2 {
        return Err(Error::Malformed(format!(
            "{algorithm} signature of {} bytes",
            raw.len()
        )));
    }
    if ecdsa_is_low_s(algorithm, raw) {
        return Ok(raw.to_vec());
    }
    let (r, s) = raw.split_at(order.len());
    if s >= order {
        return Err(Error::Malformed(
            "ECDSA s is not below the group order".into(),
        ));
    }
    Ok([r, &sub_be(order, s)].concat())
}

/// DigestInfo prefixes for RSASSA-PKCS1-v1_5 over a precomputed digest (RFC 8017 §9.2 note 1).
pub(crate) fn rsa_digest_info_prefix(hash: crate::spec::Hash) -> &'static [u8] {
    use crate::spec::Hash;
    match hash {
        Hash::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        Hash::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        Hash::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_conversion_round_trips_with_high_bits_and_leading_zeros() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a 0x00 pad
        raw[32] = 0x00; // s starts with zeros
        raw[33] = 0x00;
        raw[34] = 0x7f;
        raw[63] = 1;
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(der[0], TAG_SEQUENCE);
        assert_eq!(ecdsa_der_to_raw(&der, 32).unwrap(), raw);
    }

    #[test]
    fn long_lengths_are_encoded_in_long_form() {
        let content = vec![0xaa; 300];
        let enc = tlv(TAG_OCTET_STRING, &content);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let (tag, body, rest) = read_tlv(&enc).unwrap();
        assert_eq!((tag, body.len(), rest.len()), (0x04, 300, 0));
        let _ = TAG_NULL;
    }

    #[test]
    fn high_s_is_folded_to_low_s() {
        let alg = SignatureAlgorithm::Es256;
        // s = n - 1 is high; its twin is 1.
        let mut raw = vec![0x11u8; 32];
        raw.extend_from_slice(&sub_be(&P256_ORDER, &{
            let mut one = [0u8; 32];
            one[31] = 1;
            one
        }));
        assert!(!ecdsa_is_low_s(alg, &raw));
        let low = ecdsa_low_s(alg, &raw).unwrap();
        assert_eq!(&low[..32], &raw[..32]);
        assert_eq!(low[63], 1);
        assert!(low[32..63].iter().all(|b| *b == 0));
        assert!(ecdsa_is_low_s(alg, &low));
        assert_eq!(ecdsa_low_s(alg, &low).unwrap(), low);
        // Exactly half the order (rounded down) is low; one more is high.
        let half: Vec<u8> = {
            let mut h = P384_ORDER.to_vec();
            let mut carry = 0u8;
            for b in h.iter_mut() {
                let next = *b & 1;
                *b = (*b >> 1) | (carry << 7);
                carry = next;
            }
            h
        };
        let sig = [vec![1u8; 48], half.clone()].concat();
        assert!(ecdsa_is_low_s(SignatureAlgorithm::Es384, &sig));
        let mut above = half;
        above[47] += 1;
        assert!(!ecdsa_is_low_s(
            SignatureAlgorithm::Es384,
            &[vec![1u8; 48], above].concat()
        ));
        assert!(ecdsa_low_s(alg, &[0u8; 10]).is_err());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(ecdsa_der_to_raw(&[0x30, 0x05, 0x02], 32).is_err());
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
    }
}
