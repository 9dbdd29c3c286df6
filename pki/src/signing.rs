//! The adapter that lets rcgen sign with a key held by the HSM crate: rcgen never sees key
//! material, only a [`Signer`].
//!
//! ML-DSA keys, which rcgen over ring cannot name, sign too: rcgen writes the certificate (or
//! CRL) under a stand-in algorithm and no signature, then [`HsmSigningKey::finish_certificate`]
//! (or [`HsmSigningKey::finish_crl`]) names ML-DSA in both algorithm fields (RFC 9881: the
//! OID, no parameters) and the HSM signs the result once.

use std::sync::{Arc, Mutex};

use rcgen::{PublicKeyData, SigningKey};
use signet_hsm::{SignatureAlgorithm, Signer};
use x509_cert::der::asn1::BitString;
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use crate::error::{Error, Result};

/// An HSM key as rcgen's signing key.
#[derive(Debug)]
pub struct HsmSigningKey {
    signer: Arc<dyn Signer>,
    public: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
    /// The key's SubjectPublicKeyInfo, as the HSM gives it.
    spki: Vec<u8>,
    /// For an ML-DSA key, its algorithm identifier (the SubjectPublicKeyInfo's: RFC 9881 names
    /// the signature as the key): rcgen writes a stand-in, `finish_*` puts this in and signs.
    ml_dsa: Option<AlgorithmIdentifierOwned>,
    /// rcgen's error type cannot carry the HSM's: the cause waits here for the caller.
    failure: Mutex<Option<signet_hsm::Error>>,
}

/// rcgen's own view of a key (its algorithm and public key bytes), for the
/// SubjectPublicKeyInfo rcgen derives key identifiers from.
struct AsRcgenSees<'a>(&'a HsmSigningKey);

impl PublicKeyData for AsRcgenSees<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.0.public
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm
    }
}

impl HsmSigningKey {
    /// Wraps a signer whose algorithm rcgen can name in a certificate.
    pub fn new(signer: Arc<dyn Signer>) -> Result<Self> {
        let public = signer.public_key();
        let spki = public.spki_der();
        // Pure ML-DSA only: a HashML-DSA signature is not an X.509 one.
        let pure_ml_dsa = matches!(
            signer.algorithm(),
            SignatureAlgorithm::MlDsa44 | SignatureAlgorithm::MlDsa65 | SignatureAlgorithm::MlDsa87
        );
        let ml_dsa = if pure_ml_dsa {
            Some(
                SubjectPublicKeyInfoOwned::from_der(&spki)
                    .map_err(bad_der)?
                    .algorithm,
            )
        } else {
            None
        };
        // The stand-in: an algorithm whose identifier has no parameters either.
        let stand_in = ml_dsa.as_ref().map(|_| &rcgen::PKCS_ED25519);
        let algorithm = stand_in.or_else(|| rcgen_algorithm(signer.algorithm())).ok_or_else(|| {
            Error::Policy(format!(
                "{} cannot sign certificates here (rcgen with ring writes RSA-PSS certificates only with aws-lc; use RS256/384/512 for RSA CA keys)",
                signer.algorithm()
            ))
        })?;
        Ok(HsmSigningKey {
            public: public.raw(),
            spki,
            signer,
            algorithm,
            ml_dsa,
            failure: Mutex::new(None),
        })
    }

    /// The SubjectPublicKeyInfo rcgen cannot write for this key as a certificate's subject
    /// (an ML-DSA key's), for [`HsmSigningKey::finish_certificate`]; `None` for the others.
    pub fn unwritten_spki(&self) -> Option<&[u8]> {
        self.ml_dsa.as_ref().map(|_| self.spki.as_slice())
    }

    /// A certificate rcgen made with this key as the issuer, finished: its SubjectPublicKeyInfo
    /// replaced by `subject_spki` when rcgen could not write it (an ML-DSA subject key), the
    /// algorithm named and the certificate signed when this key is ML-DSA. Unchanged when
    /// neither applies.
    pub fn finish_certificate(&self, der: Vec<u8>, subject_spki: Option<&[u8]>) -> Result<Vec<u8>> {
        if self.ml_dsa.is_none() && subject_spki.is_none() {
            return Ok(der);
        }
        let mut cert = x509_cert::Certificate::from_der(&der).map_err(bad_der)?;
        if let Some(spki) = subject_spki {
            cert.tbs_certificate.subject_public_key_info =
                SubjectPublicKeyInfoOwned::from_der(spki).map_err(bad_der)?;
        }
        if let Some(algorithm) = &self.ml_dsa {
            cert.tbs_certificate.signature = algorithm.clone();
            cert.signature_algorithm = algorithm.clone();
        }
        let tbs = cert.tbs_certificate.to_der().map_err(bad_der)?;
        cert.signature = BitString::from_bytes(&self.signer.sign(&tbs)?).map_err(bad_der)?;
        cert.to_der().map_err(bad_der)
    }

    /// A CRL rcgen made with this key, finished as [`HsmSigningKey::finish_certificate`] does
    /// (unchanged unless the key is ML-DSA).
    pub fn finish_crl(&self, der: Vec<u8>) -> Result<Vec<u8>> {
        let Some(algorithm) = &self.ml_dsa else {
            return Ok(der);
        };
        let mut crl = x509_cert::crl::CertificateList::from_der(&der).map_err(bad_der)?;
        crl.tbs_cert_list.signature = algorithm.clone();
        crl.signature_algorithm = algorithm.clone();
        let tbs = crl.tbs_cert_list.to_der().map_err(bad_der)?;
        crl.signature = BitString::from_bytes(&self.signer.sign(&tbs)?).map_err(bad_der)?;
        crl.to_der().map_err(bad_der)
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

/// A certificate or CRL that rcgen made and x509-cert cannot read or write back.
fn bad_der(detail: x509_cert::der::Error) -> Error {
    Error::Parse {
        what: "the certificate being issued",
        detail: detail.to_string(),
    }
}

impl PublicKeyData for HsmSigningKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    /// What key identifiers are made from: the real SubjectPublicKeyInfo for ML-DSA (rcgen
    /// would write the stand-in's), rcgen's own for the others.
    fn subject_public_key_info(&self) -> Vec<u8> {
        match self.ml_dsa {
            Some(_) => self.spki.clone(),
            None => AsRcgenSees(self).subject_public_key_info(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for HsmSigningKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        if self.ml_dsa.is_some() {
            // Under the stand-in's name a signature would be worthless: `finish_*` signs.
            return Ok(Vec::new());
        }
        self.signer.sign(msg).map_err(|e| {
            if let Ok(mut failure) = self.failure.lock() {
                *failure = Some(e);
            }
            rcgen::Error::RemoteKeyError
        })
    }
}
