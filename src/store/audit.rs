//! The audit record model, its canonical hash and chaining, and the journal trait that stores the
//! chain durably. The chain is built where the head is known: in-process for the file journal,
//! inside the locking transaction for a shared database.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Result;

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
    /// Failed; nothing (or, for a state change, not all of it) was done.
    Error,
    /// A state change about to be made: written before the change, followed by its outcome.
    Requested,
}

impl Outcome {
    /// The stored spelling.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Requested => "requested",
        }
    }
}

/// One record, as stored and exported.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// 1, 2, … without gaps.
    pub seq: u64,
    /// RFC 3339 UTC.
    pub time: String,
    /// Who (principal name, `cli:<user>`, `signet` for the service, or `-` for the
    /// unauthenticated).
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
    /// The node that wrote it, when several share one chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Hash of the previous record.
    pub prev_hash: String,
    /// SHA-256 over the canonical encoding of every field above.
    pub hash: String,
}

/// The canonical encoding hashed into the chain: the record without its hash, fields in this
/// order, JSON with details sorted by key (a BTreeMap), `node` only when set (so records of a
/// single node hash as they always did).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
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
            node: self.node.as_deref(),
            prev_hash: &self.prev_hash,
        };
        // Serialising plain strings and a string map cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// The record as one JSON line (with its newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// A stored line (its newline, and any preallocated zeros after it, left on or not) as a
    /// record, or why it is not one.
    pub fn from_line(line: &[u8]) -> std::result::Result<Self, String> {
        let end = line
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r' | 0))
            .map_or(0, |i| i + 1);
        serde_json::from_slice(&line[..end]).map_err(|e| format!("not a valid audit record: {e}"))
    }
}

/// An event to record. Values from callers are bounded and escaped when they are added.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        use crate::support::text::echo;
        Event {
            principal: echo(principal),
            request_id: echo(request_id),
            action: action.to_string(),
            target: echo(target),
            outcome,
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail (bounded and escaped).
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Self {
        let value = value.to_string();
        let value =
            crate::support::text::escape_control(&crate::support::text::bounded(&value, 512));
        self.details.insert(key.to_string(), value);
        self
    }

    /// The same event with another outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

/// The last record of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Its sequence number (0 for an empty chain).
    pub seq: u64,
    /// Its hash ([`GENESIS`] for an empty chain).
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Chains `events` after `head`: consecutive sequence numbers, each record's `prev_hash` the
/// hash before it. Returns the records; the new head is the last one.
pub fn chain(
    head: &ChainHead,
    events: Vec<Event>,
    time: &str,
    node: Option<&str>,
) -> Vec<AuditRecord> {
    let mut prev = head.hash.clone();
    let mut seq = head.seq;
    events
        .into_iter()
        .map(|event| {
            seq += 1;
            let mut record = AuditRecord {
                seq,
                time: time.to_string(),
                principal: event.principal,
                request_id: event.request_id,
                action: event.action,
                target: event.target,
                outcome: event.outcome,
                details: event.details,
                node: node.map(str::to_string),
                prev_hash: std::mem::take(&mut prev),
                hash: String::new(),
            };
            record.hash = record.compute_hash();
            prev = record.hash.clone();
            record
        })
        .collect()
}

/// Every record of a journal in order, read a page at a time (never the whole log at once),
/// each parsed where it parses. A read that fails ends the iteration; [`Records::finish`] then
/// returns its error.
#[derive(Debug)]
pub struct Records<'a> {
    journal: &'a dyn Journal,
    page: usize,
    after: u64,
    buffered: std::vec::IntoIter<std::result::Result<AuditRecord, String>>,
    error: Option<crate::error::Error>,
    done: bool,
}

impl<'a> Records<'a> {
    /// Reads `journal` from the start, `page` records at a time.
    pub fn new(journal: &'a dyn Journal, page: usize) -> Self {
        Records {
            journal,
            page: page.max(1),
            after: 0,
            buffered: Vec::new().into_iter(),
            error: None,
            done: false,
        }
    }

    /// Records read so far; the error that ended the reading early, if one did.
    pub fn finish(self) -> Result<u64> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.after),
        }
    }
}

impl Iterator for Records<'_> {
    type Item = std::result::Result<AuditRecord, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.buffered.next() {
                return Some(record);
            }
            if self.done {
                return None;
            }
            match self.journal.read_lines(self.after, self.page) {
                Ok(page) => {
                    self.done = page.len() < self.page;
                    self.after += page.len() as u64;
                    self.buffered = page.into_iter();
                }
                Err(e) => {
                    self.error = Some(e);
                    self.done = true;
                }
            }
        }
    }
}

