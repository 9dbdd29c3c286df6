//! Key operations: create, inspect, rotate, enable/disable, deletion, sign and verify.

use signet_hsm::{EcdsaFormat, KeySpec, PublicKey, SignInput, SignatureAlgorithm};

use super::pipeline::{Operation, Recording};
use super::{Action, Caller, Service};
use crate::domain::audit::sha256_hex;
use crate::domain::keys::{requested_version, KeyName, Keys, Signature};
use crate::error::{Error, Result};
use crate::store::{Event, KeyRecord, Outcome, VersionState};

/// One input to sign.
#[derive(Debug, Clone)]
pub struct SignItem {
    /// The message, or its digest when `digest` is set.
    pub input: Vec<u8>,
    /// `input` is a digest of the algorithm's hash.
    pub digest: bool,
    /// The algorithm (the key's default when `None`).
    pub algorithm: Option<SignatureAlgorithm>,
    /// The version (the primary when `None`).
    pub version: Option<u32>,
    /// ECDSA encoding.
    pub format: EcdsaFormat,
    /// An ML-DSA or SLH-DSA context string (FIPS 204/205 `ctx`) the signature is bound to.
    pub context: Option<Vec<u8>>,
}

impl SignItem {
    fn sign_input(&self) -> SignInput<'_> {
        match (&self.context, self.digest) {
            (Some(context), _) => SignInput::MessageWithContext(&self.input, context),
            (None, true) => SignInput::Digest(&self.input),
            (None, false) => SignInput::Message(&self.input),
        }
    }
}

/// A signature to check.
#[derive(Debug, Clone)]
pub struct VerifyItem {
    /// What was signed (as in [`SignItem`]).
    pub item: SignItem,
    /// The signature.
    pub signature: Vec<u8>,
}

/// A device's attestation of a key version, and what it says.
#[derive(Debug, Clone)]
pub struct KeyAttestation {
    /// The key.
    pub name: String,
    /// The version.
    pub version: u32,
    /// The certificates (DER).
    pub attestation: signet_hsm::Attestation,
    /// What they say, and the root they were checked against.
    pub origin: signet_pki::attestation::AttestedOrigin,
}

/// A key record with the public key of every version that still exists.
#[derive(Debug, Clone)]
pub struct KeyDetail {
    /// The record.
    pub record: KeyRecord,
    /// Public keys by version (destroyed versions have none).
    pub public_keys: Vec<(u32, PublicKey)>,
}

impl Service {
    fn detail(&self, record: KeyRecord) -> Result<KeyDetail> {
        let keys = self.keys();
        let mut public_keys = Vec::new();
        for v in &record.versions {
            if v.state != VersionState::Destroyed {
                public_keys.push((v.version, keys.public_key(v)?));
            }
        }
        Ok(KeyDetail {
            record,
            public_keys,
        })
    }

    /// Signs one item with the key as `record` has it, and counts it.
    fn sign_one(&self, record: &KeyRecord, item: &SignItem) -> Result<Signature> {
        let result = self.keys().sign_with(
            record,
            item.version,
            item.algorithm,
            item.sign_input(),
            item.format,
        );
        let algorithm = result
            .as_ref()
            .map(|s| s.algorithm.name())
            .unwrap_or("unknown");
        self.metrics.sign(algorithm, result.is_ok());
        if let Err(Error::Hsm(e)) = &result {
            if let Some(code) = e.return_code() {
                self.metrics.hsm_error(&code);
            }
        }
        result
    }
}

/// Every key.
#[derive(Debug, Clone)]
pub struct ListKeys;

impl Operation for ListKeys {
    type Output = Vec<KeyRecord>;
    fn action(&self) -> Action {
        Action::KeyList
    }
    fn target(&self) -> String {
        "*".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.keys().list()
    }
}

/// A key the caller may use, with its public keys, and whether it may sign with it.
#[derive(Debug, Clone)]
pub struct UsableKey {
    /// The key and the public keys of its versions.
    pub detail: KeyDetail,
    /// The caller may sign with it (else only verify and read).
    pub may_sign: bool,
    /// Per version, the newest unrevoked, unexpired certificate Signet issued for its public
    /// key (a CSR made with the key), if any.
    pub certificates: Vec<(u32, crate::store::CertRecord)>,
}

