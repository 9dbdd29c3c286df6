//! Named keys with versions. Each version is one key pair in the token; the record in sled says
//! which version is primary, which are disabled, and whether destruction is scheduled.

use std::sync::Mutex;

use signet_hsm::{EcdsaFormat, KeyId, KeySpec, PublicKey, SignInput, SignatureAlgorithm};

use crate::error::{Error, Result};
use crate::runtime::Signet;
use crate::store::{Deletion, KeyRecord, KeyVersion, VersionState};

/// Shortest and longest deletion window, days.
pub const PENDING_DAYS: (u32, u32) = (1, 30);
/// Default deletion window, days.
pub const DEFAULT_PENDING_DAYS: u32 = 7;

/// Serialises changes to key records (create, rotate, state changes) within the process.
static KEY_CHANGES: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    KEY_CHANGES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Current time, unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Key names: 1-64 of `A-Z a-z 0-9 - _ .`, not starting with a dot.
pub fn valid_key_name(name: &str) -> bool {
    signet_pki::valid_client_name(name)
}

fn label(name: &str, version: u32) -> String {
    format!("signet:key:{name}:v{version}")
}

/// What a signature call produced.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Signature bytes.
    pub bytes: Vec<u8>,
    /// Version used.
    pub version: u32,
    /// Algorithm used.
    pub algorithm: SignatureAlgorithm,
    /// Token key id (hex) of that version.
    pub key_id: String,
}

