//! The embedded engine: sled, one tree per aggregate, JSON values. Every write is flushed before
//! it returns; read-modify-write goes through compare-and-swap, so it is atomic without a lock.
//!
//! After a failed write (a full disk) sled keeps the error and refuses everything from then
//! on, and its memory may hold changes that never reached the disk. So the store reopens the
//! database before the next operation: what is visible is again what is durable, and service
//! resumes by itself once space returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{
    AuditKeyRecord, CaRecord, CertRecord, CertStore, ChainHead, Change, CrlRecord, KeyRecord,
    KeyStore, MetaStore, Principal, PrincipalStore, RevokedToken, Store, TokenStore,
};
use crate::error::{Error, Result, StoreError};

/// The open database and its trees.
#[derive(Debug)]
struct Trees {
    db: sled::Db,
    keys: sled::Tree,
    certs: sled::Tree,
    meta: sled::Tree,
    principals: sled::Tree,
    revoked_tokens: sled::Tree,
}

/// The sled database.
#[derive(Debug)]
pub struct SledStore {
    path: PathBuf,
    trees: RwLock<Option<Trees>>,
    /// Set by a failed write: reopen before the next operation.
    failed: AtomicBool,
    /// When reopening was last tried, so a full disk costs one attempt per interval, not one
    /// per request.
    last_reopen: std::sync::Mutex<Option<std::time::Instant>>,
    /// Names of the exclusive work running now (one process owns the database).
    running: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Least time between two attempts to reopen.
const REOPEN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

fn engine(e: sled::Error) -> Error {
    use std::io::ErrorKind;
    let not_writable = matches!(
        &e,
        sled::Error::Io(io) if matches!(
            io.kind(),
            ErrorKind::StorageFull
                | ErrorKind::ReadOnlyFilesystem
                | ErrorKind::QuotaExceeded
                | ErrorKind::PermissionDenied
        ) || matches!(io.raw_os_error(), Some(28 | 30 | 122))
    );
    if not_writable {
        Error::Store(StoreError::NotWritable(e.to_string()))
    } else {
        Error::Store(StoreError::Engine(e.to_string()))
    }
}

fn corrupt(table: &'static str, key: &[u8], e: impl std::fmt::Display) -> Error {
    Error::Store(StoreError::Corrupt {
        table,
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
}

fn open_trees(path: &Path) -> Result<Trees> {
    // Metadata is small; sled's default 1 GiB page cache would only inflate the footprint.
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(64 * 1024 * 1024)
        .open()
        .map_err(|e| match e {
            sled::Error::Io(ref io)
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                Error::Store(StoreError::Locked(path.display().to_string()))
            }
            other => engine(other),
        })?;
    let tree = |name: &str| db.open_tree(name).map_err(engine);
    Ok(Trees {
        keys: tree("keys")?,
        certs: tree("certs")?,
        meta: tree("meta")?,
        principals: tree("principals")?,
        revoked_tokens: tree("revoked_tokens")?,
        db,
    })
}

/// The trees, held for the length of one operation.
struct Open<'a>(RwLockReadGuard<'a, Option<Trees>>);

impl std::ops::Deref for Open<'_> {
    type Target = Trees;

    fn deref(&self) -> &Trees {
        // `open()` only hands out a guard over `Some`.
        self.0.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl SledStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(SledStore {
            path: path.to_path_buf(),
            trees: RwLock::new(Some(open_trees(path)?)),
            failed: AtomicBool::new(false),
            last_reopen: std::sync::Mutex::new(None),
            running: std::sync::Mutex::new(std::collections::HashSet::new()),
        })
    }

