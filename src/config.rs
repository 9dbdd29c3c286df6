//! Configuration: one TOML file, environment overrides, safe defaults. With no file at all,
//! Signet runs on its embedded default: a SoftHSM2 token and a sled database under the data
//! directory. `src/signet.example.toml` is the commented reference.
//!
//! Values are typed where they are read: key specs and algorithms parse here, so a bad name is
//! refused with the file's line, and nothing later falls back to a default silently.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_hsm::{KeySpec, SignatureAlgorithm};

/// Overrides `data_dir`.
/// The annotated configuration file (`signet config example`): every setting with its default.
pub const EXAMPLE: &str = include_str!("signet.example.toml");

pub const ENV_DATA_DIR: &str = "SIGNET_DATA_DIR";
/// Overrides `server.listen`.
pub const ENV_LISTEN: &str = "SIGNET_LISTEN";
/// Overrides `hsm.module` (PKCS#11 backend).
pub const ENV_HSM_MODULE: &str = "SIGNET_HSM_MODULE";
/// Overrides `hsm.pin_file`.
pub const ENV_HSM_PIN_FILE: &str = "SIGNET_HSM_PIN_FILE";
/// Overrides `hsm.uri` (read by the CLI as `--hsm-uri`).
pub const ENV_HSM_URI: &str = "SIGNET_HSM_URI";

/// Paths under the data directory.
#[derive(Debug, Clone)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    /// The embedded SoftHSM2 token directory.
    pub fn softhsm(&self) -> PathBuf {
        self.0.join("softhsm")
    }
    /// The embedded token's user PIN (0600).
    pub fn pin(&self) -> PathBuf {
        self.0.join("pin")
    }
    /// The embedded token's SO PIN (0600).
    pub fn so_pin(&self) -> PathBuf {
        self.0.join("so-pin")
    }
    /// CA certificates and CRL.
    pub fn ca(&self) -> PathBuf {
        self.0.join("ca")
    }
    /// Written while `signet serve` runs: its pid and address.
    pub fn server_file(&self) -> PathBuf {
        self.0.join("server.pid")
    }
    /// The audit log.
    pub fn audit(&self) -> PathBuf {
        self.0.join("audit")
    }
    /// Client bundles.
    pub fn clients(&self) -> PathBuf {
        self.0.join("clients")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded token, the database and the CA files live.
    pub data_dir: PathBuf,
    /// The key store.
    pub hsm: HsmConfig,
    /// The metadata store.
    pub store: StoreConfig,
    /// The certificate authority.
    pub ca: CaConfig,
    /// The HTTPS API.
    pub server: ServerConfig,
    /// Signed tokens (JWT).
    pub tokens: TokensConfig,
    /// The audit log.
    pub audit: AuditConfig,
    /// Publication of the CA certificates and CRLs to relying parties that are not enrolled.
    pub publish: PublishConfig,
}

/// Where the CA certificates and CRLs are published (off by default): a plain-HTTP listener
/// serving only those files, and/or a directory any web server can serve. With `base_url`,
/// certificates issued from then on name the files (CRL distribution points, AIA caIssuers).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// Address of the plain-HTTP publication listener (GET and HEAD of the files only).
    pub listen: Option<SocketAddr>,
    /// The URL the files are reachable at (`http://host[:port][/path]`), put in certificates.
    pub base_url: Option<String>,
    /// A directory the files are also written to (DER), kept current.
    pub dir: Option<PathBuf>,
}

impl PublishConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.base_url {
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .unwrap_or_default();
            let host = rest.split('/').next().unwrap_or_default();
            if host.is_empty() || url.contains(['?', '#', '@', ' ', '"']) || !url.is_ascii() {
                return invalid(format!(
                    "publish.base_url {url:?} must be http://host[:port][/path] (no query, fragment or user)"
                ));
            }
        }
        if self.listen.is_some() && self.base_url.is_none() {
            return invalid(
                "publish.listen needs publish.base_url: the URL relying parties reach the files at, which certificates name",
            );
        }
        Ok(())
    }
}

/// Which key store, tagged by `backend` (default `pkcs11`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HsmConfig {
    /// A PKCS#11 token (or the embedded SoftHSM2 token when `module` is unset).
    Pkcs11(Pkcs11Settings),
    /// A YubiKey's PIV application (through PC/SC).
    Yubikey(YubikeySettings),
}

