//! Connections: admission (caps on open connections, per source and in all, and on handshakes
//! in progress), and the life of an authenticated connection — closed when idle, when too old,
//! when a request's headers do not arrive, and on shutdown once its requests are answered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::config::ServerConfig;

/// Counts of what is open, shared by the accept loop and the connections.
#[derive(Debug, Default)]
pub struct Admission {
    open: AtomicUsize,
    handshakes: AtomicUsize,
    /// Per source: connections open, and handshakes in progress.
    per_source: Mutex<HashMap<IpAddr, (usize, usize)>>,
    max_open: usize,
    max_per_source: usize,
    max_handshakes: usize,
    max_handshakes_per_source: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server holds its most connections.
    Total,
    /// This source holds its most connections.
    Source,
    /// Too many handshakes are in progress.
    Handshakes,
    /// This source has its most handshakes in progress.
    SourceHandshakes,
}

impl Refused {
    /// The refusal reason in metrics and audit records.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "connection-cap",
            Refused::Source => "source-connection-cap",
            Refused::Handshakes => "handshake-cap",
            Refused::SourceHandshakes => "source-handshake-cap",
        }
    }
}

/// An admitted connection; its counts are given back when it is dropped.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    source: IpAddr,
    handshaking: bool,
}

impl Admitted {
    /// The handshake is over (either way).
    pub fn handshake_done(&mut self) {
        if std::mem::take(&mut self.handshaking) {
            self.admission.handshakes.fetch_sub(1, Ordering::AcqRel);
            if let Some((_, h)) = self.admission.sources().get_mut(&self.source) {
                *h -= 1;
            }
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.handshake_done();
        self.admission.open.fetch_sub(1, Ordering::AcqRel);
        let mut per = self.admission.sources();
        if let Some((n, _)) = per.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.source);
            }
        }
    }
}

impl Admission {
    /// The caps of `config`.
    pub fn new(config: &ServerConfig) -> Arc<Self> {
        Arc::new(Admission {
            max_open: config.max_connections,
            max_per_source: config.max_connections_per_source,
            max_handshakes: config.max_handshakes,
            max_handshakes_per_source: config.max_handshakes_per_source,
            ..Admission::default()
        })
    }

    /// Caps for a listener with no handshake (the publication listener): `total` connections,
    /// `per_source` from any one address. Call [`Admitted::handshake_done`] once admitted.
    pub fn plain(total: usize, per_source: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_open: total,
            max_per_source: per_source,
            max_handshakes: total,
            max_handshakes_per_source: per_source,
            ..Admission::default()
        })
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (usize, usize)>> {
        self.per_source.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `source` into its handshake, or says why not.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Admitted, Refused> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max_open {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        if self.handshakes.fetch_add(1, Ordering::AcqRel) >= self.max_handshakes {
            self.handshakes.fetch_sub(1, Ordering::AcqRel);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Handshakes);
        }
        let mut per = self.sources();
        let (n, h) = per.entry(source).or_insert((0, 0));
        let refused = if *n >= self.max_per_source {
            Some(Refused::Source)
        } else if *h >= self.max_handshakes_per_source {
            Some(Refused::SourceHandshakes)
        } else {
            None
        };
        if let Some(refused) = refused {
            if *n == 0 {
                per.remove(&source);
            }
            drop(per);
            self.handshakes.fetch_sub(1, Ordering::AcqRel);
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(refused);
        }
        *n += 1;
        *h += 1;
        Ok(Admitted {
            admission: self.clone(),
            source,
            handshaking: true,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// When a connection last moved bytes, and how many of its requests are in flight.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    /// A connection that starts now.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// A request starts.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
    }

    /// A request's response is ready.
    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.touch();
    }

    /// How long nothing has happened, when no request is in flight.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.start.elapsed().saturating_sub(last))
    }

    /// How long the connection has been open.
    pub fn age(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A stream that notes its activity.
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Nothing in flight for the idle timeout.
    Idle,
    /// Older than the maximum lifetime.
    Lifetime,
    /// The service is stopping.
    Shutdown,
    /// Its certificate was revoked or expired since the handshake.
    Refused,
}

/// The connection timeouts of `config`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Idle limit.
    pub idle: Duration,
    /// Lifetime limit.
    pub lifetime: Duration,
    /// After a graceful close has begun, how long requests may still take.
    pub grace: Duration,
}

impl Timeouts {
    /// From the server section.
    pub fn new(config: &ServerConfig) -> Self {
        Timeouts {
            idle: Duration::from_secs(config.idle_timeout_secs),
            lifetime: Duration::from_secs(config.max_connection_secs),
            grace: Duration::from_secs(config.shutdown_grace_secs),
        }
    }

