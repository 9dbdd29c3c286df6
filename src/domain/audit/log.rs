//! The audit log's writer: one thread owns the journal. Requests queue their records and wait;
//! the writer takes everything queued, appends it as one batch (one write and one sync for the
//! file journal, one transaction for a database), and completes every waiter at once. It also
//! writes the checkpoints: every N records, or T seconds after the first record since the last
//! one, it signs the chain head with the audit key in the token and appends the checkpoint.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signet_hsm::{Backend, EcdsaFormat, KeyId, SignInput, SignatureAlgorithm};
use tokio::sync::oneshot;

use super::{checkpoint_message, Anchor};
use crate::config::AuditConfig;
use crate::error::{Error, Result};
use crate::store::audit::CHECKPOINT;
use crate::store::{AuditRecord, ChainHead, Event, Journal, Outcome};

/// The principal of the service's own records.
pub const SERVICE: &str = "signet";

/// Where a batch's records (or its failure) go.
type Reply = oneshot::Sender<Result<Vec<AuditRecord>>>;

enum Job {
    Append(Vec<Event>, Reply),
    /// A checkpoint; when the flag is false, only if records arrived since the last one.
    Checkpoint(oneshot::Sender<Result<Option<AuditRecord>>>, bool),
}

struct Queue {
    jobs: VecDeque<Job>,
    closing: bool,
}

/// Counters for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Records appended.
    pub records: AtomicU64,
    /// Batches appended (syncs or transactions).
    pub batches: AtomicU64,
    /// Batches refused (not durable; their requests were refused).
    pub failures: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
}

struct Inner {
    journal: Arc<dyn Journal>,
    anchor: Anchor,
    backend: Arc<dyn Backend>,
    key_id: KeyId,
    config: AuditConfig,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// While the log cannot be written: what was refused, to be recorded once it can.
    outage: Mutex<Option<Outage>>,
    stats: AuditStats,
}

/// An interval in which the log could not be written.
#[derive(Debug, Clone)]
struct Outage {
    since: String,
    error: String,
    batches: u64,
    records: u64,
}

impl Outage {
    fn event(&self) -> Event {
        Event::new(SERVICE, "-", "audit.unavailable", "audit", Outcome::Error)
            .with("since", &self.since)
            .with("until", crate::support::time::format_time_precise())
            .with("error", &self.error)
            .with("refused_batches", self.batches)
            .with("refused_records", self.records)
    }
}

/// While the log is unwritable, how often the writer tries again on its own.
const RETRY: Duration = Duration::from_secs(1);

/// The audit log, as the service uses it.
pub struct AuditLog {
    inner: Arc<Inner>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("key_id", &self.inner.key_id)
            .field("journal", &self.inner.journal)
            .finish_non_exhaustive()
    }
}

/// Records being made durable; wait for them with [`Pending::wait`] (blocking) or `.await`.
#[derive(Debug)]
pub struct Pending(Option<oneshot::Receiver<Result<Vec<AuditRecord>>>>);

impl Pending {
    /// Blocks until the records are durable (never call on an async worker).
    pub fn wait(self) -> Result<Vec<AuditRecord>> {
        match self.0 {
            None => Ok(Vec::new()),
            Some(rx) => rx.blocking_recv().unwrap_or_else(|_| Err(writer_gone())),
        }
    }
}

impl std::future::Future for Pending {
    type Output = Result<Vec<AuditRecord>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            None => std::task::Poll::Ready(Ok(Vec::new())),
            Some(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(writer_gone()))),
        }
    }
}

fn writer_gone() -> Error {
    Error::AuditUnavailable("the audit writer has stopped".into())
}