/// A YubiKey (PIV), how to log in and what goes where. No PIN or management key in this file:
/// only where to read them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YubikeySettings {
    /// The card's serial number, when several are plugged in.
    pub serial: Option<u32>,
    /// File holding the PIV PIN.
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the PIV PIN.
    pub pin_env: Option<String>,
    /// File holding the management key (48 hex digits, 3DES).
    pub management_key_file: Option<PathBuf>,
    /// Environment variable holding the management key.
    pub management_key_env: Option<String>,
    /// `once` (the PIN verified when the card is opened) or `always` (before every use).
    pub pin_policy: String,
    /// `never`, `always` or `cached` (a touch at most every 15 s).
    pub touch_policy: String,
    /// Slot of the root CA key (hex).
    pub root_ca_slot: String,
    /// Slot of the intermediate CA key.
    pub intermediate_ca_slot: String,
    /// Slot of the server's TLS key.
    pub server_tls_slot: String,
    /// Slot of the audit checkpoint key.
    pub audit_slot: String,
    /// PIV attestation roots (PEM files: Yubico's PIV attestation root in production). Every
    /// key the card generates is attested, and the attestation must chain to one of these;
    /// with none, what the card says is recorded unchecked.
    pub attestation_roots: Vec<PathBuf>,
}

impl Default for YubikeySettings {
    fn default() -> Self {
        YubikeySettings {
            serial: None,
            pin_file: None,
            pin_env: None,
            management_key_file: None,
            management_key_env: None,
            pin_policy: "once".into(),
            touch_policy: "never".into(),
            root_ca_slot: "9c".into(),
            intermediate_ca_slot: "9d".into(),
            server_tls_slot: "9a".into(),
            audit_slot: "9e".into(),
            attestation_roots: Vec::new(),
        }
    }
}

impl YubikeySettings {
    /// The slots, checked: PIV key slots (9a, 9c, 9d, 9e), all different.
    pub fn slots(&self) -> Result<signet_hsm::PivSlots, ConfigError> {
        let parse = |what: &str, text: &str| {
            u8::from_str_radix(text.trim_start_matches("0x"), 16)
                .ok()
                .filter(|s| matches!(s, 0x9a | 0x9c | 0x9d | 0x9e))
                .ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "hsm.{what} {text:?}: one of 9a, 9c, 9d, 9e (named keys take 82 to 95)"
                    ))
                })
        };
        let slots = signet_hsm::PivSlots {
            root_ca: parse("root_ca_slot", &self.root_ca_slot)?,
            intermediate_ca: parse("intermediate_ca_slot", &self.intermediate_ca_slot)?,
            server_tls: parse("server_tls_slot", &self.server_tls_slot)?,
            audit: parse("audit_slot", &self.audit_slot)?,
        };
        let all = [
            slots.root_ca,
            slots.intermediate_ca,
            slots.server_tls,
            slots.audit,
        ];
        if (1..all.len()).any(|i| all[..i].contains(&all[i])) {
            return Err(ConfigError::Invalid(
                "hsm: the root CA, intermediate CA, server TLS and audit keys need four different slots".into(),
            ));
        }
        Ok(slots)
    }

    /// The PIN and touch policies, checked.
    pub fn policies(&self) -> Result<(signet_hsm::PinUse, signet_hsm::TouchUse), ConfigError> {
        let pin = match self.pin_policy.as_str() {
            "once" => signet_hsm::PinUse::Once,
            "always" => signet_hsm::PinUse::Always,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "hsm.pin_policy {other:?}: once or always"
                )))
            }
        };
        let touch = match self.touch_policy.as_str() {
            "never" => signet_hsm::TouchUse::Never,
            "always" => signet_hsm::TouchUse::Always,
            "cached" => signet_hsm::TouchUse::Cached,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "hsm.touch_policy {other:?}: never, always or cached"
                )))
            }
        };
        Ok((pin, touch))
    }
}

/// A PKCS#11 token, and how to log in. No PIN in this file: only where to read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Settings {
    /// The token (and module, and PIN file) as a PKCS#11 URI (RFC 7512); the fields below are
    /// the shorthand. A URI's `module-path`/`module-name` and `pin-source` fill `module` and
    /// `pin_file` (giving both differently is an error); its token attributes select the token.
    pub uri: Option<String>,
    /// PKCS#11 module. Absent: the embedded SoftHSM2 token under `data_dir/softhsm`.
    pub module: Option<PathBuf>,
    /// Token label.
    pub token_label: String,
    /// Slot id, instead of the label.
    pub slot: Option<u64>,
    /// File holding the user PIN.
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN.
    pub pin_env: Option<String>,
    /// Most PKCS#11 sessions open at once; by default one per CPU (a token inside this
    /// process, such as SoftHSM2 or kryoptic, signs on these CPUs: more sessions only queue on
    /// its locks). A network HSM serves more at once: set its own concurrency. While every
    /// session is busy with a slow operation, other requests wait for a worker.
    pub pool_size: usize,
}

/// The token label used when none is configured.
pub const DEFAULT_TOKEN_LABEL: &str = "signet";

impl Default for Pkcs11Settings {
    fn default() -> Self {
        Pkcs11Settings {
            uri: None,
            module: None,
            token_label: DEFAULT_TOKEN_LABEL.into(),
            slot: None,
            pin_file: None,
            pin_env: None,
            pool_size: std::thread::available_parallelism().map_or(4, |n| n.get().min(256)),
        }
    }
}

