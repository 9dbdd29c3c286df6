//! Named keys with versions. Each version is one key pair in the backend; the record says which
//! version is primary, which are disabled, and whether destruction is scheduled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use signet_hsm::{
    Attestation, Backend, EcdsaFormat, KeyId, KeyInfo, KeyMaterial, KeyRequest, KeySpec, PublicKey,
    SignInput, SignatureAlgorithm,
};

use signet_pki::attestation::{verify_attestation, AttestedOrigin};

use crate::error::{Error, Result};
use crate::store::{Deletion, KeyOrigin, KeyRecord, KeyVersion, Store, VersionState};
use crate::support::text::echo;
use crate::support::time::now;

/// Shortest and longest deletion window, days.
pub const PENDING_DAYS: (u32, u32) = (1, 30);
/// Default deletion window, days.
pub const DEFAULT_PENDING_DAYS: u32 = 7;
/// The key that signs tokens. It is managed like any key but never signs caller-chosen bytes.
pub const TOKEN_KEY: &str = "token-signer";

/// A valid key name: 1-64 of `A-Z a-z 0-9 - _ .`, not starting with a dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyName(String);

/// Key names the service keeps for itself: a caller can neither create nor import a key under
/// one (an imported `token-signer` made before the first start would become the token
/// signing key, with key material someone outside the token has had).
pub const RESERVED_KEYS: &[&str] = &[TOKEN_KEY];

impl KeyName {
    /// Checks a name a caller gives for a new key (reserved names refused).
    pub fn parse(name: &str) -> Result<Self> {
        if RESERVED_KEYS.contains(&name) {
            return Err(Error::Conflict(format!(
                "{:?} is reserved for the service's own key: choose another name",
                echo(name)
            )));
        }
        Self::parse_any(name)
    }

    /// The service's token-signing key's name.
    pub fn token_signer() -> Self {
        KeyName(TOKEN_KEY.to_string())
    }

