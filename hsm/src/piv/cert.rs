//! The self-signed certificate written into a slot next to each key Signet generates there: it
//! names the key (its common name is the label), marks the slot as taken, and lets ykcs11 and
//! OpenSC see the key. Signed on the card by the key itself.

use std::cell::RefCell;

use rcgen::{CertificateParams, DistinguishedName, DnType, PublicKeyData, SigningKey};

use crate::error::{Error, Result};
use crate::public::PublicKey;
use crate::spec::KeySpec;

struct CardKey<'a, F> {
    public: &'a PublicKey,
    bits: Vec<u8>,
    sign: RefCell<F>,
}

impl<F> PublicKeyData for CardKey<'_, F> {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.public.spec() {
            KeySpec::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            _ => &rcgen::PKCS_ECDSA_P256_SHA256,
        }
    }
}

impl<F: FnMut(&[u8]) -> Result<Vec<u8>>> SigningKey for CardKey<'_, F> {
    fn sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        (self.sign.borrow_mut())(message).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A self-signed certificate for `public`, its common name `label`; `sign` signs the
/// to-be-signed bytes with the card (DER ECDSA, or RSA PKCS#1 v1.5), hashing them itself.
pub(super) fn self_signed(
    label: &str,
    public: &PublicKey,
    sign: impl FnMut(&[u8]) -> Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let key = CardKey {
        public,
        bits: public.raw(),
        sign: RefCell::new(sign),
    };
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, label);
    name.push(DnType::OrganizationalUnitName, "signet");
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + time::Duration::days(365 * 30);
    params
        .self_signed(&key)
        .map(|c| c.der().to_vec())
        .map_err(|e| Error::Wrapper(format!("writing the slot's certificate: {e}")))
}
