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
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_postgres::NoTls;

pub use self::journal::PgJournal;
use super::{
    AuditKeyRecord, CaRecord, CertRecord, CertStore, ChainHead, Change, CrlRecord, KeyRecord,
    KeyStore, MetaStore, Principal, PrincipalStore, RevokedToken, Store, TokenStore,
};
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
        None => unavailable(e),
    }
}

/// A statement prepared once per connection (deadpool keeps the cache): an unprepared query
/// costs an extra round trip to parse it every time.
async fn stmt(c: &deadpool_postgres::Object, sql: &str) -> Result<tokio_postgres::Statement> {
    c.prepare_cached(sql).await.map_err(db_error)
}

fn corrupt(table: &'static str, key: &str, e: impl std::fmt::Display) -> Error {
    Error::Store(StoreError::Corrupt {
        table,
        key: key.to_string(),
        detail: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
}

/// The connection pool and the runtime its futures run on.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
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
                "store.url is not a PostgreSQL URL: {e}"
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
                        Some(db) => unavailable(db.message()),
                        None => unavailable(e),
                    },
                    other => unavailable(format!("no database connection: {other}")),
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

/// The kinds of record, each in its own rows of `signet_records`.
const KEYS: &str = "keys";
const CERTS: &str = "certs";
const META: &str = "meta";
const PRINCIPALS: &str = "principals";
const REVOKED: &str = "revoked_tokens";

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PgStore {
    db: Db,
}

impl PgStore {
    /// Connects and applies the schema migrations this version needs (idempotent; several
    /// nodes starting at once take turns on an advisory lock).
    pub fn open(settings: &PostgresSettings) -> Result<Self> {
        let db = Db::connect(settings, settings.pool_size)?;
        db.run(|mut client| async move { schema::migrate(&mut client).await })?;
        Ok(PgStore { db })
    }

    /// Connects read-only (see [`Db::connect_as`]) and checks, without migrating, that the
    /// schema is this version's.
    pub fn open_read_only(settings: &PostgresSettings) -> Result<Self> {
        let db = Db::connect_as(settings, settings.pool_size.min(2), true)?;
        db.run(|client| async move { schema::check(&client).await })?;
        Ok(PgStore { db })
    }

    /// The connection pool, shared with the journal.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn get<T: DeserializeOwned>(&self, kind: &'static str, key: &str) -> Result<Option<T>> {
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
        match row {
            None => Ok(None),
            Some(row) => {
                let text: String = row.get(0);
                serde_json::from_str(&text)
                    .map(Some)
                    .map_err(|e| corrupt(kind, key, e))
            }
        }
    }

    fn all<T: DeserializeOwned>(&self, kind: &'static str) -> Result<Vec<(String, T)>> {
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
        rows.into_iter()
            .map(|row| {
                let key: String = row.get(0);
                let text: String = row.get(1);
                let value = serde_json::from_str(&text).map_err(|e| corrupt(kind, &key, e))?;
                Ok((key, value))
            })
            .collect()
    }

    fn put<T: Serialize>(
        &self,
        kind: &'static str,
        key: &str,
        value: &T,
        exp: Option<i64>,
    ) -> Result<()> {
        let text = encode(value)?;
        let k = key.to_string();
        self.db.run(move |c| async move {
            c.execute(
                &stmt(&c, "INSERT INTO signet_records (kind, key, value, version, exp) VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (kind, key) DO UPDATE SET value = EXCLUDED.value,
                   version = signet_records.version + 1, exp = EXCLUDED.exp").await?,
                &[&kind, &k, &text, &exp],
            )
            .await
            .map_err(db_error)
            .map(|_| ())
        })
    }

    fn insert_new<T: Serialize>(&self, kind: &'static str, key: &str, value: &T) -> Result<bool> {
        let text = encode(value)?;
        let k = key.to_string();
        let n = self.db.run(move |c| async move {
            c.execute(
                &stmt(
                    &c,
                    "INSERT INTO signet_records (kind, key, value, version) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (kind, key) DO NOTHING",
                )
                .await?,
                &[&kind, &k, &text],
            )
            .await
            .map_err(db_error)
        })?;
        Ok(n == 1)
    }

    fn remove(&self, kind: &'static str, key: &str) -> Result<bool> {
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

    /// Optimistic read-modify-write: writes over the version read, else applies `change`
    /// again to the newer record.
    fn update<T: Serialize + DeserializeOwned>(
        &self,
        kind: &'static str,
        key: &str,
        missing: impl Fn() -> Error,
        change: Change<'_, T>,
    ) -> Result<T> {
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
            let row = row.ok_or_else(&missing)?;
            let text: String = row.get(0);
            let version: i64 = row.get(1);
            let mut value: T = serde_json::from_str(&text).map_err(|e| corrupt(kind, key, e))?;
            change(&mut value)?;
            let new = encode(&value)?;
            let k = key.to_string();
            let n = self.db.run(move |c| async move {
                c.execute(
                    &stmt(
                        &c,
                        "UPDATE signet_records SET value = $3, version = version + 1
                     WHERE kind = $1 AND key = $2 AND version = $4",
                    )
                    .await?,
                    &[&kind, &k, &new, &version],
                )
                .await
                .map_err(db_error)
            })?;
            if n == 1 {
                return Ok(value);
            }
            // Written (or removed) by another node meanwhile: read again.
        }
    }

    /// Atomically sets a counter to `value` (`raise`: to at least `value`; else adds it) and
    /// returns the result.
    fn counter(&self, name: String, value: i64, raise: bool) -> Result<i64> {
        let sql = if raise {
            "INSERT INTO signet_counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = GREATEST(signet_counters.value, EXCLUDED.value)
             RETURNING value"
        } else {
            "INSERT INTO signet_counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = signet_counters.value + EXCLUDED.value
             RETURNING value"
        };
        self.db.run(move |c| async move {
            c.query_one(&stmt(&c, sql).await?, &[&name, &value])
                .await
                .map_err(db_error)
                .map(|row| row.get(0))
        })
    }

    /// Runs `f` while holding the cluster-wide lock `name`, or returns `None` at once when
    /// another node holds it (a PostgreSQL advisory lock, released when `f` returns or the
    /// connection dies).
    pub fn exclusive<T>(&self, name: &str, f: impl FnOnce() -> T) -> Result<Option<T>> {
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

impl KeyStore for PgStore {
    fn key(&self, name: &str) -> Result<Option<KeyRecord>> {
        self.get(KEYS, name)
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        Ok(self.all(KEYS)?.into_iter().map(|(_, v)| v).collect())
    }

    fn insert_key(&self, record: &KeyRecord) -> Result<()> {
        if self.insert_new(KEYS, &record.name, record)? {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "a key named {:?} already exists",
                record.name
            )))
        }
    }

    fn update_key(&self, name: &str, change: Change<'_, KeyRecord>) -> Result<KeyRecord> {
        self.update(
            KEYS,
            name,
            || Error::NotFound(format!("no key named {name:?}")),
            change,
        )
    }

    fn remove_key(&self, name: &str) -> Result<bool> {
        self.remove(KEYS, name)
    }
}