    fn parse_any(name: &str) -> Result<Self> {
        if signet_pki::valid_client_name(name) {
            Ok(KeyName(name.to_string()))
        } else {
            Err(Error::BadRequest(format!(
                "key name {:?} must be 1-64 of A-Z a-z 0-9 - _ . (not starting with a dot)",
                echo(name)
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The label of a key version in the backend. The random suffix keeps labels unique when
/// several deployments share one token (a network HSM).
pub fn label(name: &str, version: u32) -> Result<String> {
    let suffix = &crate::support::random::hex_id()?[..8];
    Ok(format!("signet:key:{name}:v{version}:{suffix}"))
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
    /// Backend id of that version.
    pub key_id: KeyId,
}

/// Public keys by backend id: a version's public key never changes, so the backend is asked
/// once per version.
#[derive(Debug, Default)]
pub struct PublicKeys(Mutex<HashMap<KeyId, PublicKey>>);

impl PublicKeys {
    /// The public key of `id`, from the cache or the backend.
    pub fn get(&self, backend: &dyn Backend, id: &KeyId) -> Result<PublicKey> {
        if let Some(hit) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(hit.clone());
        }
        let public = backend.public_key(id)?;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), public.clone());
        Ok(public)
    }

    /// Forgets a destroyed key.
    pub fn forget(&self, id: &KeyId) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The key operations over a backend and a store.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// Where the key pairs are.
    pub backend: &'a Arc<dyn Backend>,
    /// Where the records are.
    pub store: &'a dyn Store,
    /// Public keys already read.
    pub public_keys: &'a PublicKeys,
    /// Roots a device attestation must chain to (DER; none: the device's word is recorded
    /// unchecked).
    pub attestation_roots: &'a [Vec<u8>],
    /// `[tokens] algorithm`: what each new version of the token-signing key is recorded to
    /// sign tokens with.
    pub token_algorithm: SignatureAlgorithm,
}

impl Keys<'_> {
    /// A record, or not found.
    pub fn get(&self, name: &str) -> Result<KeyRecord> {
        self.store
            .key(name)?
            .ok_or_else(|| Error::NotFound(format!("no key named {:?}", echo(name))))
    }

    /// All records.
    pub fn list(&self) -> Result<Vec<KeyRecord>> {
        self.store.keys()
    }

    /// Refuses a name that is taken (before anything is generated).
    pub fn check_free(&self, name: &KeyName) -> Result<()> {
        if self.store.key(name.as_str())?.is_some() {
            return Err(Error::Conflict(format!(
                "a key named {:?} already exists",
                name.as_str()
            )));
        }
        Ok(())
    }

    /// Creates a key: version 1 generated in the backend.
    pub fn create(&self, name: &KeyName, spec: KeySpec) -> Result<KeyRecord> {
        self.check_free(name)?;
        let info = self
            .backend
            .generate(&KeyRequest::named(label(name.as_str(), 1)?, spec))?;
        let attestation = self.attested_or_destroy(&info.id)?;
        self.record_first_version(name, spec, info, KeyOrigin::Generated, attestation)
    }

    /// The token algorithm a new version of key `name` records: `[tokens] algorithm` for the
    /// token-signing key (the spec's default where it does not fit), none for other keys.
    fn token_algorithm_for(&self, name: &str, spec: KeySpec) -> Option<SignatureAlgorithm> {
        (name == TOKEN_KEY).then(|| spec.algorithm_or_default(self.token_algorithm))
    }

    /// The device's attestation of a key it just made, checked against the configured roots;
    /// `None` from a backend without attestation. A key whose attestation does not check out
    /// is destroyed: the device is not what the roots say it should be.
    fn attested_or_destroy(&self, id: &KeyId) -> Result<Option<AttestedOrigin>> {
        let checked = self.attestation(id);
        if checked.is_err() {
            let _ = self.backend.destroy(id);
        }
        checked.map(|a| a.map(|(_, origin)| origin))
    }

    /// The device's attestation of a key and what it says, checked against the configured
    /// roots; `None` from a backend without attestation.
    pub fn attestation(&self, id: &KeyId) -> Result<Option<(Attestation, AttestedOrigin)>> {
        let attestation = match self.backend.attest(id) {
            Ok(a) => a,
            Err(signet_hsm::Error::Unsupported(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let public = self.public_keys.get(self.backend.as_ref(), id)?;
        let origin = verify_attestation(
            &attestation.certificate,
            &attestation.intermediate,
            &public.spki_der(),
            self.attestation_roots,
        )
        .map_err(|e| Error::Conflict(format!("key attestation refused: {e}")))?;
        Ok(Some((attestation, origin)))
    }

    /// Creates a key whose version 1 is outside key material put into the backend.
    pub fn import(&self, name: &KeyName, key: &KeyMaterial) -> Result<KeyRecord> {
        self.check_free(name)?;
        let spec = key.spec();
        let info = self
            .backend
            .import(&KeyRequest::named(label(name.as_str(), 1)?, spec), key)?;
        self.record_first_version(name, spec, info, KeyOrigin::Imported, None)
    }

    fn record_first_version(
        &self,
        name: &KeyName,
        spec: KeySpec,
        info: KeyInfo,
        origin: KeyOrigin,
        attestation: Option<AttestedOrigin>,
    ) -> Result<KeyRecord> {
        let created = now();
        let record = KeyRecord {
            name: name.to_string(),
            spec,
            created,
            primary: 1,
            versions: vec![KeyVersion {
                version: 1,
                key_id: info.id.clone(),
                label: info.label,
                created,
                state: VersionState::Enabled,
                origin,
                attestation,
                spec: None,
                token_algorithm: self.token_algorithm_for(name.as_str(), spec),
            }],
            deletion: None,
        };
        if let Err(e) = self.store.insert_key(&record) {
            // Do not leave an orphan pair in the backend.
            let _ = self.backend.destroy(&info.id);
            return Err(e);
        }
        Ok(record)
    }

    /// Checks that a key can get a new version; returns the version it will get.
    pub fn check_rotate(&self, name: &str) -> Result<(KeyRecord, u32)> {
        let record = self.get(name)?;
        refuse_if_deleting(&record)?;
        let next = record.next_version();
        Ok((record, next))
    }

    /// Adds a version and makes it primary; of another spec when `spec` names one (the older
    /// versions keep theirs, and verify and publish as before).
    pub fn rotate(&self, name: &str, spec: Option<KeySpec>) -> Result<KeyRecord> {
        let (record, version) = self.check_rotate(name)?;
        let spec = spec.unwrap_or(record.spec);
        let info = self
            .backend
            .generate(&KeyRequest::named(label(name, version)?, spec))?;
        let attestation = self.attested_or_destroy(&info.id)?;
        let created = now();
        let updated = self.store.update_key(name, &mut |r| {
            refuse_if_deleting(r)?;
            if r.next_version() != version {
                return Err(Error::Conflict(format!(
                    "key {:?} was rotated meanwhile; try again",
                    r.name
                )));
            }
            r.versions.push(KeyVersion {
                version,
                key_id: info.id.clone(),
                label: info.label.clone(),
                created,
                state: VersionState::Enabled,
                origin: KeyOrigin::Generated,
                attestation: attestation.clone(),
                spec: None,
                token_algorithm: self.token_algorithm_for(name, spec),
            });
            if r.spec != spec {
                let old = r.spec;
                for v in r.versions.iter_mut().filter(|v| v.spec.is_none()) {
                    v.spec = Some(old);
                }
                if let Some(new) = r.versions.last_mut() {
                    new.spec = None;
                }
                r.spec = spec;
            }
            r.primary = version;
            Ok(())
        });
        if updated.is_err() {
            let _ = self.backend.destroy(&info.id);
        }
        updated
    }

    /// Enables or disables one version. The primary version cannot be disabled: rotate first.
    pub fn set_state(&self, name: &str, version: u32, enabled: bool) -> Result<KeyRecord> {
        self.get(name)?;
        self.store.update_key(name, &mut |record| {
            refuse_if_deleting(record)?;
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
            Ok(())
        })
    }

    /// Checks a deletion window.
    pub fn check_pending_days(days: u32) -> Result<()> {
        if !(PENDING_DAYS.0..=PENDING_DAYS.1).contains(&days) {
            return Err(Error::BadRequest(format!(
                "pending_days must be {}..={}",
                PENDING_DAYS.0, PENDING_DAYS.1
            )));
        }
        Ok(())
    }

    /// Schedules destruction after `days`; the key refuses use at once.
    pub fn schedule_deletion(&self, name: &str, days: u32) -> Result<KeyRecord> {
        Self::check_pending_days(days)?;
        self.get(name)?;
        let requested_at = now();
        self.store.update_key(name, &mut |record| {
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
            record.deletion = Some(Deletion {
                requested_at,
                destroy_after: requested_at + i64::from(days) * 24 * 3600,
            });
            Ok(())
        })
    }

    /// Cancels a scheduled deletion.
    pub fn cancel_deletion(&self, name: &str) -> Result<KeyRecord> {
        self.get(name)?;
        self.store.update_key(name, &mut |record| {
            if record.deletion.is_none() {
                return Err(Error::Conflict(format!(
                    "key {name:?} is not scheduled for deletion"
                )));
            }
            record.deletion = None;
            Ok(())
        })
    }

    /// The keys whose deletion window has passed by `at`.
    pub fn due_for_destruction(&self, at: i64) -> Result<Vec<KeyRecord>> {
        Ok(self
            .store
            .keys()?
            .into_iter()
            .filter(|r| matches!(&r.deletion, Some(d) if d.destroy_after <= at))
            .collect())
    }

    /// Destroys every version of `name` in the backend. With `forget`, the record goes too;
    /// otherwise it stays with every version marked destroyed, so the name is not silently
    /// reused.
    pub fn destroy(&self, name: &str, forget: bool) -> Result<KeyRecord> {
        let record = self.get(name)?;
        for v in &record.versions {
            if v.state == VersionState::Destroyed {
                continue;
            }
            match self.backend.destroy(&v.key_id) {
                Ok(()) | Err(signet_hsm::Error::KeyNotFound(_)) => {
                    self.public_keys.forget(&v.key_id)
                }
                Err(e) => return Err(e.into()),
            }
        }
        if forget {
            self.store.remove_key(name)?;
            return Ok(record);
        }
        self.store.update_key(name, &mut |r| {
            for v in r.versions.iter_mut() {
                v.state = VersionState::Destroyed;
            }
            r.deletion = None;
            Ok(())
        })
    }

    /// The version to use: the one asked for, else the primary.
    fn usable_version(record: &KeyRecord, version: Option<u32>) -> Result<&KeyVersion> {
        let v = requested_version(record, version)?;
        let wanted = v.version;
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

    /// Signs with the key as `record` has it: its primary version, or `version` when asked.
    /// The token-signing key refuses: it signs only tokens Signet builds, never caller-chosen
    /// bytes.
    pub fn sign_with(
        &self,
        record: &KeyRecord,
        version: Option<u32>,
        algorithm: Option<SignatureAlgorithm>,
        input: SignInput<'_>,
        format: EcdsaFormat,
    ) -> Result<Signature> {
        if record.name == TOKEN_KEY {
            return Err(Error::Forbidden(format!(
                "{:?} signs only tokens (the token-issuing operation), never arbitrary input",
                record.name
            )));
        }
        Self::sign_record(
            self.backend.as_ref(),
            record,
            version,
            algorithm,
            input,
            format,
        )
    }

    /// Signs a token's signing input with a version of the token key.
    pub fn sign_token(
        &self,
        version: u32,
        algorithm: SignatureAlgorithm,
        signing_input: &[u8],
    ) -> Result<Signature> {
        Self::sign_record(
            self.backend.as_ref(),
            &self.get(TOKEN_KEY)?,
            Some(version),
            Some(algorithm),
            SignInput::Message(signing_input),
            EcdsaFormat::Raw,
        )
    }

    fn sign_record(
        backend: &dyn Backend,
        record: &KeyRecord,
        version: Option<u32>,
        algorithm: Option<SignatureAlgorithm>,
        input: SignInput<'_>,
        format: EcdsaFormat,
    ) -> Result<Signature> {
        refuse_if_deleting(record)?;
        let v = Self::usable_version(record, version)?;
        let algorithm = check_algorithm(record, v, algorithm)?;
        let bytes = signet_hsm::sign(backend, &v.key_id, algorithm, input, format)?;
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
        let v = requested_version(&record, version)?;
        let algorithm = check_algorithm(&record, v, algorithm)?;
        if v.state == VersionState::Destroyed {
            return Err(Error::Conflict(format!(
                "version {} is destroyed",
                v.version
            )));
        }
        let valid = match input {
            SignInput::Message(_) | SignInput::MessageWithContext(..) => {
                signet_hsm::verify::verify(
                    &self.public_key(v)?,
                    algorithm,
                    input,
                    signature,
                    format,
                )?
            }
            SignInput::Digest(_) => self
                .backend
                .verify(&v.key_id, algorithm, input, signature, format)?,
        };
        Ok((valid, v.version))
    }

    /// The public key of a version.
    pub fn public_key(&self, v: &KeyVersion) -> Result<PublicKey> {
        self.public_keys.get(self.backend.as_ref(), &v.key_id)
    }
}

/// The version asked for, else the primary; not found when the record has no such version
/// (whatever its state: each caller decides what a disabled or destroyed one means to it).
pub fn requested_version(record: &KeyRecord, version: Option<u32>) -> Result<&KeyVersion> {
    let wanted = version.unwrap_or(record.primary);
    record
        .version(wanted)
        .ok_or_else(|| Error::NotFound(format!("key {:?} has no version {wanted}", record.name)))
}

fn check_algorithm(
    record: &KeyRecord,
    version: &KeyVersion,
    algorithm: Option<SignatureAlgorithm>,
) -> Result<SignatureAlgorithm> {
    let spec = record.spec_of(version);
    let algorithm = algorithm.unwrap_or_else(|| spec.default_algorithm());
    if !spec.allows(algorithm) {
        return Err(Error::Unprocessable(format!(
            "algorithm {algorithm} does not fit key {:?} ({spec}); use one of {}",
            record.name,
            spec.algorithms()
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(algorithm)
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
