//! The use-case layer. Every operation is a small value implementing [`Operation`] (one file
//! per operation group: `keys`, `certs`, `tokens`, `ops`, `status`) and runs through the one
//! pipeline, [`Service::execute`] (`pipeline`): the requirement from the [`ACTIONS`] table and
//! the operation's own cross-principal rules, the audit records (a state change's `requested`
//! durable before it is made), one metric per action and outcome — for the API and the CLI
//! alike. Nothing else authorizes or records a decision.

pub mod actions;
pub mod caller;
mod certs;
mod deferred;
mod demo;
mod keys;
pub mod metrics;
mod open;
mod ops;
pub mod pipeline;
pub mod status;
mod tokens;

use std::sync::{Arc, RwLock};

use signet_hsm::Backend;
use signet_pki::Ca;

pub use self::actions::{Action, ActionSpec, Requirement, ACTIONS};
pub use self::caller::{Caller, ClientIdentity, Identity};
pub use self::certs::*;
pub use self::deferred::Deferred;
pub use self::demo::{DEMO_KEYS, DEMO_PRINCIPALS};
pub use self::keys::*;
pub use self::metrics::Metrics;
pub use self::open::{prepare_process, OpenMode};
pub use self::ops::*;
pub use self::pipeline::{Operation, Recording, Refusal};
pub use self::status::ReadStatus;
pub use self::status::Status;
pub use self::tokens::*;
use crate::config::{Config, DataDir};
use crate::domain::audit::{Anchor, AuditLog};
use crate::domain::authority::Authority;
use crate::domain::keys::{Keys, PublicKeys};
use crate::domain::tokens::Tokens;
use crate::error::Result;
use crate::store::Store;

/// The running service: configuration, key store, metadata store, audit log, CA and metrics.
#[derive(Debug)]
pub struct Service {
    config: Config,
    backend: Arc<dyn Backend>,
    store: Arc<dyn Store>,
    audit: AuditLog,
    anchor: Anchor,
    ca: RwLock<Option<Arc<Ca>>>,
    metrics: Metrics,
    public_keys: PublicKeys,
    /// Device attestation roots (DER), from `hsm.attestation_roots`.
    attestation_roots: Vec<Vec<u8>>,
    refusals: std::sync::Mutex<crate::domain::audit::refusals::Refusals>,
    denials: std::sync::Mutex<crate::domain::audit::refusals::Denials>,
    published: crate::domain::published::PublishedFiles,
}

impl Service {
    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Paths under the data directory.
    pub fn paths(&self) -> DataDir {
        self.config.paths()
    }

    /// The key store.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The metadata store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// When a request starting now must have finished its database work: the store's
    /// `timeout_ms` for the whole request (PostgreSQL), none for the embedded store.
    pub fn request_deadline(&self) -> Option<std::time::Instant> {
        match &self.config.store {
            crate::config::StoreConfig::Postgres(pg) => {
                Some(std::time::Instant::now() + std::time::Duration::from_millis(pg.timeout_ms))
            }
            crate::config::StoreConfig::Sled(_) => None,
        }
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn keys(&self) -> Keys<'_> {
        Keys {
            backend: &self.backend,
            store: self.store.as_ref(),
            public_keys: &self.public_keys,
            attestation_roots: &self.attestation_roots,
            token_algorithm: self.config.tokens.algorithm,
        }
    }

    fn tokens(&self) -> Tokens<'_> {
        Tokens {
            keys: self.keys(),
            config: &self.config.tokens,
        }
    }

    fn authority(&self) -> Authority<'_> {
        Authority {
            backend: &self.backend,
            store: self.store.as_ref(),
            config: &self.config,
            published: &self.published,
        }
    }

    /// The issuing CA, loaded once.
    pub fn ca(&self) -> Result<Arc<Ca>> {
        if let Some(ca) = self.ca.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(ca.clone());
        }
        let ca = Arc::new(self.authority().load()?);
        *self.ca.write().unwrap_or_else(|p| p.into_inner()) = Some(ca.clone());
        Ok(ca)
    }

    /// Forgets the loaded CA, so the next use loads the record as it is now (after a rotation).
    pub fn forget_ca(&self) {
        *self.ca.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Every intermediate still trusted (DER), the current one first.
    pub fn authority_intermediates(&self) -> Result<Vec<Vec<u8>>> {
        self.authority().intermediates()
    }

    /// A file the publication listener serves (a CA certificate or CRL, DER), by name; no
    /// caller: these are public, and reading them changes nothing.
    pub fn published_file(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.authority().published(name)
    }

    /// Closes the audit log, checkpointing what is not yet signed.
    pub fn close(&self) {
        if self.audit.is_read_only() {
            return;
        }
        if let Err(e) = self.audit.checkpoint_unsigned() {
            tracing::warn!(error = %e, "closing checkpoint failed");
        }
        self.audit.close();
    }
}
