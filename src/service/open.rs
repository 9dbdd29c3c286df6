//! Opening what the service runs on — the metadata store first (it is single-owner), then the
//! key store (the embedded SoftHSM2 token, created on first use, or the configured backend), the
//! audit key, journal and writer — and the first-start bootstrap.

use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use signet_hsm::{Backend, Pin, Pkcs11Backend, Pkcs11Config, TokenSelector};

use super::{Caller, Service};
use crate::config::{Config, DataDir, HsmConfig, Pkcs11Settings};
use crate::domain::audit::{ensure_audit_key, Anchor, AuditLog, SERVICE};
use crate::domain::authority::{InitOptions, InitReport};
use crate::domain::keys::PublicKeys;
use crate::error::{Error, StoreError};
use crate::store::{Event, Outcome};
use crate::support::files::{mkdir_private, write_private};

/// How long a node waits for another one's first-start bootstrap (RSA CA keys take seconds).
pub(super) const BOOTSTRAP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// The label of the embedded token.
pub const EMBEDDED_TOKEN_LABEL: &str = "signet";

/// How to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// To change things (`serve`, and every command that changes something): refused when the
    /// log does not hold the checkpoint anchored in the token.
    Checked,
    /// To accept a log that does not hold its anchor (`audit reanchor` alone): opened for
    /// writing without the anchor check.
    Reanchor,
    /// To inspect (`audit verify`, `status`, `export`, `show`, `list`): nothing is created,
    /// migrated, repaired, appended, checkpointed or anchored; a log that does not hold its
    /// anchor is reported, not refused.
    ReadOnly,
}

impl Service {
    /// Opens the store, the key store and the audit log; refuses a log that is behind its
    /// anchor (records cut from its tail, or a disk rolled back).
    pub fn open(config: Config) -> anyhow::Result<Self> {
        Self::open_with(config, OpenMode::Checked)
    }

    /// Opens as [`Service::open`], with the anchor check as `mode` says.
    pub fn open_with(mut config: Config, mode: OpenMode) -> anyhow::Result<Self> {
        if matches!(config.store, crate::config::StoreConfig::Postgres(_))
            && config.server.public_url.is_none()
            && config.tokens.issuer.is_empty()
            && mode != OpenMode::ReadOnly
        {
            // Each node would name itself: a token one node issues is then inactive on another.
            tracing::warn!(
                issuer = %config.server.public_url(),
                "several nodes share this store but server.public_url is not set: each node's tokens name this node as their issuer, and another node refuses them; set server.public_url (or tokens.issuer) to the name clients use"
            );
        }
        config.resolve();
        let data = config.paths();
        let read_only = mode == OpenMode::ReadOnly;
        if !read_only {
            mkdir_private(&data.0)
                .with_context(|| format!("creating data directory {}", data.0.display()))?;
        }
        // The store first: it is single-owner, and when a server holds it nothing else (not even
        // a token login) should happen.
        let opened = if read_only {
            crate::store::open_read_only(&config)
        } else {
            crate::store::open(&config)
        };
        let store = match opened {
            Ok(store) => store,
            Err(Error::Store(StoreError::Locked(path))) => {
                let holder = std::fs::read_to_string(data.server_file())
                    .map(|s| format!("the signet server ({})", s.trim()))
                    .unwrap_or_else(|_| "another signet process".into());
                bail!("{path} is held by {holder}; stop it, call its API instead, or use another --data-dir. Nothing was changed")
            }
            Err(e) => return Err(e.into()),
        };
        let backend = open_backend(&config, &data, read_only)?;
        if read_only {
            let key_id = store.audit_key()?.map(|r| r.key_id);
            let journal = crate::store::open_journal_read_only(&config, &data.audit())?;
            let anchor = Anchor::new(backend.clone(), store.clone(), key_id.as_ref());
            let audit = AuditLog::read_only(
                journal,
                anchor.clone(),
                backend.clone(),
                key_id.unwrap_or_else(|| signet_hsm::KeyId(Vec::new())),
                config.audit.clone(),
            );
            return Self::assemble(config, backend, store, audit, anchor);
        }
        let key_id =
            crate::store::serialized(store.as_ref(), "bootstrap", BOOTSTRAP_PATIENCE, || {
                ensure_audit_key(store.as_ref(), &backend)
            })??;
        let journal = crate::store::open_journal(&config, &data.audit())?;
        let anchor = Anchor::new(backend.clone(), store.clone(), Some(&key_id));
        if mode == OpenMode::Checked {
            if let Some(gap) = settled_gap(&anchor, journal.as_ref())? {
                bail!(
                    "{gap}. Nothing was started: restore the log (or the database) from a backup or an export that holds the anchored checkpoint, or accept the loss with `signet audit reanchor`, which records it first. `signet audit verify` shows where the log breaks and changes nothing"
                );
            }
        }
        let repairs = journal.repairs();
        let audit = AuditLog::start(
            journal,
            anchor.clone(),
            backend.clone(),
            key_id,
            config.audit.clone(),
        )?;
        for repair in repairs {
            audit.append(
                Event::new(SERVICE, "-", "audit.repair", "audit", Outcome::Ok)
                    .with("repair", repair),
            )?;
        }
        Self::assemble(config, backend, store, audit, anchor)
    }

