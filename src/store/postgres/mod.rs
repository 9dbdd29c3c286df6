//! The shared engine: PostgreSQL, for several nodes on one database. The same store traits
//! as sled, the same JSON records (one row per record, in one table per aggregate kind), and
//! the audit chain in the database ([`PgJournal`]).
//!
//! The store traits are synchronous and are called from async workers and blocking threads
//! alike, so the client's futures run on a runtime of their own, on a thread of their own;
//! a call waits for its answer. Every operation has a deadline (`store.timeout_ms`): a node
//! cut off from the database fails its requests instead of hanging them.
//!
//! Read-modify-write is optimistic, as in sled: each row carries a version, an update
//! writes only over the version it read and otherwise applies the change again to the newer
//! record. Every write is committed (`synchronous_commit` is the server's) before it returns.

mod journal;
mod schema;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

pub use self::journal::PgJournal;
use super::aggregates::Records;
use super::engine::{ByteChange, Bytes, Kind, RecordEngine};
use crate::config::PostgresSettings;
use crate::error::{Error, Result, StoreError};

/// The URL with any password replaced, for status and logs.
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) => {
                let user = user.split(':').next().unwrap_or("");
                format!("{scheme}://{user}@{host}")
            }
            None => url.to_string(),
        },
        None => url
            .split_whitespace()
            .filter(|kv| !kv.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn engine(e: impl std::fmt::Display) -> Error {
    Error::Store(StoreError::Engine(format!("PostgreSQL: {e}")))
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Store(StoreError::Unavailable(format!("PostgreSQL: {e}")))
}

/// An error with every cause it carries ("error connecting to server: Connection refused
/// (os error 111)"), the client's top line alone saying little.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn db_error(e: tokio_postgres::Error) -> Error {
    // The server's own message (never the password: the client does not echo it), without the
    // SQLSTATE noise of the Debug form. A lost connection, a server shutting down or out of
    // connections is "unavailable" (503, try again), anything else an engine error.
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") {
                unavailable(db.message())
            } else {
                engine(db.message())
            }
        }
        // Not the server's answer: the connection failed (I/O, closed, timed out).
        None => unavailable(with_causes(&e)),
    }
}

/// A statement prepared once per connection (deadpool keeps the cache): an unprepared query
/// costs an extra round trip to parse it every time.
async fn stmt(c: &deadpool_postgres::Object, sql: &str) -> Result<tokio_postgres::Statement> {
    c.prepare_cached(sql).await.map_err(db_error)
}

/// Values are JSON, kept in a text column.
fn text(value: Vec<u8>) -> Result<String> {
    String::from_utf8(value).map_err(|e| Error::Internal(format!("a record is not UTF-8: {e}")))
}

/// The connection pool and the runtime its futures run on.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
    /// Where the database is (the URL without any password), for errors.
    target: Arc<str>,
    /// Dropped with the last clone: the runtime's thread then ends.
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("max_size", &self.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Connects (lazily: the first operation opens the first connection) with the password the
    /// settings point at.
    pub fn connect(settings: &PostgresSettings, pool_size: usize) -> Result<Self> {
        Self::connect_as(settings, pool_size, false)
    }

    /// Connects as [`Db::connect`]; with `read_only` every session of the pool is made
    /// read-only (`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY`) as it is created,
    /// so the database itself refuses any write an inspecting command might attempt.
    pub fn connect_as(
        settings: &PostgresSettings,
        pool_size: usize,
        read_only: bool,
    ) -> Result<Self> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(|e| {
            Error::Store(StoreError::Engine(format!(
                "store.url is not a PostgreSQL URL: {}",
                with_causes(&e)
            )))
        })?;
        if config.get_password().is_some() {
            return Err(Error::Store(StoreError::Engine(
                "store.url carries a password: put it in store.password_file or store.password_env instead".into(),
            )));
        }
        if let Some(password) = read_password(settings)? {
            config.password(password.as_bytes());
        }
        let timeout = Duration::from_millis(settings.timeout_ms);
        config.connect_timeout(timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name("signet");
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let (runtime, stop) = spawn_runtime()?;
        let mut builder = Pool::builder(manager);
        if read_only {
            builder = builder.post_create(deadpool_postgres::Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                        .await
                        .map_err(deadpool_postgres::HookError::Backend)
                })
            }));
        }
        let pool = builder
            .max_size(pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(engine)?;
        Ok(Db {
            pool,
            runtime,
            timeout,
            target: redacted(&settings.url).into(),
            _stop: Arc::new(stop),
        })
    }

    /// Runs `op` with a pooled connection on the database runtime and waits for it, within
    /// the deadline. Safe to call from any thread, async workers included.
    fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
    {
        let pool = self.pool.clone();
        let target = self.target.clone();
        // The call's own limit, or less: what is left of the request's deadline.
        let timeout = crate::store::deadline::remaining(self.timeout);
        if timeout.is_zero() {
            return Err(unavailable(format!(
                "the request's {} ms for database work are spent",
                self.timeout.as_millis()
            )));
        }
        self.block(async move {
            let work = async move {
                // No connection, whatever the reason (down, unreachable, this node's login
                // refused): the database is unavailable to this node.
                let client = pool.get().await.map_err(|e| match e {
                    deadpool_postgres::PoolError::Backend(e) => match e.as_db_error() {
                        Some(db) => unavailable(format!("{} (at {target})", db.message())),
                        None => unavailable(format!("{} (at {target})", with_causes(&e))),
                    },
                    other => unavailable(format!("no database connection at {target}: {other}")),
                })?;
                op(client).await
            };
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result,
                Err(_) => Err(unavailable(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                ))),
            }
        })
    }

    /// Runs a future on the database runtime and waits for its result.
    fn block<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(engine("the database runtime stopped")))
    }
}

