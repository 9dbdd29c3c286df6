//! The listener's TLS: rustls, TLS 1.3 only, client certificate required and verified against
//! Signet's root, revocation checked on every handshake, and the server's private key used in
//! the token through an adapter over the HSM signer.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SigningKey};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use signet_hsm::{Backend, HsmSigner, KeyId, KeySpec, SignatureAlgorithm, Signer};

use crate::service::Service;

/// The one crypto provider: ring, plus ML-DSA signature verification, which ring lacks (see
/// [`signet_mldsa::tls`]): a client certificate for an ML-DSA key logs in with ML-DSA
/// handshake signatures, and chains an ML-DSA root or intermediate signed are checked. The
/// server's own key stays ECDSA, Ed25519 or RSA (rustls has no ML-DSA server authentication).
pub fn provider() -> Arc<CryptoProvider> {
    signet_mldsa::tls::provider()
}

/// The server key in the token, as rustls's signing key.
#[derive(Debug)]
pub struct HsmTlsKey {
    signer: Arc<HsmSigner>,
    scheme: SignatureScheme,
    algorithm: rustls::SignatureAlgorithm,
}

impl HsmTlsKey {
    /// Binds a token key. RSA keys sign TLS 1.3 handshakes with RSA-PSS.
    pub fn new(backend: Arc<dyn Backend>, id: KeyId, spec: KeySpec) -> signet_hsm::Result<Self> {
        let (alg, scheme, algorithm) = match spec {
            KeySpec::EcP256 => (
                SignatureAlgorithm::Es256,
                SignatureScheme::ECDSA_NISTP256_SHA256,
                rustls::SignatureAlgorithm::ECDSA,
            ),
            KeySpec::EcP384 => (
                SignatureAlgorithm::Es384,
                SignatureScheme::ECDSA_NISTP384_SHA384,
                rustls::SignatureAlgorithm::ECDSA,
            ),
            KeySpec::Ed25519 => (
                SignatureAlgorithm::EdDsa,
                SignatureScheme::ED25519,
                rustls::SignatureAlgorithm::ED25519,
            ),
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => (
                SignatureAlgorithm::Ps256,
                SignatureScheme::RSA_PSS_SHA256,
                rustls::SignatureAlgorithm::RSA,
            ),
            // rustls (0.23, ring provider) has no ML-DSA server authentication.
            other => {
                return Err(signet_hsm::Error::Unsupported(format!(
                    "a {other} key as the TLS server key (the listener's certificate stays ECDSA, Ed25519 or RSA)"
                )))
            }
        };
        Ok(HsmTlsKey {
            signer: Arc::new(HsmSigner::new(backend, id, alg)?),
            scheme,
            algorithm,
        })
    }
}

impl SigningKey for HsmTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered.contains(&self.scheme).then(|| {
            Box::new(HsmTlsSigner {
                signer: self.signer.clone(),
                scheme: self.scheme,
            }) as Box<dyn rustls::sign::Signer>
        })
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        self.algorithm
    }
}

/// Runs `f`, which blocks (the token, the store), from inside the async handshake: tells tokio
/// this worker is about to block, so the other tasks move elsewhere meanwhile.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[derive(Debug)]
struct HsmTlsSigner {
    signer: Arc<HsmSigner>,
    scheme: SignatureScheme,
}

impl rustls::sign::Signer for HsmTlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        // rustls signs inside the async handshake, on an async worker.
        blocking(|| self.signer.sign(message))
            .map_err(|e| rustls::Error::General(format!("HSM signing failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// The server certificate in force: replaced, without a restart, when a rotation is picked
/// up ([`Tls::reload`]).
#[derive(Debug)]
struct LiveCert(std::sync::RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// webpki's client verification (chain to the root, EKU clientAuth, validity) plus an immediate
/// revocation check against the store, so a revoked certificate is refused on its next handshake.
/// The server's own intermediate is offered to path building with whatever the client sent, so a
/// client presenting its leaf alone (as most save what a CA returns) is accepted.
#[derive(Debug)]
pub struct ClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// Every intermediate still trusted, the current one first (a rotation keeps the previous
    /// one until it expires).
    intermediates: std::sync::RwLock<Vec<CertificateDer<'static>>>,
    service: Arc<Service>,
}

/// Why a revocation check could not be made (the handshake fails closed).
#[derive(Debug)]
struct RevocationCheckFailed(String);

impl std::fmt::Display for RevocationCheckFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "revocation check failed: {}", self.0)
    }
}

impl std::error::Error for RevocationCheckFailed {}

impl ClientVerifier {
    /// The verifier for Signet's root, completing client chains with its intermediates.
    pub fn new(
        root_der: &[u8],
        intermediates: Vec<Vec<u8>>,
        service: Arc<Service>,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(root_der.to_vec()))?;
        let inner =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
        Ok(ClientVerifier {
            inner,
            intermediates: std::sync::RwLock::new(
                intermediates
                    .into_iter()
                    .map(CertificateDer::from)
                    .collect(),
            ),
            service,
        })
    }

    fn set_intermediates(&self, intermediates: Vec<Vec<u8>>) {
        *self
            .intermediates
            .write()
            .unwrap_or_else(|p| p.into_inner()) = intermediates
            .into_iter()
            .map(CertificateDer::from)
            .collect();
    }

    /// Path building: what the client sent, completed with each trusted intermediate in turn.
    fn verify_path(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let known = self
            .intermediates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut first_error = None;
        for extra in std::iter::once(None).chain(known.iter().map(Some)) {
            let mut chain = intermediates.to_vec();
            if let Some(extra) = extra {
                if chain.contains(extra) {
                    continue;
                }
                chain.push(extra.clone());
            } else if chain.is_empty() {
                continue;
            }
            match self.inner.verify_client_cert(end_entity, &chain, now) {
                Ok(verified) => return Ok(verified),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )))
    }
}

