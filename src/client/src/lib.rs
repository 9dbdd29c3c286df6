//! A typed client for Signet's API: mutual TLS 1.3 with the caller's client certificate
//! (PEM files or a PKCS#12 bundle), connections kept and reused, answers decoded into types and
//! problem documents (RFC 9457) into [`Error::Problem`].
//!
//! Requests that read are retried once when the connection failed (a pooled connection the
//! server closed, a server that restarted); requests that sign or change something are sent
//! once and never retried here, so one call is at most one audited operation.
//!
//! ```no_run
//! # fn main() -> Result<(), signet_client::Error> {
//! use signet_client::{Client, Identity, InputType, SignRequest};
//! let identity = Identity::from_pem(
//!     &std::fs::read("app.crt.pem").unwrap(),
//!     &std::fs::read("app.key.pem").unwrap(),
//! )?;
//! let client = Client::builder("https://signet.example:8443")
//!     .root_pem(&std::fs::read("root.pem").unwrap())?
//!     .identity(identity)
//!     .build()?;
//! let signature = client.sign("app", &SignRequest::new(b"hello", InputType::Message))?;
//! println!("{} by version {}", signature.algorithm, signature.version);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a problem document.
    #[error("{0}")]
    Problem(Problem),
    /// The server refused this client's certificate during the handshake (revoked, expired,
    /// not issued by its CA).
    #[error("the server refused the client certificate ({alert})")]
    CertificateRefused {
        /// The TLS alert it sent.
        alert: String,
    },
    /// The server could not be reached, or the connection failed (the call may be retried).
    #[error("cannot reach {url}: {message}")]
    Unreachable {
        /// The server's URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The client's own settings are wrong (a file that is not PEM, a bad URL).
    #[error("{0}")]
    Config(String),
    /// The password of a PKCS#12 bundle or the passphrase of an encrypted key is wrong.
    #[error("the {0} is wrong (it does not open the file)")]
    WrongPassword(&'static str),
    /// The server answered something this client does not understand.
    #[error("unexpected answer from {path}: {message}")]
    Decode {
        /// The request path.
        path: String,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// The HTTP status of a problem answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Problem(p) => Some(p.status),
            _ => None,
        }
    }
}

/// Result of a call.
pub type Result<T> = std::result::Result<T, Error>;

/// An RFC 9457 problem document, as Signet answers errors.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Problem {
    /// The problem type (a URI reference; `/problems/<name>` by default).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The status's reason phrase.
    #[serde(default)]
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened and what to do.
    #[serde(default)]
    pub detail: String,
    /// The request id, which the audit record carries too.
    #[serde(default)]
    pub request_id: String,
}