/// A current-thread runtime on its own thread, kept until the returned sender is dropped.
fn spawn_runtime() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("starting the database runtime: {e}")))?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("signet-db".into())
        .spawn(move || {
            // Drives the connections until every `Db` is gone (the sender is dropped).
            runtime.block_on(async move {
                let _ = stopped.await;
            });
        })
        .map_err(|e| Error::Internal(format!("starting the database thread: {e}")))?;
    Ok((handle, stop))
}

fn read_password(settings: &PostgresSettings) -> Result<Option<zeroize::Zeroizing<String>>> {
    let invalid = |m: String| Err(Error::Store(StoreError::Engine(m)));
    match (&settings.password_file, &settings.password_env) {
        (Some(file), _) => {
            match signet_hsm::check_private(file).and_then(|()| std::fs::read_to_string(file)) {
                Ok(text) => Ok(Some(zeroize::Zeroizing::new(
                    text.trim_end_matches(['\r', '\n']).to_string(),
                ))),
                Err(e) => invalid(format!(
                    "reading store.password_file {}: {e}",
                    file.display()
                )),
            }
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(value) => Ok(Some(zeroize::Zeroizing::new(value))),
            Err(_) => invalid(format!("store.password_env names {var}, which is not set")),
        },
        (None, None) => Ok(None),
    }
}

/// The PostgreSQL engine: one row per record in `signet_records` (by kind and key, with a
/// version for compare-and-swap and an optional expiry), counters in `signet_counters`, and
/// cluster-wide locks as advisory locks.
#[derive(Debug, Clone)]
pub struct PgEngine {
    db: Db,
    /// The records signatures read, checked in their audit transaction (see `store::cache`).
    cache: std::sync::Arc<crate::store::cache::NodeCache>,
}

/// The PostgreSQL store: the aggregates over [`PgEngine`].
pub type PgStore = Records<PgEngine>;

impl Records<PgEngine> {
    /// Connects and applies the schema migrations this version needs (idempotent; several
    /// nodes starting at once take turns on an advisory lock).
    pub fn open(settings: &PostgresSettings) -> Result<Self> {
        let db = Db::connect(settings, settings.pool_size)?;
        db.run(|mut client| async move { schema::migrate(&mut client).await })?;
        Ok(Records::new(PgEngine {
            db,
            cache: Default::default(),
        }))
    }

    /// Connects read-only (see [`Db::connect_as`]) and checks, without migrating, that the
    /// schema is this version's.
    pub fn open_read_only(settings: &PostgresSettings) -> Result<Self> {
        let db = Db::connect_as(settings, settings.pool_size.min(2), true)?;
        db.run(|client| async move { schema::check(&client).await })?;
        Ok(Records::new(PgEngine {
            db,
            cache: Default::default(),
        }))
    }

