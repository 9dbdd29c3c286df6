//! The anchor: the latest checkpoint (its sequence number and hash) kept outside the log, where
//! the host's disk cannot roll it back — an object in the token. A log that no longer holds the
//! anchored checkpoint has lost its tail. With SoftHSM2 the token is files on the same disk, so
//! there the anchor guards against an edited log, not against a copied-back disk.

use std::sync::Arc;

use signet_hsm::{Backend, KeyId};

use crate::error::Result;
use crate::store::audit::CHECKPOINT;
use crate::store::{ChainHead, Journal, Store};

/// The token object's name, before the audit key's id (one deployment, one anchor).
pub const ANCHOR_NAME: &str = "signet:audit:anchor";

/// Records read at a time when looking for the log's first checkpoint.
const PAGE: usize = 1_000;

/// Why the log does not hold its anchor: records were lost, or the anchor was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The log's head as it is now.
    pub log_head: u64,
    /// The anchored checkpoint, when there is one.
    pub anchored: Option<ChainHead>,
    /// What kind of loss.
    pub kind: GapKind,
}

/// The kinds of [`Gap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// The log ends before the anchored checkpoint: its tail was cut (or the database rolled
    /// back to a backup or a lagging standby).
    Behind,
    /// The log holds another record where the anchored checkpoint should be: it diverged
    /// (an old primary, a restore followed by new writes).
    Diverged,
    /// The log has checkpoints, but no anchor is kept: the anchor was lost (a token write that
    /// did not persist, a deleted object), so a cut tail could no longer be seen.
    Missing {
        /// The log's first checkpoint.
        checkpoint: u64,
    },
}

impl Gap {
    /// The records known lost, as `(first, last)`, when that can be said.
    pub fn lost(&self) -> Option<(u64, u64)> {
        match (self.kind, &self.anchored) {
            (GapKind::Behind, Some(a)) => Some((self.log_head + 1, a.seq)),
            _ => None,
        }
    }

    /// Audit record details describing the loss (for `audit.reanchor`).
    pub fn details(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("gap", self.to_string()),
            ("log_head", self.log_head.to_string()),
            (
                "kind",
                match self.kind {
                    GapKind::Behind => "behind",
                    GapKind::Diverged => "diverged",
                    GapKind::Missing { .. } => "anchor-missing",
                }
                .to_string(),
            ),
        ];
        if let Some(a) = &self.anchored {
            out.push(("anchored_seq", a.seq.to_string()));
            out.push(("anchored_hash", a.hash.clone()));
        }
        if let Some((first, last)) = self.lost() {
            out.push(("lost_from", first.to_string()));
            out.push(("lost_to", last.to_string()));
            out.push(("lost_records", (last + 1 - first).to_string()));
        }
        out
    }
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.kind, &self.anchored) {
            (GapKind::Behind, Some(a)) => write!(
                f,
                "the audit log ends at seq {} but the checkpoint anchored in the token is seq {} (records {}-{} are lost)",
                self.log_head,
                a.seq,
                self.log_head + 1,
                a.seq
            ),
            (GapKind::Diverged, Some(a)) => write!(
                f,
                "the audit log's record {} is not the checkpoint anchored in the token (the log diverged from the anchored chain; its head is seq {})",
                a.seq, self.log_head
            ),
            (GapKind::Missing { checkpoint }, _) => write!(
                f,
                "the audit log has checkpoints (the first at seq {checkpoint}) but no checkpoint is anchored in the token: the anchor was lost, so records cut from the tail could not be seen"
            ),
            (_, None) => write!(f, "the audit log does not hold its anchor"),
        }
    }
}

/// Where the anchor is kept: the token when the backend can hold records, else the store.
#[derive(Debug, Clone)]
pub struct Anchor {
    backend: Arc<dyn Backend>,
    store: Arc<dyn Store>,
    /// `None` before the audit key exists (nothing can have been anchored).
    name: Option<String>,
    /// The seq of the anchor this process saved last: it is kept when the next one is saved
    /// (the one before it goes). A token may answer `CKR_OK` and serve the new object from
    /// memory without having kept it (SoftHSM2 on a full disk leaves an empty file, which no
    /// read-back in this process can see); the previous one then survives a crash.
    previous: Arc<std::sync::Mutex<u64>>,
    /// Set by `audit reanchor`: the next save replaces every anchor kept, newer ones too (the
    /// lost chain's).
    replace_all: Arc<std::sync::atomic::AtomicBool>,
}

