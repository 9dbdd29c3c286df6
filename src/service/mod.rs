//! The use-case layer: one method per operation, called by both the API and the CLI. Each
//! method takes the caller and a typed request, looks its requirement up in the one
//! [`actions::ACTIONS`] table, applies the domain rules, writes the audit record from the result,
//! and counts metrics. A state change is recorded as `requested` (durably) before it is made:
//! if that record cannot be written nothing changes.

pub mod actions;
pub mod caller;
mod certs;
mod deferred;
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

pub use self::actions::{Action, ActionSpec, Requirement, Route, ACTIONS};
pub use self::caller::{Caller, ClientIdentity, Identity};
pub use self::certs::{
    CertificateRequest, Chain, DeletePrincipal, InitCa, IssueBundle, IssueCertificate,
    IssuedWithChain, ListCertificates, ListPrincipals, PutPrincipal, ReadCa, ReadCertificate,
    ReadChain, ReadCrl, ReadPrincipal, RevokeCertificate, RotateCa,
};
pub use self::deferred::Deferred;
pub use self::keys::{
    AttestKey, CreateKey, DestroyKey, ImportKey, KeyAttestation, KeyDetail, ListKeys, ManageKey,
    ReadKey, ReadPublicKey, Sign, SignBatch, SignItem, Verify, VerifyItem,
};
pub use self::metrics::Metrics;
pub use self::open::{prepare_process, OpenMode};
pub use self::ops::{Export, Readiness, Verification};
pub use self::pipeline::{Operation, Recording, Refusal};
pub use self::status::Status;
pub use self::tokens::{
    CreateTokenKey, Introspect, IssueToken, ReadJwks, ReadTokenMetadata, RevokeToken,
    RevokeTokenOp, TokenAnswer,
};
use crate::config::{Config, DataDir};
use crate::domain::audit::{Anchor, AuditLog};
use crate::domain::authority::Authority;
use crate::domain::keys::{Keys, PublicKeys};
use crate::domain::tokens::Tokens;
use crate::error::{Error, Result};
use crate::store::{Event, Outcome, Store};

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

    /// Refuses (403, audited) unless the caller meets the action's requirement on `target`.
    fn authorize(&self, caller: &Caller, action: Action, target: &str) -> Result<()> {
        let spec = action.spec();
        let Some(reason) = caller.refusal(spec.requirement, target) else {
            return Ok(());
        };
        self.deny(caller, action, target, reason)
    }

    /// Records a denial and answers it. A principal's first denials each second are
    /// recorded in full; beyond them they are counted and written as summaries (see
    /// [`crate::domain::audit::refusals::Denials`]).
    fn deny(&self, caller: &Caller, action: Action, target: &str, reason: String) -> Result<()> {
        use crate::domain::audit::refusals::Disposition;
        self.metrics.denial(action.name());
        self.metrics.operation(action.name(), "denied");
        let event = caller
            .event(action.name(), target, Outcome::Denied)
            .with("reason", &reason);
        let disposition = self.denials.lock().unwrap_or_else(|p| p.into_inner()).note(
            &caller.audit_name(),
            action.name(),
            &reason,
            event,
        );
        if let Disposition::Record(event) = disposition {
            self.audit.record(vec![event])?;
        }
        Err(Error::Forbidden(reason))
    }

    /// Records a refusal of a change that conflicts with a rule (the last admin stays) and
    /// answers it (409).
    fn refuse_conflict(
        &self,
        caller: &Caller,
        action: Action,
        target: &str,
        reason: String,
    ) -> Result<()> {
        self.metrics.denial(action.name());
        self.metrics.operation(action.name(), "refused");
        self.audit.record(vec![caller
            .event(action.name(), target, Outcome::Denied)
            .with("reason", &reason)])?;
        Err(Error::Conflict(reason))
    }

    /// Runs a state change between its two records: `requested` (durable before anything
    /// changes: if it cannot be written the change is not made), then the outcome, described
    /// from the result by `describe`.
    fn change<T>(
        &self,
        requested: Event,
        effect: impl FnOnce() -> Result<T>,
        describe: impl FnOnce(&T, Event) -> Event,
    ) -> Result<T> {
        self.audit.record(vec![requested.clone()])?;
        let result = effect();
        let outcome = match &result {
            Ok(value) => describe(value, requested.outcome(Outcome::Ok)),
            Err(e) => requested
                .outcome(Outcome::Error)
                .with("error", crate::error::classify(e).1),
        };
        if let Err(e) = self.audit.record(vec![outcome]) {
            // The change is made and its `requested` record is durable; say so loudly rather
            // than answer as if nothing had happened.
            tracing::error!(error = %e, "the outcome of a recorded change could not be audited");
        }
        result
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
