//! PKCS#12 bundles that OpenSSL 3 opens without `-legacy`: PBES2 (PBKDF2-HMAC-SHA256,
//! AES-256-CBC) for both key and certificates, and an HMAC-SHA256 MAC; and reading one to
//! import its key — the OpenSSL 3 default, the legacy RC2/3DES files older tools write, and
//! unencrypted ones — as long as it has a MAC that the password verifies.
//!
//! p12-keystore does the reading (the `p12` crate cannot: it knows only SHA-1/RC2-40/3DES,
//! never returns unencrypted key bags, and its MAC check is unusable on SHA-256 MACs). It
//! accepts files without a MAC, so the MAC's presence is checked here first.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};

use crate::error::{Error, Result};

/// PBKDF2 iterations (OpenSSL 3's default is 2048). Signet's bundle passwords are 32 random
/// characters (about 190 bits), so the work factor is not what protects them.
pub const ITERATIONS: u32 = 10_000;

/// Writes a bundle: the PKCS#8 key, the leaf, then the chain (intermediate, root).
///
/// The key and its certificate carry one friendly name, the certificate's subject: p12-keystore
/// names every certificate bag by its subject, and tools show one bag's name or the other's
/// (Java's keytool the key's, NSS's pk12util the certificate's).
pub fn write(
    pkcs8: &[u8],
    leaf_der: &[u8],
    chain_der: &[&[u8]],
    password: &str,
) -> Result<Vec<u8>> {
    let p12 = |e: p12_keystore::error::Error| Error::Pkcs12(e.to_string());
    let key = PrivateKey::from_der(pkcs8).map_err(p12)?;
    let leaf = Certificate::from_der(leaf_der).map_err(p12)?;
    let alias = leaf.subject().to_string();
    let mut certs = vec![leaf];
    for der in chain_der {
        certs.push(Certificate::from_der(der).map_err(p12)?);
    }
    let mut local_key_id = [0u8; 20];
    getrandom::getrandom(&mut local_key_id).map_err(|e| Error::Pkcs12(e.to_string()))?;
    let chain = PrivateKeyChain::new(local_key_id.to_vec(), key, certs);
    let mut store = KeyStore::new();
    store.add_entry(&alias, KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(p12)
}

#[derive(Debug)]
/// What a PKCS#12 file held: its one private key, the certificate of that key (matched by
/// public key) and the other certificates, in file order.
pub struct Imported {
    /// The private key, ready for the device (zeroizing).
    pub key: signet_hsm::KeyMaterial,
    /// The key's certificate, if the file has it.
    pub certificate: Option<Vec<u8>>,
    /// Every other certificate.
    pub others: Vec<Vec<u8>>,
}

/// Reads a PKCS#12 file for import. Refused, with what to do: a file that is not PKCS#12, one
/// without a MAC (its integrity cannot be checked), a wrong password (the MAC does not verify),
/// no private key or more than one, and a key Signet cannot hold.
pub fn read(data: &[u8], password: &str) -> Result<Imported> {
    let refuse = |m: String| Error::Pkcs12Import(m);
    // PFX ::= SEQUENCE { version, authSafe ContentInfo, macData MacData OPTIONAL }
    let (rest, pfx) = x509_parser::der_parser::parse_der(data)
        .map_err(|_| refuse("the file is not PKCS#12 (DER)".into()))?;
    let items = pfx
        .as_sequence()
        .map_err(|_| refuse("the file is not PKCS#12 (no PFX sequence)".into()))?;
    if !rest.is_empty() {
        return Err(refuse(
            "the file has data after its PKCS#12 structure".into(),
        ));
    }
    match items.len() {
        3 => {}
        2 => {
            return Err(refuse(
                "the file has no MAC, so its integrity cannot be checked; export it again with a \
                 password-based MAC (openssl pkcs12 -export does this by default)"
                    .into(),
            ))
        }
        _ => {
            return Err(refuse(
                "the file is not PKCS#12 (unexpected PFX layout)".into(),
            ))
        }
    }
    let archive =
        p12_keystore::Pkcs12Archive::from_pkcs12(data, password).map_err(|e| match e {
            p12_keystore::error::Error::MacError(_) => refuse(
                "the password is wrong, or the file was altered: its MAC does not verify".into(),
            ),
            p12_keystore::error::Error::UnsupportedEncryptionScheme
            | p12_keystore::error::Error::UnsupportedMacAlgorithm => refuse(format!(
                "the file uses an encryption or MAC algorithm Signet cannot read ({e})"
            )),
            other => refuse(format!("the file cannot be read: {other}")),
        })?;
    let mut keys = archive.keys;
    let bag = match keys.len() {
        0 => return Err(refuse("the file holds no private key".into())),
        1 => keys.remove(0),
        n => {
            return Err(refuse(format!(
                "the file holds {n} private keys; put one key in each file"
            )))
        }
    };
    let key = signet_hsm::KeyMaterial::from_pkcs8(bag.key.as_der()).map_err(|e| match e {
        signet_hsm::Error::Unsupported(what) => {
            refuse(format!("its key cannot be held by Signet: {what}"))
        }
        other => refuse(other.to_string()),
    })?;
    drop(bag);
    let spki = key.public_key().spki_der();
    let mut certificate = None;
    let mut others = Vec::new();
    for cert in archive.certs {
        let der = cert.cert.as_der().to_vec();
        let matches = {
            use x509_parser::prelude::FromDer;
            x509_parser::certificate::X509Certificate::from_der(&der)
                .map(|(_, c)| c.public_key().raw == spki.as_slice())
                .unwrap_or(false)
        };
        if matches && certificate.is_none() {
            certificate = Some(der);
        } else {
            others.push(der);
        }
    }
    Ok(Imported {
        key,
        certificate,
        others,
    })
}
