//! The audit log's group commit. Records are queued; whoever finds no write under way becomes
//! the leader: it takes everything queued, appends it as one batch (one write and one
//! `fdatasync` for the file journal, one transaction for a database) and completes every waiter
//! at once. Threads arriving meanwhile only queue and return: their records go in the next
//! batch. So a lone request pays one sync and no hand-off, and concurrent ones share syncs.
//! A request that will append (a key use) says so when it starts ([`AuditLog::announce`]); a
//! leader waits, up to `audit.group_wait_us`, for the records of requests already under way,
//! so that concurrent requests share one transaction even when the sync is quick; a lone
//! request does not wait.
//!
//! A background thread leads for those who must not block (the async workers submit with
//! [`AuditLog::enqueue`]), writes the checkpoints — every N records, or T seconds after the
//! first record not yet covered, it signs the chain head with the audit key in the token and
//! anchors it — and, while the log cannot be written, retries every second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signet_hsm::{Backend, EcdsaFormat, KeyId, SignInput, SignatureAlgorithm};
use tokio::sync::oneshot;

use super::{checkpoint_message, Anchor};
use crate::config::AuditConfig;
use crate::error::{Error, Result};
use crate::store::audit::Group;
use crate::store::audit::CHECKPOINT;
use crate::store::prefetch::Reliance;
use crate::store::{AuditRecord, ChainHead, Event, Journal, Outcome};

/// The principal of the service's own records.
pub const SERVICE: &str = "signet";

/// While the log is unwritable, how often the background thread tries again on its own.
const RETRY: Duration = Duration::from_secs(1);

/// How many led batches' sizes a leader looks back on.
const RECENT: usize = 8;

/// The longest wait between two tries of a failing checkpoint.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How soon a checkpoint that found another node anchoring is anchored again (see
/// `State::unanchored`).
const ANCHOR_AGAIN: Duration = Duration::from_millis(200);

/// Where a batch's records (or its failure) go.
type Reply = oneshot::Sender<Result<Vec<AuditRecord>>>;

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
    /// Requests whose records were written discarded: they ran on cached records another node
    /// had changed, and were run again.
    pub discarded: AtomicU64,
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

impl State {
    /// Whether a gathering leader has what it waits for (see `Inner::gather`).
    fn gathered(&self) -> bool {
        self.gathering
            .is_some_and(|expected| self.coming == 0 && self.queue.len() >= expected)
    }
}

/// One request's records waiting for a batch: what they rely on from the node's cache (see
/// `store::prefetch`), and where their result goes.
type Queued = (Vec<Event>, Option<Arc<Reliance>>, Reply);

/// Who writes records just queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The caller, now the leader.
    Lead,
    /// The background thread, idle until woken.
    Wake,
    /// Whoever is writing now: it takes them next.
    Nothing,
}

/// What is left to do about a checkpoint's anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unanchored {
    /// Nothing: it is anchored, or a later checkpoint is, or it never will be (fenced).
    No,
    /// Another node was anchoring: try again shortly.
    Busy,
    /// The token failed: try again after a pause.
    Failed,
}

/// What the lock guards.
struct State {
    /// Records waiting for the next batch, with where each group's result goes.
    queue: Vec<Queued>,
    /// A leader is appending (only one at a time: the chain has one head).
    writing: bool,
    /// Requests under way that said they will append records (see [`AuditLog::announce`]).
    coming: usize,
    /// How many requests the last few led batches held: a leader lingers (within
    /// `audit.group_wait_us`) until as many have queued as the largest of them.
    recent: std::collections::VecDeque<usize>,
    /// While a leader gathers: how many queued requests it waits for (it is woken only once
    /// they are there and nothing more is coming, not at every arrival).
    gathering: Option<usize>,
    /// Records since the last checkpoint.
    since_checkpoint: u64,
    /// When the last checkpoint was written (or the log opened).
    last_checkpoint: Instant,
    /// While the log cannot be written: what was refused, to be recorded once it can.
    outage: Option<Outage>,
    /// Checkpoints asked for, with whether one is wanted even with nothing new.
    checkpoint_requests: Vec<(oneshot::Sender<Result<Option<AuditRecord>>>, bool)>,
    /// Not before this may a checkpoint be tried again after one failed (backoff).
    checkpoint_retry_at: Option<Instant>,
    /// The delay before the next retry after a failed checkpoint (doubles up to 10 s).
    checkpoint_backoff: Duration,
    /// Set while the shared chain does not continue the chain this node knows, or does not
    /// hold the anchor: nothing is written until `audit reanchor` has recorded the loss.
    fence: Option<String>,
    /// When the fence was last checked against the anchor.
    fence_checked: Option<Instant>,
    /// This node's latest checkpoint, written but not anchored (another node was anchoring,
    /// or the token failed): anchored again at `anchor_retry_at`, until it or a later
    /// checkpoint is. Without this the anchor stayed behind the chain's head for as long as
    /// the nodes stayed idle.
    unanchored: Option<ChainHead>,
    /// When `unanchored` is tried next.
    anchor_retry_at: Instant,
    /// The pause before that, after the token failed (doubles up to `MAX_BACKOFF`).
    anchor_backoff: Duration,
    closing: bool,
}

