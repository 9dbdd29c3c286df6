//! Checking a PIV key attestation (Yubico's scheme): the slot's attestation certificate is
//! signed by the card's attestation certificate (slot f9), which its maker's root signed. The
//! leaf carries what the card says of the key: firmware (OID 1.3.6.1.4.1.41482.3.3), serial
//! (.3.7) and PIN and touch policy (.3.8).

use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

/// What an attestation says of a key, and whether it was checked against a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AttestedOrigin {
    /// The card generated the key (an attestation exists only for keys it generated).
    pub generated_on_device: bool,
    /// The card's serial number.
    pub serial: Option<u32>,
    /// The card's firmware, `5.4.3`.
    pub firmware: Option<String>,
    /// `never`, `once` or `always`.
    pub pin_policy: Option<String>,
    /// `never`, `always` or `cached`.
    pub touch_policy: Option<String>,
    /// The subject of the configured root the chain verified against; `None` when no root is
    /// configured (the card's word alone).
    pub verified_by: Option<String>,
}

/// Why an attestation is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    /// A certificate does not parse.
    #[error("the {0} certificate does not parse")]
    Malformed(&'static str),
    /// The attested key is not the key asked about.
    #[error("the attestation is for another public key")]
    OtherKey,
    /// A signature in the chain does not verify, or no root signed the intermediate.
    #[error("the attestation does not chain to a configured attestation root: {0}")]
    Untrusted(String),
    /// A certificate in the chain is not valid now.
    #[error("the {0} certificate is not valid now")]
    Expired(&'static str),
}

fn parse<'a>(der: &'a [u8], what: &'static str) -> Result<X509Certificate<'a>, AttestationError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|_| AttestationError::Malformed(what))
}

/// Checks `certificate` (the key's) and `intermediate` (the card's) against `roots` (DER; none:
/// only the leaf's signature by the intermediate is checked) for the key whose
/// SubjectPublicKeyInfo is `spki`, and reads what the leaf says.
pub fn verify_attestation(
    certificate: &[u8],
    intermediate: &[u8],
    spki: &[u8],
    roots: &[Vec<u8>],
) -> Result<AttestedOrigin, AttestationError> {
    let leaf = parse(certificate, "attestation")?;
    let card = parse(intermediate, "device attestation")?;
    if leaf.public_key().raw != spki {
        return Err(AttestationError::OtherKey);
    }
    leaf.verify_signature(Some(card.public_key()))
        .map_err(|_| {
            AttestationError::Untrusted("the card's certificate did not sign it".into())
        })?;
    for (cert, what) in [(&leaf, "attestation"), (&card, "device attestation")] {
        if !cert.validity().is_valid() {
            return Err(AttestationError::Expired(what));
        }
    }
    let verified_by = if roots.is_empty() {
        None
    } else {
        let mut found = None;
        for der in roots {
            let root = parse(der, "root")?;
            if root.subject() == card.issuer()
                && root.validity().is_valid()
                && card.verify_signature(Some(root.public_key())).is_ok()
            {
                found = Some(root.subject().to_string());
                break;
            }
        }
        Some(found.ok_or_else(|| {
            AttestationError::Untrusted(format!(
                "no configured root signed the card's certificate (issuer {})",
                card.issuer()
            ))
        })?)
    };
    let mut origin = AttestedOrigin {
        generated_on_device: true,
        serial: None,
        firmware: None,
        pin_policy: None,
        touch_policy: None,
        verified_by,
    };
    for ext in leaf.extensions() {
        let value = ext.value;
        match ext.oid.to_id_string().as_str() {
            "1.3.6.1.4.1.41482.3.3" if value.len() == 3 => {
                origin.firmware = Some(format!("{}.{}.{}", value[0], value[1], value[2]));
            }
            "1.3.6.1.4.1.41482.3.7" => origin.serial = der_u32(value),
            "1.3.6.1.4.1.41482.3.8" if value.len() == 2 => {
                origin.pin_policy = Some(
                    match value[0] {
                        1 => "never",
                        2 => "once",
                        3 => "always",
                        _ => "unknown",
                    }
                    .into(),
                );
                origin.touch_policy = Some(
                    match value[1] {
                        1 => "never",
                        2 => "always",
                        3 => "cached",
                        _ => "unknown",
                    }
                    .into(),
                );
            }
            _ => {}
        }
    }
    Ok(origin)
}

/// A DER INTEGER of at most 32 bits, unsigned.
fn der_u32(der: &[u8]) -> Option<u32> {
    let [0x02, len, rest @ ..] = der else {
        return None;
    };
    let bytes = rest.get(..usize::from(*len))?;
    let bytes = match bytes {
        [0, tail @ ..] => tail,
        all => all,
    };
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::der_u32;

    #[test]
    fn serials_are_read_from_der_integers() {
        assert_eq!(
            der_u32(&[0x02, 0x04, 0x00, 0x52, 0xf7, 0x43]),
            Some(5_437_251)
        );
        assert_eq!(
            der_u32(&[0x02, 0x05, 0x00, 0xff, 0xff, 0xff, 0xff]),
            Some(u32::MAX)
        );
        assert_eq!(der_u32(&[0x04, 0x01, 0x00]), None);
        assert_eq!(der_u32(&[0x02, 0x09, 0x00]), None);
    }
}