impl Problem {
    /// The last path segment of the type (`forbidden`, `not-found`, …).
    pub fn name(&self) -> &str {
        self.kind.rsplit('/').next().unwrap_or(&self.kind)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

/// The client's certificate chain and private key. The key's bytes are wiped when the identity
/// is dropped (a built client keeps only rustls's signing key made from them).
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Overwrites the key's bytes with zeros (and empties it).
    fn wipe(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }

    /// From PEM: the certificate (and its chain) and an unencrypted private key.
    pub fn from_pem(certificates: &[u8], key: &[u8]) -> Result<Self> {
        let chain = pem_chain(certificates)?;
        if Identity::key_is_encrypted(key) {
            return Err(Error::Config(
                "the key file is encrypted: give its passphrase (Identity::from_encrypted_pem)"
                    .into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| {
            Error::Config(
                "the key file holds no unencrypted private key (PKCS#8, PKCS#1 or SEC1 PEM)".into(),
            )
        })?;
        Ok(Identity { chain, key })
    }

    /// Whether a PEM key file is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY`, or OpenSSL's
    /// legacy `Proc-Type: 4,ENCRYPTED` headers, which [`Identity::from_encrypted_pem`] names
    /// and refuses).
    pub fn key_is_encrypted(key: &[u8]) -> bool {
        std::str::from_utf8(key).is_ok_and(|text| {
            text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
                || text.contains("Proc-Type: 4,ENCRYPTED")
        })
    }

    /// From PEM: the certificate (and its chain) and a PKCS#8 private key encrypted with
    /// `passphrase` (`ENCRYPTED PRIVATE KEY`: PBES2 with PBKDF2-HMAC-SHA2 or scrypt and AES, as
    /// `openssl genpkey -aes-256-cbc` and `openssl pkcs8 -topk8` write it). A wrong passphrase
    /// is [`Error::WrongPassword`]; the decrypted key lives in memory that is zeroed when freed.
    pub fn from_encrypted_pem(certificates: &[u8], key: &[u8], passphrase: &str) -> Result<Self> {
        if String::from_utf8_lossy(key).contains("Proc-Type: 4,ENCRYPTED") {
            return Err(Error::Config(
                "the key file uses OpenSSL's legacy PEM encryption (Proc-Type: 4,ENCRYPTED); \
                 convert it to PKCS#8: openssl pkcs8 -topk8 -v2 aes-256-cbc -in OLD -out NEW"
                    .into(),
            ));
        }
        let text = std::str::from_utf8(key)
            .ok()
            .and_then(|t| {
                t.find("-----BEGIN ENCRYPTED PRIVATE KEY-----")
                    .map(|at| &t[at..])
            })
            .ok_or_else(|| {
                Error::Config("the key file holds no ENCRYPTED PRIVATE KEY block".into())
            })?;
        // PEM to DER first: der's PEM reader cannot read the PBES2 parameters in place.
        let unreadable = |e: &dyn fmt::Display| {
            Error::Config(format!(
                "the key file's ENCRYPTED PRIVATE KEY block cannot be read: {e}"
            ))
        };
        let (_, der) = pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|e| unreadable(&e))?;
        let der = zeroize::Zeroizing::new(der);
        let info = pkcs8::EncryptedPrivateKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| unreadable(&e))?;
        let wrong = || Error::WrongPassword("key's passphrase");
        let plain = info.decrypt(passphrase.as_bytes()).map_err(|e| match e {
            pkcs8::Error::EncryptedPrivateKey(pkcs8::pkcs5::Error::DecryptFailed)
            | pkcs8::Error::Asn1(_) => wrong(),
            other => Error::Config(format!(
                "the key's encryption is not supported ({other}); PBES2 with PBKDF2-HMAC-SHA2 \
                 or scrypt and AES is: openssl pkcs8 -topk8 -v2 aes-256-cbc"
            )),
        })?;
        // A wrong passphrase can unpad by chance; what it yields is then no key.
        pkcs8::PrivateKeyInfoRef::try_from(plain.as_bytes()).map_err(|_| wrong())?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain.as_bytes().to_vec()));
        Ok(Identity {
            chain: pem_chain(certificates)?,
            key,
        })
    }

    /// From a PKCS#12 bundle (as `signet cert issue --p12` or `openssl pkcs12 -export`
    /// write it) and its password.
    pub fn from_pkcs12(der: &[u8], password: &str) -> Result<Self> {
        let archive =
            p12_keystore::Pkcs12Archive::from_pkcs12(der, password).map_err(|e| match e {
                p12_keystore::error::Error::MacError(_) => Error::WrongPassword("PKCS#12 password"),
                other => Error::Config(format!("the PKCS#12 bundle cannot be read: {other}")),
            })?;
        let mut keys = archive.keys;
        if keys.len() != 1 {
            return Err(Error::Config(format!(
                "the PKCS#12 bundle holds {} private keys; a client bundle holds one",
                keys.len()
            )));
        }
        let bag = keys.remove(0);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(bag.key.as_der().to_vec()));
        // The key's own certificate first (the bag's local key id names it), then the rest.
        let key_id = bag.local_key_id.as_ref().map(|id| id.0.as_slice());
        let (mut own, others): (Vec<_>, Vec<_>) = archive
            .certs
            .into_iter()
            .partition(|c| key_id.is_some() && c.local_key_id.as_deref() == key_id);
        own.extend(others);
        let chain: Vec<_> = own
            .into_iter()
            .map(|c| CertificateDer::from(c.cert.as_der().to_vec()))
            .collect();
        if chain.is_empty() {
            return Err(Error::Config(
                "the PKCS#12 bundle holds no certificate".into(),
            ));
        }
        Ok(Identity { chain, key })
    }
}

