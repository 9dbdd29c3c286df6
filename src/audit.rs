//! The tamper-evident audit log. Every record carries the SHA-256 of the previous one, so editing,
//! deleting or reordering a record breaks the chain; every N records or T seconds a checkpoint
//! record holds the chain head signed by a dedicated audit key in the token. A record is durable
//! before the request it describes is answered: appends are flushed with a group commit, so
//! concurrent requests share one fsync.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use signet_hsm::{Backend, EcdsaFormat, KeyId, KeySpec, SignInput, SignatureAlgorithm};

use crate::cli::AuditCommand;
use crate::config::{AuditConfig, Config};
use crate::error::{Error, Result};
use crate::runtime::Signet;
use crate::store::{get_json, put_json, Store};

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The action of checkpoint records.
pub const CHECKPOINT: &str = "audit.checkpoint";

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by policy.
    Denied,
    /// Failed.
    Error,
}

/// One record, as stored and exported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// 1, 2, … without gaps.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// Who (principal name, `cli:<user>`, or `-` for the unauthenticated).
    pub principal: String,
    /// Request id (or `-`).
    pub request_id: String,
    /// What, e.g. `key.sign`.
    pub action: String,
    /// On what, e.g. the key name.
    pub target: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Details (algorithm, version, input digest, reason…). Never secrets, never signed input.
    pub details: BTreeMap<String, String>,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// SHA-256 over the canonical encoding of every field above.
    pub hash: String,
}

/// The canonical encoding hashed into the chain: the record without its hash, fields in this
/// order, JSON with details sorted by key (a BTreeMap).
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    time: &'a str,
    principal: &'a str,
    request_id: &'a str,
    action: &'a str,
    target: &'a str,
    outcome: Outcome,
    details: &'a BTreeMap<String, String>,
    prev_hash: &'a str,
}

impl AuditRecord {
    /// The hash this record should carry.
    pub fn compute_hash(&self) -> String {
        let canonical = Canonical {
            seq: self.seq,
            time: &self.time,
            principal: &self.principal,
            request_id: &self.request_id,
            action: &self.action,
            target: &self.target,
            outcome: self.outcome,
            details: &self.details,
            prev_hash: &self.prev_hash,
        };
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }
}

/// SHA-256 of data, hex (for audited inputs: the digest, never the input).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The message a checkpoint signs.
pub fn checkpoint_message(head_seq: u64, head_hash: &str) -> Vec<u8> {
    format!("signet-audit-checkpoint\n{head_seq}\n{head_hash}").into_bytes()
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who.
    pub principal: String,
    /// Request id.
    pub request_id: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Details.
    pub details: BTreeMap<String, String>,
}

impl Event {
    /// A new event with no details.
    pub fn new(
        principal: &str,
        request_id: &str,
        action: &str,
        target: &str,
        outcome: Outcome,
    ) -> Self {
        Event {
            principal: principal.to_string(),
            request_id: request_id.to_string(),
            action: action.to_string(),
            target: target.to_string(),
            outcome,
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.details.insert(key.to_string(), value.to_string());
        self
    }
}

/// The audit key's record in the meta tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditKeyRecord {
    /// `CKA_ID`, hex.
    pub key_id: String,
    /// Unix seconds.
    pub created: i64,
}

/// The last appended record, kept beside the log so a truncated tail is noticed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadMarker {
    /// Sequence of the last record.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

struct Chain {
    next_seq: u64,
    prev_hash: String,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// The log file, opened for appending; written only under this lock.
    file: File,
    /// Byte offset of each record (index = seq - 1), and the file length.
    offsets: Vec<u64>,
    len: u64,
}

struct Durable {
    durable: u64,
    syncing: bool,
}