impl Pkcs11Settings {
    /// The parsed URI, if one is set.
    pub fn parsed_uri(&self) -> Result<Option<signet_hsm::Pkcs11Uri>, ConfigError> {
        self.uri
            .as_deref()
            .map(|u| {
                signet_hsm::Pkcs11Uri::parse(u)
                    .map_err(|e| ConfigError::Invalid(format!("hsm.uri: {e}")))
            })
            .transpose()
    }

    /// Fills `module` and `pin_file` from the URI; refuses a URI that says otherwise than the
    /// fields, and a URI next to `token_label`/`slot` (which would not be used).
    fn apply_uri(&mut self) -> Result<(), ConfigError> {
        let Some(uri) = self.parsed_uri()? else {
            return Ok(());
        };
        let conflict = |what: &str| {
            Err(ConfigError::Invalid(format!(
                "hsm.uri and hsm.{what} say different things; give one"
            )))
        };
        if let Some(module) = uri.module() {
            match &self.module {
                Some(m) if *m != module => return conflict("module"),
                _ => self.module = Some(module),
            }
        }
        if let Some(pin) = uri.pin_source {
            match &self.pin_file {
                Some(p) if *p != pin => return conflict("pin_file"),
                _ => self.pin_file = Some(pin),
            }
        }
        if let Some(token) = &uri.token {
            // The default label stands for "not given"; any other must agree with the URI.
            if self.token_label != DEFAULT_TOKEN_LABEL && self.token_label != *token {
                return conflict("token_label");
            }
            self.token_label = token.clone();
        }
        if self.slot.is_some() {
            return conflict("slot");
        }
        if self.module.is_none() {
            return Err(ConfigError::Invalid(
                "hsm.uri names no module: add ?module-path=/path/to/module.so, or set hsm.module"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Default for HsmConfig {
    fn default() -> Self {
        HsmConfig::Pkcs11(Pkcs11Settings::default())
    }
}

/// Deserialises a section tagged by `tag` (with a default), refusing unknown fields in the
/// chosen variant with their names.
fn tagged_section<'de, D: serde::Deserializer<'de>>(
    d: D,
    tag: &str,
    default: &str,
) -> Result<(String, toml::Value), D::Error> {
    let mut table = toml::Table::deserialize(d)?;
    let kind = match table.remove(tag) {
        None => default.to_string(),
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "{tag} must be a string, not {}",
                other.type_str()
            )))
        }
    };
    Ok((kind, toml::Value::Table(table)))
}

impl<'de> Deserialize<'de> for HsmConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = tagged_section(d, "backend", "pkcs11")?;
        match kind.as_str() {
            "pkcs11" => rest
                .try_into()
                .map(HsmConfig::Pkcs11)
                .map_err(serde::de::Error::custom),
            "yubikey" => rest
                .try_into()
                .map(HsmConfig::Yubikey)
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "hsm.backend {other:?} is not one of pkcs11, yubikey"
            ))),
        }
    }
}

/// Which metadata store, tagged by `kind` (default `sled`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreConfig {
    /// sled, embedded, one node.
    Sled(SledSettings),
    /// PostgreSQL, shared by several nodes.
    Postgres(PostgresSettings),
}

/// A PostgreSQL database shared by every node. No password in this file: only where to read
/// it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresSettings {
    /// `postgresql://user@host:port/dbname` (or the `key=value` form), without a password.
    pub url: String,
    /// A file holding the database password (0600, one line).
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the database password.
    pub password_env: Option<String>,
    /// Connections this node keeps open.
    pub pool_size: usize,
    /// How long one database operation (or waiting for a connection) may take, in
    /// milliseconds, before it fails and the request is refused.
    pub timeout_ms: u64,
    /// This node's name in the audit records it writes (default: the host name).
    pub node: Option<String>,
}

impl Default for PostgresSettings {
    fn default() -> Self {
        PostgresSettings {
            url: String::new(),
            password_file: None,
            password_env: None,
            pool_size: 8,
            timeout_ms: 5000,
            node: None,
        }
    }
}

/// The embedded sled database.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SledSettings {
    /// Where the database lives; `data_dir/db` when unset.
    pub path: Option<PathBuf>,
}

impl SledSettings {
    /// Where the database lives for a service whose data directory is `data_dir`.
    pub fn path_in(&self, data_dir: &Path) -> PathBuf {
        self.path.clone().unwrap_or_else(|| data_dir.join("db"))
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig::Sled(SledSettings::default())
    }
}

impl<'de> Deserialize<'de> for StoreConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (kind, rest) = tagged_section(d, "kind", "sled")?;
        match kind.as_str() {
            "sled" => rest
                .try_into()
                .map(StoreConfig::Sled)
                .map_err(serde::de::Error::custom),
            "postgres" => rest
                .try_into()
                .map(StoreConfig::Postgres)
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "store.kind {other:?} is not one of sled, postgres"
            ))),
        }
    }
}

