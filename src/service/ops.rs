//! Operations around the service: who a connection is, readiness, metrics, the audit log's
//! reading, export and verification, handshake refusals, housekeeping and shutdown.

use std::io::Write;
use std::path::Path;

use signet_hsm::BackendInfo;

use super::pipeline::{Operation, Recording};
use super::{Action, Caller, ClientIdentity, Deferred, Service};
use crate::domain::audit::{self, verify_chain, Break, ChainHead, VerifyReport, SERVICE};
use crate::error::{Error, Result};
use crate::store::audit::Records;
use crate::store::{AuditRecord, CertStatus, Event, Journal, Outcome};
use crate::support::time::now;

/// Records read at a time when the log is exported or verified (it is never held in memory
/// whole).
const AUDIT_PAGE: usize = 10_000;

/// Writes the records of `journal` up to seq `through` to `out`, `page` records at a time, and
/// syncs it; returns the records written. A record that does not parse fails the copy.
fn copy_log(journal: &dyn Journal, out: &Path, page: usize, through: u64) -> Result<u64> {
    let mut copy = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut records = Records::new(journal, page);
    let mut written = 0;
    for record in records
        .by_ref()
        .take(usize::try_from(through).unwrap_or(usize::MAX))
    {
        let record =
            record.map_err(|e| Error::Internal(format!("audit record unreadable: {e}")))?;
        copy.write_all(&record.to_line())?;
        written += 1;
    }
    records.finish()?;
    copy.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(written)
}

/// Records looked at, from the head back, for the last checkpoint before giving up.
const CHECKPOINT_SEARCH: u64 = 1_000_000;

/// The sequence number of the last checkpoint at or before `head`, reading back a page at a
/// time.
fn last_checkpoint(journal: &dyn Journal, head: u64) -> Result<Option<u64>> {
    let mut end = head;
    while end > 0 && head - end < CHECKPOINT_SEARCH {
        let start = end.saturating_sub(AUDIT_PAGE as u64);
        let page = journal.read_lines(start, (end - start) as usize)?;
        if let Some(seq) = page
            .iter()
            .rev()
            .filter_map(|r| r.as_ref().ok())
            .find(|r| r.action == crate::store::audit::CHECKPOINT)
            .map(|r| r.seq)
        {
            return Ok(Some(seq));
        }
        end = start;
    }
    Ok(None)
}

/// What `audit export` wrote.
#[derive(Debug, Clone)]
pub struct Export {
    /// Records copied.
    pub records: u64,
    /// The last one: the log's last checkpoint.
    pub through: u64,
    /// Records after it, not yet covered by a checkpoint, left out of the copy.
    pub left_out: u64,
    /// Where the audit public key was written.
    pub public_key: std::path::PathBuf,
}

/// What readiness found.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The backend, when it answered.
    pub hsm: std::result::Result<BackendInfo, String>,
    /// The store, when a durable write worked.
    pub store: std::result::Result<(), String>,
    /// The audit log, when its last append worked.
    pub audit: std::result::Result<(), String>,
}

impl Readiness {
    /// Everything usable.
    pub fn ready(&self) -> bool {
        self.hsm.is_ok() && self.store.is_ok() && self.audit.is_ok()
    }
}

/// What `audit verify` found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The walk's result.
    pub result: std::result::Result<VerifyReport, Break>,
    /// The anchored checkpoint compared with, if any.
    pub anchor: Option<ChainHead>,
}