/// The CERTIFICATE blocks of a PEM file, at least one.
fn pem_chain(certificates: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let chain = CertificateDer::pem_slice_iter(certificates)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("the certificate file is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Config(
            "the certificate file holds no CERTIFICATE block".into(),
        ));
    }
    Ok(chain)
}

/// Longest call unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest connect unless set otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a [`Client`].
#[derive(Debug)]
pub struct Builder {
    url: String,
    roots: Vec<CertificateDer<'static>>,
    identity: Option<Identity>,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
}

impl Builder {
    /// Trusts the CA certificates in `pem` (Signet's root, `DATA/ca/root.pem`).
    pub fn root_pem(mut self, pem: &[u8]) -> Result<Self> {
        for cert in CertificateDer::pem_slice_iter(pem) {
            self.roots
                .push(cert.map_err(|e| Error::Config(format!("the CA file is not PEM: {e}")))?);
        }
        Ok(self)
    }

    /// The client certificate and key.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// The longest a whole call may take (30 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest connecting may take (5 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` the server's log shows (`signet-client/<version>` by default).
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client> {
        let (config, settings) = self.tls()?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(config))
            // One kept connection per concurrent caller (the PKCS#11 module signs from many
            // threads through one client): without it each extra thread would handshake anew.
            .max_idle_connections_per_host(64)
            .timeout(settings.timeout)
            .timeout_connect(settings.connect_timeout)
            .user_agent(&settings.user_agent)
            .build();
        Ok(Client {
            agent,
            base: settings.url,
        })
    }

    /// The TLS configuration (TLS 1.3 only, the root, the identity) and the other settings,
    /// checked.
    fn tls(self) -> Result<(rustls::ClientConfig, Settings)> {
        if !self.url.starts_with("https://") {
            return Err(Error::Config(format!(
                "the server URL must start with https:// (Signet answers only mutual TLS): {}",
                self.url
            )));
        }
        if self.roots.is_empty() {
            return Err(Error::Config(
                "no CA certificate to trust: give Signet's root (DATA/ca/root.pem)".into(),
            ));
        }
        let Some(mut identity) = self.identity else {
            return Err(Error::Config(
                "no client certificate: Signet answers only clients with one".into(),
            ));
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in self.roots {
            roots
                .add(cert)
                .map_err(|e| Error::Config(format!("the CA certificate is not usable: {e}")))?;
        }
        // The signing key is made from a reference to the key's bytes, so that no copy of them
        // outlives the identity, which wipes its own.
        let unusable = |e: rustls::Error| {
            Error::Config(format!("the client certificate or key is not usable: {e}"))
        };
        let signing_key =
            rustls::crypto::ring::sign::any_supported_type(&identity.key).map_err(unusable)?;
        let certified =
            rustls::sign::CertifiedKey::new(std::mem::take(&mut identity.chain), signing_key);
        // As rustls's own `with_client_auth_cert`: a key that cannot tell its public half is
        // taken as it is; one that can must be the certificate's.
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(e) => return Err(unusable(e)),
        }
        // ring, with ML-DSA verification for a server whose CA is ML-DSA.
        let config = rustls::ClientConfig::builder_with_provider(signet_mldsa::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        Ok((
            config,
            Settings {
                url: self.url.trim_end_matches('/').to_string(),
                timeout: self.timeout,
                connect_timeout: self.connect_timeout,
                user_agent: self.user_agent,
            },
        ))
    }
}