/// Names, key specs and lifetimes of the CA.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaConfig {
    /// Organisation (O) in every subject.
    pub organization: String,
    /// SPIFFE trust domain for client identities.
    pub trust_domain: String,
    /// Root CA key spec.
    pub root_key_spec: KeySpec,
    /// Intermediate CA key spec.
    pub intermediate_key_spec: KeySpec,
    /// The server's TLS key spec (in the token).
    pub server_key_spec: KeySpec,
    /// Spec of keys generated for handed-out client bundles.
    pub client_key_spec: KeySpec,
    /// Root validity in days.
    pub root_validity_days: u64,
    /// Intermediate validity in days.
    pub intermediate_validity_days: u64,
    /// Longest server certificate, days.
    pub server_max_ttl_days: u64,
    /// Longest client certificate, days.
    pub client_max_ttl_days: u64,
    /// CRL validity, days.
    pub crl_validity_days: u64,
}

/// The API listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// DNS names in the server certificate made by `ca init` on first start.
    pub server_dns: Vec<String>,
    /// IP addresses in that certificate.
    pub server_ips: Vec<IpAddr>,
    /// Name of the first admin principal.
    pub admin: String,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Most items in one sign-batch request.
    pub sign_batch_max: usize,
    /// Seconds between checks for keys whose deletion window has passed.
    pub housekeeping_interval_secs: u64,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Seconds a client has to complete the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds a client has to send a request's headers once it has started (HTTP/1).
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's body.
    pub body_read_timeout_secs: u64,
    /// Seconds an authenticated connection may sit with no request in flight.
    pub idle_timeout_secs: u64,
    /// Seconds any connection may live; it is then closed once its requests are answered.
    pub max_connection_secs: u64,
    /// Most connections open at once (handshaking or authenticated).
    pub max_connections: usize,
    /// Most connections open at once from one source address.
    pub max_connections_per_source: usize,
    /// Most TLS handshakes in progress at once.
    pub max_handshakes: usize,
    /// Most response bytes held, in all, for clients that have not read them (an HTTP/2
    /// client can advertise a zero window); beyond it a request is answered with a short 503.
    pub max_buffered_response_bytes: usize,
    /// The same, for all the connections of one principal.
    pub max_buffered_response_bytes_per_principal: usize,
    /// The same, per connection.
    pub max_buffered_response_bytes_per_connection: usize,
    /// Most TLS handshakes in progress at once from one source address: one address holding
    /// idle sockets cannot take the handshake slots everyone else needs.
    pub max_handshakes_per_source: usize,
    /// Refused handshakes audited one by one per second; beyond that they are counted and
    /// audited as summaries.
    pub refusals_audited_per_sec: u32,
    /// Authorization denials of one principal audited one by one per second; beyond that
    /// they are counted and audited as summaries (every `refusal_summary_secs`).
    pub denials_audited_per_sec: u32,
    /// Seconds between refusal summaries.
    pub refusal_summary_secs: u64,
    /// Prefix of problem `type` URIs: relative (`/problems/`, served by Signet itself) by
    /// default, or an absolute URL of the operator's own documentation.
    pub problem_type_base: String,
    /// Threads of the async runtime (TLS, HTTP); 0: half the CPUs, at least one. The token
    /// work and the audit syncs run on their own threads.
    pub io_threads: usize,
    /// The URL clients reach this service at (`https://host[:port]`, no path): the token
    /// issuer and the endpoints the metadata documents advertise. Unset: `https://` + the
    /// first of `server_dns` (else the listen address) + the listen port. Several nodes behind
    /// one name set it to that name.
    pub public_url: Option<String>,
}

impl ServerConfig {
    /// The async runtime's thread count (`io_threads`, or its default).
    pub fn io_threads(&self) -> usize {
        match self.io_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)),
            n => n,
        }
    }
}

/// Signed tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// `iss` claim; empty (the default): `server.public_url`.
    pub issuer: String,
    /// Spec of the token-signing key.
    pub key_spec: KeySpec,
    /// Algorithm (must fit the spec).
    pub algorithm: SignatureAlgorithm,
    /// Default lifetime, seconds.
    pub default_ttl_secs: u64,
    /// Longest lifetime, seconds.
    pub max_ttl_secs: u64,
    /// Rotate the signing key every N days (0: never automatically).
    pub rotate_every_days: u64,
}

/// Audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// A checkpoint signed by the audit key every this many records.
    pub checkpoint_every: u64,
    /// …or every this many seconds, whichever comes first.
    pub checkpoint_interval_secs: u64,
    /// Microseconds the writer waits before syncing so that more records share the sync.
    pub commit_delay_us: u64,
    /// The most microseconds a batch's writer waits for the records of key uses already under
    /// way on this node, and (under a steady load) for as many requests as recent batches
    /// held, so that they share its sync or transaction (a lone caller never waits; 0: no
    /// waiting).
    pub group_wait_us: u64,
}

