//! The anchor: the latest checkpoint (its sequence number and hash) kept outside the log, where
//! the host's disk cannot roll it back — an object in the token. A log that no longer holds the
//! anchored checkpoint has lost its tail. With SoftHSM2 the token is files on the same disk, so
//! there the anchor guards against an edited log, not against a copied-back disk.

use std::sync::Arc;

use signet_hsm::{Backend, KeyId};

use crate::error::Result;
use crate::store::{ChainHead, Journal, Store};

/// The token object's name, before the audit key's id (one deployment, one anchor).
pub const ANCHOR_NAME: &str = "signet:audit:anchor";

/// Where the anchor is kept: the token when the backend can hold records, else the store.
#[derive(Debug, Clone)]
pub struct Anchor {
    backend: Arc<dyn Backend>,
    store: Arc<dyn Store>,
    name: String,
}

impl Anchor {
    /// The anchor of this backend and store, for the deployment whose audit key is `key_id`.
    pub fn new(backend: Arc<dyn Backend>, store: Arc<dyn Store>, key_id: &KeyId) -> Self {
        Anchor {
            backend,
            store,
            name: format!("{ANCHOR_NAME}:{key_id}"),
        }
    }

    /// The anchored checkpoint, if any (the latest, should a replacement have been cut short).
    pub fn load(&self) -> Result<Option<ChainHead>> {
        match self.backend.read_records(&self.name) {
            Ok(values) if values.is_empty() => self.store.audit_anchor(),
            Ok(values) => Ok(values
                .iter()
                .filter_map(|v| serde_json::from_slice::<ChainHead>(v).ok())
                .max_by_key(|h| h.seq)),
            Err(signet_hsm::Error::Unsupported(_)) => self.store.audit_anchor(),
            Err(e) => Err(e.into()),
        }
    }

    /// Why `journal` is behind (or beside) the anchored checkpoint; `None` when it holds it.
    pub fn behind(&self, journal: &dyn Journal) -> Result<Option<String>> {
        let Some(anchored) = self.load()? else {
            return Ok(None);
        };
        let head = journal.head()?;
        if head.seq < anchored.seq {
            return Ok(Some(format!(
                "the audit log ends at seq {} but the checkpoint anchored in the token is seq {}",
                head.seq, anchored.seq
            )));
        }
        let record = journal.read(anchored.seq - 1, 1)?;
        match record.first() {
            Some(r) if r.seq == anchored.seq && r.hash == anchored.hash => Ok(None),
            _ => Ok(Some(format!(
                "the audit log's record {} is not the checkpoint anchored in the token",
                anchored.seq
            ))),
        }
    }

    /// Anchors a checkpoint record (its own sequence number and hash).
    pub fn save(&self, checkpoint: &ChainHead) -> Result<()> {
        let bytes = serde_json::to_vec(checkpoint)
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        match self.backend.write_record(&self.name, &bytes) {
            Ok(()) => Ok(()),
            Err(signet_hsm::Error::Unsupported(_)) => self.store.put_audit_anchor(checkpoint),
            Err(e) => Err(e.into()),
        }
    }
}