/// A built client's settings besides TLS.
#[derive(Debug, Clone)]
struct Settings {
    url: String,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
}

/// A connection to one Signet server. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("url", &self.base).finish()
    }
}

/// How the input of a signature is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// The message; the server hashes it.
    Message,
    /// The digest of the algorithm's hash.
    Digest,
}

/// One signature to make.
#[derive(Debug, Clone)]
pub struct SignRequest<'a> {
    /// The message or digest.
    pub input: &'a [u8],
    /// Which of the two it is.
    pub input_type: InputType,
    /// The JOSE name of the algorithm (`ES256`, `PS384`, …); the key's default when `None`.
    pub algorithm: Option<&'a str>,
    /// The key version; the primary when `None`.
    pub version: Option<u32>,
    /// ECDSA signatures as DER instead of r‖s.
    pub der: bool,
    /// ML-DSA and SLH-DSA only: the context string the signature is bound to (at most 255 bytes).
    pub context: Option<&'a [u8]>,
}

impl<'a> SignRequest<'a> {
    /// A request for the key's default algorithm and primary version.
    pub fn new(input: &'a [u8], input_type: InputType) -> Self {
        SignRequest {
            input,
            input_type,
            algorithm: None,
            version: None,
            der: false,
            context: None,
        }
    }
}

/// A signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signature (ECDSA as r‖s, or DER when asked).
    pub bytes: Vec<u8>,
    /// The version that made it.
    pub version: u32,
    /// The algorithm's JOSE name.
    pub algorithm: String,
    /// The version's key id (hex).
    pub key_id: String,
}

/// A key in a list.
#[derive(Debug, Clone, Deserialize)]
pub struct KeySummary {
    /// Its name.
    pub name: String,
    /// Its spec (`ec-p256`, `rsa-3072`, …).
    pub spec: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The version that signs.
    pub primary_version: u32,
    /// `active` or `pending_deletion`.
    pub state: String,
}

/// One version of a key.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyVersion {
    /// 1, 2, …
    pub version: u32,
    /// `enabled`, `disabled` or `destroyed`.
    pub state: String,
    /// The key pair's id in the token (hex).
    pub key_id: String,
    /// The public key (SubjectPublicKeyInfo PEM), for versions not destroyed.
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// The public key as a JWK (with its RFC 7638 thumbprint as `kid`).
    #[serde(default)]
    pub jwk: Option<Value>,
}

/// A key and its versions.
#[derive(Debug, Clone, Deserialize)]
pub struct Key {
    /// Its name.
    pub name: String,
    /// Its spec.
    pub spec: String,
    /// When it was created (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// The version that signs.
    pub primary_version: u32,
    /// Set when its deletion is scheduled.
    #[serde(default)]
    pub deletion: Option<Value>,
    /// Its versions, oldest first.
    pub versions: Vec<KeyVersion>,
}

/// A key the caller may use.
#[derive(Debug, Clone, Deserialize)]
pub struct UsableKey {
    /// The key.
    #[serde(flatten)]
    pub key: Key,
    /// The caller may sign with it (else read and verify only).
    pub may_sign: bool,
    /// Per version, the certificate Signet issued for its public key, if any.
    #[serde(default)]
    pub certificates: Vec<VersionCertificate>,
}

/// A certificate of a key version.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionCertificate {
    /// The version.
    pub version: u32,
    /// Its serial (hex).
    pub serial: String,
    /// The certificate (PEM).
    pub certificate_pem: String,
}

#[derive(Deserialize)]
struct Keys<T> {
    keys: Vec<T>,
}

#[derive(Deserialize)]
struct SignatureAnswer {
    signature: String,
    version: u32,
    algorithm: String,
    key_id: String,
}