impl Service {
    /// The caller of a request on a connection with this verified certificate: refused when
    /// the certificate has been revoked since the handshake; its principal read now, so a
    /// change of scopes, or a deletion, applies to the very next request. With `read_ahead`,
    /// the record of the key the request's operation only reads is fetched in the same round
    /// trip (see `store::prefetch`). Only reads; a refusal waits for its record.
    pub fn authenticate(
        &self,
        identity: &ClientIdentity,
        request_id: &str,
        read_ahead: Option<&str>,
    ) -> Deferred<Caller> {
        let refused = |reason: &'static str, metric: &'static str, detail: String| {
            self.metrics.refusal(metric);
            let pending = self.audit.enqueue(vec![Event::new(
                &identity.name,
                request_id,
                "request",
                &identity.serial,
                Outcome::Denied,
            )
            .with("reason", reason)]);
            Deferred::new(Err(Error::Unauthenticated(detail)), pending)
        };
        // Expiry first: it needs no store, and it is checked on every request, as revocation
        // is, not only at the handshake.
        if identity.not_after <= now() {
            return refused(
                "certificate expired",
                "expired-on-open-connection",
                format!(
                    "the client certificate {} expired at {}",
                    identity.serial,
                    crate::support::time::format_time(identity.not_after)
                ),
            );
        }
        let (cert, principal) =
            match self
                .store
                .caller_records(&identity.serial, &identity.name, read_ahead)
            {
                Ok(records) => records,
                Err(e) => return Deferred::ready(Err(e)),
            };
        if matches!(&cert, Some(cert) if cert.status == CertStatus::Revoked) {
            return refused(
                "certificate revoked",
                "revoked-on-open-connection",
                format!(
                    "the client certificate {} has been revoked",
                    identity.serial
                ),
            );
        }
        Deferred::ready(Ok(Caller::client(identity.clone(), principal, request_id)))
    }

    /// Whether a serial is revoked (for the TLS layer). Fails closed on a store error.
    pub fn is_revoked(&self, serial: &str) -> Result<bool> {
        Ok(matches!(self.store.cert(serial)?, Some(c) if c.status == CertStatus::Revoked))
    }

    /// Walks the chain and every checkpoint signature, and compares the log with the anchored
    /// checkpoint kept in the token. Reads only: it never writes a record, a checkpoint or the
    /// anchor, whatever it finds.
    pub fn verify_audit(&self) -> Result<Verification> {
        let spki = audit::public_key(self.store.as_ref(), self.backend.as_ref())?;
        let state = self.anchor.state()?;
        let anchor = state.as_ref().map(|(head, _)| head.clone());
        let mut records = Records::new(self.audit.journal().as_ref(), AUDIT_PAGE);
        let mut result = verify_chain(&mut records, &spki, anchor.as_ref());
        records.finish()?;
        if let (Ok(report), Some((head, Some(fence)))) = (&result, &state) {
            result = Err(Break {
                seq: head.seq.min(report.last_seq + 1),
                reason: format!("a node fenced the audit chain ({fence}): the database did not continue the chain it had written; `signet audit reanchor` records the loss"),
            });
        }
        if let (Ok(report), None) = (&result, &anchor) {
            if let Some(first) = report.first_checkpoint {
                let gap = audit::Gap {
                    log_head: report.last_seq,
                    anchored: None,
                    kind: audit::GapKind::Missing { checkpoint: first },
                    fence: None,
                };
                result = Err(Break {
                    seq: report.last_checkpoint.unwrap_or(first),
                    reason: format!("{gap}; accept the log as it is with `signet audit reanchor`"),
                });
            }
        }
        Ok(Verification { result, anchor })
    }

    /// How the log stands against its anchor: `None` when it holds it.
    pub fn audit_gap(&self) -> Result<Option<audit::Gap>> {
        self.anchor.check(self.audit.journal().as_ref())
    }

    /// Accepts a log that does not hold its anchor (behind it, diverged from it, or with the
    /// anchor lost): [`Reanchor`] when there is a gap; `None` when the log holds its anchor.
    pub fn reanchor_audit(&self, caller: &Caller) -> Result<Option<audit::Gap>> {
        let Some(gap) = self.audit_gap()? else {
            return Ok(None);
        };
        self.execute(caller, Reanchor { gap: gap.clone() })
            .wait()
            .map(|()| Some(gap))
    }