    /// The trees, reopening the database first when the last write failed and there is room
    /// again. Until then the failed database still serves reads (sled refuses only writes).
    fn t(&self) -> Result<Open<'_>> {
        if self.failed.load(Ordering::Acquire) {
            if let Err(e) = self.reopen() {
                tracing::debug!(error = %e, "database not reopened yet");
            }
        }
        let guard = self.trees.read().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            drop(guard);
            self.reopen()?;
            return self.t();
        }
        Ok(Open(guard))
    }

    fn reopen(&self) -> Result<()> {
        {
            let mut last = self.last_reopen.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < REOPEN_INTERVAL) {
                return Err(Error::Store(StoreError::NotWritable(
                    "the database failed a write and cannot be reopened yet".into(),
                )));
            }
            *last = Some(std::time::Instant::now());
        }
        let mut trees = self.trees.write().unwrap_or_else(|p| p.into_inner());
        if !self.failed.load(Ordering::Acquire) && trees.is_some() {
            return Ok(());
        }
        if trees.is_some() {
            // Keep the failed database (for reads) until a write shows there is room again.
            self.probe_write()?;
        }
        // Drop every handle first: sled releases its file lock with the last one.
        *trees = None;
        let mut last = None;
        for _ in 0..4 {
            match open_trees(&self.path) {
                Ok(fresh) => {
                    *trees = Some(fresh);
                    self.failed.store(false, Ordering::Release);
                    tracing::warn!(path = %self.path.display(), "reopened the database after a failed write");
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::Internal("reopening the database failed".into())))
    }

    /// Writes, syncs and removes a small file beside the database.
    fn probe_write(&self) -> Result<()> {
        use std::io::Write;
        let probe = self.path.join("write-probe");
        let written = std::fs::File::create(&probe).and_then(|mut f| {
            f.write_all(&[0u8; 64 * 1024])?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        written.map_err(|e| Error::Store(StoreError::NotWritable(e.to_string())))
    }

    /// Marks the database for reopening when `result` is an engine failure.
    fn watch<T>(&self, result: Result<T>) -> Result<T> {
        if matches!(
            result,
            Err(Error::Store(
                StoreError::Engine(_) | StoreError::NotWritable(_)
            ))
        ) {
            self.failed.store(true, Ordering::Release);
        }
        result
    }

    /// Runs a read or write on the open trees; a failure marks the database for reopening.
    fn with<T>(&self, op: impl FnOnce(&Trees) -> Result<T>) -> Result<T> {
        let trees = self.t()?;
        let result = op(&trees);
        drop(trees);
        self.watch(result)
    }

    fn get<T: DeserializeOwned>(
        &self,
        tree: fn(&Trees) -> &sled::Tree,
        table: &'static str,
        key: &str,
    ) -> Result<Option<T>> {
        self.with(|t| match tree(t).get(key).map_err(engine)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| corrupt(table, key.as_bytes(), e)),
        })
    }

    fn all<T: DeserializeOwned>(
        &self,
        tree: fn(&Trees) -> &sled::Tree,
        table: &'static str,
    ) -> Result<Vec<T>> {
        self.with(|t| {
            tree(t)
                .iter()
                .map(|entry| {
                    let (key, bytes) = entry.map_err(engine)?;
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(table, &key, e))
                })
                .collect()
        })
    }

    fn put<T: Serialize>(
        &self,
        tree: fn(&Trees) -> &sled::Tree,
        key: &str,
        value: &T,
    ) -> Result<()> {
        let bytes = encode(value)?;
        self.with(|t| {
            tree(t).insert(key, bytes).map_err(engine)?;
            t.db.flush().map_err(engine).map(|_| ())
        })
    }

    fn remove(&self, tree: fn(&Trees) -> &sled::Tree, key: &str) -> Result<bool> {
        self.with(|t| {
            let existed = tree(t).remove(key).map_err(engine)?.is_some();
            t.db.flush().map_err(engine)?;
            Ok(existed)
        })
    }

    /// Compare-and-swap until `change` applies to the current value.
    fn update<T: Serialize + DeserializeOwned>(
        &self,
        tree: fn(&Trees) -> &sled::Tree,
        table: &'static str,
        key: &str,
        missing: impl Fn() -> Error,
        change: Change<'_, T>,
    ) -> Result<T> {
        self.with(|t| {
            let tree = tree(t);
            loop {
                let current = tree.get(key).map_err(engine)?.ok_or_else(&missing)?;
                let mut value: T = serde_json::from_slice(&current)
                    .map_err(|e| corrupt(table, key.as_bytes(), e))?;
                change(&mut value)?;
                let new = encode(&value)?;
                match tree
                    .compare_and_swap(key, Some(current), Some(new))
                    .map_err(engine)?
                {
                    Ok(()) => {
                        t.db.flush().map_err(engine)?;
                        return Ok(value);
                    }
                    // Written by someone else meanwhile: apply the change to their value.
                    Err(_) => continue,
                }
            }
        })
    }

    /// Atomically raises a big-endian counter in the meta tree with `f` and returns the result.
    fn bump(&self, key: &str, f: impl Fn(u64) -> u64) -> Result<u64> {
        self.with(|t| {
            let value = t
                .meta
                .update_and_fetch(key, |old| {
                    let n = old
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                        .unwrap_or(0);
                    Some(f(n).to_be_bytes().to_vec())
                })
                .map_err(engine)?;
            t.db.flush().map_err(engine)?;
            Ok(value
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0))
        })
    }
}

