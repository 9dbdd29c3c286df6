//! ring's rustls provider with ML-DSA signature verification added (rustls-webpki has ML-DSA
//! only over aws-lc-rs): ML-DSA handshake signatures (`mldsa44/65/87`, 0x0904–0x0906) and
//! certificates signed with ML-DSA (RFC 9881) are checked with [`crate::verify`], as every
//! ML-DSA signature Signet verifies. The server's TLS and the client library use it.

use std::sync::{Arc, LazyLock};

use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::SignatureVerificationAlgorithm;
use rustls::pki_types::{alg_id, AlgorithmIdentifier, InvalidSignature};
use rustls::SignatureScheme;

use crate::ParameterSet;

/// ring's provider, with ML-DSA verification.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.signature_verification_algorithms = *WITH_ML_DSA;
    Arc::new(provider)
}

/// ML-DSA (pure, empty context: how TLS 1.3 and X.509 use it) for rustls-webpki.
#[derive(Debug)]
struct MlDsaVerification {
    set: ParameterSet,
    id: AlgorithmIdentifier,
}

impl SignatureVerificationAlgorithm for MlDsaVerification {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        if crate::verify(self.set, public_key, message, &[], signature) {
            Ok(())
        } else {
            Err(InvalidSignature)
        }
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.id
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.id
    }
}

type Verification = &'static dyn SignatureVerificationAlgorithm;

static ML_DSA_44: MlDsaVerification = MlDsaVerification {
    set: ParameterSet::MlDsa44,
    id: alg_id::ML_DSA_44,
};
static ML_DSA_65: MlDsaVerification = MlDsaVerification {
    set: ParameterSet::MlDsa65,
    id: alg_id::ML_DSA_65,
};
static ML_DSA_87: MlDsaVerification = MlDsaVerification {
    set: ParameterSet::MlDsa87,
    id: alg_id::ML_DSA_87,
};

/// The handshake signature schemes for ML-DSA, each with its one algorithm.
static ML_DSA: [(SignatureScheme, Verification); 3] = [
    (SignatureScheme::ML_DSA_44, &ML_DSA_44),
    (SignatureScheme::ML_DSA_65, &ML_DSA_65),
    (SignatureScheme::ML_DSA_87, &ML_DSA_87),
];

/// ring's algorithms with ML-DSA's added, built once.
static WITH_ML_DSA: LazyLock<WebPkiSupportedAlgorithms> = LazyLock::new(|| {
    let ring = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let all: Vec<Verification> = ring
        .all
        .iter()
        .copied()
        .chain(ML_DSA.iter().map(|(_, v)| *v))
        .collect();
    let mapping: Vec<(SignatureScheme, &'static [Verification])> = ring
        .mapping
        .iter()
        .copied()
        .chain(
            ML_DSA
                .iter()
                .map(|(scheme, v)| (*scheme, std::slice::from_ref(v))),
        )
        .collect();
    WebPkiSupportedAlgorithms {
        all: Vec::leak(all),
        mapping: Vec::leak(mapping),
    }
});