fn invalid(message: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid(message.into()))
}

/// The first of `fields` outside `range`, as an error.
fn in_range(
    fields: &[(&str, u64)],
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, v)| !range.contains(v)) {
        Some((field, _)) => invalid(format!(
            "{field} must be {}..={}",
            range.start(),
            range.end()
        )),
        None => Ok(()),
    }
}

impl HsmConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            HsmConfig::Pkcs11(p) => {
                if p.pool_size == 0 || p.pool_size > 256 {
                    return invalid("hsm.pool_size must be 1..=256");
                }
                if p.module.is_some() && p.pin_file.is_none() && p.pin_env.is_none() {
                    return invalid("hsm.module is set: set hsm.pin_file or hsm.pin_env too");
                }
            }
            HsmConfig::Yubikey(y) => {
                y.slots()?;
                y.policies()?;
                if y.pin_file.is_none() && y.pin_env.is_none() {
                    return invalid("hsm.backend = \"yubikey\": set hsm.pin_file or hsm.pin_env");
                }
                if y.management_key_file.is_none() && y.management_key_env.is_none() {
                    return invalid(
                        "hsm.backend = \"yubikey\": set hsm.management_key_file or hsm.management_key_env",
                    );
                }
            }
        }
        Ok(())
    }
}

impl PostgresSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return invalid("store.url: set the PostgreSQL URL (postgresql://user@host:port/db)");
        }
        let userinfo = self
            .url
            .split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?']).next())
            .and_then(|authority| authority.rsplit_once('@'))
            .map(|(user, _)| user);
        if userinfo.is_some_and(|u| u.contains(':')) || self.url.contains("password=") {
            return invalid(
                "store.url carries a password: put it in store.password_file or store.password_env instead",
            );
        }
        if self.pool_size == 0 || self.pool_size > 256 {
            return invalid("store.pool_size must be 1..=256");
        }
        if self.timeout_ms == 0 {
            return invalid("store.timeout_ms must be at least 1");
        }
        Ok(())
    }
}

impl CaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(
            self.client_key_spec,
            KeySpec::EcP256 | KeySpec::EcP384 | KeySpec::Ed25519
        ) {
            return invalid("ca.client_key_spec: handed-out keys are ec-p256, ec-p384 or ed25519");
        }
        // rustls has no ML-DSA server authentication: the server's own key signs handshakes,
        // so it stays ECDSA, Ed25519 or RSA. The root and the intermediate may be ML-DSA (an
        // all-ML-DSA chain above an ECDSA or RSA server key).
        for (field, spec) in [
            ("root_key_spec", self.root_key_spec),
            ("intermediate_key_spec", self.intermediate_key_spec),
            ("server_key_spec", self.server_key_spec),
        ] {
            if spec.is_slh_dsa() {
                return Err(ConfigError::Invalid(format!(
                    "ca.{field} = {:?}: Signet signs no certificate with SLH-DSA; SLH-DSA keys sign through the API only",
                    spec.name()
                )));
            }
        }
        if self.server_key_spec.is_ml_dsa() {
            return Err(ConfigError::Invalid(format!(
                "ca.server_key_spec = {:?}: the TLS server key cannot be ML-DSA (rustls has no ML-DSA server authentication); use ec-p256, ec-p384, ed25519 or rsa-*",
                self.server_key_spec.name()
            )));
        }
        if self.trust_domain.is_empty() || !signet_pki::valid_dns_name(&self.trust_domain) {
            return invalid("ca.trust_domain must be a DNS-like name");
        }
        in_range(
            &[
                ("ca.root_validity_days", self.root_validity_days),
                (
                    "ca.intermediate_validity_days",
                    self.intermediate_validity_days,
                ),
                ("ca.server_max_ttl_days", self.server_max_ttl_days),
                ("ca.client_max_ttl_days", self.client_max_ttl_days),
                ("ca.crl_validity_days", self.crl_validity_days),
            ],
            1..=36500,
        )?;
        if self.intermediate_validity_days > self.root_validity_days {
            return invalid("ca.intermediate_validity_days exceeds ca.root_validity_days");
        }
        Ok(())
    }
}