impl CertStore for PgStore {
    fn ca(&self) -> Result<Option<CaRecord>> {
        self.get(META, "ca")
    }

    fn put_ca(&self, record: &CaRecord) -> Result<()> {
        self.put(META, "ca", record, None)
    }

    fn cert(&self, serial: &str) -> Result<Option<CertRecord>> {
        self.get(CERTS, &serial.to_ascii_lowercase())
    }

    fn certs(&self) -> Result<Vec<CertRecord>> {
        Ok(self.all(CERTS)?.into_iter().map(|(_, v)| v).collect())
    }

    fn put_cert(&self, record: &CertRecord) -> Result<()> {
        self.put(CERTS, &record.serial, record, None)
    }

    fn update_cert(&self, serial: &str, change: Change<'_, CertRecord>) -> Result<CertRecord> {
        let serial = serial.to_ascii_lowercase();
        self.update(
            CERTS,
            &serial,
            || Error::NotFound(format!("no certificate with serial {serial}")),
            change,
        )
    }

    fn crl(&self) -> Result<Option<CrlRecord>> {
        self.get(META, "crl")
    }

    fn put_crl(&self, record: &CrlRecord) -> Result<()> {
        self.put(META, "crl", record, None)
    }

    fn next_crl_number(&self) -> Result<u64> {
        let n = self.counter("crl_number".into(), 1, false)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn raise_crl_number(&self, at_least: u64) -> Result<()> {
        let at_least = i64::try_from(at_least).unwrap_or(i64::MAX);
        self.counter("crl_number".into(), at_least, true)
            .map(|_| ())
    }
}

impl PrincipalStore for PgStore {
    fn principal(&self, name: &str) -> Result<Option<Principal>> {
        self.get(PRINCIPALS, name)
    }

