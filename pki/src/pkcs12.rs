//! PKCS#12 bundles that OpenSSL 3 opens without `-legacy`: PBES2 (PBKDF2-HMAC-SHA256,
//! AES-256-CBC) for both key and certificates, and an HMAC-SHA256 MAC.

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};

use crate::error::{Error, Result};

/// PBKDF2 iterations (OpenSSL 3's default is 2048). Signet's bundle passwords are 32 random
/// characters (about 190 bits), so the work factor is not what protects them.
pub const ITERATIONS: u32 = 10_000;

/// Writes a bundle: the PKCS#8 key, the leaf, then the chain (intermediate, root).
pub fn write(
    alias: &str,
    pkcs8: &[u8],
    leaf_der: &[u8],
    chain_der: &[&[u8]],
    password: &str,
) -> Result<Vec<u8>> {
    let p12 = |e: p12_keystore::error::Error| Error::Pkcs12(e.to_string());
    let key = PrivateKey::from_der(pkcs8).map_err(p12)?;
    let mut certs = vec![Certificate::from_der(leaf_der).map_err(p12)?];
    for der in chain_der {
        certs.push(Certificate::from_der(der).map_err(p12)?);
    }
    let mut local_key_id = [0u8; 20];
    getrandom::getrandom(&mut local_key_id).map_err(|e| Error::Pkcs12(e.to_string()))?;
    let chain = PrivateKeyChain::new(local_key_id.to_vec(), key, certs);
    let mut store = KeyStore::new();
    store.add_entry(alias, KeyStoreEntry::PrivateKeyChain(chain));
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(p12)
}
