//! The embedded engine: sled, one tree per kind of record. Every write is flushed before it
//! returns; read-modify-write goes through compare-and-swap, so it is atomic without a lock.
//!
//! After a failed write (a full disk) sled keeps the error and refuses everything from then
//! on, and its memory may hold changes that never reached the disk. So the engine reopens the
//! database before the next operation: what is visible is again what is durable, and service
//! resumes by itself once space returns.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use super::aggregates::Records;
use super::engine::{
    ByteChange, Kind, RecordEngine, CERTS, CERTS_BY_KEY, KEYS, META, PRINCIPALS, REVOKED,
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
    certs_by_key: sled::Tree,
}

/// The sled engine.
#[derive(Debug)]
pub struct SledEngine {
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

impl Trees {
    fn tree(&self, kind: Kind) -> Result<&sled::Tree> {
        match kind {
            KEYS => Ok(&self.keys),
            CERTS => Ok(&self.certs),
            META => Ok(&self.meta),
            PRINCIPALS => Ok(&self.principals),
            REVOKED => Ok(&self.revoked_tokens),
            CERTS_BY_KEY => Ok(&self.certs_by_key),
            other => Err(Error::Internal(format!("no sled tree for {other:?}"))),
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(engine).map(|_| ())
    }
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
        certs_by_key: tree("certs_by_key")?,
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

impl SledEngine {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(SledEngine {
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
}

/// The sled store: the aggregates over the sled engine.
pub type SledStore = Records<SledEngine>;

impl Records<SledEngine> {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Records::new(SledEngine::open(path)?))
    }
}

fn text_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn be_i64(bytes: Option<&[u8]>) -> i64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0)
}

impl RecordEngine for SledEngine {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>> {
        self.with(|t| Ok(t.tree(kind)?.get(key).map_err(engine)?.map(|v| v.to_vec())))
    }

    fn all(&self, kind: Kind) -> Result<Vec<(String, Vec<u8>)>> {
        self.with(|t| {
            t.tree(kind)?
                .iter()
                .map(|entry| {
                    let (key, value) = entry.map_err(engine)?;
                    Ok((text_key(&key), value.to_vec()))
                })
                .collect()
        })
    }

    fn put(&self, kind: Kind, key: &str, value: Vec<u8>, _exp: Option<i64>) -> Result<()> {
        self.with(|t| {
            t.tree(kind)?.insert(key, value).map_err(engine)?;
            t.flush()
        })
    }

    fn insert_new(&self, kind: Kind, key: &str, value: Vec<u8>) -> Result<bool> {
        self.with(|t| {
            let swapped = t
                .tree(kind)?
                .compare_and_swap(key, None::<&[u8]>, Some(value))
                .map_err(engine)?;
            if swapped.is_ok() {
                t.flush()?;
            }
            Ok(swapped.is_ok())
        })
    }

    fn update(&self, kind: Kind, key: &str, change: ByteChange<'_>) -> Result<Option<Vec<u8>>> {
        self.with(|t| {
            let tree = t.tree(kind)?;
            loop {
                let Some(current) = tree.get(key).map_err(engine)? else {
                    return Ok(None);
                };
                let new = change(&current)?;
                match tree
                    .compare_and_swap(key, Some(current), Some(new.clone()))
                    .map_err(engine)?
                {
                    Ok(()) => {
                        t.flush()?;
                        return Ok(Some(new));
                    }
                    // Written by someone else meanwhile: apply the change to their value.
                    Err(_) => continue,
                }
            }
        })
    }

    fn remove(&self, kind: Kind, key: &str) -> Result<bool> {
        self.with(|t| {
            let existed = t.tree(kind)?.remove(key).map_err(engine)?.is_some();
            t.flush()?;
            Ok(existed)
        })
    }

    fn prune_expired(
        &self,
        kind: Kind,
        _at: i64,
        expired: &dyn Fn(&[u8]) -> bool,
    ) -> Result<usize> {
        self.with(|t| {
            let tree = t.tree(kind)?;
            let mut pruned = 0;
            for entry in tree.iter() {
                let (key, value) = entry.map_err(engine)?;
                if expired(&value) {
                    tree.remove(key).map_err(engine)?;
                    pruned += 1;
                }
            }
            if pruned > 0 {
                t.flush()?;
            }
            Ok(pruned)
        })
    }