impl Client {
    /// A builder for the server at `url` (`https://host:port`).
    pub fn builder(url: impl Into<String>) -> Builder {
        Builder {
            url: url.into(),
            roots: Vec::new(),
            identity: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: format!("signet-client/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET path`, decoded; retried once if the connection failed.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let first = self.agent.get(&url).call();
        let answer = match first {
            Err(ureq::Error::Transport(_)) => self.agent.get(&url).call(),
            other => other,
        };
        self.finish(path, answer)
    }

    /// `POST path` with a JSON body, decoded; sent once.
    pub fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let answer = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string());
        self.finish(path, answer)
    }

    fn finish<T: DeserializeOwned>(
        &self,
        path: &str,
        answer: std::result::Result<ureq::Response, ureq::Error>,
    ) -> Result<T> {
        let decode = |message: String| Error::Decode {
            path: path.to_string(),
            message,
        };
        match answer {
            Ok(response) => response.into_json::<T>().map_err(|e| decode(e.to_string())),
            Err(ureq::Error::Status(status, response)) => {
                Err(problem(status, &response.into_string().unwrap_or_default()))
            }
            Err(ureq::Error::Transport(t)) => Err(transport(&self.base, &t)),
        }
    }

    /// Liveness (`GET /healthz`): the server is up and accepts this client.
    pub fn health(&self) -> Result<()> {
        self.get::<Value>("/healthz").map(drop)
    }

    /// Every key (`keys:read`).
    pub fn keys(&self) -> Result<Vec<KeySummary>> {
        Ok(self.get::<Keys<KeySummary>>("/v1/keys")?.keys)
    }

    /// The keys this client may read, verify or sign with, with their versions' public keys.
    pub fn usable_keys(&self) -> Result<Vec<UsableKey>> {
        Ok(self.get::<Keys<UsableKey>>("/v1/me/keys")?.keys)
    }

    /// One key and its versions.
    pub fn key(&self, name: &str) -> Result<Key> {
        self.get(&format!("/v1/keys/{}", path_segment(name)?))
    }

    /// Creates a key (`keys:create`).
    pub fn create_key(&self, name: &str, spec: &str) -> Result<Key> {
        self.post("/v1/keys", &serde_json::json!({"name": name, "spec": spec}))
    }

    /// Signs with the key `name`.
    pub fn sign(&self, name: &str, request: &SignRequest<'_>) -> Result<Signature> {
        let path = format!("/v1/keys/{}/sign", path_segment(name)?);
        signature(path.clone(), self.post(&path, &request.body())?)
    }
}

impl SignRequest<'_> {
    /// The JSON body of `POST /v1/keys/{name}/sign`.
    fn body(&self) -> Value {
        let request = self;
        let mut body = serde_json::json!({
            "input": STANDARD.encode(request.input),
            "input_type": request.input_type,
            "encoding": if request.der { "der" } else { "raw" },
        });
        if let Some(algorithm) = request.algorithm {
            body["algorithm"] = algorithm.into();
        }
        if let Some(version) = request.version {
            body["version"] = version.into();
        }
        if let Some(context) = request.context {
            body["context"] = STANDARD.encode(context).into();
        }
        body
    }
}

/// The signature in a sign answer.
fn signature(path: String, answer: SignatureAnswer) -> Result<Signature> {
    let bytes = STANDARD
        .decode(answer.signature)
        .map_err(|e| Error::Decode {
            path,
            message: format!("the signature is not base64: {e}"),
        })?;
    Ok(Signature {
        bytes,
        version: answer.version,
        algorithm: answer.algorithm,
        key_id: answer.key_id,
    })
}

/// The error of an answer with a 4xx or 5xx `status` and body `text` (a problem document, or
/// anything else a proxy may have said).
fn problem(status: u16, text: &str) -> Error {
    Error::Problem(serde_json::from_str::<Problem>(text).unwrap_or(Problem {
        kind: String::new(),
        title: String::new(),
        status,
        detail: text.chars().take(200).collect(),
        request_id: String::new(),
    }))
}