/// The log: an append-only JSON-lines file under `DATA/audit/`, one record per line.
pub struct AuditLog {
    store: Store,
    backend: Arc<dyn Backend>,
    key_id: KeyId,
    config: AuditConfig,
    path: PathBuf,
    chain: Mutex<Chain>,
    /// A second handle on the file for `fdatasync`, so syncing never holds the append lock.
    sync_file: File,
    /// Highest sequence known durable, and whether a sync is under way.
    durable: Mutex<Durable>,
    synced: std::sync::Condvar,
    /// The last appended record, for the head marker.
    head: Mutex<HeadMarker>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn audit_key_label(created: i64) -> String {
    format!("signet:audit:{created}")
}

/// The audit key's id, creating the key in the token on first use.
pub fn ensure_audit_key(store: &Store, backend: &Arc<dyn Backend>) -> Result<KeyId> {
    if let Some(rec) = store.meta::<AuditKeyRecord>("audit_key")? {
        return KeyId::from_hex(&rec.key_id)
            .ok_or_else(|| Error::Internal("bad audit key id".into()));
    }
    let created = crate::keys::now();
    let info = backend.generate(&audit_key_label(created), KeySpec::EcP256)?;
    store.put_meta(
        "audit_key",
        &AuditKeyRecord {
            key_id: info.id.to_hex(),
            created,
        },
    )?;
    Ok(info.id)
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, continuing its chain, and makes sure the audit key
    /// exists. A torn last line (a crash in the middle of a write, never acknowledged because
    /// it was never synced) is cut off.
    pub fn open(
        dir: &Path,
        store: Store,
        backend: Arc<dyn Backend>,
        config: AuditConfig,
    ) -> Result<Self> {
        let key_id = ensure_audit_key(&store, &backend)?;
        signet_softhsm::mkdir_private(dir).map_err(Self::unavailable)?;
        let path = dir.join(LOG_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(Self::unavailable)?;
        let mut text = Vec::new();
        (&file).read_to_end(&mut text).map_err(Self::unavailable)?;
        let complete = text
            .iter()
            .rposition(|b| *b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(0);
        if complete < text.len() {
            tracing::warn!(
                bytes = text.len() - complete,
                "audit log ends with a torn line; cutting it off"
            );
            file.set_len(complete as u64).map_err(Self::unavailable)?;
            text.truncate(complete);
        }
        let mut offsets = Vec::new();
        let mut at = 0u64;
        for line in text.split_inclusive(|b| *b == b'\n') {
            offsets.push(at);
            at += line.len() as u64;
        }
        let (next_seq, prev_hash, since) =
            match text.split(|b| *b == b'\n').rfind(|l| !l.is_empty()) {
                None => (1, GENESIS.to_string(), 0),
                Some(line) => {
                    let last: AuditRecord = serde_json::from_slice(line).map_err(|e| {
                        Error::AuditUnavailable(format!(
                            "the last audit record is unreadable ({e}); run `signet audit verify`"
                        ))
                    })?;
                    (
                        last.seq + 1,
                        last.hash,
                        if last.action == CHECKPOINT { 0 } else { 1 },
                    )
                }
            };
        let sync_file = file.try_clone().map_err(Self::unavailable)?;
        Ok(AuditLog {
            store,
            backend,
            key_id,
            config,
            path,
            sync_file,
            durable: Mutex::new(Durable {
                durable: next_seq - 1,
                syncing: false,
            }),
            synced: std::sync::Condvar::new(),
            head: Mutex::new(HeadMarker {
                seq: next_seq - 1,
                hash: prev_hash.clone(),
            }),
            chain: Mutex::new(Chain {
                next_seq,
                prev_hash,
                since_checkpoint: since,
                last_checkpoint: Instant::now(),
                file,
                offsets,
                len: at,
            }),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The audit key's id.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    fn unavailable(e: impl std::fmt::Display) -> Error {
        Error::AuditUnavailable(e.to_string())
    }

    /// Appends a record without waiting for durability; returns its sequence number.
    fn append_only(&self, event: Event) -> Result<AuditRecord> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        self.append_locked(&mut chain, event)
    }

    fn append_locked(&self, chain: &mut Chain, event: Event) -> Result<AuditRecord> {
        let mut record = AuditRecord {
            seq: chain.next_seq,
            time: crate::cli::format_time_precise(),
            principal: event.principal,
            request_id: event.request_id,
            action: event.action,
            target: event.target,
            outcome: event.outcome,
            details: event.details,
            prev_hash: chain.prev_hash.clone(),
            hash: String::new(),
        };
        record.hash = record.compute_hash();
        let mut line = serde_json::to_vec(&record).map_err(Self::unavailable)?;
        line.push(b'\n');
        // One write(2) per record on an O_APPEND file; a failure leaves at most a torn line,
        // which is cut off at the next open, and the operation is refused.
        chain.file.write_all(&line).map_err(Self::unavailable)?;
        chain.offsets.push(chain.len);
        chain.len += line.len() as u64;
        chain.next_seq += 1;
        chain.prev_hash = record.hash.clone();
        if record.action == CHECKPOINT {
            chain.since_checkpoint = 0;
            chain.last_checkpoint = Instant::now();
        } else {
            chain.since_checkpoint += 1;
        }
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = HeadMarker {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        emit(&record);
        Ok(record)
    }

    /// Group commit: returns once `seq` is on disk. One caller syncs while the others wait on a
    /// condition variable; a sync covers every record appended before it started, and all the
    /// waiters it covers are woken together.
    fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut state = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if state.durable >= seq {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state.syncing = true;
            drop(state);
            if self.config.commit_delay_us > 0 {
                // Let a few more records join this sync (fewer syncs, a little more latency).
                std::thread::sleep(std::time::Duration::from_micros(
                    self.config.commit_delay_us,
                ));
            }
            let head = self.head.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let result = self.sync_file.sync_data();
            state = self.durable.lock().unwrap_or_else(|p| p.into_inner());
            state.syncing = false;
            if result.is_ok() {
                state.durable = state.durable.max(head.seq);
            }
            self.synced.notify_all();
            result.map_err(Self::unavailable)?;
            // The head marker trails the synced log (sled writes it out within its flush
            // interval), so after a crash it may be behind the log but never ahead of it.
            put_json(self.store.meta_tree(), "audit_head", &head).map_err(Self::unavailable)?;
        }
    }

    /// Makes the head marker durable too (at shutdown and after CLI actions).
    pub fn flush_marker(&self) -> Result<()> {
        self.store.flush().map_err(Self::unavailable)?;
        Ok(())
    }

    /// Appends a record and returns once it is durable. A failure means the caller must not
    /// complete (or answer) the operation.
    pub fn append(&self, event: Event) -> Result<AuditRecord> {
        let record = self.append_only(event)?;
        let due = {
            let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
            chain.since_checkpoint >= self.config.checkpoint_every
        };
        if due {
            self.checkpoint()?;
        }
        self.wait_durable(record.seq)?;
        Ok(record)
    }

    /// Appends several records and returns once all are durable (one flush for the lot).
    pub fn append_many(&self, events: Vec<Event>) -> Result<()> {
        let mut last = None;
        for event in events {
            let record = self.append_only(event)?;
            last = Some(record.seq);
            let due = {
                let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
                chain.since_checkpoint >= self.config.checkpoint_every
            };
            if due {
                self.checkpoint()?;
            }
        }
        match last {
            Some(seq) => self.wait_durable(seq),
            None => Ok(()),
        }
    }

    /// Writes a checkpoint if records arrived since the last one and the interval has passed.
    pub fn checkpoint_if_due(&self) -> Result<()> {
        let due = {
            let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
            chain.since_checkpoint > 0
                && chain.last_checkpoint.elapsed().as_secs() >= self.config.checkpoint_interval_secs
        };
        if due {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Signs the chain head with the audit key and appends the checkpoint record.
    pub fn checkpoint(&self) -> Result<AuditRecord> {
        // Sign outside the lock (the HSM is slow), then append only if the head is unchanged, so
        // a checkpoint always directly follows the head it signs.
        loop {
            let (head_seq, head_hash) = {
                let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
                (chain.next_seq - 1, chain.prev_hash.clone())
            };
            let signature = self
                .backend
                .sign(
                    &self.key_id,
                    SignatureAlgorithm::Es256,
                    SignInput::Message(&checkpoint_message(head_seq, &head_hash)),
                    EcdsaFormat::Der,
                )
                .map_err(Self::unavailable)?;
            let event = Event::new("signet", "-", CHECKPOINT, "audit", Outcome::Ok)
                .with("head_seq", head_seq)
                .with("head_hash", &head_hash)
                .with("key_id", self.key_id.to_hex())
                .with("algorithm", "ES256")
                .with("signature", STANDARD.encode(&signature));
            let record = {
                let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
                if chain.next_seq - 1 != head_seq {
                    continue; // a record arrived while signing: sign the new head
                }
                self.append_locked(&mut chain, event)?
            };
            self.wait_durable(record.seq)?;
            return Ok(record);
        }
    }

    /// Records after `after`, at most `limit`.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let (start, end) = {
            let chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
            let Some(start) = usize::try_from(after)
                .ok()
                .and_then(|i| chain.offsets.get(i).copied())
            else {
                return Ok(Vec::new());
            };
            (start, chain.len)
        };
        let mut file = File::open(&self.path).map_err(Self::unavailable)?;
        file.seek(SeekFrom::Start(start))
            .map_err(Self::unavailable)?;
        let reader = BufReader::new(file.take(end - start));
        reader
            .lines()
            .take(limit)
            .map(|line| {
                let line = line.map_err(Self::unavailable)?;
                serde_json::from_str(&line)
                    .map_err(|e| Error::Internal(format!("audit record unreadable: {e}")))
            })
            .collect()
    }
}

/// The log file under an audit directory.
pub const LOG_FILE: &str = "audit.log";

/// Every line of a log file, parsed where it parses (a line that does not is reported by
/// [`verify_chain`] at its position).
pub fn read_log(path: &Path) -> std::io::Result<Vec<std::result::Result<AuditRecord, String>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("not a valid audit record: {e}")))
        .collect())
}

