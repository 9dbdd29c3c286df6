//! The adapter that lets rcgen sign with a key held by the HSM crate: rcgen never sees key
//! material, only a [`Signer`].

use std::sync::{Arc, Mutex};

use rcgen::{PublicKeyData, SigningKey};
use signet_hsm::{SignatureAlgorithm, Signer};

use crate::error::{Error, Result};

/// An HSM key as rcgen's signing key.
#[derive(Debug)]
pub struct HsmSigningKey {
    signer: Arc<dyn Signer>,
    public: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
    /// rcgen's error type cannot carry the HSM's: the cause waits here for the caller.
    failure: Mutex<Option<signet_hsm::Error>>,
}

impl HsmSigningKey {
    /// Wraps a signer whose algorithm rcgen can name in a certificate.
    pub fn new(signer: Arc<dyn Signer>) -> Result<Self> {
        let algorithm = rcgen_algorithm(signer.algorithm()).ok_or_else(|| {
            Error::Policy(format!(
                "{} cannot sign certificates here (rcgen with ring writes RSA-PSS certificates only with aws-lc; use RS256/384/512 for RSA CA keys)",
                signer.algorithm()
            ))
        })?;
        Ok(HsmSigningKey {
            public: signer.public_key().raw(),
            signer,
            algorithm,
            failure: Mutex::new(None),
        })
    }

    /// The wrapped signer.
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    /// Turns an rcgen error into ours, recovering the HSM's cause when the HSM failed.
    pub(crate) fn explain(&self, err: rcgen::Error) -> Error {
        let cause = self.failure.lock().ok().and_then(|mut f| f.take());
        match (err, cause) {
            (rcgen::Error::RemoteKeyError, Some(cause)) => Error::Hsm(cause),
            (err, _) => Error::Builder(err),
        }
    }
}

/// rcgen's description of a signature algorithm, for those it can write.
pub fn rcgen_algorithm(alg: SignatureAlgorithm) -> Option<&'static rcgen::SignatureAlgorithm> {
    use SignatureAlgorithm::*;
    Some(match alg {
        Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Es384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        EdDsa => &rcgen::PKCS_ED25519,
        Rs256 => &rcgen::PKCS_RSA_SHA256,
        Rs384 => &rcgen::PKCS_RSA_SHA384,
        Rs512 => &rcgen::PKCS_RSA_SHA512,
        _ => return None,
    })
}

impl PublicKeyData for HsmSigningKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for HsmSigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign(msg).map_err(|e| {
            if let Ok(mut failure) = self.failure.lock() {
                *failure = Some(e);
            }
            rcgen::Error::RemoteKeyError
        })
    }
}