struct Inner {
    journal: Arc<dyn Journal>,
    anchor: Anchor,
    backend: Arc<dyn Backend>,
    key_id: KeyId,
    config: AuditConfig,
    state: Mutex<State>,
    /// Wakes the background thread (work for it, or a leader finished).
    wake: Condvar,
    /// Wakes a leader waiting for announced records (one joined, or will not come).
    joined: Condvar,
    stats: AuditStats,
    /// Opened by an inspecting command: nothing is appended, no checkpoint is signed, the
    /// anchor is never touched.
    read_only: bool,
    /// The anchor's epoch this node's view of the chain belongs to (see `Anchor::epoch`).
    epoch: AtomicU64,
}

/// The audit log, as the service uses it.
pub struct AuditLog {
    inner: Arc<Inner>,
    background: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("key_id", &self.inner.key_id)
            .field("journal", &self.inner.journal)
            .finish_non_exhaustive()
    }
}

/// A request that will append records (see [`AuditLog::announce`]).
#[must_use = "an announced request's records go in with `submit`"]
#[derive(Debug)]
pub struct Announced<'a> {
    log: &'a AuditLog,
    /// Whether it was counted (grouping is on): only then is there anything to undo.
    counted: bool,
}

impl Announced<'_> {
    /// [`AuditLog::submit`] for the announced records.
    pub fn submit(mut self, events: Vec<Event>) -> Pending {
        let counted = std::mem::replace(&mut self.counted, false);
        self.log.submit_queued(events, counted)
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.log.inner.no_longer_coming();
        }
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
            Some(mut rx) => match rx.try_recv() {
                Ok(result) => result,
                Err(oneshot::error::TryRecvError::Closed) => Err(writer_gone()),
                Err(oneshot::error::TryRecvError::Empty) => {
                    rx.blocking_recv().unwrap_or_else(|_| Err(writer_gone()))
                }
            },
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
    Error::AuditUnavailable("the audit log is closed".into())
}

fn read_only() -> Error {
    Error::AuditUnavailable(
        "the audit log was opened read-only (an inspecting command writes nothing)".into(),
    )
}

impl AuditLog {
    /// Opens the log over `journal`, checkpointing with the audit key `key_id`.
    pub fn start(
        journal: Arc<dyn Journal>,
        anchor: Anchor,
        backend: Arc<dyn Backend>,
        key_id: KeyId,
        config: AuditConfig,
    ) -> Result<Self> {
        let inner = Inner::new(journal, anchor, backend, key_id, config, false);
        inner
            .epoch
            .store(inner.anchor.epoch().unwrap_or(0), Ordering::Release);
        let worker = inner.clone();
        let background = std::thread::Builder::new()
            .name("signet-audit".into())
            .spawn(move || worker.background())
            .map_err(|e| Error::Internal(format!("starting the audit writer: {e}")))?;
        Ok(AuditLog {
            inner,
            background: Mutex::new(Some(background)),
        })
    }

    /// Opens the log over `journal` to read it only: no writer thread, every append and
    /// checkpoint refused, the anchor never written (inspecting commands).
    pub fn read_only(
        journal: Arc<dyn Journal>,
        anchor: Anchor,
        backend: Arc<dyn Backend>,
        key_id: KeyId,
        config: AuditConfig,
    ) -> Self {
        AuditLog {
            inner: Inner::new(journal, anchor, backend, key_id, config, true),
            background: Mutex::new(None),
        }
    }