fn emit(record: &AuditRecord) {
    tracing::info!(
        target: "audit",
        seq = record.seq,
        principal = %record.principal,
        request_id = %record.request_id,
        action = %record.action,
        target_name = %record.target,
        outcome = ?record.outcome,
        details = %serde_json::to_string(&record.details).unwrap_or_default(),
        hash = %record.hash,
        "audit"
    );
}

/// Where verification stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first bad sequence number.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// What a successful verification saw.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Checkpoint signatures checked.
    pub checkpoints: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Records after the last checkpoint (covered by the chain, not yet by a signature).
    pub unsigned_tail: u64,
}

/// Walks records in order: sequence without gaps, each hash right, each `prev_hash` the previous
/// hash, each checkpoint's signature valid for the head it names (P-256 SPKI `public_key`), and,
/// when given, the head marker matching the last record.
pub fn verify_chain(
    records: impl IntoIterator<Item = std::result::Result<AuditRecord, String>>,
    public_key_spki: &[u8],
    head: Option<&HeadMarker>,
) -> Result<VerifyReport, Break> {
    let point = spki_point(public_key_spki).map_err(|e| Break { seq: 0, reason: e })?;
    let verifier =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
    let mut report = VerifyReport::default();
    let mut prev_hash = GENESIS.to_string();
    let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
    for (expected, record) in (1u64..).zip(records) {
        let record = record.map_err(|reason| Break {
            seq: expected,
            reason,
        })?;
        let brk = |reason: String| Break {
            seq: record.seq,
            reason,
        };
        if record.seq != expected {
            return Err(Break {
                seq: expected,
                reason: format!(
                    "record {expected} is missing or out of order (found {} there)",
                    record.seq
                ),
            });
        }
        if record.prev_hash != prev_hash {
            return Err(brk(
                "prev_hash does not match the previous record's hash".into()
            ));
        }
        if record.compute_hash() != record.hash {
            return Err(brk("content does not match its hash (record edited)".into()));
        }
        if record.action == CHECKPOINT {
            let head_seq: u64 = record
                .details
                .get("head_seq")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| brk("checkpoint without head_seq".into()))?;
            let head_hash = record.details.get("head_hash").cloned().unwrap_or_default();
            let expected_hash = if head_seq == 0 {
                Some(GENESIS.to_string())
            } else {
                hashes.get(&head_seq).cloned()
            };
            if expected_hash.as_deref() != Some(head_hash.as_str()) {
                return Err(brk(format!(
                    "checkpoint names head {head_seq} with a hash the chain does not have"
                )));
            }
            let signature = record
                .details
                .get("signature")
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| brk("checkpoint without signature".into()))?;
            if verifier
                .verify(&checkpoint_message(head_seq, &head_hash), &signature)
                .is_err()
            {
                return Err(brk(
                    "checkpoint signature does not verify with the audit key".into(),
                ));
            }
            report.checkpoints += 1;
            report.unsigned_tail = 0;
        } else {
            report.unsigned_tail += 1;
        }
        hashes.insert(record.seq, record.hash.clone());
        prev_hash = record.hash.clone();
        report.records += 1;
        report.last_seq = record.seq;
    }
    if let Some(head) = head {
        if head.seq > report.last_seq {
            return Err(Break {
                seq: report.last_seq + 1,
                reason: format!(
                    "the log ends at {} but its head marker says {} (tail truncated)",
                    report.last_seq, head.seq
                ),
            });
        }
        if head.seq == report.last_seq && head.hash != prev_hash && head.seq != 0 {
            return Err(Break {
                seq: head.seq,
                reason: "the last record's hash differs from the head marker".into(),
            });
        }
    }
    Ok(report)
}

