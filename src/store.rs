//! Metadata in sled: keys and their versions, the CA, certificates, principals, revoked token ids
//! and the audit log. Nothing secret is ever written here. Writes that must survive a crash are
//! flushed before the caller answers.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database.
    #[error(
        "the database {0} is in use by another signet process (stop it, or use another --data-dir)"
    )]
    Locked(String),
    /// sled failed.
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
    /// A record could not be decoded.
    #[error("corrupt record {key:?} in {tree}: {detail}")]
    Corrupt {
        /// Tree name.
        tree: &'static str,
        /// Key.
        key: String,
        /// Decoder message.
        detail: String,
    },
}

/// Result alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// The state of one version of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Usable.
    Enabled,
    /// Refuses to sign; still verifies.
    Disabled,
    /// Gone from the token.
    Destroyed,
}

/// One version of a key: one key pair in the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyVersion {
    /// 1, 2, …
    pub version: u32,
    /// `CKA_ID`, hex.
    pub key_id: String,
    /// `CKA_LABEL`.
    pub label: String,
    /// Unix seconds.
    pub created: i64,
    /// State.
    pub state: VersionState,
}

/// A pending destruction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deletion {
    /// When it was asked for (unix seconds).
    pub requested_at: i64,
    /// When the key material is destroyed (unix seconds).
    pub destroy_after: i64,
}

/// A named key with its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Name.
    pub name: String,
    /// Key spec name.
    pub spec: String,
    /// Unix seconds.
    pub created: i64,
    /// The version new signatures use.
    pub primary: u32,
    /// All versions, oldest first.
    pub versions: Vec<KeyVersion>,
    /// Set while deletion is scheduled.
    #[serde(default)]
    pub deletion: Option<Deletion>,
}

impl KeyRecord {
    /// A version by number.
    pub fn version(&self, v: u32) -> Option<&KeyVersion> {
        self.versions.iter().find(|kv| kv.version == v)
    }
}

/// One CA key: where it is in the token and its certificate's serial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaKey {
    /// `CKA_ID`, hex.
    pub key_id: String,
    /// Key spec name.
    pub spec: String,
    /// Serial of its certificate, hex.
    pub serial: String,
}

/// The CA as built by `ca init`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaRecord {
    /// Unix seconds.
    pub created: i64,
    /// Root.
    pub root: CaKey,
    /// Intermediate.
    pub intermediate: CaKey,
    /// The server's TLS key (in the token) and certificate.
    pub server: CaKey,
    /// Trust domain at creation.
    pub trust_domain: String,
    /// Organisation at creation.
    pub organization: String,
}

/// Lifecycle of an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    /// Valid (unless expired).
    Active,
    /// Revoked.
    Revoked,
}

/// An issued certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial, hex.
    pub serial: String,
    /// Subject.
    pub subject: String,
    /// SANs.
    pub sans: Vec<String>,
    /// `server`, `client`, `root-ca`, `intermediate-ca`.
    pub profile: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Status.
    pub status: CertStatus,
    /// Unix seconds, when revoked.
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// RFC 5280 reason name.
    #[serde(default)]
    pub reason: Option<String>,
    /// Who asked for it.
    #[serde(default)]
    pub issued_to: Option<String>,
    /// DER, base64.
    pub der: String,
}