/// The most a handshake waits for the store's revocation answer.
const HANDSHAKE_STORE_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.verify_path(end_entity, intermediates, now)?;
        let serial = signet_pki::serial_of(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        // A short look at the store: a handshake must not wait a whole database timeout, and
        // the async worker it runs on is handed its other tasks meanwhile.
        let deadline = std::time::Instant::now() + HANDSHAKE_STORE_BUDGET;
        let revoked = blocking(|| {
            crate::store::deadline::within(Some(deadline), || self.service.is_revoked(&serial))
        });
        match revoked {
            Ok(true) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked,
            )),
            Ok(false) => Ok(verified),
            // The database cannot say now. The handshake completes: every request checks the
            // certificate's revocation again and, while the store cannot be reached, is
            // answered 503 with a problem document (fail closed per request, not a bare TLS
            // failure the client cannot read).
            Err(e) => {
                tracing::warn!(error = %e, serial = %serial, "revocation not checkable at the handshake; each request checks it");
                Ok(verified)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn offer_client_auth(&self) -> bool {
        true
    }
}

/// The listener's TLS: its rustls configuration, and what a CA rotation replaces in it
/// without a restart (the server certificate and key, the trusted intermediates).
#[derive(Debug)]
pub struct Tls {
    config: Arc<rustls::ServerConfig>,
    cert: Arc<LiveCert>,
    verifier: Arc<ClientVerifier>,
    generation: std::sync::atomic::AtomicU64,
}

impl Tls {
    /// The rustls configuration.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Picks up a CA rotation (the record's generation moved on): the new server certificate
    /// and key, and every intermediate still trusted. Whether anything changed.
    pub fn reload(&self, service: &Service) -> anyhow::Result<bool> {
        use std::sync::atomic::Ordering;
        let record = service
            .store()
            .ca()?
            .ok_or_else(|| anyhow::anyhow!("no CA"))?;
        if record.generation == self.generation.load(Ordering::Acquire) {
            return Ok(false);
        }
        service.forget_ca();
        let certified = certified_key(service, &record)?;
        *self.cert.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        self.verifier
            .set_intermediates(service.authority_intermediates()?);
        self.generation.store(record.generation, Ordering::Release);
        tracing::info!(
            generation = record.generation,
            server = %record.server.serial,
            intermediate = %record.intermediate.serial,
            "picked up a CA rotation: new server certificate and intermediates"
        );
        Ok(true)
    }
}

/// The server's certificate chain and its key in the token.
fn certified_key(
    service: &Service,
    record: &crate::store::CaRecord,
) -> anyhow::Result<CertifiedKey> {
    let server_cert = service
        .store()
        .cert(&record.server.serial)?
        .ok_or_else(|| anyhow::anyhow!("the server certificate's record is missing"))?;
    let intermediate = service
        .store()
        .cert(&record.intermediate.serial)?
        .ok_or_else(|| anyhow::anyhow!("the intermediate's record is missing"))?;
    let key = HsmTlsKey::new(
        service.backend().clone(),
        record.server.key_id.clone(),
        record.server.spec,
    )?;
    let chain = vec![server_cert.der, intermediate.der];
    Ok(CertifiedKey::new(
        chain.into_iter().map(CertificateDer::from).collect(),
        Arc::new(key),
    ))
}

/// The server's rustls configuration: TLS 1.3 only, mutual TLS mandatory, the server key held
/// in the token, the certificate chain from the CA record.
pub fn server_config(service: Arc<Service>) -> anyhow::Result<Tls> {
    let ca = service.ca()?;
    let record = service
        .store()
        .ca()?
        .ok_or_else(|| anyhow::anyhow!("no CA yet"))?;
    let cert = Arc::new(LiveCert(std::sync::RwLock::new(Arc::new(certified_key(
        &service, &record,
    )?))));
    let verifier = Arc::new(ClientVerifier::new(
        ca.root_der(),
        service.authority_intermediates()?,
        service.clone(),
    )?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.clone())
        .with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        config: Arc::new(config),
        cert,
        verifier,
        generation: std::sync::atomic::AtomicU64::new(record.generation),
    })
}

/// A short, stable name for why a handshake failed (for counters and audit): always one of
/// [`crate::service::metrics::REFUSAL_REASONS`], never text from the peer or a library's Debug
/// output (a ClientHello crafted to fail oddly would otherwise write its own label).
pub fn refusal_reason(err: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error as E};
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match err.kind() {
            std::io::ErrorKind::UnexpectedEof => "connection-closed",
            std::io::ErrorKind::TimedOut => "handshake-timeout",
            _ => "io-error",
        };
    };
    match tls {
        E::NoCertificatesPresented => "no-client-certificate",
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "unknown-issuer",
            CertificateError::BadSignature => "bad-signature",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not-yet-valid"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "wrong-purpose"
            }
            CertificateError::BadEncoding => "bad-certificate-encoding",
            _ => "invalid-certificate",
        },
        E::PeerIncompatible(_) => "protocol-version-or-cipher",
        E::InappropriateHandshakeMessage { .. } | E::InappropriateMessage { .. } => {
            "unexpected-message"
        }
        E::InvalidMessage(_) => "invalid-message",
        E::PeerMisbehaved(_) => "peer-misbehaved",
        E::AlertReceived(_) => "alert-received",
        E::DecryptError => "decrypt-error",
        E::Other(other) if other.0.downcast_ref::<RevocationCheckFailed>().is_some() => {
            "revocation-check-failed"
        }
        _ => "other",
    }
}
