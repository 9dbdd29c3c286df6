//! Metadata: one trait per aggregate, typed records, and the engines behind them (sled for one
//! node, PostgreSQL for several). The aggregates are written once ([`aggregates::Records`])
//! over the few primitives an engine gives ([`engine::RecordEngine`]). Nothing outside this
//! module names a database engine. Every write method is durable when it returns.
//!
//! Updates are read-modify-write methods of the store (`update_*` with a closure), not a lock
//! in the caller: the engine makes them atomic (compare-and-swap in sled), so they stay correct
//! when several processes share one database. A closure may run more than once and must not
//! have side effects.

pub mod aggregates;
pub mod audit;
pub mod audit_file;
pub mod cache;
pub mod deadline;
pub mod engine;
pub mod postgres;
pub mod prefetch;
pub mod records;
mod sled;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use self::audit::{AuditRecord, ChainHead, Event, Journal, Outcome};
pub use self::records::*;
pub use self::sled::SledStore;
use crate::config::{Config, StoreConfig};
use crate::error::{Result, StoreError};

/// A change applied by a read-modify-write method.
pub type Change<'a, T> = &'a mut dyn FnMut(&mut T) -> Result<()>;

/// Named keys and their versions.
pub trait KeyStore {
    /// A key record.
    fn key(&self, name: &str) -> Result<Option<KeyRecord>>;
    /// All key records, by name.
    fn keys(&self) -> Result<Vec<KeyRecord>>;
    /// Inserts a new record; a conflict when the name is taken.
    fn insert_key(&self, record: &KeyRecord) -> Result<()>;
    /// Applies `change` to the record atomically and returns the result; not found when absent.
    fn update_key(&self, name: &str, change: Change<'_, KeyRecord>) -> Result<KeyRecord>;
    /// Removes a record; whether it existed.
    fn remove_key(&self, name: &str) -> Result<bool>;
}

/// The CA, issued certificates, revocations and the CRL.
pub trait CertStore {
    /// The CA record, once `ca init` has run.
    fn ca(&self) -> Result<Option<CaRecord>>;
    /// Writes the CA record.
    fn put_ca(&self, record: &CaRecord) -> Result<()>;
    /// A certificate by serial (lower-case hex).
    fn cert(&self, serial: &str) -> Result<Option<CertRecord>>;
    /// All certificate records.
    fn certs(&self) -> Result<Vec<CertRecord>>;
    /// Writes a certificate record (new, or replacing one with the same serial), indexed by
    /// its public key first.
    fn put_cert(&self, record: &CertRecord) -> Result<()>;
    /// The certificates issued for each public key of `spkis` (SubjectPublicKeyInfo DER), in
    /// that order, through the index; `None` while the index has not been built
    /// ([`CertStore::build_cert_index`]), when only a scan of [`CertStore::certs`] answers.
    fn certs_of_keys(&self, spkis: &[Vec<u8>]) -> Result<Option<Vec<Vec<CertRecord>>>>;
    /// Indexes the certificates stored before the index existed, once (later calls find it
    /// built and do nothing); how many were indexed.
    fn build_cert_index(&self) -> Result<usize>;
    /// Applies `change` to a certificate record atomically; not found when absent.
    fn update_cert(&self, serial: &str, change: Change<'_, CertRecord>) -> Result<CertRecord>;
    /// The stored CRL.
    fn crl(&self) -> Result<Option<CrlRecord>>;
    /// Stores a CRL.
    fn put_crl(&self, record: &CrlRecord) -> Result<()>;
    /// The stored root CRL (ARL).
    fn arl(&self) -> Result<Option<CrlRecord>>;
    /// Stores a root CRL (ARL).
    fn put_arl(&self, record: &CrlRecord) -> Result<()>;
    /// The stored CRL of a previous intermediate (by its certificate's serial): the leaves it
    /// issued that were revoked.
    fn previous_crl(&self, intermediate: &str) -> Result<Option<CrlRecord>>;
    /// Stores a previous intermediate's CRL.
    fn put_previous_crl(&self, intermediate: &str, record: &CrlRecord) -> Result<()>;
    /// Atomically increments the CRL number and returns the new value.
    fn next_crl_number(&self) -> Result<u64>;
    /// Raises the CRL number to at least `at_least` (never lowers it): after a restore, so that
    /// no CRL number issued before it is issued again.
    fn raise_crl_number(&self, at_least: u64) -> Result<()>;
}

/// Principals and their scopes.
pub trait PrincipalStore {
    /// A principal.
    fn principal(&self, name: &str) -> Result<Option<Principal>>;
    /// All principals, by name.
    fn principals(&self) -> Result<Vec<Principal>>;
    /// Creates or replaces a principal.
    fn put_principal(&self, principal: &Principal) -> Result<()>;
    /// Removes a principal; whether it existed.
    fn remove_principal(&self, name: &str) -> Result<bool>;
}

/// Revoked token ids, and the latest expiry each token-key version has signed.
pub trait TokenStore {
    /// Revokes a token id until `exp`.
    fn revoke_token(&self, jti: &str, record: RevokedToken) -> Result<()>;
    /// Whether a token id is revoked.
    fn token_revoked(&self, jti: &str) -> Result<bool>;
    /// Every revoked token id still kept.
    fn revoked_tokens(&self) -> Result<Vec<(String, RevokedToken)>>;
    /// Forgets revocations of tokens expired by `at`; how many.
    fn prune_revoked_tokens(&self, at: i64) -> Result<usize>;
    /// Raises the latest `exp` signed by token-key version `version` to at least `exp`.
    fn note_token_expiry(&self, version: u32, exp: i64) -> Result<()>;
    /// The latest `exp` signed by `version` (0 when none).
    fn token_expiry(&self, version: u32) -> Result<i64>;
}

/// Small service-wide records.
pub trait MetaStore {
    /// The audit key, once made.
    fn audit_key(&self) -> Result<Option<AuditKeyRecord>>;
    /// Records the audit key.
    fn put_audit_key(&self, record: &AuditKeyRecord) -> Result<()>;
    /// The audit anchor, for backends that cannot keep it in the device.
    fn audit_anchor(&self) -> Result<Option<ChainHead>>;
    /// Stores the audit anchor.
    fn put_audit_anchor(&self, head: &ChainHead) -> Result<()>;
}

/// Everything the service keeps, behind one object.
pub trait Store:
    KeyStore + CertStore + PrincipalStore + TokenStore + MetaStore + Send + Sync + fmt::Debug
{
    /// The engine's name (`sled`).
    fn engine(&self) -> &'static str;
    /// Checks that a durable write works now (readiness).
    fn check_writable(&self) -> Result<()>;
    /// What every request reads about its caller: the certificate's record (for its
    /// revocation) and the principal's; with `key`, that key's record too, kept for the
    /// request's first read of it (see [`prefetch`]). One round trip where the engine is
    /// remote.
    fn caller_records(
        &self,
        serial: &str,
        principal: &str,
        key: Option<&str>,
    ) -> Result<(Option<CertRecord>, Option<Principal>)>;
    /// Runs `f` only if no other process sharing this store runs work named `name` now;
    /// whether it ran. With one node (sled) it always runs.
    fn exclusive(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool> {
        let _ = name;
        f();
        Ok(true)
    }
}

/// Runs `f` once no other process sharing `store` runs work named `name` (first-start
/// bootstrap: several nodes starting together make one audit key and one CA), trying again for
/// up to `patience`.
pub fn serialized<T>(
    store: &dyn Store,
    name: &str,
    patience: std::time::Duration,
    mut f: impl FnMut() -> T,
) -> Result<T> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let mut out = None;
        if store.exclusive(name, &mut || out = Some(f()))? {
            if let Some(value) = out {
                return Ok(value);
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(crate::error::Error::Store(StoreError::Engine(format!(
                "another node has held the {name} lock for over {}s",
                patience.as_secs()
            ))));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Opens the configured store.
pub fn open(config: &Config) -> Result<Arc<dyn Store>> {
    match &config.store {
        StoreConfig::Sled(sled) => {
            let path = sled.path_in(&config.data_dir);
            // sled creates its directory with the process umask; make it the owner's alone.
            crate::support::files::mkdir_private(&path)
                .map_err(|e| StoreError::Engine(format!("creating {}: {e}", path.display())))?;
            Ok(Arc::new(SledStore::open(&path)?))
        }
        StoreConfig::Postgres(pg) => Ok(Arc::new(postgres::PgStore::open(pg)?)),
    }
}

/// Opens the configured store to read it only (inspecting commands): nothing is created or
/// migrated; PostgreSQL sessions are read-only. sled has no read-only mode: it is opened as
/// usual, and nothing is written through it.
pub fn open_read_only(config: &Config) -> Result<Arc<dyn Store>> {
    match &config.store {
        StoreConfig::Sled(sled) => {
            let path = sled.path_in(&config.data_dir);
            if !path.exists() {
                return Err(crate::error::Error::Store(StoreError::Engine(format!(
                    "no database at {} yet: nothing to inspect",
                    path.display()
                ))));
            }
            Ok(Arc::new(SledStore::open(&path)?))
        }
        StoreConfig::Postgres(pg) => Ok(Arc::new(postgres::PgStore::open_read_only(pg)?)),
    }
}

/// Opens the audit journal of the configured store to read it only.
pub fn open_journal_read_only(config: &Config, audit_dir: &Path) -> Result<Arc<dyn Journal>> {
    match &config.store {
        StoreConfig::Sled(_) => Ok(Arc::new(audit_file::FileJournal::open_read_only(
            audit_dir,
        )?)),
        StoreConfig::Postgres(pg) => Ok(Arc::new(postgres::PgJournal::new(
            postgres::Db::connect_as(pg, 1, true)?,
            node_name(pg),
        ))),
    }
}

/// Opens the audit journal that goes with the configured store.
pub fn open_journal(config: &Config, audit_dir: &Path) -> Result<Arc<dyn Journal>> {
    match &config.store {
        StoreConfig::Sled(_) => Ok(Arc::new(audit_file::FileJournal::open(audit_dir)?)),
        // Its own two connections: the group commit's leader holds one per batch.
        StoreConfig::Postgres(pg) => Ok(Arc::new(postgres::PgJournal::new(
            postgres::Db::connect(pg, 2)?,
            node_name(pg),
        ))),
    }
}

/// This node's name in the audit records: `store.node`, else the host name.
pub fn node_name(pg: &crate::config::PostgresSettings) -> String {
    pg.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into())
    })
}