/// The keys the caller may read or use (`keys:read`, or signing or verifying rights on the
/// key), each with its versions' public keys: everything a client that shows keys as objects
/// (the PKCS#11 module) needs, in one call.
#[derive(Debug, Clone)]
pub struct ListUsableKeys;

impl Operation for ListUsableKeys {
    type Output = Vec<UsableKey>;
    fn action(&self) -> Action {
        Action::KeyListUsable
    }
    fn target(&self) -> String {
        "*".into()
    }
    fn run(&mut self, s: &Service, caller: &Caller) -> Result<Self::Output> {
        use super::Requirement;
        let mut usable = Vec::new();
        for record in s.keys().list()? {
            if caller.refusal(Requirement::ReadKey, &record.name).is_some() {
                continue;
            }
            let may_sign = caller.refusal(Requirement::SignKey, &record.name).is_none();
            usable.push(UsableKey {
                detail: s.detail(record)?,
                may_sign,
                certificates: Vec::new(),
            });
        }
        if usable.is_empty() {
            return Ok(usable);
        }
        // The newest unrevoked, unexpired certificate of each public key: through the index
        // (a few reads per key), or one pass over every certificate while it is not built.
        let now = crate::support::time::now();
        let current = |cert: &crate::store::CertRecord| {
            cert.status != crate::store::CertStatus::Revoked && cert.not_after > now
        };
        let newest = |certs: Vec<crate::store::CertRecord>| {
            certs
                .into_iter()
                .filter(|c| current(c))
                .max_by_key(|c| c.not_before)
        };
        let spkis: Vec<Vec<u8>> = usable
            .iter()
            .flat_map(|k| k.detail.public_keys.iter().map(|(_, p)| p.spki_der()))
            .collect();
        let found = match s.store().certs_of_keys(&spkis)? {
            Some(found) => found,
            None => {
                let mut by_key: std::collections::HashMap<Vec<u8>, Vec<_>> =
                    std::collections::HashMap::new();
                for cert in s.store().certs()? {
                    if let Ok(spki) = signet_pki::spki_of(&cert.der) {
                        by_key.entry(spki).or_default().push(cert);
                    }
                }
                spkis
                    .iter()
                    .map(|spki| by_key.remove(spki).unwrap_or_default())
                    .collect()
            }
        };
        let mut found = found.into_iter();
        for key in &mut usable {
            for (version, _) in &key.detail.public_keys {
                if let Some(cert) = found.next().and_then(newest) {
                    key.certificates.push((*version, cert));
                }
            }
        }
        Ok(usable)
    }
}

/// One key with its public keys.
#[derive(Debug, Clone)]
pub struct ReadKey {
    /// The key.
    pub name: String,
}

impl Operation for ReadKey {
    type Output = KeyDetail;
    fn action(&self) -> Action {
        Action::KeyRead
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let record = s.keys().get(&self.name)?;
        s.detail(record)
    }
}

/// A key's versions, oldest first, with their public keys; only those in `state` when given.
#[derive(Debug, Clone)]
pub struct ListKeyVersions {
    /// The key.
    pub name: String,
    /// Only versions in this state.
    pub state: Option<VersionState>,
}

impl Operation for ListKeyVersions {
    type Output = KeyDetail;
    fn action(&self) -> Action {
        Action::KeyRead
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let mut record = s.keys().get(&self.name)?;
        if let Some(state) = self.state {
            record.versions.retain(|v| v.state == state);
        }
        s.detail(record)
    }
}

/// The public key of a version (the primary by default).
#[derive(Debug, Clone)]
pub struct ReadPublicKey {
    /// The key.
    pub name: String,
    /// The version (the primary when `None`).
    pub version: Option<u32>,
}

impl Operation for ReadPublicKey {
    type Output = PublicKey;
    fn action(&self) -> Action {
        Action::KeyPublic
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let keys = s.keys();
        let record = keys.get(&self.name)?;
        keys.public_key(requested_version(&record, self.version)?)
    }
}

/// The device's attestation of a version (the primary by default), checked against the
/// configured roots, with what it says of the key.
#[derive(Debug, Clone)]
pub struct AttestKey {
    /// The key.
    pub name: String,
    /// The version (the primary when `None`).
    pub version: Option<u32>,
}