    /// Whether the log was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Queues records. A lone caller (the last few batches held one request each), when no
    /// write is under way, writes them itself, on this thread, before returning: no hand-off.
    /// Under concurrency the background thread writes and answers them: a worker that synced
    /// the log would leave its CPU idle meanwhile while the next requests' key uses wait for a
    /// worker. A `bench-unaudited` build writes nothing.
    pub fn submit(&self, events: Vec<Event>) -> Pending {
        self.submit_queued(events, false)
    }

    /// [`AuditLog::submit`]; `announced`: the records of an [`Announced`] request.
    fn submit_queued(&self, events: Vec<Event>, announced: bool) -> Pending {
        let (pending, next) = self.queue_announced(events, true, announced);
        match next {
            Next::Lead => self.inner.lead(),
            Next::Wake => self.inner.wake.notify_all(),
            Next::Nothing => {}
        }
        pending
    }

    /// Says that this thread's request will append records soon (a key use, whose token call
    /// is under way): a leader meanwhile may wait for them (`audit.group_wait_us`). The
    /// records go in with [`Announced::submit`]; dropping the guard says they will not come.
    pub fn announce(&self) -> Announced<'_> {
        let counted = self.inner.config.group_wait_us > 0 && !self.inner.read_only;
        if counted {
            self.inner.lock().coming += 1;
        }
        Announced { log: self, counted }
    }

    /// Queues records without ever writing on this thread (for async workers): the background
    /// thread writes them.
    pub fn enqueue(&self, events: Vec<Event>) -> Pending {
        let (pending, next) = self.queue_announced(events, false, false);
        if next == Next::Wake {
            self.inner.wake.notify_all();
        }
        pending
    }

    /// Queues records; says who writes them. `may_lead`: the caller may write them itself (it
    /// is not an async worker); `announced`: these are the records of an [`Announced`]
    /// request, no longer coming once queued.
    fn queue_announced(
        &self,
        events: Vec<Event>,
        may_lead: bool,
        announced: bool,
    ) -> (Pending, Next) {
        if cfg!(feature = "bench-unaudited") || events.is_empty() {
            if announced {
                self.inner.no_longer_coming();
            }
            return (Pending(None), Next::Nothing);
        }
        let (tx, rx) = oneshot::channel();
        if self.inner.read_only {
            let _ = tx.send(Err(read_only()));
            return (Pending(Some(rx)), Next::Nothing);
        }
        let mut state = self.inner.lock();
        if announced {
            // In the same step as the queueing: a leader never finds these records neither
            // coming nor queued.
            state.coming = state.coming.saturating_sub(1);
        }
        if state.closing {
            drop(state);
            if announced {
                self.inner.joined.notify_all();
            }
            let _ = tx.send(Err(writer_gone()));
            return (Pending(Some(rx)), Next::Nothing);
        }
        // The submitting thread's request, if it ran on cached records: these records vouch
        // for them (only a thread doing a request's work has any).
        state
            .queue
            .push((events, crate::store::prefetch::vouch(), tx));
        let next = if state.writing {
            Next::Nothing
        } else if may_lead && state.recent.iter().all(|&held| held <= 1) {
            state.writing = true;
            Next::Lead
        } else {
            Next::Wake
        };
        let gathered = state.gathered();
        drop(state);
        if gathered {
            self.inner.joined.notify_all();
        }
        (Pending(Some(rx)), next)
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
        self.checkpoint_request(true)?
            .ok_or_else(|| Error::Internal("no checkpoint was written".into()))
    }

    /// Checkpoints now if any record is not yet covered by a checkpoint.
    pub fn checkpoint_unsigned(&self) -> Result<Option<AuditRecord>> {
        self.checkpoint_request(false)
    }

    fn checkpoint_request(&self, force: bool) -> Result<Option<AuditRecord>> {
        if self.inner.read_only {
            return Err(read_only());
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.inner.lock();
            if state.closing {
                return Err(writer_gone());
            }
            state.checkpoint_requests.push((tx, force));
        }
        self.inner.wake.notify_all();
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

    /// `Err(why)` while the log cannot be written (it is retried every second).
    pub fn writable(&self) -> std::result::Result<(), String> {
        let state = self.inner.lock();
        if let Some(fence) = &state.fence {
            return Err(fence.clone());
        }
        match &state.outage {
            None => Ok(()),
            Some(outage) => Err(outage.error.clone()),
        }
    }

    /// Why writes are stopped because the chain does not continue as this node knows it (see
    /// [`crate::domain::audit::Anchor::check`]), if they are.
    pub fn fence(&self) -> Option<String> {
        self.inner.lock().fence.clone()
    }

    /// Counters.
    pub fn stats(&self) -> &AuditStats {
        &self.inner.stats
    }

    /// Writes what is queued and stops the background thread.
    pub fn close(&self) {
        self.inner.lock().closing = true;
        self.inner.wake.notify_all();
        if let Some(background) = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = background.join();
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Records after the last checkpoint in `journal` (1 stands for "some", which is what matters).
fn records_since_checkpoint(journal: &dyn Journal) -> u64 {
    match journal.head() {
        Ok(head) if head.seq > 0 => match journal.read(head.seq - 1, 1) {
            Ok(last) if last.first().is_some_and(|r| r.action == CHECKPOINT) => 0,
            _ => 1,
        },
        _ => 0,
    }
}

impl Inner {
    fn new(
        journal: Arc<dyn Journal>,
        anchor: Anchor,
        backend: Arc<dyn Backend>,
        key_id: KeyId,
        config: AuditConfig,
        read_only: bool,
    ) -> Arc<Self> {
        let since_checkpoint = if read_only {
            0
        } else {
            records_since_checkpoint(journal.as_ref())
        };
        Arc::new(Inner {
            journal,
            anchor,
            backend,
            key_id,
            config,
            state: Mutex::new(State {
                queue: Vec::new(),
                writing: false,
                coming: 0,
                recent: std::collections::VecDeque::with_capacity(RECENT),
                gathering: None,
                since_checkpoint,
                last_checkpoint: Instant::now(),
                outage: None,
                checkpoint_requests: Vec::new(),
                checkpoint_retry_at: None,
                checkpoint_backoff: RETRY,
                fence: None,
                fence_checked: None,
                unanchored: None,
                anchor_retry_at: Instant::now(),
                anchor_backoff: RETRY,
                closing: false,
            }),
            wake: Condvar::new(),
            joined: Condvar::new(),
            stats: AuditStats::default(),
            read_only,
            epoch: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An announced request's records will not come (or came with nothing to record).
    fn no_longer_coming(&self) {
        let mut state = self.lock();
        state.coming = state.coming.saturating_sub(1);
        let gathered = state.gathered();
        drop(state);
        if gathered {
            self.joined.notify_all();
        }
    }

    /// Before a leader (a request's thread or the background thread, `writing` set) takes the
    /// queue: requests under way will append in a moment, so it waits for them (within
    /// `audit.group_wait_us`) and they share this transaction instead of each paying its own.
    /// Under a steady load the requests just answered come back within moments too: it waits
    /// (as long) until as many requests have queued as recent batches held. A lone caller's
    /// batches hold one, so it never waits.
    fn gather<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if self.config.group_wait_us == 0 {
            return Self::held(state);
        }
        let until = Instant::now() + Duration::from_micros(self.config.group_wait_us);
        state.gathering = Some(state.recent.iter().copied().max().unwrap_or(1));
        while !state.gathered() && !state.closing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = self
                .joined
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.gathering = None;
        Self::held(state)
    }

    /// Notes how many requests the batch about to be written holds.
    fn held(mut state: MutexGuard<'_, State>) -> MutexGuard<'_, State> {
        if state.recent.len() == RECENT {
            state.recent.pop_front();
        }
        let held = state.queue.len();
        state.recent.push_back(held);
        state
    }

    /// As the leader (`writing` is set for us): appends everything queued once, then hands the
    /// rest (and any checkpoint due) to the background thread.
    fn lead(&self) {
        if self.config.commit_delay_us > 0 {
            // Let a few more records join this batch (fewer syncs, more latency).
            std::thread::sleep(Duration::from_micros(self.config.commit_delay_us));
        }
        let (batch, outage) = {
            let mut state = self.lock();
            state = self.gather(state);
            (std::mem::take(&mut state.queue), state.outage.is_some())
        };
        let mut appended = 0;
        if outage {
            // Try to end the outage first: a request right after the disk recovers succeeds.
            appended += self.record_outage();
        }
        appended += self.append_batch(batch);
        let mut state = self.lock();
        // The first record not covered by a checkpoint starts the background thread's clock.
        let first = state.since_checkpoint == 0 && appended > 0;
        state.since_checkpoint += appended;
        state.writing = false;
        let interval = Duration::from_secs(self.config.checkpoint_interval_secs);
        let more = first
            || !state.queue.is_empty()
            || !state.checkpoint_requests.is_empty()
            || state.since_checkpoint >= self.config.checkpoint_every
            || (state.since_checkpoint > 0 && state.last_checkpoint.elapsed() >= interval)
            || (state.unanchored.is_some() && Instant::now() >= state.anchor_retry_at)
            || state.outage.is_some()
            || state.closing;
        drop(state);
        if more {
            self.wake.notify_all();
        }
    }

    /// The background thread: leads for queued records nobody leads, writes checkpoints when
    /// due or asked for, retries during an outage, and finishes up at close.
    fn background(&self) {
        let interval = Duration::from_secs(self.config.checkpoint_interval_secs);
        let mut last_retry = Instant::now();
        let mut state = self.lock();
        loop {
            if state.fence.is_some()
                && !state.writing
                && state.fence_checked.is_none_or(|t| t.elapsed() >= RETRY)
            {
                // Fenced: writes resume only once `audit reanchor` has moved the anchor onto
                // the chain the database now holds.
                state.fence_checked = Some(Instant::now());
                drop(state);
                self.check_fence();
                state = self.lock();
            }
            let retry_due = state.outage.is_some() && last_retry.elapsed() >= RETRY;
            let backing_off = state
                .checkpoint_retry_at
                .is_some_and(|at| Instant::now() < at);
            let checkpoint_due = state.outage.is_none()
                && state.fence.is_none()
                && !backing_off
                && (state.since_checkpoint >= self.config.checkpoint_every
                    || (state.since_checkpoint > 0 && state.last_checkpoint.elapsed() >= interval));
            let anchor_due = state.unanchored.is_some()
                && state.outage.is_none()
                && state.fence.is_none()
                && Instant::now() >= state.anchor_retry_at;
            let work = !state.queue.is_empty()
                || !state.checkpoint_requests.is_empty()
                || checkpoint_due
                || anchor_due
                || retry_due
                || state.closing;
            if state.writing || !work {
                // Sleep until woken, the next checkpoint is due or the next retry.
                // (No checkpoint is due while fenced or during an outage: those wake for their
                // own retries, once a second, not every millisecond.)
                let mut wait = Duration::from_secs(3600);
                if state.outage.is_none() && state.fence.is_none() && state.since_checkpoint > 0 {
                    wait = interval.saturating_sub(state.last_checkpoint.elapsed());
                    if let Some(at) = state.checkpoint_retry_at {
                        wait = wait.max(at.saturating_duration_since(Instant::now()));
                    }
                    if wait.is_zero() && state.writing {
                        // Due, but a leader is writing: its end wakes this thread (`lead`
                        // tells it of a checkpoint due by time), rather than a look every
                        // millisecond until then.
                        wait = Duration::from_secs(3600);
                    }
                }
                if state.outage.is_some() {
                    wait = wait.min(RETRY.saturating_sub(last_retry.elapsed()));
                }
                if state.fence.is_some() {
                    let checked = state.fence_checked.map_or(RETRY, |t| t.elapsed());
                    wait = wait.min(RETRY.saturating_sub(checked));
                }
                if state.unanchored.is_some()
                    && state.outage.is_none()
                    && state.fence.is_none()
                    && !state.writing
                {
                    wait = wait.min(
                        state
                            .anchor_retry_at
                            .saturating_duration_since(Instant::now()),
                    );
                }
                let (s, _) = self
                    .wake
                    .wait_timeout(state, wait.max(Duration::from_millis(1)))
                    .unwrap_or_else(|p| p.into_inner());
                state = s;
                continue;
            }
            state.writing = true;
            if !state.queue.is_empty() && state.outage.is_none() && state.fence.is_none() {
                state = self.gather(state);
            }
            let outage = state.outage.is_some();
            let batch = std::mem::take(&mut state.queue);
            let requests = std::mem::take(&mut state.checkpoint_requests);
            let closing = state.closing;
            drop(state);

            let mut appended = 0;
            if outage {
                // Record the outage first: when that works the log is writable again.
                last_retry = Instant::now();
                appended += self.record_outage();
            }
            appended += self.append_batch(batch);
            state = self.lock();
            state.since_checkpoint += appended;
            let backing_off = state
                .checkpoint_retry_at
                .is_some_and(|at| Instant::now() < at);
            let due = !backing_off
                && (state.since_checkpoint >= self.config.checkpoint_every
                    || (state.since_checkpoint > 0 && state.last_checkpoint.elapsed() >= interval)
                    || (state.since_checkpoint > 0 && closing));
            let asked = state.since_checkpoint > 0 && !requests.is_empty();
            let forced = requests.iter().any(|(_, force)| *force);
            let fenced = state.fence.clone();
            drop(state);
            let result = if let Some(fence) = fenced.filter(|_| due || asked || forced) {
                Some(Err(Error::AuditUnavailable(fence)))
            } else if (due || asked || forced) && !self.in_outage() {
                let result = self.write_checkpoint();
                if let Err(e) = &result {
                    tracing::error!(error = %e, "audit checkpoint failed");
                }
                Some(result)
            } else {
                None
            };
            let (result, anchored) = match result {
                Some(Ok((record, anchoring))) => (Some(Ok(record)), Some(anchoring)),
                Some(Err(e)) => (Some(Err(e)), None),
                None => (None, None),
            };
            // A checkpoint left unanchored earlier, when nothing newer was just written.
            let anchored = match anchored {
                Some(anchoring) => Some(anchoring),
                None => {
                    let again = {
                        let state = self.lock();
                        state
                            .unanchored
                            .clone()
                            .filter(|_| state.fence.is_none() && state.outage.is_none())
                            .filter(|_| Instant::now() >= state.anchor_retry_at)
                    };
                    again.map(|head| (head.clone(), self.anchor_again(&head)))
                }
            };
            state = self.lock();
            match anchored {
                Some((_, Unanchored::No)) => {
                    state.unanchored = None;
                    state.anchor_backoff = RETRY;
                }
                Some((head, Unanchored::Busy)) => {
                    state.unanchored = Some(head);
                    state.anchor_retry_at = Instant::now() + ANCHOR_AGAIN;
                }
                Some((head, Unanchored::Failed)) => {
                    state.unanchored = Some(head);
                    let backoff = state.anchor_backoff;
                    state.anchor_retry_at = Instant::now() + backoff;
                    state.anchor_backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                None => {}
            }
            if let Some(result) = &result {
                state.last_checkpoint = Instant::now();
                if result.is_ok() {
                    state.since_checkpoint = 0;
                    state.checkpoint_retry_at = None;
                    state.checkpoint_backoff = RETRY;
                } else {
                    // Try again after a growing pause, whatever triggered it (the count
                    // trigger stays true after a failure: without this it is a tight loop).
                    let backoff = state.checkpoint_backoff;
                    state.checkpoint_retry_at = Some(Instant::now() + backoff);
                    state.checkpoint_backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            state.writing = false;
            for (tx, _) in requests {
                let _ = tx.send(match &result {
                    Some(Ok(r)) => Ok(Some(r.clone())),
                    Some(Err(e)) => Err(Error::AuditUnavailable(e.to_string())),
                    None if outage || state.outage.is_some() => Err(Error::AuditUnavailable(
                        "the audit log cannot be written".into(),
                    )),
                    None => Ok(None),
                });
            }
            if closing && state.queue.is_empty() {
                drop(state);
                if let Err(e) = self.journal.close() {
                    tracing::warn!(error = %e, "closing the audit journal");
                }
                return;
            }
        }
    }

    fn in_outage(&self) -> bool {
        self.lock().outage.is_some()
    }

    /// Tries to append the record of the current outage; returns the records appended.
    fn record_outage(&self) -> u64 {
        let Some(outage) = self.lock().outage.clone() else {
            return 0;
        };
        match self.journal.append(vec![outage.event()]) {
            Ok(records) => {
                records.iter().for_each(emit);
                self.lock().outage = None;
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

    /// Appends queued groups as one batch and answers each; returns the records appended.
    fn append_batch(&self, batch: Vec<Queued>) -> u64 {
        if batch.is_empty() {
            return 0;
        }
        let mut groups = Vec::with_capacity(batch.len());
        let mut all = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for (events, relies_on, tx) in batch {
            groups.push(Group {
                len: events.len(),
                relies_on,
            });
            all.extend(events);
            replies.push(tx);
        }
        let count = all.len() as u64;
        // During an outage nothing is appended before its record: refuse at once; while fenced
        // nothing is appended at all.
        let (outage, fence) = {
            let state = self.lock();
            (
                state.outage.as_ref().map(|o| o.error.clone()),
                state.fence.clone(),
            )
        };
        let result = match (fence, outage) {
            (Some(fence), _) => Err(Error::AuditUnavailable(fence)),
            (None, Some(error)) => Err(Error::AuditUnavailable(error)),
            (None, None) => match self.journal.append_groups(all.clone(), &groups) {
                // The chain moved on without this node: if `audit reanchor` accepted a loss
                // since this node last wrote, the chain the anchor names is the one to follow.
                Err(Error::ChainBroken { .. }) if self.reanchored_since_known() => {
                    self.journal.accept_head();
                    self.journal.append_groups(all, &groups)
                }
                other => other,
            },
        };
        if let Err(e @ Error::ChainBroken { .. }) = &result {
            let why = e.to_string();
            for tx in replies {
                let _ = tx.send(Err(Error::AuditUnavailable(why.clone())));
            }
            self.stats.failures.fetch_add(1, Ordering::Relaxed);
            self.fence_on(e);
            return 0;
        }
        if let Err(Error::AuditUnavailable(why)) = &result {
            if self.lock().fence.is_some() {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                for tx in replies {
                    let _ = tx.send(Err(Error::AuditUnavailable(why.clone())));
                }
                return 0;
            }
        }
        match result {
            Ok((records, discarded)) => {
                records.iter().for_each(emit);
                let n = records.len() as u64;
                self.stats.records.fetch_add(n, Ordering::Relaxed);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                let mut records = records.into_iter();
                for ((group, discarded), tx) in groups.iter().zip(discarded).zip(replies) {
                    let theirs: Vec<AuditRecord> = records.by_ref().take(group.len).collect();
                    let _ = tx.send(if discarded {
                        self.stats.discarded.fetch_add(1, Ordering::Relaxed);
                        Err(Error::StaleRead)
                    } else {
                        Ok(theirs)
                    });
                }
                n
            }
            Err(e) => {
                let why = e.to_string();
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                {
                    let mut state = self.lock();
                    if state.outage.is_none() {
                        tracing::error!(error = %why, "the audit log cannot be written; refusing the requests it would record");
                    }
                    let o = state.outage.get_or_insert_with(|| Outage {
                        since: crate::support::time::format_time_precise(),
                        error: why.clone(),
                        batches: 0,
                        records: 0,
                    });
                    o.batches += 1;
                    o.records += count;
                }
                self.wake.notify_all();
                let uncertain = matches!(e, Error::AuditUncertain(_));
                for tx in replies {
                    let _ = tx.send(Err(if uncertain {
                        Error::AuditUncertain(why.clone())
                    } else {
                        Error::AuditUnavailable(why.clone())
                    }));
                }
                0
            }
        }
    }

    /// Signs the head with the audit key, appends the checkpoint record and anchors it.
    fn write_checkpoint(&self) -> Result<(AuditRecord, (ChainHead, Unanchored))> {
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
        let anchoring = self.anchor_checkpoint(&anchored)?;
        Ok((record, (anchored, anchoring)))
    }

    /// Anchors the checkpoint `head` in the token; what is left to do.
    fn anchor_checkpoint(&self, head: &ChainHead) -> Result<Unanchored> {
        match self.anchor.save(head, self.journal.as_ref()) {
            Ok(super::Anchoring::Anchored) => Ok(Unanchored::No),
            Ok(super::Anchoring::Busy) => {
                tracing::debug!(
                    seq = head.seq,
                    "another node is anchoring; this checkpoint is anchored again shortly"
                );
                Ok(Unanchored::Busy)
            }
            Ok(super::Anchoring::Refused(gap)) => {
                let why =
                    format!("{gap}; writes stop until `signet audit reanchor` records the loss");
                tracing::error!(log_head = gap.log_head, anchored = ?gap.anchored.as_ref().map(|a| a.seq), "{why}");
                self.fenced(why.clone());
                Err(Error::AuditUnavailable(why))
            }
            Err(e) => {
                tracing::error!(error = %e, seq = head.seq, "could not anchor the audit checkpoint in the token");
                Ok(Unanchored::Failed)
            }
        }
    }

    /// Anchors again a checkpoint of this node's that was left unanchored, unless the anchor
    /// has moved past it meanwhile (another node's later checkpoint covers it) or the journal
    /// no longer holds it (the database failed over or was restored meanwhile, and `audit
    /// reanchor` anchored the chain it holds now: anchoring the old checkpoint would fence
    /// that chain again).
    fn anchor_again(&self, head: &ChainHead) -> Unanchored {
        let held = self
            .journal
            .read(head.seq.saturating_sub(1), 1)
            .map(|records| {
                records
                    .first()
                    .is_some_and(|r| r.seq == head.seq && r.hash == head.hash)
            });
        match held {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    seq = head.seq,
                    "a checkpoint left unanchored is no longer in the log; not anchored"
                );
                return Unanchored::No;
            }
            Err(e) => {
                tracing::error!(error = %e, seq = head.seq, "could not anchor the audit checkpoint in the token");
                return Unanchored::Failed;
            }
        }
        match self.anchor.load() {
            Ok(Some(anchored)) if anchored.seq >= head.seq => Unanchored::No,
            Ok(_) => self.anchor_checkpoint(head).unwrap_or(Unanchored::No),
            Err(e) => {
                tracing::error!(error = %e, seq = head.seq, "could not anchor the audit checkpoint in the token");
                Unanchored::Failed
            }
        }
    }

    /// The database's chain does not continue the one this node wrote: fences the chain in the
    /// token (so no node's checkpoint moves the anchor and no node starts) and stops writing.
    fn fence_on(&self, error: &Error) {
        let Error::ChainBroken {
            node,
            known_seq,
            known_hash,
            found_seq,
        } = error
        else {
            return;
        };
        let why = format!(
            "{error} (a failover to a lagging standby, a restored backup, or an old primary back)"
        );
        tracing::error!(known_head = known_seq, database_head = found_seq, "{why}");
        let head = ChainHead {
            seq: *known_seq,
            hash: known_hash.clone(),
        };
        let reason = format!(
            "node {node} found the database's head at seq {found_seq} after writing seq {known_seq}"
        );
        if let Err(e) = self.anchor.fence(&head, &reason) {
            tracing::error!(error = %e, "could not fence the audit chain in the token");
        }
        self.fenced(why);
    }

    /// Stops writes for `why`, and wakes the background thread to look for `audit reanchor`
    /// once a second from now on: a fence met on a request's own thread (a lone request
    /// appends in place) must not wait for something else to wake it.
    fn fenced(&self, why: String) {
        let mut state = self.lock();
        state.fence = Some(why);
        state.fence_checked = Some(Instant::now());
        state.unanchored = None;
        drop(state);
        self.wake.notify_all();
    }

    /// Whether `audit reanchor` has moved the anchor (a later epoch) onto the chain the
    /// journal holds since this node's view of the chain was formed; adopts that epoch.
    fn reanchored_since_known(&self) -> bool {
        let Ok(epoch) = self.anchor.epoch() else {
            return false;
        };
        if epoch <= self.epoch.load(Ordering::Acquire) {
            return false;
        }
        if !matches!(self.anchor.check(self.journal.as_ref()), Ok(None)) {
            return false;
        }
        self.epoch.store(epoch, Ordering::Release);
        tracing::warn!(
            epoch,
            "the audit chain was re-anchored since this node last wrote; following it"
        );
        true
    }

    /// While fenced: resumes once the anchor (moved by `audit reanchor`) is held by the
    /// journal again.
    fn check_fence(&self) {
        match self.anchor.check(self.journal.as_ref()) {
            Ok(None) => {
                self.journal.accept_head();
                if let Ok(epoch) = self.anchor.epoch() {
                    self.epoch.store(epoch, Ordering::Release);
                }
                let mut state = self.lock();
                if state.fence.take().is_some() {
                    state.checkpoint_retry_at = None;
                    state.checkpoint_backoff = RETRY;
                    // A checkpoint of the chain as it was before the loss is never anchored.
                    state.unanchored = None;
                    tracing::warn!(
                        "the audit chain was re-anchored (`signet audit reanchor`); writes resume"
                    );
                }
            }
            // Once a second while fenced: say why the node still does not resume (the gap,
            // or why the anchor or the chain could not be read), so a node that stays fenced
            // after `audit reanchor` can be understood from its log.
            Ok(Some(gap)) => {
                tracing::warn!(%gap, "still fenced: the anchor does not hold the chain the database has")
            }
            Err(e) => tracing::warn!(error = %e, "still fenced: checking the audit fence failed"),
        }
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