fn keys(t: &Trees) -> &sled::Tree {
    &t.keys
}
fn certs(t: &Trees) -> &sled::Tree {
    &t.certs
}
fn meta(t: &Trees) -> &sled::Tree {
    &t.meta
}
fn principals(t: &Trees) -> &sled::Tree {
    &t.principals
}
fn revoked(t: &Trees) -> &sled::Tree {
    &t.revoked_tokens
}

impl KeyStore for SledStore {
    fn key(&self, name: &str) -> Result<Option<KeyRecord>> {
        self.get(keys, "keys", name)
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.all(keys, "keys")
    }

    fn insert_key(&self, record: &KeyRecord) -> Result<()> {
        let bytes = encode(record)?;
        self.with(|t| {
            let swapped = t
                .keys
                .compare_and_swap(&record.name, None::<&[u8]>, Some(bytes))
                .map_err(engine)?;
            if swapped.is_err() {
                return Err(Error::Conflict(format!(
                    "a key named {:?} already exists",
                    record.name
                )));
            }
            t.db.flush().map_err(engine).map(|_| ())
        })
    }

    fn update_key(&self, name: &str, change: Change<'_, KeyRecord>) -> Result<KeyRecord> {
        self.update(
            keys,
            "keys",
            name,
            || Error::NotFound(format!("no key named {name:?}")),
            change,
        )
    }

    fn remove_key(&self, name: &str) -> Result<bool> {
        self.remove(keys, name)
    }
}

impl CertStore for SledStore {
    fn ca(&self) -> Result<Option<CaRecord>> {
        self.get(meta, "meta", "ca")
    }

    fn put_ca(&self, record: &CaRecord) -> Result<()> {
        self.put(meta, "ca", record)
    }

    fn cert(&self, serial: &str) -> Result<Option<CertRecord>> {
        self.get(certs, "certs", &serial.to_ascii_lowercase())
    }

    fn certs(&self) -> Result<Vec<CertRecord>> {
        self.all(certs, "certs")
    }

    fn put_cert(&self, record: &CertRecord) -> Result<()> {
        self.put(certs, &record.serial, record)
    }

    fn update_cert(&self, serial: &str, change: Change<'_, CertRecord>) -> Result<CertRecord> {
        let serial = serial.to_ascii_lowercase();
        self.update(
            certs,
            "certs",
            &serial,
            || Error::NotFound(format!("no certificate with serial {serial}")),
            change,
        )
    }

    fn crl(&self) -> Result<Option<CrlRecord>> {
        self.get(meta, "meta", "crl")
    }

    fn put_crl(&self, record: &CrlRecord) -> Result<()> {
        self.put(meta, "crl", record)
    }

    fn next_crl_number(&self) -> Result<u64> {
        self.bump("crl_number", |n| n + 1)
    }

    fn raise_crl_number(&self, at_least: u64) -> Result<()> {
        self.bump("crl_number", |n| n.max(at_least)).map(|_| ())
    }
}

impl PrincipalStore for SledStore {
    fn principal(&self, name: &str) -> Result<Option<Principal>> {
        self.get(principals, "principals", name)
    }

    fn principals(&self) -> Result<Vec<Principal>> {
        self.all(principals, "principals")
    }

    fn put_principal(&self, principal: &Principal) -> Result<()> {
        self.put(principals, &principal.name, principal)
    }

    fn remove_principal(&self, name: &str) -> Result<bool> {
        self.remove(principals, name)
    }
}

impl TokenStore for SledStore {
    fn revoke_token(&self, jti: &str, record: RevokedToken) -> Result<()> {
        self.put(revoked, jti, &record)
    }