impl Operation for AttestKey {
    type Output = KeyAttestation;
    fn action(&self) -> Action {
        Action::KeyAttest
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let keys = s.keys();
        let record = keys.get(&self.name)?;
        let v = requested_version(&record, self.version)?;
        if v.state == VersionState::Destroyed {
            return Err(Error::NotFound(format!(
                "key {:?} has no version {}",
                self.name, v.version
            )));
        }
        match keys.attestation(&v.key_id)? {
            Some((attestation, origin)) => Ok(KeyAttestation {
                name: record.name.clone(),
                version: v.version,
                attestation,
                origin,
            }),
            None => Err(Error::NotFound(
                "no attestation: this key store cannot attest keys (PKCS#11 tokens have no standard key attestation; PIV cards do)".into(),
            )),
        }
    }
}

/// Creates a key (version 1 in the token).
#[derive(Debug, Clone)]
pub struct CreateKey {
    /// Its name.
    pub name: KeyName,
    /// Its spec.
    pub spec: KeySpec,
}

impl Operation for CreateKey {
    type Output = KeyDetail;
    fn action(&self) -> Action {
        Action::KeyCreate
    }
    fn target(&self) -> String {
        self.name.as_str().into()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.keys().check_free(&self.name)?;
        Ok(event.with("spec", self.spec))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let record = s.keys().create(&self.name, self.spec)?;
        s.detail(record)
    }
    fn describe(&self, d: &KeyDetail, event: Event) -> Event {
        event.with("key_id", &d.record.versions[0].key_id)
    }
}

/// Imports the one private key of a PKCS#12 file as version 1 of a new key. The file must have
/// a MAC that the password verifies; the key goes into the token sensitive and
/// non-extractable, is recorded as imported (never as generated in the token), and the
/// software copies Signet made are wiped when the operation is dropped.
pub struct ImportKey {
    /// Its name.
    pub name: KeyName,
    /// The PKCS#12 file.
    pub p12: Vec<u8>,
    /// Its password.
    pub password: zeroize::Zeroizing<String>,
    imported: Option<signet_pki::pkcs12::Imported>,
}

impl std::fmt::Debug for ImportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ImportKey {
    /// The import of `p12` (opened with `password`) as `name`.
    pub fn new(name: KeyName, p12: Vec<u8>, password: zeroize::Zeroizing<String>) -> Self {
        ImportKey {
            name,
            p12,
            password,
            imported: None,
        }
    }
}

impl Operation for ImportKey {
    type Output = KeyDetail;
    fn action(&self) -> Action {
        Action::KeyImport
    }
    fn target(&self) -> String {
        self.name.as_str().into()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.keys().check_free(&self.name)?;
        let imported =
            signet_pki::pkcs12::read(&self.p12, self.password.as_str()).map_err(Error::Pki)?;
        let mut event = event
            .with("spec", imported.key.spec())
            .with("origin", "imported")
            .with("source_sha256", sha256_hex(&self.p12));
        if let Some(cert) = &imported.certificate {
            event = event.with("certificate_sha256", sha256_hex(cert));
        }
        self.imported = Some(imported);
        Ok(event)
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let imported = self
            .imported
            .take()
            .ok_or_else(|| Error::Internal("the PKCS#12 file was not read".into()))?;
        let record = s.keys().import(&self.name, &imported.key)?;
        drop(imported);
        s.detail(record)
    }
    fn describe(&self, d: &KeyDetail, event: Event) -> Event {
        event.with("key_id", &d.record.versions[0].key_id)
    }
}

/// A change to an existing key's versions or deletion, recorded with its primary version.
#[derive(Debug, Clone)]
pub enum ManageKey {
    /// Adds a version and makes it primary.
    Rotate {
        /// The key.
        name: String,
        /// A new spec for the new version (and the key); `None` keeps the key's.
        spec: Option<KeySpec>,
    },
    /// Enables or disables a version.
    SetState {
        /// The key.
        name: String,
        /// The version.
        version: u32,
        /// Enable (or disable).
        enabled: bool,
    },
    /// Schedules destruction after `days`.
    ScheduleDeletion {
        /// The key.
        name: String,
        /// Days until destruction.
        days: u32,
    },
    /// Cancels a scheduled destruction.
    CancelDeletion {
        /// The key.
        name: String,
    },
}