/// The error of a failed connection to `url`: a refused certificate when the server's TLS
/// alert says so (anywhere in the error's chain), else unreachable.
fn transport(url: &str, failure: &(dyn std::error::Error + 'static)) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(failure);
    while let Some(e) = source {
        if let Some(rustls::Error::AlertReceived(alert)) = e.downcast_ref::<rustls::Error>() {
            use rustls::AlertDescription as A;
            if matches!(
                alert,
                A::CertificateRevoked
                    | A::CertificateExpired
                    | A::BadCertificate
                    | A::UnknownCA
                    | A::CertificateUnknown
                    | A::CertificateRequired
                    | A::AccessDenied
            ) {
                return Error::CertificateRefused {
                    alert: format!("{alert:?}"),
                };
            }
        }
        if let Some(rustls::Error::InvalidCertificate(problem)) = e.downcast_ref::<rustls::Error>()
        {
            return Error::Unreachable {
                url: url.to_string(),
                message: format!(
                    "the server's certificate is not trusted: {}",
                    server_certificate_problem(problem)
                ),
            };
        }
        // An I/O error's source() skips the error it wraps (tokio-rustls wraps rustls's).
        source = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    Error::Unreachable {
        url: url.to_string(),
        message: failure.to_string(),
    }
}

/// Why this client refused the server's certificate, in words (rustls's own text is its Debug
/// output, algorithm identifiers in hex included).
fn server_certificate_problem(problem: &rustls::CertificateError) -> &'static str {
    use rustls::CertificateError as C;
    match problem {
        C::UnknownIssuer => {
            "it was not issued under the CA this client trusts (--ca, or `ca` in the settings file)"
        }
        C::Expired | C::ExpiredContext { .. } => "it has expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet (check the clocks)",
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it does not name this host (call it by a name or address its certificate lists)"
        }
        C::BadSignature => "a signature in its chain does not verify",
        C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "its chain is signed with an algorithm this client cannot verify"
        }
        C::Revoked => "it is revoked",
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "it is not a server certificate",
        C::BadEncoding => "it does not parse",
        _ => "this client's certificate verifier refused it",
    }
}

/// Whether `name` is a Signet key name: 1-64 of A-Z a-z 0-9 - _ . not starting with a dot.
pub fn is_key_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A key name as one path segment: Signet's names need no escaping, and anything else is
/// refused here rather than sent.
fn path_segment(name: &str) -> Result<&str> {
    if is_key_name(name) {
        Ok(name)
    } else {
        Err(Error::Config(format!(
            "{name:?} is not a key name (1-64 of A-Z a-z 0-9 - _ . not starting with a dot)"
        )))
    }
}

pub mod settings;