fn spki_point(spki: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki)
        .map_err(|e| format!("audit public key: {e}"))?;
    Ok(info.subject_public_key.data.to_vec())
}

/// The audit public key (SPKI DER) from the token.
pub fn public_key(store: &Store, backend: &Arc<dyn Backend>) -> Result<Vec<u8>> {
    let rec = store
        .meta::<AuditKeyRecord>("audit_key")?
        .ok_or_else(|| Error::NotFound("no audit key yet (nothing has been audited)".into()))?;
    let id =
        KeyId::from_hex(&rec.key_id).ok_or_else(|| Error::Internal("bad audit key id".into()))?;
    Ok(backend.public_key(&id)?.spki_der())
}

/// Records an operator action taken through the CLI. A CLI action whose record cannot be written
/// has already happened, so this reports the failure loudly instead of undoing it.
pub fn record_cli(signet: &Signet, action: &str, target: &str, details: &str) {
    let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let result = AuditLog::open(
        &signet.data.audit(),
        signet.store.clone(),
        signet.backend.clone(),
        signet.config.audit.clone(),
    )
    .and_then(|log| {
        let outcome = if details.starts_with("denied") {
            Outcome::Error
        } else {
            Outcome::Ok
        };
        log.append(
            Event::new(&format!("cli:{user}"), "-", action, target, outcome)
                .with("details", details),
        )?;
        log.flush_marker()
    });
    if let Err(e) = result {
        eprintln!("warning: could not write the audit record for {action}: {e}");
    }
}