    fn assemble(
        config: Config,
        backend: Arc<dyn Backend>,
        store: Arc<dyn crate::store::Store>,
        audit: AuditLog,
        anchor: Anchor,
    ) -> anyhow::Result<Self> {
        Ok(Service {
            backend,
            store,
            audit,
            anchor,
            ca: RwLock::new(None),
            refusals: std::sync::Mutex::new(crate::domain::audit::refusals::Refusals::new(
                config.server.refusals_audited_per_sec,
            )),
            denials: std::sync::Mutex::new(crate::domain::audit::refusals::Denials::new(
                config.server.denials_audited_per_sec,
            )),
            metrics: super::Metrics::new(),
            published: Default::default(),
            public_keys: PublicKeys::default(),
            attestation_roots: attestation_roots(&config)?,
            config,
        })
    }

    /// What `signet serve` does before listening: records the start and the configuration,
    /// builds the CA and the token key on first start. Returns the `ca init` report when it
    /// ran.
    pub fn bootstrap(&self, listen: std::net::SocketAddr) -> anyhow::Result<Option<InitReport>> {
        // The pid file is removed on a graceful stop: still there, the last run did not stop.
        let server_file = self.paths().server_file();
        if let Ok(previous) = std::fs::read_to_string(&server_file) {
            self.audit.append(
                Event::new(SERVICE, "-", "service.recovered", "signet", Outcome::Ok)
                    .with("previous_run", previous.trim())
                    .with("reason", "the last run did not stop cleanly"),
            )?;
            // Sign what the last run left unsigned, at once.
            self.audit.checkpoint()?;
        }
        self.audit.append(
            Event::new(SERVICE, "-", "service.start", "signet", Outcome::Ok)
                .with("version", env!("CARGO_PKG_VERSION")),
        )?;
        self.audit.append(
            Event::new(SERVICE, "-", "config.loaded", "signet", Outcome::Ok)
                .with("data_dir", self.config.data_dir.display())
                .with("hsm", self.config.hsm_summary())
                .with("store", self.store.engine())
                .with("listen", listen),
        )?;
        let system = Caller::system();
        // Nodes sharing a database take turns: the first makes the CA and the token key, the
        // others find them.
        let report = crate::store::serialized(
            self.store.as_ref(),
            "bootstrap",
            BOOTSTRAP_PATIENCE,
            || -> anyhow::Result<Option<InitReport>> {
                let report = if self.store.ca()?.is_none() {
                    let mut report = self
                        .execute(&system, super::InitCa(InitOptions::default()))
                        .wait()?;
                    report.lines.insert(0, "first start: CA created".into());
                    Some(report)
                } else {
                    None
                };
                self.ensure_token_key(&system)?;
                let indexed = self.store.build_cert_index()?;
                if indexed > 0 {
                    tracing::info!(
                        certificates = indexed,
                        "indexed the stored certificates by public key"
                    );
                }
                Ok(report)
            },
        )??;
        Ok(report)
    }
}