    fn counter(&self, name: &str, value: i64, raise: bool) -> Result<i64> {
        // Kept as big-endian eight bytes in the meta tree.
        self.with(|t| {
            let new = t
                .meta
                .update_and_fetch(name, |old| {
                    let old = be_i64(old);
                    let new = if raise {
                        old.max(value)
                    } else {
                        old.saturating_add(value)
                    };
                    Some(new.to_be_bytes().to_vec())
                })
                .map_err(engine)?;
            t.flush()?;
            Ok(be_i64(new.as_deref()))
        })
    }

    fn counter_value(&self, name: &str) -> Result<i64> {
        self.with(|t| Ok(be_i64(t.meta.get(name).map_err(engine)?.as_deref())))
    }

    fn check_writable(&self) -> Result<()> {
        let now = crate::support::time::now().to_string().into_bytes();
        self.put(META, "ready_probe", now, None)
    }

    fn exclusive(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool> {
        let lock = || self.running.lock().unwrap_or_else(|p| p.into_inner());
        if !lock().insert(name.to_string()) {
            return Ok(false);
        }
        // Released however `f` ends.
        struct Release<'a>(&'a SledEngine, &'a str);
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
    use crate::store::{CertStore, KeyRecord, KeyStore, TokenStore};
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
                spec: None,
                token_algorithm: None,
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

    /// A self-signed certificate made by OpenSSL, DER, and its SubjectPublicKeyInfo.
    fn openssl_cert(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
        let cert = dir.join(format!("{name}.der"));
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-keyout",
                "/dev/null",
                "-subj",
                &format!("/CN={name}"),
            ])
            .args(["-outform", "DER", "-out", cert.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let der = std::fs::read(cert).unwrap();
        let spki = signet_pki::spki_of(&der).unwrap();
        (der, spki)
    }

    fn cert_record(serial: &str, der: &[u8], not_before: i64) -> crate::store::CertRecord {
        crate::store::CertRecord {
            serial: serial.into(),
            subject: "CN=x".into(),
            sans: Vec::new(),
            profile: crate::store::CertKind::Client,
            not_before,
            not_after: i64::MAX,
            status: crate::store::CertStatus::Active,
            revoked_at: None,
            reason: None,
            issued_to: None,
            der: der.to_vec(),
        }
    }

    /// Certificates stored before the index existed (written straight to the engine, as an
    /// older Signet did) are found only after `build_cert_index`; certificates stored since are
    /// indexed as they are written; each key finds its own and no other.
    #[test]
    fn certificates_are_found_by_public_key_once_indexed() {
        use super::super::engine::CERTS;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("db")).unwrap();
        let (a, a_spki) = openssl_cert(dir.path(), "a");
        let (b, b_spki) = openssl_cert(dir.path(), "b");
        let old = cert_record("0a", &a, 1);
        store
            .inner()
            .put(CERTS, "0a", serde_json::to_vec(&old).unwrap(), None)
            .unwrap();
        let keys = [a_spki.clone(), b_spki.clone(), b"not a key".to_vec()];
        // Not built: the caller must scan.
        assert!(store.certs_of_keys(&keys).unwrap().is_none());
        store.put_cert(&cert_record("0b", &b, 2)).unwrap();
        assert_eq!(store.build_cert_index().unwrap(), 2);
        assert_eq!(store.build_cert_index().unwrap(), 0, "built once");
        store.put_cert(&cert_record("1a", &a, 3)).unwrap();
        // Written again (a revocation rewrites the record): listed once.
        store.put_cert(&cert_record("1a", &a, 3)).unwrap();
        let found = store.certs_of_keys(&keys).unwrap().unwrap();
        let serials = |certs: &Vec<crate::store::CertRecord>| -> Vec<String> {
            certs.iter().map(|c| c.serial.clone()).collect()
        };
        assert_eq!(serials(&found[0]), ["0a", "1a"]);
        assert_eq!(serials(&found[1]), ["0b"]);
        assert!(found[2].is_empty());
        // A serial listed whose record never landed (a crash between the two writes) is
        // skipped.
        store.inner().remove(CERTS, "0b").unwrap();
        let found = store.certs_of_keys(&keys).unwrap().unwrap();
        assert!(found[1].is_empty());
    }
}