    /// Keys in the token labelled as Signet's that nothing in the store names (made after the
    /// backup a restored store came from, say): reported, never destroyed here.
    pub fn orphaned_keys(&self) -> Result<Vec<signet_hsm::KeyInfo>> {
        let mut known: std::collections::HashSet<signet_hsm::KeyId> = self
            .store
            .keys()?
            .into_iter()
            .flat_map(|k| k.versions.into_iter().map(|v| v.key_id))
            .collect();
        if let Some(ca) = self.store.ca()? {
            known.extend([ca.root.key_id, ca.intermediate.key_id, ca.server.key_id]);
        }
        if let Some(audit) = self.store.audit_key()? {
            known.insert(audit.key_id);
        }
        Ok(self
            .backend
            .list()?
            .into_iter()
            .filter(|k| k.label.starts_with("signet:") && !known.contains(&k.id))
            .collect())
    }

    /// Counts a refused connection (in memory, never blocking). Returns the record to write
    /// now while refusals are few; beyond the per-second budget they are only counted, and
    /// [`Service::flush_refusals`] writes them as summaries.
    pub fn note_refusal(&self, source: std::net::IpAddr, reason: &str) -> Option<Event> {
        use crate::domain::audit::refusals::Disposition;
        self.metrics.refusal(reason);
        let disposition = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(&source.to_string(), reason);
        match disposition {
            Disposition::Record(event) => {
                tracing::info!(%source, reason, "TLS handshake refused");
                Some(event)
            }
            Disposition::Counted => None,
        }
    }

    /// Writes records of the service's own (refusals), reporting rather than failing.
    pub fn record_quietly(&self, events: Vec<Event>) {
        if let Err(e) = self.audit.record(events) {
            tracing::warn!(error = %e, "could not audit a refused connection");
        }
    }

    /// Writes the refusals counted since the last call as one summary per reason and source,
    /// and the denials as one per principal, action and reason.
    pub fn flush_refusals(&self) {
        let denials = self
            .denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summaries();
        if !denials.is_empty() {
            tracing::info!(
                principals = denials.len(),
                "authorization denials (summary)"
            );
            if let Err(e) = self.audit.record(denials) {
                tracing::warn!(error = %e, "could not audit the denial summaries");
            }
        }
        let summaries = self
            .refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summaries();
        if !summaries.is_empty() {
            let total: u64 = summaries
                .iter()
                .filter_map(|e| e.details.get("count")?.parse::<u64>().ok())
                .sum();
            tracing::info!(
                refused = total,
                sources = summaries.len(),
                "TLS handshakes refused (summary)"
            );
            self.record_quietly(summaries);
        }
    }

    /// Periodic work: destroys keys whose deletion window has passed, rotates the token key
    /// when due, refreshes the CRL before it expires, and forgets expired token revocations.
    /// With several nodes on one database only one of them does it at a time.
    pub fn housekeeping(&self) {
        match self
            .store
            .exclusive("housekeeping", &mut || self.housekeeping_now())
        {
            Ok(true) => {}
            Ok(false) => tracing::debug!("housekeeping: another node is at it"),
            Err(e) => tracing::error!(error = %e, "housekeeping: cannot take the cluster lock"),
        }
    }

