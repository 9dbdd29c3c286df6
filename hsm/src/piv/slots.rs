//! Slots, algorithms and key ids: how Signet's keys map onto PIV slots, and what the card
//! signs (PIV's RSA is raw, so RS256 gets its PKCS#1 v1.5 padding here).

use sha2::{Digest, Sha256};
use yubikey::piv::{AlgorithmId, SlotId};
use yubikey::YubiKey;

use super::error::device;
use crate::backend::KeyId;
use crate::error::{Error, Result};
use crate::public::PublicKey;
use crate::spec::{KeySpec, SignatureAlgorithm};

/// The retired key-management slots, 82 to 95, where named keys go.
pub(super) const RETIRED: [u8; 20] = [
    0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90, 0x91,
    0x92, 0x93, 0x94, 0x95,
];

pub(super) fn slot_id(slot: u8) -> Result<SlotId> {
    SlotId::try_from(slot).map_err(|_| Error::Wrapper(format!("{slot:02x} is not a PIV key slot")))
}

pub(super) fn algorithm_id(spec: KeySpec) -> Option<AlgorithmId> {
    match spec {
        KeySpec::EcP256 => Some(AlgorithmId::EccP256),
        KeySpec::EcP384 => Some(AlgorithmId::EccP384),
        KeySpec::Rsa2048 => Some(AlgorithmId::Rsa2048),
        _ => None,
    }
}

pub(super) fn spec_of(algorithm: AlgorithmId) -> Option<KeySpec> {
    match algorithm {
        AlgorithmId::EccP256 => Some(KeySpec::EcP256),
        AlgorithmId::EccP384 => Some(KeySpec::EcP384),
        AlgorithmId::Rsa2048 => Some(KeySpec::Rsa2048),
        AlgorithmId::Rsa1024 => None,
    }
}

pub(super) const SPECS: [KeySpec; 3] = [KeySpec::EcP256, KeySpec::EcP384, KeySpec::Rsa2048];
pub(super) const ALGORITHMS: [SignatureAlgorithm; 3] = [
    SignatureAlgorithm::Es256,
    SignatureAlgorithm::Es384,
    SignatureAlgorithm::Rs256,
];

/// A key id: the slot, then 16 bytes of the public key's SHA-256.
pub(super) fn key_id(slot: u8, public: &PublicKey) -> KeyId {
    let digest = Sha256::digest(public.spki_der());
    let mut id = vec![slot];
    id.extend_from_slice(&digest[..16]);
    KeyId(id)
}

/// The public key in a SubjectPublicKeyInfo from the card.
pub(super) fn public_key(
    spec: KeySpec,
    spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
) -> Result<PublicKey> {
    let bits = spki.subject_public_key.raw_bytes();
    match spec {
        KeySpec::Rsa2048 => {
            use pkcs1::der::Decode;
            let rsa = pkcs1::RsaPublicKey::from_der(bits)
                .map_err(|_| Error::Malformed("an RSA public key from the card".into()))?;
            PublicKey::from_rsa(
                spec,
                rsa.modulus.as_bytes().to_vec(),
                rsa.public_exponent.as_bytes().to_vec(),
            )
        }
        _ => PublicKey::from_ec_point(spec, bits),
    }
}

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2 steps 3-5) of a SHA-256 digest, `len` bytes long: the
/// DigestInfo (`der`), preceded by `00 01`, `ff` padding and `00`.
fn pkcs1_v15_sha256(digest: &[u8], len: usize) -> Result<Vec<u8>> {
    let t = crate::der::rsa_digest_info(crate::spec::Hash::Sha256, digest)?;
    if len < t.len() + 11 {
        return Err(Error::Malformed(format!(
            "a {len}-byte RSA block cannot hold a {}-byte DigestInfo",
            t.len()
        )));
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&[0x00, 0x01]);
    out.resize(len - t.len() - 1, 0xff);
    out.push(0x00);
    out.extend_from_slice(&t);
    Ok(out)
}

/// What the card signs for `algorithm` over `digest`: the digest itself for ECDSA, the padded
/// block for RS256 (PIV's RSA is raw).
pub(super) fn card_input(algorithm: SignatureAlgorithm, digest: &[u8]) -> Result<Vec<u8>> {
    match algorithm {
        SignatureAlgorithm::Rs256 => pkcs1_v15_sha256(digest, 256),
        _ => Ok(digest.to_vec()),
    }
}

/// The label the slot's certificate gives its key (its common name); `None` when the slot has
/// no certificate (the backend's "slot free" mark).
pub(super) fn slot_label(yk: &mut YubiKey, slot: u8) -> Result<Option<String>> {
    let certificate = match yubikey::certificate::Certificate::read(yk, slot_id(slot)?) {
        Ok(certificate) => certificate,
        Err(
            yubikey::Error::InvalidObject | yubikey::Error::NotFound | yubikey::Error::GenericError,
        ) => return Ok(None),
        Err(e) => return Err(device("GET DATA (certificate)", e)),
    };
    let subject = certificate.subject();
    Ok(Some(
        subject
            .split(',')
            .find_map(|part| part.trim().strip_prefix("CN="))
            .unwrap_or(&subject)
            .to_string(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pkcs1_padding_has_the_emsa_layout() {
        let padded = pkcs1_v15_sha256(&[0xab; 32], 256).unwrap();
        assert_eq!(padded.len(), 256);
        assert_eq!(&padded[..2], &[0x00, 0x01]);
        assert!(padded[2..204].iter().all(|b| *b == 0xff));
        assert_eq!(padded[204], 0x00);
        assert_eq!(&padded[205..207], &[0x30, 0x31]);
        assert_eq!(&padded[224..], &[0xab; 32]);
    }
}