impl Operation for ManageKey {
    type Output = KeyDetail;
    fn action(&self) -> Action {
        match self {
            ManageKey::Rotate { .. } => Action::KeyRotate,
            ManageKey::SetState { enabled: true, .. } => Action::KeyEnable,
            ManageKey::SetState { enabled: false, .. } => Action::KeyDisable,
            ManageKey::ScheduleDeletion { .. } => Action::KeyScheduleDeletion,
            ManageKey::CancelDeletion { .. } => Action::KeyCancelDeletion,
        }
    }
    fn target(&self) -> String {
        match self {
            ManageKey::Rotate { name, .. }
            | ManageKey::SetState { name, .. }
            | ManageKey::ScheduleDeletion { name, .. }
            | ManageKey::CancelDeletion { name } => name.clone(),
        }
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.keys().get(&self.target())?;
        Ok(match self {
            ManageKey::SetState { version, .. } => event.with("version", version),
            ManageKey::ScheduleDeletion { days, .. } => {
                Keys::check_pending_days(*days)?;
                event.with("pending_days", days)
            }
            ManageKey::Rotate {
                name,
                spec: Some(spec),
            } => {
                // The token key's spec follows [tokens] key_spec (its algorithm must fit it).
                let wanted = s.config.tokens.key_spec;
                if name == crate::domain::keys::TOKEN_KEY && *spec != wanted {
                    return Err(Error::Conflict(format!(
                        "the token-signing key follows [tokens] key_spec ({wanted}): change that setting to move it to {spec}"
                    )));
                }
                event.with("spec", spec)
            }
            ManageKey::Rotate { .. } | ManageKey::CancelDeletion { .. } => event,
        })
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let keys = s.keys();
        let record = match self {
            ManageKey::Rotate { name, spec } => keys.rotate(name, *spec)?,
            ManageKey::SetState {
                name,
                version,
                enabled,
            } => keys.set_state(name, *version, *enabled)?,
            ManageKey::ScheduleDeletion { name, days } => keys.schedule_deletion(name, *days)?,
            ManageKey::CancelDeletion { name } => keys.cancel_deletion(name)?,
        };
        s.detail(record)
    }
    fn describe(&self, d: &KeyDetail, event: Event) -> Event {
        event.with("primary_version", d.record.primary)
    }
}

/// Destroys every version in the token now, and forgets the key (operator), or keeps the
/// record with every version marked destroyed (housekeeping).
#[derive(Debug, Clone)]
pub struct DestroyKey {
    /// The key.
    pub name: String,
    /// Forget the record too.
    pub forget: bool,
    /// Why (recorded).
    pub trigger: String,
}

impl Operation for DestroyKey {
    type Output = KeyRecord;
    fn action(&self) -> Action {
        Action::KeyDestroy
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.keys().get(&self.name)?;
        Ok(event.with("trigger", &self.trigger))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.keys().destroy(&self.name, self.forget)
    }
    fn describe(&self, r: &KeyRecord, event: Event) -> Event {
        event.with("versions", r.versions.len())
    }
}

/// The audit record of one signature.
fn sign_event(caller: &Caller, name: &str, item: &SignItem, result: &Result<Signature>) -> Event {
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Error
    };
    let event = caller
        .event(Action::KeySign.name(), name, outcome)
        .with("input_type", if item.digest { "digest" } else { "message" })
        .with("input_sha256", sha256_hex(&item.input));
    match result {
        Ok(sig) => event
            .with("version", sig.version)
            .with("algorithm", sig.algorithm)
            .with("key_id", &sig.key_id),
        Err(e) => {
            let event = event.with("error", crate::error::public_detail(e));
            match item.algorithm {
                Some(a) => event.with("algorithm", a),
                None => event,
            }
        }
    }
}

/// Signs one input; the signature is handed out once its record is durable.
#[derive(Debug, Clone)]
pub struct Sign {
    /// The key.
    pub name: String,
    /// What to sign.
    pub item: SignItem,
}