/// `signet audit …`.
pub fn cli(config: &Config, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            file: Some(file),
            public_key,
        } => {
            let pem_path = public_key.context("--public-key is required with --file")?;
            let pem = pem::parse(
                std::fs::read(&pem_path)
                    .with_context(|| format!("reading {}", pem_path.display()))?,
            )?;
            let records = read_log(&file).with_context(|| format!("reading {}", file.display()))?;
            let ends_with_checkpoint =
                matches!(records.last(), Some(Ok(r)) if r.action == CHECKPOINT);
            if !ends_with_checkpoint {
                let last = records.len() as u64;
                bail!(
                    "audit log broken at seq {}: an export must end with a checkpoint (truncated?)",
                    last + 1
                );
            }
            report(verify_chain(records, pem.contents(), None))
        }
        AuditCommand::Verify { file: None, .. } => {
            let signet = Signet::open(config.clone())?;
            let spki = public_key(&signet.store, &signet.backend)?;
            let head: Option<HeadMarker> =
                get_json(signet.store.meta_tree(), "meta", "audit_head")?;
            let records = read_log(&signet.data.audit().join(LOG_FILE))?;
            report(verify_chain(records, &spki, head.as_ref()))
        }
        AuditCommand::Export { out } => {
            let signet = Signet::open(config.clone())?;
            let log = AuditLog::open(
                &signet.data.audit(),
                signet.store.clone(),
                signet.backend.clone(),
                signet.config.audit.clone(),
            )?;
            // End the export with a fresh checkpoint, so a truncated copy is detectable.
            log.checkpoint()?;
            log.flush_marker()?;
            let text = std::fs::read_to_string(log.path())?;
            std::fs::write(&out, text)?;
            let pem_path = out.with_extension("pub.pem");
            let spki = public_key(&signet.store, &signet.backend)?;
            std::fs::write(&pem_path, pem::encode(&pem::Pem::new("PUBLIC KEY", spki)))?;
            println!(
                "exported to {} (audit public key: {})",
                out.display(),
                pem_path.display()
            );
            Ok(())
        }
    }
}

fn report(result: Result<VerifyReport, Break>) -> anyhow::Result<()> {
    match result {
        Ok(r) => {
            println!(
                "audit log OK: {} records, {} checkpoint signatures verified, last seq {}, {} record(s) after the last checkpoint",
                r.records, r.checkpoints, r.last_seq, r.unsigned_tail
            );
            Ok(())
        }
        Err(b) => bail!("audit log broken at seq {}: {}", b.seq, b.reason),
    }
}