    /// Whether a connection with this activity should be closed now.
    pub fn due(&self, activity: &Activity) -> Option<Close> {
        if activity.age() >= self.lifetime {
            return Some(Close::Lifetime);
        }
        match activity.idle_for() {
            Some(idle) if idle >= self.idle => Some(Close::Idle),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(total: usize, per_source: usize, handshakes: usize) -> ServerConfig {
        ServerConfig {
            max_connections: total,
            max_connections_per_source: per_source,
            max_handshakes: handshakes,
            max_handshakes_per_source: handshakes,
            ..ServerConfig::default()
        }
    }

    /// One source holding idle sockets in their handshake gets its share of the slots, and
    /// another source still gets in.
    #[test]
    fn one_source_cannot_take_every_handshake_slot() {
        let a = Admission::new(&ServerConfig {
            max_handshakes: 4,
            max_handshakes_per_source: 2,
            ..ServerConfig::default()
        });
        let holder: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut h1 = a.admit(holder).unwrap();
        let _h2 = a.admit(holder).unwrap();
        assert_eq!(a.admit(holder).unwrap_err(), Refused::SourceHandshakes);
        let _o = a.admit(other).unwrap();
        // A finished handshake gives its slot back to the source.
        h1.handshake_done();
        let _h3 = a.admit(holder).unwrap();
        drop(h1);
        assert_eq!(a.open(), 3);
    }

    #[test]
    fn caps_hold_and_counts_come_back() {
        let a = Admission::new(&config(3, 2, 10));
        let one: IpAddr = "10.0.0.1".parse().unwrap();
        let two: IpAddr = "10.0.0.2".parse().unwrap();
        let c1 = a.admit(one).unwrap();
        let _c2 = a.admit(one).unwrap();
        assert_eq!(a.admit(one).unwrap_err(), Refused::Source);
        let _c3 = a.admit(two).unwrap();
        assert_eq!(a.admit(two).unwrap_err(), Refused::Total);
        drop(c1);
        assert_eq!(a.open(), 2);
        assert!(a.admit(one).is_ok());
        let h = Admission::new(&config(10, 10, 1));
        let mut first = h.admit(one).unwrap();
        assert_eq!(h.admit(two).unwrap_err(), Refused::Handshakes);
        first.handshake_done();
        assert!(h.admit(two).is_ok());
    }

    #[test]
    fn idle_counts_only_without_requests_in_flight() {
        let t = Timeouts {
            idle: Duration::from_millis(0),
            lifetime: Duration::from_secs(60),
            grace: Duration::from_secs(1),
        };
        let activity = Activity::new();
        activity.begin();
        assert_eq!(t.due(&activity), None);
        activity.end();
        assert_eq!(t.due(&activity), Some(Close::Idle));
    }
}

/// Response bytes held for clients that have not read them yet (an HTTP/2 client can
/// advertise a zero window and leave every answer in the server's memory). Each response
/// takes its size from the connection's budget and from the server's while it exists — until
/// it is sent, or its stream reset; a response that finds either budget spent is replaced by
/// a short 503.
#[derive(Debug, Clone)]
pub struct ResponseBudget {
    server: Arc<tokio::sync::Semaphore>,
    principal: Arc<tokio::sync::Semaphore>,
    connection: Arc<tokio::sync::Semaphore>,
}

/// The budgets of each principal with a connection open, so that one principal's slow
/// connections cannot spend what the others need.
#[derive(Debug, Default)]
pub struct PrincipalBudgets {
    per_principal: usize,
    budgets: Mutex<HashMap<String, std::sync::Weak<tokio::sync::Semaphore>>>,
}

impl PrincipalBudgets {
    /// `per_principal` bytes for each principal.
    pub fn new(per_principal: usize) -> Self {
        PrincipalBudgets {
            per_principal: per_principal.min(tokio::sync::Semaphore::MAX_PERMITS),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// The budget of `principal`, shared by its open connections.
    pub fn of(&self, principal: &str) -> Arc<tokio::sync::Semaphore> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(budget) = budgets.get(principal).and_then(std::sync::Weak::upgrade) {
            return budget;
        }
        budgets.retain(|_, b| b.strong_count() > 0);
        let budget = Arc::new(tokio::sync::Semaphore::new(self.per_principal));
        budgets.insert(principal.to_string(), Arc::downgrade(&budget));
        budget
    }
}

/// What a response is charged when its size is not known in advance.
const UNKNOWN_SIZE: u64 = 64 * 1024;

impl ResponseBudget {
    /// The server-wide budget of `total` bytes.
    pub fn server(total: usize) -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(
            total.min(tokio::sync::Semaphore::MAX_PERMITS),
        ))
    }

    /// A connection's budget of `per_connection` bytes, within its principal's and the
    /// server's.
    pub fn new(
        server: Arc<tokio::sync::Semaphore>,
        principal: Arc<tokio::sync::Semaphore>,
        per_connection: usize,
    ) -> Self {
        ResponseBudget {
            server,
            principal,
            connection: Arc::new(tokio::sync::Semaphore::new(
                per_connection.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
        }
    }

    /// Charges `body` to both budgets; `None` when either is spent.
    pub fn charge<B>(&self, body: B) -> Option<Budgeted<B>>
    where
        B: http_body::Body,
    {
        let size = body.size_hint().exact().unwrap_or(UNKNOWN_SIZE).max(1);
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        let connection = self.connection.clone().try_acquire_many_owned(size).ok()?;
        let principal = self.principal.clone().try_acquire_many_owned(size).ok()?;
        let server = self.server.clone().try_acquire_many_owned(size).ok()?;
        Some(Budgeted {
            inner: body,
            _permits: [connection, principal, server],
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body holding its share of the budgets until it is dropped.
    #[derive(Debug)]
    pub struct Budgeted<B> {
        #[pin]
        inner: B,
        _permits: [tokio::sync::OwnedSemaphorePermit; 3],
    }
}

impl<B: http_body::Body> http_body::Body for Budgeted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