/// The key operations of a [`Signet`].
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a>(pub &'a Signet);

impl Keys<'_> {
    /// A record, or 404.
    pub fn get(&self, name: &str) -> Result<KeyRecord> {
        self.0
            .store
            .key(name)?
            .ok_or_else(|| Error::NotFound(format!("no key named {name:?}")))
    }

    /// All records.
    pub fn list(&self) -> Result<Vec<KeyRecord>> {
        Ok(self.0.store.keys()?)
    }

    /// Creates a key: version 1 generated in the token.
    pub fn create(&self, name: &str, spec: KeySpec) -> Result<KeyRecord> {
        if !valid_key_name(name) {
            return Err(Error::BadRequest(format!(
                "key name {name:?} must be 1-64 of A-Z a-z 0-9 - _ . (not starting with a dot)"
            )));
        }
        let _guard = lock();
        if self.0.store.key(name)?.is_some() {
            return Err(Error::Conflict(format!(
                "a key named {name:?} already exists"
            )));
        }
        let info = self.0.backend.generate(&label(name, 1), spec)?;
        let created = now();
        let record = KeyRecord {
            name: name.to_string(),
            spec: spec.name().to_string(),
            created,
            primary: 1,
            versions: vec![KeyVersion {
                version: 1,
                key_id: info.id.to_hex(),
                label: info.label,
                created,
                state: VersionState::Enabled,
            }],
            deletion: None,
        };
        if let Err(e) = self.0.store.put_key(&record) {
            // Do not leave an orphan pair in the token.
            let _ = self.0.backend.destroy(&info.id);
            return Err(e.into());
        }
        Ok(record)
    }

    /// Adds a version and makes it primary.
    pub fn rotate(&self, name: &str) -> Result<KeyRecord> {
        let _guard = lock();
        let mut record = self.get(name)?;
        refuse_if_deleting(&record)?;
        let spec = spec_of(&record)?;
        let version = record.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        let info = self.0.backend.generate(&label(name, version), spec)?;
        record.versions.push(KeyVersion {
            version,
            key_id: info.id.to_hex(),
            label: info.label,
            created: now(),
            state: VersionState::Enabled,
        });
        record.primary = version;
        if let Err(e) = self.0.store.put_key(&record) {
            let _ = self.0.backend.destroy(&info.id);
            return Err(e.into());
        }
        Ok(record)
    }

    /// Enables or disables one version. The primary version cannot be disabled: rotate first.
    pub fn set_state(&self, name: &str, version: u32, enabled: bool) -> Result<KeyRecord> {
        let _guard = lock();
        let mut record = self.get(name)?;
        refuse_if_deleting(&record)?;
        let primary = record.primary;
        let v = record
            .versions
            .iter_mut()
            .find(|v| v.version == version)
            .ok_or_else(|| Error::NotFound(format!("key {name:?} has no version {version}")))?;
        match (v.state, enabled) {
            (VersionState::Destroyed, _) => {
                return Err(Error::Conflict(format!("version {version} is destroyed")))
            }
            (_, false) if version == primary => {
                return Err(Error::Conflict(format!(
                    "version {version} is the primary version; rotate before disabling it"
                )))
            }
            _ => {}
        }
        v.state = if enabled {
            VersionState::Enabled
        } else {
            VersionState::Disabled
        };
        self.0.store.put_key(&record)?;
        Ok(record)
    }

    /// Schedules destruction after `days`; the key refuses use at once.
    pub fn schedule_deletion(&self, name: &str, days: u32) -> Result<KeyRecord> {
        if !(PENDING_DAYS.0..=PENDING_DAYS.1).contains(&days) {
            return Err(Error::BadRequest(format!(
                "pending_days must be {}..={}",
                PENDING_DAYS.0, PENDING_DAYS.1
            )));
        }
        let _guard = lock();
        let mut record = self.get(name)?;
        if record
            .versions
            .iter()
            .all(|v| v.state == VersionState::Destroyed)
        {
            return Err(Error::Conflict(format!(
                "key {name:?} is already destroyed"
            )));
        }
        if record.deletion.is_some() {
            return Err(Error::Conflict(format!(
                "key {name:?} is already scheduled for deletion"
            )));
        }
        let requested_at = now();
        record.deletion = Some(Deletion {
            requested_at,
            destroy_after: requested_at + i64::from(days) * 24 * 3600,
        });
        self.0.store.put_key(&record)?;
        Ok(record)
    }

    /// Cancels a scheduled deletion.
    pub fn cancel_deletion(&self, name: &str) -> Result<KeyRecord> {
        let _guard = lock();
        let mut record = self.get(name)?;
        if record.deletion.is_none() {
            return Err(Error::Conflict(format!(
                "key {name:?} is not scheduled for deletion"
            )));
        }
        record.deletion = None;
        self.0.store.put_key(&record)?;
        Ok(record)
    }

    /// Destroys, in the token, every key whose deletion window has passed by `at`. Returns the
    /// names destroyed. The record stays, with every version marked destroyed, so the name is
    /// not silently reused.
    pub fn destroy_due(&self, at: i64) -> Result<Vec<String>> {
        let _guard = lock();
        let mut destroyed = Vec::new();
        for mut record in self.0.store.keys()? {
            let due = matches!(&record.deletion, Some(d) if d.destroy_after <= at);
            if !due {
                continue;
            }
            destroy_versions(self.0, &mut record)?;
            record.deletion = None;
            self.0.store.put_key(&record)?;
            destroyed.push(record.name);
        }
        Ok(destroyed)
    }

    /// Destroys a key now (operator CLI) and forgets it.
    pub fn delete_now(&self, name: &str) -> Result<KeyRecord> {
        let _guard = lock();
        let mut record = self.get(name)?;
        destroy_versions(self.0, &mut record)?;
        self.0.store.remove_key(name)?;
        Ok(record)
    }

    /// The version to use: the one asked for, else the primary.
    fn usable_version<'r>(
        &self,
        record: &'r KeyRecord,
        version: Option<u32>,
    ) -> Result<&'r KeyVersion> {
        let wanted = version.unwrap_or(record.primary);
        let v = record.version(wanted).ok_or_else(|| {
            Error::NotFound(format!("key {:?} has no version {wanted}", record.name))
        })?;
        match v.state {
            VersionState::Enabled => Ok(v),
            VersionState::Disabled => Err(Error::Conflict(format!(
                "version {wanted} of key {:?} is disabled",
                record.name
            ))),
            VersionState::Destroyed => Err(Error::Conflict(format!(
                "version {wanted} of key {:?} is destroyed",
                record.name
            ))),
        }
    }

    /// Signs with the primary version, or with `version` when asked. The token-signing key
    /// refuses: it signs only tokens Signet builds, never caller-chosen bytes.
    pub fn sign(
        &self,
        name: &str,
        version: Option<u32>,
        algorithm: Option<SignatureAlgorithm>,
        input: SignInput<'_>,
        format: EcdsaFormat,
    ) -> Result<Signature> {
        if name == crate::tokens::TOKEN_KEY {
            return Err(Error::Forbidden(format!(
                "{name:?} signs only tokens (POST /v1/tokens), never arbitrary input"
            )));
        }
        self.sign_any(name, version, algorithm, input, format)
    }

    /// Signs a token's signing input with the token key.
    pub(crate) fn sign_token(
        &self,
        name: &str,
        version: u32,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        format: EcdsaFormat,
    ) -> Result<Signature> {
        self.sign_any(name, Some(version), Some(algorithm), input, format)
    }

    fn sign_any(
        &self,
        name: &str,
        version: Option<u32>,
        algorithm: Option<SignatureAlgorithm>,
        input: SignInput<'_>,
        format: EcdsaFormat,
    ) -> Result<Signature> {
        let record = self.get(name)?;
        refuse_if_deleting(&record)?;
        let spec = spec_of(&record)?;
        let algorithm = algorithm.unwrap_or_else(|| spec.default_algorithm());
        if !spec.allows(algorithm) {
            return Err(Error::BadRequest(format!(
                "algorithm {algorithm} does not fit key {name:?} ({spec}); use one of {}",
                names(spec.algorithms())
            )));
        }
        let v = self.usable_version(&record, version)?;
        let id = key_id(v)?;
        let bytes = self.0.backend.sign(&id, algorithm, input, format)?;
        Ok(Signature {
            bytes,
            version: v.version,
            algorithm,
            key_id: v.key_id.clone(),
        })
    }

    /// Verifies with the primary version, or `version`. Disabled versions still verify.
    pub fn verify(
        &self,
        name: &str,
        version: Option<u32>,
        algorithm: Option<SignatureAlgorithm>,
        input: SignInput<'_>,
        signature: &[u8],
        format: EcdsaFormat,
    ) -> Result<(bool, u32)> {
        let record = self.get(name)?;
        let spec = spec_of(&record)?;
        let algorithm = algorithm.unwrap_or_else(|| spec.default_algorithm());
        if !spec.allows(algorithm) {
            return Err(Error::BadRequest(format!(
                "algorithm {algorithm} does not fit key {name:?} ({spec})"
            )));
        }
        let wanted = version.unwrap_or(record.primary);
        let v = record
            .version(wanted)
            .ok_or_else(|| Error::NotFound(format!("key {name:?} has no version {wanted}")))?;
        if v.state == VersionState::Destroyed {
            return Err(Error::Conflict(format!("version {wanted} is destroyed")));
        }
        let valid = self
            .0
            .backend
            .verify(&key_id(v)?, algorithm, input, signature, format)?;
        Ok((valid, wanted))
    }

    /// The public key of a version.
    pub fn public_key(&self, v: &KeyVersion) -> Result<PublicKey> {
        Ok(self.0.backend.public_key(&key_id(v)?)?)
    }
}

fn destroy_versions(signet: &Signet, record: &mut KeyRecord) -> Result<()> {
    for v in record.versions.iter_mut() {
        if v.state == VersionState::Destroyed {
            continue;
        }
        match signet.backend.destroy(&key_id(v)?) {
            Ok(()) | Err(signet_hsm::Error::KeyNotFound(_)) => v.state = VersionState::Destroyed,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn refuse_if_deleting(record: &KeyRecord) -> Result<()> {
    if record.deletion.is_some() {
        return Err(Error::Conflict(format!(
            "key {:?} is scheduled for deletion; cancel the deletion to use it",
            record.name
        )));
    }
    Ok(())
}

/// The spec of a record.
pub fn spec_of(record: &KeyRecord) -> Result<KeySpec> {
    record.spec.parse().map_err(|_| {
        Error::Internal(format!(
            "key {:?} has unknown spec {:?}",
            record.name, record.spec
        ))
    })
}

/// The token id of a version.
pub fn key_id(v: &KeyVersion) -> Result<KeyId> {
    KeyId::from_hex(&v.key_id).ok_or_else(|| Error::Internal(format!("bad key id {:?}", v.key_id)))
}

fn names(algs: &[SignatureAlgorithm]) -> String {
    algs.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}