impl AuditLog {
    /// Starts the writer over `journal`, checkpointing with the audit key `key_id`.
    pub fn start(
        journal: Arc<dyn Journal>,
        anchor: Anchor,
        backend: Arc<dyn Backend>,
        key_id: KeyId,
        config: AuditConfig,
    ) -> Result<Self> {
        let inner = Arc::new(Inner {
            journal,
            anchor,
            backend,
            key_id,
            config,
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closing: false,
            }),
            wake: Condvar::new(),
            outage: Mutex::new(None),
            stats: AuditStats::default(),
        });
        let worker = inner.clone();
        let writer = std::thread::Builder::new()
            .name("signet-audit".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::Internal(format!("starting the audit writer: {e}")))?;
        Ok(AuditLog {
            inner,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues records; they are durable when the returned [`Pending`] completes. A
    /// `bench-unaudited` build completes at once without writing anything.
    pub fn submit(&self, events: Vec<Event>) -> Pending {
        if cfg!(feature = "bench-unaudited") || events.is_empty() {
            return Pending(None);
        }
        let (tx, rx) = oneshot::channel();
        self.inner.push(Job::Append(events, tx));
        Pending(Some(rx))
    }

    /// Appends records and returns once they are durable. A failure means the caller must not
    /// make (or answer) the change they describe.
    pub fn record(&self, events: Vec<Event>) -> Result<Vec<AuditRecord>> {
        self.submit(events).wait()
    }

    /// Appends one record durably.
    pub fn append(&self, event: Event) -> Result<()> {
        self.record(vec![event]).map(|_| ())
    }

    /// Signs the current head and appends the checkpoint now.
    pub fn checkpoint(&self) -> Result<AuditRecord> {
        self.checkpoint_job(true)?
            .ok_or_else(|| Error::Internal("no checkpoint was written".into()))
    }

    /// Checkpoints now if any record is not yet covered by a checkpoint.
    pub fn checkpoint_unsigned(&self) -> Result<Option<AuditRecord>> {
        self.checkpoint_job(false)
    }

    fn checkpoint_job(&self, force: bool) -> Result<Option<AuditRecord>> {
        let (tx, rx) = oneshot::channel();
        self.inner.push(Job::Checkpoint(tx, force));
        rx.blocking_recv().unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Records after `after`, at most `limit`.
    pub fn read(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        self.inner.journal.read(after, limit)
    }

    /// The chain head.
    pub fn head(&self) -> Result<ChainHead> {
        self.inner.journal.head()
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.inner.journal
    }

    /// The audit key's id.
    pub fn key_id(&self) -> &KeyId {
        &self.inner.key_id
    }

    /// `Err(why)` while the log cannot be written (the writer retries every second).
    pub fn writable(&self) -> std::result::Result<(), String> {
        match &*self.inner.outage.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(outage) => Err(outage.error.clone()),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &AuditStats {
        &self.inner.stats
    }

    /// Finishes queued work and stops the writer.
    pub fn close(&self) {
        {
            let mut queue = self.inner.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.closing = true;
        }
        self.inner.wake.notify_all();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn push(&self, job: Job) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.closing {
            drop(queue);
            match job {
                Job::Append(_, tx) => drop(tx.send(Err(writer_gone()))),
                Job::Checkpoint(tx, _) => drop(tx.send(Err(writer_gone()))),
            }
            return;
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.wake.notify_one();
    }

    /// The writer thread.
    fn run(&self) {
        let mut since_checkpoint = self.records_since_checkpoint();
        let mut last_checkpoint = Instant::now();
        let interval = Duration::from_secs(self.config.checkpoint_interval_secs);
        loop {
            let jobs = {
                let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if !queue.jobs.is_empty() || queue.closing {
                        break;
                    }
                    let mut wait = if since_checkpoint > 0 {
                        interval.saturating_sub(last_checkpoint.elapsed())
                    } else {
                        Duration::from_secs(3600)
                    };
                    let in_outage = self.in_outage();
                    if in_outage {
                        wait = wait.min(RETRY);
                    }
                    if wait.is_zero() {
                        break;
                    }
                    let (q, timeout) = self
                        .wake
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(|p| p.into_inner());
                    queue = q;
                    if timeout.timed_out() && in_outage && queue.jobs.is_empty() {
                        break;
                    }
                }
                if queue.jobs.is_empty() && queue.closing {
                    return;
                }
                if self.config.commit_delay_us > 0 && !queue.jobs.is_empty() {
                    // Let a few more records join this batch (fewer syncs, more latency).
                    drop(queue);
                    std::thread::sleep(Duration::from_micros(self.config.commit_delay_us));
                    queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                }
                std::mem::take(&mut queue.jobs)
            };
            if self.in_outage() {
                // Record the outage first: when it works the log is writable again.
                since_checkpoint += self.record_outage();
            }
            let mut appends = Vec::new();
            let mut checkpoints = Vec::new();
            let mut forced = false;
            for job in jobs {
                match job {
                    Job::Append(events, tx) => appends.push((events, tx)),
                    Job::Checkpoint(tx, force) => {
                        forced |= force;
                        checkpoints.push(tx);
                    }
                }
            }
            if !appends.is_empty() {
                since_checkpoint += self.append_batch(appends);
            }
            let due = since_checkpoint >= self.config.checkpoint_every
                || (since_checkpoint > 0 && last_checkpoint.elapsed() >= interval)
                || (since_checkpoint > 0 && !checkpoints.is_empty());
            if !due && !forced {
                for tx in checkpoints {
                    let _ = tx.send(Ok(None));
                }
                continue;
            }
            {
                let result = self.write_checkpoint();
                if result.is_ok() {
                    since_checkpoint = 0;
                    last_checkpoint = Instant::now();
                } else {
                    // Try again at the next interval, not in a tight loop.
                    last_checkpoint = Instant::now();
                }
                if let Err(e) = &result {
                    tracing::error!(error = %e, "audit checkpoint failed");
                }
                for tx in checkpoints {
                    let _ = tx.send(match &result {
                        Ok(r) => Ok(Some(r.clone())),
                        Err(e) => Err(Error::AuditUnavailable(e.to_string())),
                    });
                }
            }
        }
    }

    fn records_since_checkpoint(&self) -> u64 {
        match self.journal.head() {
            Ok(head) if head.seq > 0 => match self.journal.read(head.seq - 1, 1) {
                Ok(last) if last.first().is_some_and(|r| r.action == CHECKPOINT) => 0,
                _ => 1,
            },
            _ => 0,
        }
    }

    fn writable_error(&self) -> Option<String> {
        self.outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|o| o.error.clone())
    }

    fn in_outage(&self) -> bool {
        self.outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Tries to append the record of the current outage; returns the records appended.
    fn record_outage(&self) -> u64 {
        let Some(outage) = self
            .outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return 0;
        };
        match self.journal.append(vec![outage.event()]) {
            Ok(records) => {
                records.iter().for_each(emit);
                *self.outage.lock().unwrap_or_else(|p| p.into_inner()) = None;
                tracing::warn!(
                    refused_batches = outage.batches,
                    refused_records = outage.records,
                    "the audit log is writable again"
                );
                self.stats.records.fetch_add(1, Ordering::Relaxed);
                1
            }
            Err(_) => 0,
        }
    }

    /// Appends every queued batch as one; returns how many records were appended.
    fn append_batch(&self, appends: Vec<(Vec<Event>, Reply)>) -> u64 {
        let mut sizes = Vec::with_capacity(appends.len());
        let mut all = Vec::new();
        let mut senders = Vec::with_capacity(appends.len());
        for (events, tx) in appends {
            sizes.push(events.len());
            all.extend(events);
            senders.push(tx);
        }
        let count = all.len() as u64;
        // During an outage nothing is appended before its record: refuse at once.
        let result = if self.in_outage() {
            Err(Error::AuditUnavailable(
                self.writable_error().unwrap_or_default(),
            ))
        } else {
            self.journal.append(all)
        };
        match result {
            Ok(records) => {
                records.iter().for_each(emit);
                let n = records.len() as u64;
                self.stats.records.fetch_add(n, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                let mut records = records.into_iter();
                for (size, tx) in sizes.into_iter().zip(senders) {
                    let _ = tx.send(Ok(records.by_ref().take(size).collect()));
                }
                n
            }
            Err(e) => {
                let why = e.to_string();
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                {
                    let mut outage = self.outage.lock().unwrap_or_else(|p| p.into_inner());
                    if outage.is_none() {
                        tracing::error!(error = %why, "the audit log cannot be written; refusing the requests it would record");
                    }
                    let o = outage.get_or_insert_with(|| Outage {
                        since: crate::support::time::format_time_precise(),
                        error: why.clone(),
                        batches: 0,
                        records: 0,
                    });
                    o.batches += 1;
                    o.records += count;
                }
                for tx in senders {
                    let _ = tx.send(Err(Error::AuditUnavailable(why.clone())));
                }
                0
            }
        }
    }

    /// Signs the head with the audit key and appends the checkpoint record.
    fn write_checkpoint(&self) -> Result<AuditRecord> {
        let head = self.journal.head()?;
        let signature = signet_hsm::sign(
            self.backend.as_ref(),
            &self.key_id,
            SignatureAlgorithm::Es256,
            SignInput::Message(&checkpoint_message(head.seq, &head.hash)),
            EcdsaFormat::Der,
        )
        .map_err(|e| Error::AuditUnavailable(format!("signing the checkpoint: {e}")))?;
        let event = Event::new(SERVICE, "-", CHECKPOINT, "audit", Outcome::Ok)
            .with("head_seq", head.seq)
            .with("head_hash", &head.hash)
            .with("key_id", self.key_id.to_hex())
            .with("algorithm", "ES256")
            .with("signature", STANDARD.encode(&signature));
        let record = self
            .journal
            .append(vec![event])?
            .pop()
            .ok_or_else(|| Error::Internal("the journal returned no checkpoint".into()))?;
        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        emit(&record);
        let anchored = ChainHead {
            seq: record.seq,
            hash: record.hash.clone(),
        };
        if let Err(e) = self.anchor.save(&anchored) {
            tracing::error!(error = %e, seq = record.seq, "could not anchor the audit checkpoint in the token");
        }
        Ok(record)
    }
}

/// Ships a record on the log stream (target `audit`). Every field is already escaped.
fn emit(record: &AuditRecord) {
    tracing::info!(
        target: "audit",
        seq = record.seq,
        principal = %record.principal,
        request_id = %record.request_id,
        action = %record.action,
        target_name = %record.target,
        outcome = record.outcome.name(),
        details = %serde_json::to_string(&record.details).unwrap_or_default(),
        hash = %record.hash,
        "audit"
    );
}