impl Operation for Sign {
    type Output = Signature;
    fn action(&self) -> Action {
        Action::KeySign
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn reads_key(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn recording(&self) -> Recording {
        Recording::Use
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.keys()
            .get(&self.name)
            .and_then(|r| s.sign_one(&r, &self.item))
    }
    fn records(&self, caller: &Caller, result: &Result<Signature>) -> Vec<Event> {
        vec![sign_event(caller, &self.name, &self.item, result)]
    }
}

/// Signs each input on its own (a bad item gets its own error); every record is durable, with
/// one sync for the lot, before any signature is handed out.
#[derive(Debug)]
pub struct SignBatch {
    /// The key.
    pub name: String,
    /// What to sign (an item that did not parse is its own error).
    pub items: Vec<Result<SignItem>>,
    records: Vec<Event>,
}

/// A batch not yet run, again (a key use may be run twice: see `store::prefetch`); an item
/// that did not parse keeps its error.
impl Clone for SignBatch {
    fn clone(&self) -> Self {
        let items = self
            .items
            .iter()
            .map(|item| match item {
                Ok(item) => Ok(item.clone()),
                Err(Error::BadRequest(why)) => Err(Error::BadRequest(why.clone())),
                Err(Error::Unprocessable(why)) => Err(Error::Unprocessable(why.clone())),
                Err(e) => Err(Error::Internal(e.to_string())),
            })
            .collect();
        SignBatch {
            name: self.name.clone(),
            items,
            records: self.records.clone(),
        }
    }
}

impl SignBatch {
    /// A batch of `items` for the key `name`.
    pub fn new(name: String, items: Vec<Result<SignItem>>) -> Self {
        SignBatch {
            name,
            items,
            records: Vec::new(),
        }
    }
}

impl Operation for SignBatch {
    type Output = Vec<Result<Signature>>;
    fn action(&self) -> Action {
        Action::KeySignBatch
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn reads_key(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn recording(&self) -> Recording {
        Recording::Use
    }
    fn run(&mut self, s: &Service, caller: &Caller) -> Result<Self::Output> {
        let max = s.config.server.sign_batch_max;
        if self.items.is_empty() || self.items.len() > max {
            return Err(Error::BadRequest(format!(
                "items must hold 1..={max} entries, got {}",
                self.items.len()
            )));
        }
        // One lookup of the key for the whole batch.
        let record = s.keys().get(&self.name);
        let mut results = Vec::with_capacity(self.items.len());
        for (index, item) in std::mem::take(&mut self.items).into_iter().enumerate() {
            let result = match item {
                Ok(item) => {
                    let result = match &record {
                        Ok(r) => s.sign_one(r, &item),
                        Err(e) => Err(Error::NotFound(e.to_string())),
                    };
                    self.records.push(
                        sign_event(caller, &self.name, &item, &result).with("batch_index", index),
                    );
                    result
                }
                Err(e) => {
                    s.metrics.sign("unknown", false);
                    Err(e)
                }
            };
            results.push(result);
        }
        Ok(results)
    }
    fn records(&self, _: &Caller, _: &Result<Self::Output>) -> Vec<Event> {
        self.records.clone()
    }
}

/// Checks a signature. Disabled versions still verify.
#[derive(Debug, Clone)]
pub struct Verify {
    /// The key.
    pub name: String,
    /// What to check.
    pub check: VerifyItem,
}

impl Operation for Verify {
    type Output = (bool, u32);
    fn action(&self) -> Action {
        Action::KeyVerify
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn reads_key(&self) -> Option<&str> {
        Some(&self.name)
    }
    fn recording(&self) -> Recording {
        Recording::Use
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let v = &self.check;
        s.keys().verify(
            &self.name,
            v.item.version,
            v.item.algorithm,
            v.item.sign_input(),
            &v.signature,
            v.item.format,
        )
    }
    fn records(&self, caller: &Caller, result: &Result<(bool, u32)>) -> Vec<Event> {
        let mut event = caller
            .event(
                Action::KeyVerify.name(),
                &self.name,
                if result.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                },
            )
            .with("input_sha256", sha256_hex(&self.check.item.input));
        if let Ok((valid, version)) = result {
            event = event.with("valid", valid).with("version", version);
        }
        vec![event]
    }
}