    fn housekeeping_now(&self) {
        let system = Caller::system();
        let at = now();
        match self.keys().due_for_destruction(at) {
            Ok(due) => {
                for record in due {
                    let destroy = super::DestroyKey {
                        name: record.name.clone(),
                        forget: false,
                        trigger: "deletion window passed".into(),
                    };
                    match self.execute(&system, destroy).wait() {
                        Ok(_) => {
                            tracing::info!(key = %record.name, "deletion window passed: key destroyed in the token")
                        }
                        Err(e) => {
                            tracing::error!(key = %record.name, error = %e, "housekeeping: destroying a due key failed")
                        }
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "housekeeping: listing due keys failed"),
        }
        match self.tokens().rotation_due(at) {
            Ok(true) => match self
                .execute(
                    &system,
                    super::ManageKey::Rotate {
                        name: crate::domain::keys::TOKEN_KEY.into(),
                        spec: None,
                    },
                )
                .wait()
            {
                Ok(detail) => tracing::info!(
                    version = detail.record.primary,
                    "token-signing key rotated (automatic rotation)"
                ),
                Err(e) => tracing::error!(error = %e, "housekeeping: token key rotation failed"),
            },
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "housekeeping: token key rotation check failed"),
        }
        match self.authority().prune_rotated() {
            Ok(done) => done
                .iter()
                .for_each(|d| tracing::info!("housekeeping: {d}")),
            Err(e) => tracing::error!(error = %e, "housekeeping: pruning rotated CA keys failed"),
        }
        // Regenerates the CRL once half its validity has passed, well before nextUpdate.
        if let Err(e) = self.ca().and_then(|ca| self.authority().current_crl(&ca)) {
            tracing::error!(error = %e, "housekeeping: CRL refresh failed");
        }
        if let Err(e) = self.ca().and_then(|_| self.authority().current_arl()) {
            tracing::error!(error = %e, "housekeeping: root CRL (ARL) refresh failed");
        }
        if let Err(e) = self.tokens().prune(at) {
            tracing::error!(error = %e, "housekeeping: pruning revoked tokens failed");
        }
    }

    /// Records the stop and checkpoints (graceful shutdown).
    pub fn shutdown(&self) {
        self.flush_refusals();
        if let Err(e) = self.audit.append(Event::new(
            SERVICE,
            "-",
            "service.stop",
            "signet",
            Outcome::Ok,
        )) {
            tracing::warn!(error = %e, "could not record the stop");
        }
        self.close();
    }
}

/// Liveness.
#[derive(Debug, Clone)]
pub struct Health;

impl Operation for Health {
    type Output = ();
    fn action(&self) -> Action {
        Action::Health
    }
    fn target(&self) -> String {
        "service".into()
    }
    fn run(&mut self, _: &Service, _: &Caller) -> Result<()> {
        Ok(())
    }
}

/// Readiness: the backend answers, the store takes a durable write, the audit log's last
/// append worked.
#[derive(Debug, Clone)]
pub struct ReadReadiness;

impl Operation for ReadReadiness {
    type Output = Readiness;
    fn action(&self) -> Action {
        Action::Ready
    }
    fn target(&self) -> String {
        "service".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Readiness> {
        Ok(Readiness {
            hsm: s.backend.info().map_err(|e| e.to_string()),
            store: s.store.check_writable().map_err(|e| e.to_string()),
            audit: s.audit.writable(),
        })
    }
}

/// The metrics exposition.
#[derive(Debug, Clone)]
pub struct ReadMetrics;

impl Operation for ReadMetrics {
    type Output = String;
    fn action(&self) -> Action {
        Action::Metrics
    }
    fn target(&self) -> String {
        "service".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<String> {
        let (open, max) = s
            .backend
            .info()
            .map(|i| (i.sessions_open, i.sessions_max))
            .unwrap_or((0, 0));
        Ok(s.metrics.render(open, max, s.audit.stats()))
    }
}

/// Whether the caller may read the API's description (the API layer builds it).
#[derive(Debug, Clone)]
pub struct ReadApiDescription;

impl Operation for ReadApiDescription {
    type Output = ();
    fn action(&self) -> Action {
        Action::OpenApi
    }
    fn target(&self) -> String {
        "openapi".into()
    }
    fn run(&mut self, _: &Service, _: &Caller) -> Result<()> {
        Ok(())
    }
}

/// Reading what a problem type means (the API describes its own problem types: this only
/// admits the caller).
#[derive(Debug, Clone)]
pub struct ReadProblemType {
    /// Its name (the `type` URI's last segment).
    pub name: String,
}

impl Operation for ReadProblemType {
    type Output = ();
    fn action(&self) -> Action {
        Action::ProblemRead
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn run(&mut self, _: &Service, _: &Caller) -> Result<Self::Output> {
        Ok(())
    }
}

/// Records after `after`, at most `limit` (1 to 10,000).
#[derive(Debug, Clone)]
pub struct ReadAudit {
    /// The last sequence number not wanted.
    pub after: u64,
    /// How many at most.
    pub limit: usize,
}

impl Operation for ReadAudit {
    type Output = Vec<AuditRecord>;
    fn action(&self) -> Action {
        Action::AuditRead
    }
    fn target(&self) -> String {
        "audit".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.audit.read(self.after, self.limit.clamp(1, 10_000))
    }
}

/// Copies the log to a file up to and including its last checkpoint (so the copy verifies
/// offline and a cut copy is detectable), and the audit public key beside it (`.pub.pem`).
/// Writes nothing to the log, signs nothing, never touches the anchor.
#[derive(Debug, Clone)]
pub struct ExportAudit {
    /// The copy.
    pub out: std::path::PathBuf,
}

impl Operation for ExportAudit {
    type Output = Export;
    fn action(&self) -> Action {
        Action::AuditExport
    }
    fn target(&self) -> String {
        "audit".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Export> {
        let spki = audit::public_key(s.store.as_ref(), s.backend.as_ref())?;
        let head = s.audit.head()?;
        let Some(through) = last_checkpoint(s.audit.journal().as_ref(), head.seq)? else {
            return Err(Error::Conflict(format!(
                "the audit log ({} records) has no checkpoint yet: nothing signed to export",
                head.seq
            )));
        };
        let written = copy_log(s.audit.journal().as_ref(), &self.out, AUDIT_PAGE, through)?;
        let pem_path = self.out.with_extension("pub.pem");
        std::fs::write(&pem_path, signet_pki::pem_encode("PUBLIC KEY", &spki))?;
        Ok(Export {
            records: written,
            through,
            left_out: head.seq - through,
            public_key: pem_path,
        })
    }
}

/// Accepts a log that does not hold its anchor: the `requested` record holds the loss —
/// which records, how many, the keys the store no longer names, the CRL number's new floor —
/// and is durable before anything moves; then CRL numbers are raised past every one issued
/// and a checkpoint anchors the log as it now is (a new epoch).
#[derive(Debug, Clone)]
pub struct Reanchor {
    /// The gap found.
    pub gap: audit::Gap,
}

impl Operation for Reanchor {
    type Output = ();
    fn action(&self) -> Action {
        Action::AuditReanchor
    }
    fn target(&self) -> String {
        "audit".into()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        let orphans = s.orphaned_keys()?;
        let mut event = event
            .with(
                "reason",
                "the operator accepted a log that does not hold its anchor",
            )
            .with("crl_number_raised_to", crl_floor());
        if !orphans.is_empty() {
            event = event.with(
                "orphaned_keys",
                orphans
                    .iter()
                    .take(32)
                    .map(|k| k.label.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
        for (name, value) in self.gap.details() {
            event = event.with(name, value);
        }
        Ok(event)
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<()> {
        s.store.raise_crl_number(crl_floor())?;
        // The checkpoint after the record moves the anchor, whatever it was (another node
        // anchoring at that moment only delays it).
        for attempt in 0.. {
            s.anchor.replace_on_next_save();
            s.audit.checkpoint()?;
            if s.audit_gap()?.is_none() {
                break;
            }
            if attempt == 20 {
                return Err(Error::AuditUnavailable(
                    "the loss is recorded, but the new checkpoint could not be anchored in the token; run `signet audit reanchor` again".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        Ok(())
    }
}

/// CRL numbers issued after what a restored store holds were lost with it: later ones start
/// above any of them (numbers count up from 1; this is the time in seconds).
fn crl_floor() -> u64 {
    u64::try_from(now()).unwrap_or(0)
}

/// Re-applies the revocations of an exported log (`audit export`, verified with the audit
/// public key) that the store no longer holds — after a restore from a backup older than
/// them. Certificates are revoked again (their CRL regenerated once) and token ids revoked
/// again; already revoked ones are left as they are. Gives (certificates, tokens) re-applied.
#[derive(Debug, Clone)]
pub struct ReplayRevocations {
    /// The exported log.
    pub export: std::path::PathBuf,
    /// The audit public key (SPKI DER) it verifies with.
    pub public_key_spki: Vec<u8>,
    certs: Vec<(String, Option<String>)>,
    tokens: Vec<(String, Option<i64>)>,
}

impl ReplayRevocations {
    /// The replay of `export`, verified with `public_key_spki`.
    pub fn new(export: std::path::PathBuf, public_key_spki: Vec<u8>) -> Self {
        ReplayRevocations {
            export,
            public_key_spki,
            certs: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

impl Operation for ReplayRevocations {
    type Output = (usize, usize);
    fn action(&self) -> Action {
        Action::AuditReplayRevocations
    }
    fn target(&self) -> String {
        "audit".into()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        let lines = crate::store::audit_file::log_lines(&self.export)?;
        if let Err(b) = verify_chain(lines, &self.public_key_spki, None) {
            return Err(Error::BadRequest(format!(
                "{} does not verify with the audit key (broken at seq {}: {}); nothing was re-applied",
                self.export.display(),
                b.seq,
                b.reason
            )));
        }
        for record in crate::store::audit_file::log_lines(&self.export)?.flatten() {
            if record.outcome != Outcome::Ok {
                continue;
            }
            match record.action.as_str() {
                "cert.revoke" => {
                    let serial = crate::domain::authority::normalize_serial(&record.target);
                    if matches!(s.store.cert(&serial)?, Some(c) if c.status == CertStatus::Active) {
                        self.certs
                            .push((serial, record.details.get("reason").cloned()));
                    }
                }
                "token.revoke" if !s.store.token_revoked(&record.target)? => {
                    let exp = record.details.get("exp").and_then(|e| e.parse().ok());
                    self.tokens.push((record.target.clone(), exp));
                }
                _ => {}
            }
        }
        Ok(event
            .with("source", self.export.display())
            .with(
                "source_sha256",
                audit::sha256_hex(&std::fs::read(&self.export)?),
            )
            .with(
                "certificates",
                self.certs
                    .iter()
                    .map(|(serial, _)| serial.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
            .with(
                "tokens",
                self.tokens
                    .iter()
                    .map(|(jti, _)| jti.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        if !self.certs.is_empty() {
            let ca = s.ca()?;
            let mut by_reason: std::collections::BTreeMap<Option<String>, Vec<String>> =
                Default::default();
            for (serial, reason) in &self.certs {
                let reason = reason.clone().filter(|r| r != "unspecified");
                by_reason.entry(reason).or_default().push(serial.clone());
            }
            for (reason, serials) in by_reason {
                s.authority().revoke_all(&ca, &serials, reason.as_deref())?;
            }
        }
        for (jti, exp) in &self.tokens {
            s.tokens().revoke(jti, *exp)?;
        }
        Ok((self.certs.len(), self.tokens.len()))
    }
    fn describe(&self, (c, t): &(usize, usize), event: Event) -> Event {
        event
            .with("certificates_revoked", c)
            .with("tokens_revoked", t)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::audit_file::{read_log, FileJournal};

    /// The copy has every record, in order, however many pages it takes.
    #[test]
    fn an_exported_copy_has_every_record_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let journal = FileJournal::open(dir.path()).unwrap();
        for n in 0..50 {
            let event = Event::new("p", "-", "x", &format!("t{n}"), Outcome::Ok);
            journal.append(vec![event]).unwrap();
        }
        let out = dir.path().join("copy.log");
        for page in [1, 7, 50, 10_000] {
            assert_eq!(copy_log(&journal, &out, page, 50).unwrap(), 50);
            let copy = read_log(&out).unwrap();
            let targets: Vec<String> = copy.into_iter().map(|r| r.unwrap().target).collect();
            let want: Vec<String> = (0..50).map(|n| format!("t{n}")).collect();
            assert_eq!(targets, want, "page {page}");
        }
    }
}