/// One request's records in a batch: how many of the batch's events are its, in order, and
/// what it took from the node's cache (see `store::prefetch`), if anything.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its events' count.
    pub len: usize,
    /// The cached records its events rely on.
    pub relies_on: Option<std::sync::Arc<crate::store::prefetch::Reliance>>,
}

/// The detail a discarded record carries: the records it relied on changed (see
/// [`Journal::append_groups`]).
pub const DISCARDED: &str = "discarded";

/// Marks `events` as discarded: what they describe was not answered (the request is run again
/// on fresh reads, and that run has its own records).
pub fn discard(events: &mut [Event]) {
    for event in events {
        event.outcome = Outcome::Error;
        event.details.insert(
            DISCARDED.into(),
            "the caller's certificate or principal, or the key, changed while the request was under way; it was not answered and was run again".into(),
        );
    }
}

/// Where the chain is kept. Appends are all or nothing: a batch that cannot be made durable
/// leaves the journal exactly as it was, and a later append may succeed again (space freed).
pub trait Journal: Send + Sync + fmt::Debug {
    /// The head as the journal holds it.
    fn head(&self) -> Result<ChainHead>;

    /// Chains `events` after the head and makes them durable before returning them.
    fn append(&self, events: Vec<Event>) -> Result<Vec<AuditRecord>>;

    /// [`Journal::append`] for the groups of a batch (`groups` cover `events` in order). A
    /// group that relies on cached records is written as its own only if every one of them is
    /// unchanged in the store, checked in the same transaction; otherwise its records are
    /// written discarded ([`discard`]). Returns the records and, per group, whether it was
    /// discarded. A journal that cannot check (no shared store) discards every relying group.
    fn append_groups(
        &self,
        mut events: Vec<Event>,
        groups: &[Group],
    ) -> Result<(Vec<AuditRecord>, Vec<bool>)> {
        let mut at = 0;
        let mut discarded = Vec::with_capacity(groups.len());
        for group in groups {
            let end = (at + group.len).min(events.len());
            if group.relies_on.is_some() {
                discard(&mut events[at..end]);
            }
            discarded.push(group.relies_on.is_some());
            at = end;
        }
        Ok((self.append(events)?, discarded))
    }

    /// The records at positions `after + 1` on (the first record is at 1), at most `limit`,
    /// oldest first, each parsed where it parses: verification reports a line that does not
    /// at its position instead of failing the read.
    fn read_lines(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<std::result::Result<AuditRecord, String>>>;

    /// Records after `after`, at most `limit`, oldest first; a record that does not parse
    /// fails the read.
    fn read(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.read_lines(after, limit)?
            .into_iter()
            .map(|r| {
                r.map_err(|e| {
                    crate::error::Error::Internal(format!("audit record unreadable: {e}"))
                })
            })
            .collect()
    }

    /// What opening the journal found and repaired, for the log and the audit record of it.
    fn repairs(&self) -> Vec<String>;

    /// Accepts the chain as the journal now holds it as this node's point of reference (after
    /// `audit reanchor` recorded a loss): a journal shared by several nodes checks that every
    /// batch continues the chain it last saw ([`crate::error::Error::ChainBroken`]).
    fn accept_head(&self) {}

    /// Called once the log is done with (a clean stop): the file journal cuts off its
    /// preallocated space here.
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chained_records_link_and_hash() {
        let events = vec![
            Event::new("a", "-", "x", "t", Outcome::Ok),
            Event::new("b", "-", "y", "t", Outcome::Requested).with("k", "v"),
        ];
        let records = chain(&ChainHead::genesis(), events, "2026-01-01T00:00:00Z", None);
        assert_eq!(records[0].seq, 1);
        assert_eq!(records[0].prev_hash, GENESIS);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert!(records.iter().all(|r| r.compute_hash() == r.hash));
        // The node id is part of the hash when present, and absent from old records.
        let mut with_node = records[0].clone();
        with_node.node = Some("n1".into());
        assert_ne!(with_node.compute_hash(), records[0].hash);
        assert!(!String::from_utf8(records[0].to_line())
            .unwrap()
            .contains("node"));
    }

    #[test]
    fn caller_values_cannot_forge_lines() {
        let e = Event::new(
            "p\nINFO audit: forged",
            "-",
            "key.sign",
            "k\r\n",
            Outcome::Ok,
        )
        .with("name", "x\ny");
        assert!(!e.principal.contains('\n') && !e.target.contains('\n'));
        assert_eq!(e.details["name"], "x\\ny");
    }
}
