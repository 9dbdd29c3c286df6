//! Opening what Signet runs on: the token (embedded SoftHSM2 or a configured module) and the
//! store, under the data directory.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use signet_hsm::{Backend, Pin, Pkcs11Backend, Pkcs11Config, TokenSelector};

use crate::config::Config;
use crate::store::Store;

/// The label of the embedded token.
pub const EMBEDDED_TOKEN_LABEL: &str = "signet";

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
    /// The sled database.
    pub fn db(&self) -> PathBuf {
        self.0.join("db")
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

/// The opened token and store.
#[derive(Debug, Clone)]
pub struct Signet {
    /// Configuration in force.
    pub config: Config,
    /// The HSM backend.
    pub backend: Arc<dyn Backend>,
    /// Metadata.
    pub store: Store,
    /// Paths.
    pub data: DataDir,
}

impl Signet {
    /// Opens the token (creating the embedded one on first use) and the store.
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let data = DataDir(config.data_dir.clone());
        signet_softhsm::mkdir_private(&data.0)
            .with_context(|| format!("creating data directory {}", data.0.display()))?;
        // The store first: it is single-owner, and when a server holds it nothing else (not even a
        // token login) should happen.
        let store = match Store::open(&data.db()) {
            Ok(store) => store,
            Err(crate::store::StoreError::Locked(path)) => {
                let holder = std::fs::read_to_string(data.server_file())
                    .map(|s| format!("the signet server ({})", s.trim()))
                    .unwrap_or_else(|_| "another signet process".into());
                bail!("{path} is held by {holder}; stop it, call its API instead, or use another --data-dir. Nothing was changed")
            }
            Err(e) => return Err(e.into()),
        };
        let backend = open_backend(&config, &data)?;
        Ok(Signet {
            config,
            backend,
            store,
            data,
        })
    }
}

/// Opens the configured token, or creates/opens the embedded SoftHSM2 token.
pub fn open_backend(config: &Config, data: &DataDir) -> anyhow::Result<Arc<dyn Backend>> {
    let pkcs11 = match &config.hsm.module {
        Some(module) => {
            let pin = match (&config.hsm.pin_file, &config.hsm.pin_env) {
                (Some(file), _) => Pin::from_file(file)
                    .with_context(|| format!("reading the HSM PIN file {}", file.display()))?,
                (None, Some(var)) => match Pin::from_env(var) {
                    Some(pin) => pin,
                    None => bail!("the HSM PIN variable {var} is not set"),
                },
                (None, None) => bail!("hsm.module is set: set hsm.pin_file or hsm.pin_env too"),
            };
            let token = match config.hsm.slot {
                Some(slot) => TokenSelector::Slot(slot),
                None => TokenSelector::Label(config.hsm.token_label.clone()),
            };
            Pkcs11Config {
                module: module.clone(),
                token,
                pin,
                pool_size: config.hsm.pool_size,
            }
        }
        None => embedded_token(data, config.hsm.pool_size)?,
    };
    let module = pkcs11.module.clone();
    let backend = Pkcs11Backend::open(pkcs11)
        .with_context(|| format!("opening the PKCS#11 token through {}", module.display()))?;
    Ok(Arc::new(backend))
}

/// The embedded default: a SoftHSM2 token under `DATA/softhsm`, created on first use with random
/// PINs written to `DATA/pin` and `DATA/so-pin` (0600).
fn embedded_token(data: &DataDir, pool_size: usize) -> anyhow::Result<Pkcs11Config> {
    let dir = signet_softhsm::TokenDir::create(&data.softhsm())?;
    dir.activate()?;
    let module = signet_softhsm::find_module()?;
    if !dir.has_tokens() {
        let pin = Pin::random(24);
        let so_pin = Pin::random(24);
        // PIN files first: a token nobody can log in to would be worse than no token.
        signet_softhsm::write_private(&data.pin(), pin.expose().as_bytes())?;
        signet_softhsm::write_private(&data.so_pin(), so_pin.expose().as_bytes())?;
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
