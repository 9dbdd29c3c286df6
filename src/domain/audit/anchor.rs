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
    /// Why a node fenced the chain, when one did.
    pub fence: Option<String>,
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
    /// The log holds the anchored head, but a node fenced the chain (it found the database
    /// behind what it had written).
    Fenced,
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
                    GapKind::Fenced => "fenced",
                }
                .to_string(),
            ),
        ];
        if let Some(fence) = &self.fence {
            out.push(("fence", fence.clone()));
        }
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
        if let Some(fence) = &self.fence {
            write!(f, "a node fenced the audit chain ({fence}); ")?;
        }
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
            (GapKind::Fenced, Some(a)) => write!(
                f,
                "the audit log holds record {} that the fence names, but writes stay stopped until the loss is recorded",
                a.seq
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
    /// This process has seen an anchor in the token (read or written): finding none after
    /// that means it was lost. Until then, a checkpoint may anchor first even when earlier
    /// ones could not be (a full disk under the token).
    seen: Arc<std::sync::atomic::AtomicBool>,
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
            seen: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Every value kept under the anchor's name, parsed (the store's, for a backend that
    /// keeps no records).
    fn values(&self) -> Result<Vec<Stored>> {
        let Some(name) = &self.name else {
            return Ok(Vec::new());
        };
        let from_store = || -> Result<Vec<Stored>> {
            Ok(self
                .store
                .audit_anchor()?
                .map(|h| Stored {
                    seq: h.seq,
                    hash: h.hash,
                    epoch: 0,
                    fenced: None,
                })
                .into_iter()
                .collect())
        };
        match self.backend.read_records(name) {
            Ok(values) if values.is_empty() => from_store(),
            Ok(values) => Ok(values
                .iter()
                .filter_map(|v| serde_json::from_slice::<Stored>(v).ok())
                .collect()),
            Err(signet_hsm::Error::Unsupported(_)) => from_store(),
            Err(e) => Err(e.into()),
        }
    }

    /// The anchored checkpoint and, when a node has fenced the chain, why: a fence wins over
    /// any other value (the latest otherwise, should a replacement have been cut short).
    pub fn state(&self) -> Result<Option<(ChainHead, Option<String>)>> {
        let values = self.values()?;
        let fenced = values
            .iter()
            .filter(|v| v.fenced.is_some())
            .max_by_key(|v| v.seq);
        let chosen = fenced.or_else(|| values.iter().max_by_key(|v| v.seq));
        if chosen.is_some() {
            self.seen.store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(chosen.map(|v| {
            (
                ChainHead {
                    seq: v.seq,
                    hash: v.hash.clone(),
                },
                v.fenced.clone(),
            )
        }))
    }

    /// The current epoch: how many times `audit reanchor` has accepted a loss (0 before any).
    pub fn epoch(&self) -> Result<u64> {
        Ok(self.values()?.iter().map(|v| v.epoch).max().unwrap_or(0))
    }

    /// The anchored checkpoint, if any.
    pub fn load(&self) -> Result<Option<ChainHead>> {
        Ok(self.state()?.map(|(head, _)| head))
    }

    /// How `journal` stands against the anchor: `None` when it holds the anchored checkpoint
    /// (or nothing was ever anchored and the log has no checkpoint), else the gap. A fenced
    /// anchor is always a gap.
    pub fn check(&self, journal: &dyn Journal) -> Result<Option<Gap>> {
        let head = journal.head()?;
        let Some((anchored, fence)) = self.state()? else {
            return Ok(first_checkpoint(journal)?.map(|checkpoint| Gap {
                log_head: head.seq,
                anchored: None,
                kind: GapKind::Missing { checkpoint },
                fence: None,
            }));
        };
        let gap = |kind| {
            Ok(Some(Gap {
                log_head: head.seq,
                anchored: Some(anchored.clone()),
                kind,
                fence: fence.clone(),
            }))
        };
        if head.seq < anchored.seq {
            return gap(GapKind::Behind);
        }
        let holds = anchored.seq == 0
            || journal
                .read(anchored.seq - 1, 1)?
                .first()
                .is_some_and(|r| r.seq == anchored.seq && r.hash == anchored.hash);
        match (holds, &fence) {
            (true, None) => Ok(None),
            (true, Some(_)) => gap(GapKind::Fenced),
            (false, _) => gap(GapKind::Diverged),
        }
    }

    /// Makes the next [`Anchor::save`] replace every anchor kept, including newer ones and
    /// fences: what `audit reanchor` does once it has recorded the loss.
    pub fn replace_on_next_save(&self) {
        self.replace_all
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Anchors a checkpoint record (its own sequence number and hash) — only forward along
    /// the chain the anchor names: when `journal` does not hold the anchored checkpoint (the
    /// database fell behind or diverged: a failover to a lagging standby, a restore, an old
    /// primary) or a node has fenced the chain, nothing moves and the gap is returned, for the
    /// caller to stop writing. Nodes sharing a database take turns (a cluster lock); a node
    /// that finds another one anchoring leaves it to that one.
    pub fn save(&self, checkpoint: &ChainHead, journal: &dyn Journal) -> Result<Anchoring> {
        if self.name.is_none() {
            return Err(crate::error::Error::Internal(
                "no audit key: nothing can be anchored".into(),
            ));
        }
        let mut outcome = Ok(Anchoring::Busy);
        let ran = self.store.exclusive("anchor", &mut || {
            outcome = self.save_now(checkpoint, journal);
        })?;
        if !ran {
            return Ok(Anchoring::Busy);
        }
        outcome
    }

    fn save_now(&self, checkpoint: &ChainHead, journal: &dyn Journal) -> Result<Anchoring> {
        let replace_all = self
            .replace_all
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        if !replace_all {
            let gap = match self.state()? {
                // Nothing anchored yet: fine for this process's first anchor; but an anchor it
                // has seen is gone.
                None if !self.seen.load(std::sync::atomic::Ordering::Acquire) => None,
                None => match first_checkpoint(journal)? {
                    Some(first) if first != checkpoint.seq => Some(Gap {
                        log_head: journal.head()?.seq,
                        anchored: None,
                        kind: GapKind::Missing { checkpoint: first },
                        fence: None,
                    }),
                    _ => None,
                },
                Some(_) => self.check(journal)?,
            };
            if let Some(gap) = gap {
                return Ok(Anchoring::Refused(gap));
            }
        }
        // Once the new anchor is read back, the ones before the previous go; the previous one
        // stays (see `previous`), and so does a newer one (another node's).
        let epoch = self.epoch()? + u64::from(replace_all);
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let keep_from = (*previous).min(checkpoint.seq);
        let superseded = |old: &[u8]| {
            replace_all
                || serde_json::from_slice::<Stored>(old)
                    .map_or(true, |old| old.fenced.is_none() && old.seq < keep_from)
        };
        self.write(
            &Stored {
                seq: checkpoint.seq,
                hash: checkpoint.hash.clone(),
                epoch,
                fenced: None,
            },
            &superseded,
        )?;
        *previous = checkpoint.seq;
        self.seen.store(true, std::sync::atomic::Ordering::Release);
        Ok(Anchoring::Anchored)
    }

    /// Fences the chain in the token: from now on no checkpoint of any node moves the anchor,
    /// and every node's next checkpoint (and every start) finds the gap, until `audit reanchor`
    /// records the loss. `head` is the chain as this node last saw it (ahead of the database).
    pub fn fence(&self, head: &ChainHead, reason: &str) -> Result<()> {
        let keep = |_: &[u8]| false;
        self.write(
            &Stored {
                seq: head.seq,
                hash: head.hash.clone(),
                epoch: self.epoch()?,
                fenced: Some(reason.to_string()),
            },
            &keep,
        )
    }

    fn write(&self, value: &Stored, superseded: &dyn Fn(&[u8]) -> bool) -> Result<()> {
        let Some(name) = &self.name else {
            return Err(crate::error::Error::Internal(
                "no audit key: nothing can be anchored".into(),
            ));
        };
        let bytes = serde_json::to_vec(value).map_err(crate::error::Error::Json)?;
        match self.backend.write_record(name, &bytes, superseded) {
            Ok(()) => Ok(()),
            Err(signet_hsm::Error::Unsupported(_)) => {
                if value.fenced.is_some() {
                    // The store keeps one value: a fence there is the head it names, which
                    // the database does not hold.
                    return Ok(());
                }
                self.store.put_audit_anchor(&ChainHead {
                    seq: value.seq,
                    hash: value.hash.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What [`Anchor::save`] did.
#[derive(Debug)]
pub enum Anchoring {
    /// The checkpoint is anchored.
    Anchored,
    /// Another node was anchoring; nothing done.
    Busy,
    /// The journal does not hold the anchor (or the chain is fenced): nothing moved.
    Refused(Gap),
}

/// An anchor as kept in the token (JSON): a checkpoint, or a fence.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Stored {
    seq: u64,
    hash: String,
    /// How many times `audit reanchor` has accepted a loss: a node whose knowledge of the
    /// chain predates the current epoch takes the chain as the anchor names it.
    #[serde(default)]
    epoch: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fenced: Option<String>,
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