/// Sets what the configured PKCS#11 module reads from the environment — the embedded
/// token's `SOFTHSM2_CONF` — once, at process start, before any other thread exists.
pub fn prepare_process(config: &Config) {
    if let HsmConfig::Pkcs11(settings) = &config.hsm {
        if settings.module.is_none() {
            signet_softhsm::point_process_at(&config.paths().softhsm());
        }
    }
}

/// Opens the configured key store.
pub fn open_backend(
    config: &Config,
    data: &DataDir,
    read_only: bool,
) -> anyhow::Result<Arc<dyn Backend>> {
    match &config.hsm {
        HsmConfig::Pkcs11(settings) => {
            let pkcs11 = match &settings.module {
                Some(_) => configured_token(settings)?,
                None => embedded_token(data, settings.pool_size, read_only)?,
            };
            let module = pkcs11.module.clone();
            let backend = Pkcs11Backend::open(pkcs11).with_context(|| {
                format!("opening the PKCS#11 token through {}", module.display())
            })?;
            Ok(Arc::new(backend))
        }
        #[cfg(feature = "yubikey")]
        HsmConfig::Yubikey(settings) => Ok(Arc::new(open_yubikey(settings)?)),
        #[cfg(not(feature = "yubikey"))]
        HsmConfig::Yubikey(_) => {
            bail!("hsm.backend = \"yubikey\": this signet was built without the yubikey feature")
        }
    }
}

/// The attestation roots the configuration names, as DER.
fn attestation_roots(config: &Config) -> anyhow::Result<Vec<Vec<u8>>> {
    let HsmConfig::Yubikey(settings) = &config.hsm else {
        return Ok(Vec::new());
    };
    let mut roots = Vec::new();
    for path in &settings.attestation_roots {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the attestation root {}", path.display()))?;
        let pems = pem::parse_many(&text)
            .with_context(|| format!("the attestation root {} is not PEM", path.display()))?;
        let before = roots.len();
        roots.extend(
            pems.into_iter()
                .filter(|p| p.tag() == "CERTIFICATE")
                .map(|p| p.into_contents()),
        );
        if roots.len() == before {
            anyhow::bail!("{} holds no certificate", path.display());
        }
    }
    Ok(roots)
}

/// Opens the YubiKey the configuration names (PIN and management key read from where it says).
#[cfg(feature = "yubikey")]
pub fn open_yubikey(
    settings: &crate::config::YubikeySettings,
) -> anyhow::Result<signet_hsm::PivBackend> {
    let pin = read_pin(
        settings.pin_file.as_deref(),
        settings.pin_env.as_deref(),
        "YubiKey PIN",
    )?;
    let management = read_pin(
        settings.management_key_file.as_deref(),
        settings.management_key_env.as_deref(),
        "YubiKey management key",
    )?;
    let management_key = signet_hsm::ManagementKey::from_hex(management.expose())?;
    let (pin_use, touch) = settings.policies()?;
    let backend = signet_hsm::PivBackend::open(signet_hsm::PivConfig {
        serial: settings.serial,
        pin,
        management_key,
        slots: settings.slots()?,
        pin_use,
        touch,
    })
    .context("opening the YubiKey (PIV)")?;
    Ok(backend)
}