    fn token_revoked(&self, jti: &str) -> Result<bool> {
        self.with(|t| t.revoked_tokens.contains_key(jti).map_err(engine))
    }

    fn revoked_tokens(&self) -> Result<Vec<(String, RevokedToken)>> {
        self.with(|t| {
            t.revoked_tokens
                .iter()
                .map(|entry| {
                    let (key, bytes) = entry.map_err(engine)?;
                    let record = serde_json::from_slice(&bytes)
                        .map_err(|e| corrupt("revoked_tokens", &key, e))?;
                    Ok((String::from_utf8_lossy(&key).into_owned(), record))
                })
                .collect()
        })
    }

    fn prune_revoked_tokens(&self, at: i64) -> Result<usize> {
        self.with(|t| {
            let mut pruned = 0;
            for entry in t.revoked_tokens.iter() {
                let (key, bytes) = entry.map_err(engine)?;
                let expired = serde_json::from_slice::<RevokedToken>(&bytes)
                    .map(|r| r.exp <= at)
                    .unwrap_or(true);
                if expired {
                    t.revoked_tokens.remove(key).map_err(engine)?;
                    pruned += 1;
                }
            }
            if pruned > 0 {
                t.db.flush().map_err(engine)?;
            }
            Ok(pruned)
        })
    }

    fn note_token_expiry(&self, version: u32, exp: i64) -> Result<()> {
        let exp = u64::try_from(exp).unwrap_or(0);
        self.bump(&format!("token_last_exp:{version}"), |old| old.max(exp))?;
        Ok(())
    }

    fn token_expiry(&self, version: u32) -> Result<i64> {
        self.with(|t| {
            Ok(t.meta
                .get(format!("token_last_exp:{version}"))
                .map_err(engine)?
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map(i64::from_be_bytes)
                .unwrap_or(0))
        })
    }
}

impl MetaStore for SledStore {
    fn audit_key(&self) -> Result<Option<AuditKeyRecord>> {
        self.get(meta, "meta", "audit_key")
    }

    fn put_audit_key(&self, record: &AuditKeyRecord) -> Result<()> {
        self.put(meta, "audit_key", record)
    }

    fn audit_anchor(&self) -> Result<Option<ChainHead>> {
        self.get(meta, "meta", "audit_anchor")
    }

    fn put_audit_anchor(&self, head: &ChainHead) -> Result<()> {
        self.put(meta, "audit_anchor", head)
    }
}

impl Store for SledStore {
    fn engine(&self) -> &'static str {
        "sled"
    }

    fn check_writable(&self) -> Result<()> {
        self.put(meta, "ready_probe", &crate::support::time::now())
    }

    fn exclusive(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool> {
        let lock = || self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !lock().insert(name.to_string()) {
            return Ok(false);
        }
        // Released however `f` ends.
        struct Release<'a>(&'a SledStore, &'a str);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                self.0
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(self.1);
            }
        }
        let _release = Release(self, name);
        f();
        Ok(true)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::{KeyVersion, VersionState};
    use signet_hsm::{KeyId, KeySpec};

    fn record(name: &str) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            spec: KeySpec::EcP256,
            created: 1,
            primary: 1,
            versions: vec![KeyVersion {
                version: 1,
                key_id: KeyId(vec![1]),
                label: "l".into(),
                created: 1,
                state: VersionState::Enabled,
                origin: Default::default(),
                attestation: None,
            }],
            deletion: None,
        }
    }

    #[test]
    fn inserts_conflict_and_updates_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        store.insert_key(&record("k")).unwrap();
        assert!(matches!(
            store.insert_key(&record("k")),
            Err(Error::Conflict(_))
        ));
        // Concurrent read-modify-writes all land: none is lost to a race.
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        store
                            .update_key("k", &mut |r| {
                                r.primary += 1;
                                Ok(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.key("k").unwrap().unwrap().primary, 201);
        assert!(matches!(
            store.update_key("missing", &mut |_| Ok(())),
            Err(Error::NotFound(_))
        ));
        assert_eq!(store.next_crl_number().unwrap(), 1);
        assert_eq!(store.next_crl_number().unwrap(), 2);
        store.note_token_expiry(1, 50).unwrap();
        store.note_token_expiry(1, 40).unwrap();
        assert_eq!(store.token_expiry(1).unwrap(), 50);
    }
}