impl ServerConfig {
    /// The URL clients reach this service at (see [`ServerConfig::public_url`]), without a
    /// trailing slash.
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let port = self.listen.port();
        match self.server_dns.first() {
            Some(name) => format!("https://{name}:{port}"),
            None => match self.listen.ip() {
                IpAddr::V6(ip) => format!("https://[{ip}]:{port}"),
                ip => format!("https://{ip}:{port}"),
            },
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.public_url {
            let rest = url.strip_prefix("https://").unwrap_or_default();
            let host = rest.trim_end_matches('/');
            if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) || !host.is_ascii() {
                return invalid(format!(
                    "server.public_url {url:?} must be https://host or https://host:port (no path, query or user)"
                ));
            }
        }
        if !signet_pki::valid_client_name(&self.admin) {
            return invalid(format!(
                "server.admin {:?} is not a valid principal name",
                self.admin
            ));
        }
        if self.sign_batch_max == 0 || self.sign_batch_max > 10_000 {
            return invalid("server.sign_batch_max must be 1..=10000");
        }
        in_range(
            &[
                ("server.handshake_timeout_secs", self.handshake_timeout_secs),
                (
                    "server.header_read_timeout_secs",
                    self.header_read_timeout_secs,
                ),
                ("server.body_read_timeout_secs", self.body_read_timeout_secs),
                ("server.idle_timeout_secs", self.idle_timeout_secs),
                ("server.max_connection_secs", self.max_connection_secs),
                ("server.refusal_summary_secs", self.refusal_summary_secs),
            ],
            1..=86_400,
        )?;
        let base = &self.problem_type_base;
        if base.is_empty()
            || base.len() > 200
            || base.chars().any(|c| c.is_whitespace() || c.is_control())
            || !(base.starts_with('/') || base.contains("://") || base.starts_with("urn:"))
        {
            return invalid(
                "server.problem_type_base must be a path (/problems/), a URL or a URN, without spaces",
            );
        }
        if self.io_threads > 1024 {
            return invalid("server.io_threads must be at most 1024 (0: half the CPUs)");
        }
        if self.max_connections == 0
            || self.max_connections_per_source == 0
            || self.max_handshakes == 0
            || self.max_handshakes_per_source == 0
        {
            return invalid(
                "server.max_connections, max_connections_per_source, max_handshakes and max_handshakes_per_source must be positive",
            );
        }
        if self.max_buffered_response_bytes_per_connection < 64 * 1024
            || self.max_buffered_response_bytes_per_principal
                < self.max_buffered_response_bytes_per_connection
            || self.max_buffered_response_bytes < self.max_buffered_response_bytes_per_principal
        {
            return invalid(
                "server.max_buffered_response_bytes_per_connection must be at least 65536, max_buffered_response_bytes_per_principal at least that, and max_buffered_response_bytes at least that",
            );
        }
        if self.max_handshakes_per_source > self.max_handshakes {
            return invalid(
                "server.max_handshakes_per_source must be at most max_handshakes (one source must leave handshake slots to the others)",
            );
        }
        if self.max_body_bytes < 1024 {
            return invalid("server.max_body_bytes must be at least 1024");
        }
        Ok(())
    }
}

impl TokensConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.key_spec.allows(self.algorithm) {
            return invalid(format!(
                "tokens.algorithm {} does not fit tokens.key_spec {}",
                self.algorithm, self.key_spec
            ));
        }
        if self.algorithm.is_slh_dsa() {
            return invalid(format!(
                "tokens.algorithm {}: SLH-DSA has no registered JWS algorithm yet (a draft only); Signet signs no token with it",
                self.algorithm
            ));
        }
        if !self.algorithm.is_jose() {
            return invalid(format!(
                "tokens.algorithm {} is not a JWS algorithm (JOSE defines pure ML-DSA only: use {})",
                self.algorithm,
                self.key_spec.default_algorithm()
            ));
        }
        if self.default_ttl_secs == 0 || self.default_ttl_secs > self.max_ttl_secs {
            return invalid("tokens.default_ttl_secs must be 1..=tokens.max_ttl_secs");
        }
        Ok(())
    }
}

impl AuditConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.commit_delay_us > 10_000 || self.group_wait_us > 10_000 {
            return invalid("audit.commit_delay_us and audit.group_wait_us must be at most 10000");
        }
        if self.checkpoint_every == 0 || self.checkpoint_interval_secs == 0 {
            return invalid(
                "audit.checkpoint_every and audit.checkpoint_interval_secs must be positive",
            );
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./signet-data"),
            hsm: HsmConfig::default(),
            store: StoreConfig::default(),
            ca: CaConfig::default(),
            server: ServerConfig::default(),
            tokens: TokensConfig::default(),
            audit: AuditConfig::default(),
            publish: PublishConfig::default(),
        }
    }
}