impl Anchor {
    /// The anchor of this backend and store, for the deployment whose audit key is `key_id`.
    pub fn new(backend: Arc<dyn Backend>, store: Arc<dyn Store>, key_id: Option<&KeyId>) -> Self {
        Anchor {
            backend,
            store,
            name: key_id.map(|id| format!("{ANCHOR_NAME}:{id}")),
            previous: Arc::new(std::sync::Mutex::new(0)),
            replace_all: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// The anchored checkpoint, if any (the latest, should a replacement have been cut short).
    pub fn load(&self) -> Result<Option<ChainHead>> {
        let Some(name) = &self.name else {
            return Ok(None);
        };
        match self.backend.read_records(name) {
            Ok(values) if values.is_empty() => self.store.audit_anchor(),
            Ok(values) => Ok(values
                .iter()
                .filter_map(|v| serde_json::from_slice::<ChainHead>(v).ok())
                .max_by_key(|h| h.seq)),
            Err(signet_hsm::Error::Unsupported(_)) => self.store.audit_anchor(),
            Err(e) => Err(e.into()),
        }
    }

    /// How `journal` stands against the anchored checkpoint: `None` when it holds it (or
    /// nothing was ever anchored and the log has no checkpoint), else the gap.
    pub fn check(&self, journal: &dyn Journal) -> Result<Option<Gap>> {
        let head = journal.head()?;
        let Some(anchored) = self.load()? else {
            return Ok(first_checkpoint(journal)?.map(|checkpoint| Gap {
                log_head: head.seq,
                anchored: None,
                kind: GapKind::Missing { checkpoint },
            }));
        };
        let gap = |kind| {
            Ok(Some(Gap {
                log_head: head.seq,
                anchored: Some(anchored.clone()),
                kind,
            }))
        };
        if head.seq < anchored.seq {
            return gap(GapKind::Behind);
        }
        if anchored.seq == 0 {
            return Ok(None);
        }
        let record = journal.read(anchored.seq - 1, 1)?;
        match record.first() {
            Some(r) if r.seq == anchored.seq && r.hash == anchored.hash => Ok(None),
            _ => gap(GapKind::Diverged),
        }
    }

    /// Makes the next [`Anchor::save`] replace every anchor kept, including newer ones: what
    /// `audit reanchor` does once it has recorded the loss.
    pub fn replace_on_next_save(&self) {
        self.replace_all
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Anchors a checkpoint record (its own sequence number and hash).
    pub fn save(&self, checkpoint: &ChainHead) -> Result<()> {
        let Some(name) = &self.name else {
            return Err(crate::error::Error::Internal(
                "no audit key: nothing can be anchored".into(),
            ));
        };
        let bytes = serde_json::to_vec(checkpoint)
            .map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        // Once the new anchor is read back, the ones before the previous go; the previous one
        // stays (see `previous`), and so does a newer one (another node's).
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let keep_from = (*previous).min(checkpoint.seq);
        let replace_all = self
            .replace_all
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        let superseded = |old: &[u8]| {
            replace_all
                || serde_json::from_slice::<ChainHead>(old).map_or(true, |old| old.seq < keep_from)
        };
        match self.backend.write_record(name, &bytes, &superseded) {
            Ok(()) => {
                *previous = checkpoint.seq;
                Ok(())
            }
            Err(signet_hsm::Error::Unsupported(_)) => self.store.put_audit_anchor(checkpoint),
            Err(e) => Err(e.into()),
        }
    }
}

/// The sequence number of the log's first checkpoint, reading from the start until one is
/// found (a checkpoint comes within the first `checkpoint_every` records, so this reads little
/// unless the log has none).
pub fn first_checkpoint(journal: &dyn Journal) -> Result<Option<u64>> {
    let mut records = crate::store::audit::Records::new(journal, PAGE);
    let found = records
        .by_ref()
        .find_map(|r| r.ok().filter(|r| r.action == CHECKPOINT).map(|r| r.seq));
    if found.is_none() {
        records.finish()?;
    }
    Ok(found)
}