    fn principals(&self) -> Result<Vec<Principal>> {
        Ok(self.all(PRINCIPALS)?.into_iter().map(|(_, v)| v).collect())
    }

    fn put_principal(&self, principal: &Principal) -> Result<()> {
        self.put(PRINCIPALS, &principal.name, principal, None)
    }

    fn remove_principal(&self, name: &str) -> Result<bool> {
        self.remove(PRINCIPALS, name)
    }
}

impl TokenStore for PgStore {
    fn revoke_token(&self, jti: &str, record: RevokedToken) -> Result<()> {
        let exp = record.exp;
        self.put(REVOKED, jti, &record, Some(exp))
    }

    fn token_revoked(&self, jti: &str) -> Result<bool> {
        Ok(self.get::<serde_json::Value>(REVOKED, jti)?.is_some())
    }

    fn revoked_tokens(&self) -> Result<Vec<(String, RevokedToken)>> {
        self.all(REVOKED)
    }

    fn prune_revoked_tokens(&self, at: i64) -> Result<usize> {
        let n = self.db.run(move |c| async move {
            c.execute(
                &stmt(
                    &c,
                    "DELETE FROM signet_records WHERE kind = $1 AND exp <= $2",
                )
                .await?,
                &[&REVOKED, &at],
            )
            .await
            .map_err(db_error)
        })?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn note_token_expiry(&self, version: u32, exp: i64) -> Result<()> {
        self.counter(format!("token_last_exp:{version}"), exp, true)?;
        Ok(())
    }

    fn token_expiry(&self, version: u32) -> Result<i64> {
        let name = format!("token_last_exp:{version}");
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
}

impl MetaStore for PgStore {
    fn audit_key(&self) -> Result<Option<AuditKeyRecord>> {
        self.get(META, "audit_key")
    }

    fn put_audit_key(&self, record: &AuditKeyRecord) -> Result<()> {
        self.put(META, "audit_key", record, None)
    }

    fn audit_anchor(&self) -> Result<Option<ChainHead>> {
        self.get(META, "audit_anchor")
    }

    fn put_audit_anchor(&self, head: &ChainHead) -> Result<()> {
        self.put(META, "audit_anchor", head, None)
    }
}

impl Store for PgStore {
    fn engine(&self) -> &'static str {
        "postgres"
    }

    fn check_writable(&self) -> Result<()> {
        self.counter("ready_probe".into(), crate::support::time::now(), true)
            .map(|_| ())
    }

    fn caller_records(
        &self,
        serial: &str,
        principal: &str,
    ) -> Result<(Option<CertRecord>, Option<Principal>)> {
        let serial = serial.to_ascii_lowercase();
        let name = principal.to_string();
        let rows = self.db.run(move |c| async move {
            c.query(
                &stmt(
                    &c,
                    "SELECT kind, key, value FROM signet_records
                     WHERE (kind = $1 AND key = $2) OR (kind = $3 AND key = $4)",
                )
                .await?,
                &[&CERTS, &serial, &PRINCIPALS, &name],
            )
            .await
            .map_err(db_error)
        })?;
        let (mut cert, mut principal) = (None, None);
        for row in rows {
            let kind: String = row.get(0);
            let key: String = row.get(1);
            let text: String = row.get(2);
            if kind == CERTS {
                cert = Some(serde_json::from_str(&text).map_err(|e| corrupt(CERTS, &key, e))?);
            } else {
                principal =
                    Some(serde_json::from_str(&text).map_err(|e| corrupt(PRINCIPALS, &key, e))?);
            }
        }
        Ok((cert, principal))
    }

    fn exclusive(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool> {
        Ok(PgStore::exclusive(self, name, f)?.is_some())
    }
}