#[cfg(feature = "async")]
mod nonblocking;
#[cfg(feature = "async")]
pub use nonblocking::AsyncClient;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// A server certificate this client refuses is explained in words, not in rustls's Debug
    /// text.
    #[test]
    fn refused_server_certificates_are_explained() {
        // What rustls over plain ring says of an ML-DSA-87 root's signature.
        let refused = rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: vec![6, 9, 96, 134, 72, 1, 101, 3, 4, 3, 19],
                supported_algorithms: Vec::new(),
            },
        );
        let message = super::transport("https://signet.example", &refused).to_string();
        assert_eq!(
            message,
            "cannot reach https://signet.example: the server's certificate is not trusted: its chain is signed with an algorithm this client cannot verify"
        );
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let message = super::transport("https://signet.example", &unknown).to_string();
        assert!(message.contains("not issued under the CA"), "{message}");
    }

    use super::*;

    #[test]
    fn problems_name_their_type() {
        let p: Problem = serde_json::from_str(
            r#"{"type":"/problems/forbidden","title":"Forbidden","status":403,"detail":"needs keys:sign:k","request_id":"r"}"#,
        )
        .unwrap();
        assert_eq!(p.name(), "forbidden");
        assert_eq!(p.to_string(), "403 Forbidden: needs keys:sign:k");
    }

    #[test]
    fn names_that_are_not_key_names_are_not_sent() {
        assert!(path_segment("app-1.v2").is_ok());
        for bad in ["", ".hidden", "a/b", "a?b", "a b", "..%2f"] {
            assert!(matches!(path_segment(bad), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn a_client_needs_https_a_root_and_an_identity() {
        let err = Client::builder("http://localhost:8443")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("https://"), "{err}");
        let err = Client::builder("https://localhost:8443")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("CA certificate"), "{err}");
        assert!(matches!(
            Identity::from_pem(b"not pem", b"not pem"),
            Err(Error::Config(_))
        ));
    }

    fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out.stdout
    }

    /// A client is built from a certificate and its key, not from a key that is another's;
    /// an identity's key bytes are gone once it is wiped (as on drop).
    #[test]
    fn a_client_needs_the_certificates_own_key_and_an_identity_wipes_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["a", "b"] {
            let args = format!(
                "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=app \
                 -days 1 -keyout {name}.key -out {name}.crt"
            );
            openssl(d, &args.split_whitespace().collect::<Vec<_>>());
        }
        let read = |f: &str| std::fs::read(d.join(f)).unwrap();
        let root = read("a.crt");
        let build = |cert: &str, key: &str| {
            Client::builder("https://localhost:8443")
                .root_pem(&root)
                .unwrap()
                .identity(Identity::from_pem(&read(cert), &read(key)).unwrap())
                .build()
        };
        assert!(build("a.crt", "a.key").is_ok());
        let err = build("a.crt", "b.key").unwrap_err();
        assert!(err.to_string().contains("not usable"), "{err}");
        let mut identity = Identity::from_pem(&read("a.crt"), &read("a.key")).unwrap();
        assert!(!identity.key.secret_der().is_empty());
        identity.wipe();
        assert!(identity.key.secret_der().is_empty());
    }

    /// Keys as OpenSSL 3 encrypts them (PBES2: PBKDF2-HMAC-SHA256 or scrypt, AES-256-CBC)
    /// decrypt to the very key OpenSSL decrypts; a wrong passphrase and the legacy format are
    /// refused with errors that say which.
    #[test]
    fn encrypted_pem_keys_open_with_their_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "plain.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "plain.pem",
                "-subj",
                "/CN=app",
                "-days",
                "1",
                "-out",
                "app.crt",
            ],
        );
        let cert = std::fs::read(d.join("app.crt")).unwrap();
        let expected = openssl(
            d,
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                "plain.pem",
                "-outform",
                "DER",
            ],
        );
        for scheme in [&["-v2", "aes-256-cbc"][..], &["-scrypt"][..]] {
            let mut args = vec![
                "pkcs8",
                "-topk8",
                "-in",
                "plain.pem",
                "-passout",
                "pass:s3cret pass",
            ];
            args.extend_from_slice(scheme);
            let encrypted = openssl(d, &args);
            assert!(Identity::key_is_encrypted(&encrypted));
            let identity = Identity::from_encrypted_pem(&cert, &encrypted, "s3cret pass").unwrap();
            assert_eq!(identity.key.secret_der(), expected.as_slice(), "{scheme:?}");
            assert_eq!(identity.chain.len(), 1);
            let err = Identity::from_encrypted_pem(&cert, &encrypted, "s3cret pas").unwrap_err();
            assert!(matches!(err, Error::WrongPassword(_)), "{err}");
            assert!(err.to_string().contains("passphrase is wrong"), "{err}");
            let err = Identity::from_pem(&cert, &encrypted).unwrap_err();
            assert!(err.to_string().contains("encrypted"), "{err}");
        }
        let legacy = openssl(
            d,
            &["ec", "-in", "plain.pem", "-aes256", "-passout", "pass:x"],
        );
        assert!(Identity::key_is_encrypted(&legacy));
        let err = Identity::from_encrypted_pem(&cert, &legacy, "x").unwrap_err();
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
        let plain = std::fs::read(d.join("plain.pem")).unwrap();
        assert!(!Identity::key_is_encrypted(&plain));
        assert!(Identity::from_pem(&cert, &plain).is_ok());
    }
}