    /// The connection pool, shared with the journal.
    pub fn db(&self) -> &Db {
        &self.inner().db
    }
}

impl PgEngine {
    /// Runs `f` while holding the cluster-wide lock `name`, or returns `None` at once when
    /// another node holds it (a PostgreSQL advisory lock, released when `f` returns or the
    /// connection dies).
    fn locked<T>(&self, name: &str, f: impl FnOnce() -> T) -> Result<Option<T>> {
        let key = schema::lock_key(name);
        let client = self.db.run(move |c| async move {
            let got: bool = c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(db_error)?
                .get(0);
            Ok(got.then_some(c))
        })?;
        let Some(client) = client else {
            return Ok(None);
        };
        let result = f();
        let unlocked = self.db.block(async move {
            client
                .execute("SELECT pg_advisory_unlock($1)", &[&key])
                .await
                .map_err(db_error)
                .map(|_| ())
        });
        if let Err(e) = unlocked {
            tracing::warn!(error = %e, lock = name, "releasing a cluster lock failed (it ends with its connection)");
        }
        Ok(Some(result))
    }
}

/// Drops a record from the node's cache when this node's write of it is over (whether it
/// worked or not): the node's next request reads what the database now holds. Only an
/// economy: the audit transaction's check is what keeps cached records honest.
struct Forget<'a>(&'a crate::store::cache::NodeCache, Kind, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1, self.2);
    }
}