impl Default for CaConfig {
    fn default() -> Self {
        CaConfig {
            organization: "Signet".into(),
            trust_domain: "signet.local".into(),
            root_key_spec: KeySpec::EcP384,
            intermediate_key_spec: KeySpec::EcP384,
            server_key_spec: KeySpec::EcP256,
            client_key_spec: KeySpec::EcP256,
            root_validity_days: 3650,
            intermediate_validity_days: 1825,
            server_max_ttl_days: 90,
            client_max_ttl_days: 365,
            crl_validity_days: 7,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            server_dns: vec!["localhost".into()],
            server_ips: vec![IpAddr::from([127, 0, 0, 1])],
            admin: "admin".into(),
            max_body_bytes: 1024 * 1024,
            sign_batch_max: 100,
            housekeeping_interval_secs: 300,
            shutdown_grace_secs: 10,
            handshake_timeout_secs: 5,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_connection_secs: 600,
            max_connections: 1024,
            max_connections_per_source: 128,
            max_handshakes: 64,
            max_handshakes_per_source: 8,
            max_buffered_response_bytes: 64 * 1024 * 1024,
            max_buffered_response_bytes_per_principal: 16 * 1024 * 1024,
            max_buffered_response_bytes_per_connection: 4 * 1024 * 1024,
            refusals_audited_per_sec: 5,
            denials_audited_per_sec: 5,
            refusal_summary_secs: 10,
            problem_type_base: "/problems/".into(),
            io_threads: 0,
            public_url: None,
        }
    }
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            // Empty: the public URL (see `Config::resolve`).
            issuer: String::new(),
            key_spec: KeySpec::EcP256,
            algorithm: SignatureAlgorithm::Es256,
            default_ttl_secs: 900,
            max_ttl_secs: 3600,
            rotate_every_days: 0,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every: 1000,
            checkpoint_interval_secs: 1,
            commit_delay_us: 0,
            group_wait_us: 3000,
        }
    }
}