/// The sled database and its trees.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    keys: sled::Tree,
    certs: sled::Tree,
    meta: sled::Tree,
    principals: sled::Tree,
    revoked_tokens: sled::Tree,
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        // Metadata is small; sled's default 1 GiB page cache would only inflate the footprint.
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(path.display().to_string())
                }
                sled::Error::Io(ref io) if io.to_string().contains("lock") => {
                    StoreError::Locked(path.display().to_string())
                }
                other => StoreError::Sled(other),
            })?;
        Ok(Store {
            keys: db.open_tree("keys")?,
            certs: db.open_tree("certs")?,
            meta: db.open_tree("meta")?,
            principals: db.open_tree("principals")?,
            revoked_tokens: db.open_tree("revoked_tokens")?,
            db,
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> StoreResult<()> {
        self.db.flush()?;
        Ok(())
    }

    /// The meta tree (small values; writers flush as they need).
    pub fn meta_tree(&self) -> &sled::Tree {
        &self.meta
    }

    /// The revoked-token tree.
    pub fn revoked_tokens_tree(&self) -> &sled::Tree {
        &self.revoked_tokens
    }

    /// The principals tree.
    pub fn principals_tree(&self) -> &sled::Tree {
        &self.principals
    }

    // Keys.

    /// A key record.
    pub fn key(&self, name: &str) -> StoreResult<Option<KeyRecord>> {
        get_json(&self.keys, "keys", name)
    }

    /// Writes a key record durably.
    pub fn put_key(&self, record: &KeyRecord) -> StoreResult<()> {
        put_json(&self.keys, &record.name, record)?;
        self.flush()
    }

    /// Removes a key record durably.
    pub fn remove_key(&self, name: &str) -> StoreResult<()> {
        self.keys.remove(name)?;
        self.flush()
    }

    /// All key records, by name.
    pub fn keys(&self) -> StoreResult<Vec<KeyRecord>> {
        all_json(&self.keys, "keys")
    }

    // CA and certificates.

    /// The CA record, once `ca init` has run.
    pub fn ca(&self) -> StoreResult<Option<CaRecord>> {
        get_json(&self.meta, "meta", "ca")
    }

    /// Writes the CA record durably.
    pub fn put_ca(&self, record: &CaRecord) -> StoreResult<()> {
        put_json(&self.meta, "ca", record)?;
        self.flush()
    }

    /// A certificate by serial (hex).
    pub fn cert(&self, serial: &str) -> StoreResult<Option<CertRecord>> {
        get_json(&self.certs, "certs", &serial.to_ascii_lowercase())
    }

    /// Writes a certificate record durably.
    pub fn put_cert(&self, record: &CertRecord) -> StoreResult<()> {
        put_json(&self.certs, &record.serial, record)?;
        self.flush()
    }

    /// All certificate records.
    pub fn certs(&self) -> StoreResult<Vec<CertRecord>> {
        all_json(&self.certs, "certs")
    }

    /// A small value in the meta tree.
    pub fn meta<T: DeserializeOwned>(&self, key: &str) -> StoreResult<Option<T>> {
        get_json(&self.meta, "meta", key)
    }

    /// Writes a small value in the meta tree durably.
    pub fn put_meta<T: Serialize>(&self, key: &str, value: &T) -> StoreResult<()> {
        put_json(&self.meta, key, value)?;
        self.flush()
    }

    /// Atomically increments a counter in the meta tree and returns the new value.
    pub fn next_counter(&self, key: &str) -> StoreResult<u64> {
        let value = self.meta.update_and_fetch(key, |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        self.flush()?;
        Ok(value
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(1))
    }
}

/// Reads one JSON value.
pub fn get_json<T: DeserializeOwned>(
    tree: &sled::Tree,
    name: &'static str,
    key: &str,
) -> StoreResult<Option<T>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                tree: name,
                key: key.to_string(),
                detail: e.to_string(),
            }),
    }
}

/// Writes one JSON value (not flushed).
pub fn put_json<T: Serialize>(tree: &sled::Tree, key: &str, value: &T) -> StoreResult<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        tree: "(write)",
        key: key.to_string(),
        detail: e.to_string(),
    })?;
    tree.insert(key, bytes)?;
    Ok(())
}

/// Every JSON value of a tree, in key order.
pub fn all_json<T: DeserializeOwned>(tree: &sled::Tree, name: &'static str) -> StoreResult<Vec<T>> {
    tree.iter()
        .map(|entry| {
            let (key, bytes) = entry?;
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                tree: name,
                key: String::from_utf8_lossy(&key).into_owned(),
                detail: e.to_string(),
            })
        })
        .collect()
}