impl RecordEngine for PgEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>> {
        let k = key.to_string();
        let row = self.db.run(move |c| async move {
            c.query_opt(
                &stmt(
                    &c,
                    "SELECT value FROM signet_records WHERE kind = $1 AND key = $2",
                )
                .await?,
                &[&kind, &k],
            )
            .await
            .map_err(db_error)
        })?;
        Ok(row.map(|row| row.get::<_, String>(0).into_bytes()))
    }

    fn get_many(&self, wanted: &[(Kind, &str)]) -> Result<Vec<Option<Bytes>>> {
        let kinds: Vec<String> = wanted.iter().map(|(k, _)| k.to_string()).collect();
        let keys: Vec<String> = wanted.iter().map(|(_, k)| k.to_string()).collect();
        let rows = self.db.run(move |c| async move {
            c.query(
                &stmt(
                    &c,
                    "SELECT kind, key, value FROM signet_records
                     WHERE (kind, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                )
                .await?,
                &[&kinds, &keys],
            )
            .await
            .map_err(db_error)
        })?;
        let mut found = vec![None; wanted.len()];
        for row in rows {
            let (kind, key): (String, String) = (row.get(0), row.get(1));
            if let Some(i) = wanted.iter().position(|(k, n)| *k == kind && *n == key) {
                found[i] = Some(row.get::<_, String>(2).into_bytes());
            }
        }
        Ok(found)
    }

    fn get_many_cached(&self, wanted: &[(Kind, &str)]) -> Result<Vec<Option<Bytes>>> {
        use crate::store::prefetch;
        if !prefetch::may_use_cache() {
            return self.get_many(wanted);
        }
        if let Some(values) = self.cache.get_all(wanted) {
            prefetch::rely(prefetch::Reliance(
                wanted
                    .iter()
                    .zip(&values)
                    .map(|((kind, key), value)| (*kind, (*key).to_string(), value.clone()))
                    .collect(),
            ));
            return Ok(values.into_iter().map(Some).collect());
        }
        let found = self.get_many(wanted)?;
        self.cache.fill(wanted, &found);
        Ok(found)
    }

    fn all(&self, kind: Kind) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = self.db.run(move |c| async move {
            c.query(
                &stmt(
                    &c,
                    "SELECT key, value FROM signet_records WHERE kind = $1 ORDER BY key",
                )
                .await?,
                &[&kind],
            )
            .await
            .map_err(db_error)
        })?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get::<_, String>(1).into_bytes()))
            .collect())
    }

    fn put(&self, kind: Kind, key: &str, value: Vec<u8>, exp: Option<i64>) -> Result<()> {
        let _forget = Forget(&self.cache, kind, key);
        let value = text(value)?;
        let k = key.to_string();
        self.db.run(move |c| async move {
            c.execute(
                &stmt(&c, "INSERT INTO signet_records (kind, key, value, version, exp) VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value,
                   version = signet_records.version + 1, exp = EXCLUDED.exp").await?,
                &[&kind, &k, &value, &exp],
            )
            .await
            .map_err(db_error)
            .map(|_| ())
        })
    }

    fn insert_new(&self, kind: Kind, key: &str, value: Vec<u8>) -> Result<bool> {
        let _forget = Forget(&self.cache, kind, key);
        let value = text(value)?;
        let k = key.to_string();
        let n = self.db.run(move |c| async move {
            c.execute(
                &stmt(
                    &c,
                    "INSERT INTO signet_records (kind, key, value, version) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (kind, key) DO NOTHING",
                )
                .await?,
                &[&kind, &k, &value],
            )
            .await
            .map_err(db_error)
        })?;
        Ok(n == 1)
    }

    /// Optimistic: writes over the version read, else applies `change` again to the newer
    /// record.
    fn update(&self, kind: Kind, key: &str, change: ByteChange<'_>) -> Result<Option<Vec<u8>>> {
        let _forget = Forget(&self.cache, kind, key);
        loop {
            let k = key.to_string();
            let row = self.db.run(move |c| async move {
                c.query_opt(
                    &stmt(
                        &c,
                        "SELECT value, version FROM signet_records WHERE kind = $1 AND key = $2",
                    )
                    .await?,
                    &[&kind, &k],
                )
                .await
                .map_err(db_error)
            })?;
            let Some(row) = row else {
                return Ok(None);
            };
            let current: String = row.get(0);
            let version: i64 = row.get(1);
            let new = change(current.as_bytes())?;
            let value = text(new.clone())?;
            let k = key.to_string();
            let n = self.db.run(move |c| async move {
                c.execute(
                    &stmt(
                        &c,
                        "UPDATE signet_records SET value = $3, version = version + 1
                     WHERE kind = $1 AND key = $2 AND version = $4",
                    )
                    .await?,
                    &[&kind, &k, &value, &version],
                )
                .await
                .map_err(db_error)
            })?;
            if n == 1 {
                return Ok(Some(new));
            }
            // Written (or removed) by another node meanwhile: read again.
        }
    }

    fn remove(&self, kind: Kind, key: &str) -> Result<bool> {
        let _forget = Forget(&self.cache, kind, key);
        let k = key.to_string();
        let n = self.db.run(move |c| async move {
            c.execute(
                &stmt(
                    &c,
                    "DELETE FROM signet_records WHERE kind = $1 AND key = $2",
                )
                .await?,
                &[&kind, &k],
            )
            .await
            .map_err(db_error)
        })?;
        Ok(n > 0)
    }

    fn prune_expired(
        &self,
        kind: Kind,
        at: i64,
        _expired: &dyn Fn(&[u8]) -> bool,
    ) -> Result<usize> {
        self.cache.forget_kind(kind);
        let n = self.db.run(move |c| async move {
            c.execute(
                &stmt(
                    &c,
                    "DELETE FROM signet_records WHERE kind = $1 AND exp <= $2",
                )
                .await?,
                &[&kind, &at],
            )
            .await
            .map_err(db_error)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn counter(&self, name: &str, value: i64, raise: bool) -> Result<i64> {
        let sql = if raise {
            "INSERT INTO signet_counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = GREATEST(signet_counters.value, EXCLUDED.value)
             RETURNING value"
        } else {
            "INSERT INTO signet_counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = signet_counters.value + EXCLUDED.value
             RETURNING value"
        };
        let name = name.to_string();
        self.db.run(move |c| async move {
            c.query_one(&stmt(&c, sql).await?, &[&name, &value])
                .await
                .map_err(db_error)
                .map(|row| row.get(0))
        })
    }

    fn counter_value(&self, name: &str) -> Result<i64> {
        let name = name.to_string();
        self.db.run(move |c| async move {
            Ok(c.query_opt(
                &stmt(&c, "SELECT value FROM signet_counters WHERE name = $1").await?,
                &[&name],
            )
            .await
            .map_err(db_error)?
            .map(|row| row.get(0))
            .unwrap_or(0))
        })
    }

    fn check_writable(&self) -> Result<()> {
        self.counter("ready_probe", crate::support::time::now(), true)
            .map(|_| ())
    }

    fn exclusive(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool> {
        Ok(self.locked(name, f)?.is_some())
    }
}