/// A PIN from the file or environment variable the configuration names.
pub fn read_pin(
    file: Option<&std::path::Path>,
    env: Option<&str>,
    what: &str,
) -> anyhow::Result<Pin> {
    match (file, env) {
        (Some(file), _) => Pin::from_file(file)
            .with_context(|| format!("reading the {what} file {}", file.display())),
        (None, Some(var)) => match Pin::from_env(var) {
            Some(pin) => Ok(pin),
            None => bail!("the {what} variable {var} is not set"),
        },
        (None, None) => bail!("no {what}: set a file or an environment variable for it"),
    }
}

fn configured_token(settings: &Pkcs11Settings) -> anyhow::Result<Pkcs11Config> {
    let Some(module) = &settings.module else {
        bail!("hsm.module is not set");
    };
    let pin = read_pin(
        settings.pin_file.as_deref(),
        settings.pin_env.as_deref(),
        "HSM PIN",
    )?;
    let token = match (settings.parsed_uri()?, settings.slot) {
        (Some(uri), _) => TokenSelector::Uri(uri),
        (None, Some(slot)) => TokenSelector::Slot(slot),
        (None, None) => TokenSelector::Label(settings.token_label.clone()),
    };
    Ok(Pkcs11Config {
        module: module.clone(),
        token,
        pin,
        pool_size: settings.pool_size,
    })
}

/// The embedded default: a SoftHSM2 token under `DATA/softhsm`, created on first use with random
/// PINs written to `DATA/pin` and `DATA/so-pin` (0600).
fn embedded_token(
    data: &DataDir,
    pool_size: usize,
    read_only: bool,
) -> anyhow::Result<Pkcs11Config> {
    if read_only && !data.softhsm().exists() {
        bail!(
            "no embedded token under {} yet: nothing to inspect (start `signet serve` first)",
            data.softhsm().display()
        );
    }
    let dir = if read_only {
        signet_softhsm::TokenDir::existing(&data.softhsm())?
    } else {
        signet_softhsm::TokenDir::create(&data.softhsm())?
    };
    dir.activate()?;
    let module = signet_softhsm::find_module()?;
    if !dir.has_tokens() {
        if read_only {
            bail!(
                "the embedded token directory {} holds no token: nothing to inspect",
                data.softhsm().display()
            );
        }
        let pin = Pin::random(24)?;
        let so_pin = Pin::random(24)?;
        // PIN files first: a token nobody can log in to would be worse than no token.
        write_private(&data.pin(), pin.expose().as_bytes())?;
        write_private(&data.so_pin(), so_pin.expose().as_bytes())?;
        signet_softhsm::init_token(&module, EMBEDDED_TOKEN_LABEL, &so_pin, &pin)
            .context("initialising the embedded SoftHSM2 token")?;
        tracing::info!(dir = %data.softhsm().display(), "created the embedded SoftHSM2 token");
    }
    let pin = Pin::from_file(&data.pin()).with_context(|| {
        format!(
            "the embedded token exists but its PIN file {} cannot be read",
            data.pin().display()
        )
    })?;
    Ok(Pkcs11Config {
        module,
        token: TokenSelector::Label(EMBEDDED_TOKEN_LABEL.into()),
        pin,
        pool_size,
    })
}

/// How long a start waits for another node to anchor the checkpoint it has just appended.
const ANCHOR_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// The log's gap against its anchor, as a start should judge it. A node appends a checkpoint
/// and anchors it a moment later (the anchor never names a record the log lacks): a node
/// starting in between sees checkpoints and no anchor yet. Only that kind of gap ("anchor
/// missing") is looked at again for a few seconds; a lost anchor stays lost and is refused.
fn settled_gap(
    anchor: &Anchor,
    journal: &dyn crate::store::Journal,
) -> crate::error::Result<Option<crate::domain::audit::Gap>> {
    let deadline = std::time::Instant::now() + ANCHOR_PATIENCE;
    loop {
        let gap = anchor.check(journal)?;
        match &gap {
            Some(g)
                if matches!(g.kind, crate::domain::audit::GapKind::Missing { .. })
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            _ => return Ok(gap),
        }
    }
}