/// A configuration problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Parses TOML text (no environment, no validation).
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Loads `path` (or the defaults when `None`), then applies environment overrides and
    /// `data_dir_override` (the CLI's `--data-dir`), then validates.
    pub fn load(
        path: Option<&Path>,
        data_dir_override: Option<&Path>,
        hsm_uri_override: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::parse(&text).map_err(|message| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message,
                })?
            }
            None => Config::default(),
        };
        if let Some(dir) = std::env::var_os(ENV_DATA_DIR) {
            config.data_dir = dir.into();
        }
        if let HsmConfig::Pkcs11(pkcs11) = &mut config.hsm {
            if let Some(module) = std::env::var_os(ENV_HSM_MODULE) {
                pkcs11.module = Some(module.into());
            }
            if let Some(pin_file) = std::env::var_os(ENV_HSM_PIN_FILE) {
                pkcs11.pin_file = Some(pin_file.into());
            }
            // The flag, which clap also fills from SIGNET_HSM_URI.
            if let Some(uri) = hsm_uri_override {
                pkcs11.uri = Some(uri.to_string());
            }
            pkcs11.apply_uri()?;
        }
        if let Ok(listen) = std::env::var(ENV_LISTEN) {
            config.server.listen = listen
                .parse()
                .map_err(|e| ConfigError::Invalid(format!("{ENV_LISTEN}={listen:?}: {e}")))?;
        }
        if let Some(dir) = data_dir_override {
            config.data_dir = dir.to_path_buf();
        }
        config.validate()?;
        Ok(config)
    }

    /// Fills the settings that default to others (the token issuer to the public URL). Done
    /// when the service opens, once the listen address is final (`serve --listen`, a port 0
    /// made concrete); doing it again changes nothing.
    pub fn resolve(&mut self) {
        if self.tokens.issuer.is_empty() {
            self.tokens.issuer = self.server.public_url();
        }
    }

    /// Checks ranges and consistency, section by section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ca.validate()?;
        self.tokens.validate()?;
        self.hsm.validate()?;
        if let StoreConfig::Postgres(pg) = &self.store {
            pg.validate()?;
        }
        self.server.validate()?;
        self.publish.validate()?;
        self.audit.validate()
    }

    /// The PKI crate's settings.
    pub fn ca_settings(&self) -> signet_pki::CaSettings {
        let days = |d: u64| Duration::from_secs(d * 24 * 3600);
        signet_pki::CaSettings {
            organization: self.ca.organization.clone(),
            trust_domain: self.ca.trust_domain.clone(),
            root_validity: days(self.ca.root_validity_days),
            intermediate_validity: days(self.ca.intermediate_validity_days),
            server_max_ttl: days(self.ca.server_max_ttl_days),
            client_max_ttl: days(self.ca.client_max_ttl_days),
            crl_validity: days(self.ca.crl_validity_days),
            publication_url: self
                .publish
                .base_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
        }
    }

    /// Paths under the data directory.
    pub fn paths(&self) -> DataDir {
        DataDir(self.data_dir.clone())
    }

    /// True when the embedded SoftHSM2 token is used.
    pub fn is_embedded(&self) -> bool {
        matches!(&self.hsm, HsmConfig::Pkcs11(p) if p.module.is_none())
    }

    /// A one-line description of the key store (no secrets).
    pub fn hsm_summary(&self) -> String {
        match &self.hsm {
            HsmConfig::Pkcs11(p) => match &p.module {
                None => format!(
                    "embedded SoftHSM2 token under {}/softhsm",
                    self.data_dir.display()
                ),
                Some(m) => format!("{} (token {:?})", m.display(), p.token_label),
            },
            HsmConfig::Yubikey(y) => match y.serial {
                Some(serial) => format!("YubiKey PIV (serial {serial})"),
                None => "YubiKey PIV (the one card plugged in)".into(),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reference_config_parses_and_validates() {
        let text = EXAMPLE;
        let config = Config::parse(text).expect("reference config parses");
        config.validate().expect("reference config is valid");
    }

    /// Why validation refuses the config `text` (which parses).
    fn refusal(text: &str) -> String {
        Config::parse(text)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(Config::parse("[hsm]\npin = \"1234\"\n").is_err());
        assert!(Config::parse("[ca]\nroot_key_spec = \"rsa-1024\"\n")
            .unwrap_err()
            .contains("rsa-1024"));
        let config = Config::parse("[tokens]\nalgorithm = \"RS256\"\n").unwrap();
        assert!(config.validate().is_err());
        assert!(refusal("[hsm]\nmodule = \"/x.so\"\n").contains("pin_file"));
        assert!(Config::parse("[hsm]\nbackend = \"tpm\"\n")
            .unwrap_err()
            .contains("tpm"));
        assert!(Config::parse("[store]\nkind = \"sled\"\nurl = \"x\"\n")
            .unwrap_err()
            .contains("url"));
        let explicit = Config::parse("[hsm]\nbackend = \"pkcs11\"\npool_size = 2\n").unwrap();
        let HsmConfig::Pkcs11(p) = explicit.hsm else {
            panic!("pkcs11 expected");
        };
        assert_eq!(p.pool_size, 2);
        let yubikey = Config::parse(
            "[hsm]\nbackend = \"yubikey\"\npin_env = \"P\"\nmanagement_key_env = \"M\"\n",
        )
        .unwrap();
        yubikey.validate().unwrap();
        assert!(refusal("[hsm]\nbackend = \"yubikey\"\npin_env = \"P\"\nmanagement_key_env = \"M\"\nserver_tls_slot = \"9c\"\n").contains("four different slots"));
        assert!(refusal("[hsm]\nbackend = \"yubikey\"\npin_env = \"P\"\nmanagement_key_env = \"M\"\naudit_slot = \"82\"\n").contains("82 to 95"));
        assert!(refusal("[server]\nio_threads = 100000\n").contains("io_threads"));
        // ML-DSA CA keys sign certificates and CRLs; the server key signs handshakes.
        assert!(refusal("[ca]\nserver_key_spec = \"ml-dsa-65\"\n").contains("cannot be ML-DSA"));
        assert!(refusal("[ca]\nroot_key_spec = \"slh-dsa-sha2-128s\"\n")
            .contains("no certificate with SLH-DSA"));
        assert!(refusal(
            "[tokens]\nkey_spec = \"slh-dsa-sha2-128f\"\nalgorithm = \"SLH-DSA-SHA2-128f\"\n"
        )
        .contains("no registered JWS algorithm"));
        Config::parse(
            "[ca]\nroot_key_spec = \"ml-dsa-87\"\nintermediate_key_spec = \"ml-dsa-65\"\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        Config::parse("[tokens]\nkey_spec = \"ml-dsa-87\"\nalgorithm = \"ML-DSA-87\"\n")
            .unwrap()
            .validate()
            .unwrap();
        assert!(refusal(
            "[tokens]\nkey_spec = \"ml-dsa-87\"\nalgorithm = \"HashML-DSA-87-SHA512\"\n"
        )
        .contains("not a JWS algorithm"));
        assert!(
            refusal("[tokens]\nkey_spec = \"ml-dsa-87\"\nalgorithm = \"ML-DSA-65\"\n")
                .contains("does not fit")
        );
    }

    /// One token session per CPU by default, and as many workers (two at least); a database
    /// adds one worker per connection.
    #[test]
    fn sessions_and_workers_default_to_the_cpus() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        let config = Config::default();
        let HsmConfig::Pkcs11(p) = &config.hsm else {
            panic!("the default key store is PKCS#11")
        };
        assert_eq!(p.pool_size, cpus.min(256));
        assert_eq!(crate::api::worker_threads(&config), cpus.clamp(2, 256));
        let one = Config::parse("[hsm]\nbackend = \"pkcs11\"\npool_size = 1\n").unwrap();
        assert_eq!(crate::api::worker_threads(&one), 2);
        let db = Config::parse(
            "[hsm]\nbackend = \"pkcs11\"\npool_size = 3\n[store]\nkind = \"postgres\"\n\
             url = \"postgresql://signet@db/signet\"\npool_size = 5\n",
        )
        .unwrap();
        assert_eq!(crate::api::worker_threads(&db), 8);
    }

    #[test]
    fn io_threads_default_to_half_the_cpus() {
        let cpus = std::thread::available_parallelism().unwrap().get();
        let config = Config::default();
        assert_eq!(config.server.io_threads(), cpus.div_ceil(2));
        let set = Config::parse("[server]\nio_threads = 3\n").unwrap();
        assert_eq!(set.server.io_threads(), 3);
    }
}
