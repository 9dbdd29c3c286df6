//! Key operations: create, inspect, rotate, enable/disable, deletion, sign and verify.

use signet_hsm::{EcdsaFormat, KeySpec, PublicKey, SignInput, SignatureAlgorithm};

use super::{Action, Caller, Deferred, Service};
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
}

impl SignItem {
    fn sign_input(&self) -> SignInput<'_> {
        if self.digest {
            SignInput::Digest(&self.input)
        } else {
            SignInput::Message(&self.input)
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

    /// Every key.
    pub fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyRecord>> {
        self.authorize(caller, Action::KeyList, "*")?;
        self.keys().list()
    }

    /// One key with its public keys.
    pub fn key(&self, caller: &Caller, name: &str) -> Result<KeyDetail> {
        self.authorize(caller, Action::KeyRead, name)?;
        let record = self.keys().get(name)?;
        self.detail(record)
    }

    /// The public key of a version (the primary by default).
    pub fn public_key(
        &self,
        caller: &Caller,
        name: &str,
        version: Option<u32>,
    ) -> Result<PublicKey> {
        self.authorize(caller, Action::KeyPublic, name)?;
        let keys = self.keys();
        let record = keys.get(name)?;
        keys.public_key(requested_version(&record, version)?)
    }

    /// The device's attestation of a version (the primary by default), checked against the
    /// configured roots, with what it says of the key.
    pub fn attest_key(
        &self,
        caller: &Caller,
        name: &str,
        version: Option<u32>,
    ) -> Result<KeyAttestation> {
        self.authorize(caller, Action::KeyAttest, name)?;
        let keys = self.keys();
        let record = keys.get(name)?;
        let v = requested_version(&record, version)?;
        if v.state == VersionState::Destroyed {
            return Err(Error::NotFound(format!(
                "key {name:?} has no version {}",
                v.version
            )));
        }
        match keys.attestation(&v.key_id)? {
            Some((attestation, origin)) => Ok(KeyAttestation {
                name: record.name.clone(),
                version: v.version,
                attestation,
                origin,
            }),
            None => Err(Error::BadRequest(
                "this key store cannot attest keys (PKCS#11 tokens have no standard key attestation; PIV cards do)".into(),
            )),
        }
    }

    /// Creates a key (version 1 in the token).
    pub fn create_key(&self, caller: &Caller, name: &KeyName, spec: KeySpec) -> Result<KeyDetail> {
        self.authorize(caller, Action::KeyCreate, name.as_str())?;
        self.keys().check_free(name)?;
        let requested = caller
            .event(Action::KeyCreate.name(), name.as_str(), Outcome::Requested)
            .with("spec", spec);
        let record = self.change(
            requested,
            || self.keys().create(name, spec),
            |r, e| e.with("key_id", &r.versions[0].key_id),
        )?;
        self.detail(record)
    }

    /// Imports the one private key of a PKCS#12 file as version 1 of a new key. The file must
    /// have a MAC that `password` verifies; the key goes into the token sensitive and
    /// non-extractable, is recorded as imported (never as generated in the token), and the
    /// software copies Signet made are wiped when this returns.
    pub fn import_key(
        &self,
        caller: &Caller,
        name: &KeyName,
        p12: &[u8],
        password: &str,
    ) -> Result<KeyDetail> {
        self.authorize(caller, Action::KeyImport, name.as_str())?;
        self.keys().check_free(name)?;
        let imported = signet_pki::pkcs12::read(p12, password).map_err(Error::Pki)?;
        let mut requested = caller
            .event(Action::KeyImport.name(), name.as_str(), Outcome::Requested)
            .with("spec", imported.key.spec())
            .with("origin", "imported")
            .with("source_sha256", sha256_hex(p12));
        if let Some(cert) = &imported.certificate {
            requested = requested.with("certificate_sha256", sha256_hex(cert));
        }
        let record = self.change(
            requested,
            || self.keys().import(name, &imported.key),
            |r, e| e.with("key_id", &r.versions[0].key_id),
        )?;
        drop(imported);
        self.detail(record)
    }

    /// Runs a key change of `action` between its records.
    fn manage_key(
        &self,
        caller: &Caller,
        action: Action,
        name: &str,
        details: &[(&str, String)],
        op: impl FnOnce(&Keys<'_>) -> Result<KeyRecord>,
    ) -> Result<KeyDetail> {
        self.authorize(caller, action, name)?;
        let keys = self.keys();
        keys.get(name)?;
        let mut requested = caller.event(action.name(), name, Outcome::Requested);
        for (k, v) in details {
            requested = requested.with(k, v);
        }
        let record = self.change(
            requested,
            || op(&keys),
            |r, e| e.with("primary_version", r.primary),
        )?;
        self.detail(record)
    }

    /// Adds a version and makes it primary.
    pub fn rotate_key(&self, caller: &Caller, name: &str) -> Result<KeyDetail> {
        self.manage_key(caller, Action::KeyRotate, name, &[], |k| k.rotate(name))
    }

    /// Enables or disables a version.
    pub fn set_version_state(
        &self,
        caller: &Caller,
        name: &str,
        version: u32,
        enabled: bool,
    ) -> Result<KeyDetail> {
        let action = if enabled {
            Action::KeyEnable
        } else {
            Action::KeyDisable
        };
        self.manage_key(
            caller,
            action,
            name,
            &[("version", version.to_string())],
            |k| k.set_state(name, version, enabled),
        )
    }

    /// Schedules destruction after `days`.
    pub fn schedule_key_deletion(
        &self,
        caller: &Caller,
        name: &str,
        days: u32,
    ) -> Result<KeyDetail> {
        self.authorize(caller, Action::KeyScheduleDeletion, name)?;
        Keys::check_pending_days(days)?;
        self.manage_key(
            caller,
            Action::KeyScheduleDeletion,
            name,
            &[("pending_days", days.to_string())],
            |k| k.schedule_deletion(name, days),
        )
    }

    /// Cancels a scheduled destruction.
    pub fn cancel_key_deletion(&self, caller: &Caller, name: &str) -> Result<KeyDetail> {
        self.manage_key(caller, Action::KeyCancelDeletion, name, &[], |k| {
            k.cancel_deletion(name)
        })
    }

    /// Destroys every version in the token now, and forgets the key (operator), or keeps the
    /// record with every version marked destroyed (housekeeping).
    pub fn destroy_key(
        &self,
        caller: &Caller,
        name: &str,
        forget: bool,
        trigger: &str,
    ) -> Result<KeyRecord> {
        self.authorize(caller, Action::KeyDestroy, name)?;
        let keys = self.keys();
        keys.get(name)?;
        let requested = caller
            .event(Action::KeyDestroy.name(), name, Outcome::Requested)
            .with("trigger", trigger);
        self.change(
            requested,
            || keys.destroy(name, forget),
            |r, e| e.with("versions", r.versions.len()),
        )
    }

    /// The audit record of one signature.
    fn sign_event(
        caller: &Caller,
        name: &str,
        item: &SignItem,
        result: &Result<Signature>,
    ) -> Event {
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
                let event = event.with("error", crate::error::classify(e).1);
                match item.algorithm {
                    Some(a) => event.with("algorithm", a),
                    None => event,
                }
            }
        }
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

    /// Signs one input. The signature is returned only once its record is durable.
    pub fn sign(&self, caller: &Caller, name: &str, item: &SignItem) -> Result<Signature> {
        self.sign_deferred(caller, name, item).wait()
    }

    /// Signs one input; the signature waits for its record (see [`Deferred`]).
    pub fn sign_deferred(
        &self,
        caller: &Caller,
        name: &str,
        item: &SignItem,
    ) -> Deferred<Signature> {
        if let Err(e) = self.authorize(caller, Action::KeySign, name) {
            return Deferred::ready(Err(e));
        }
        let result = self.keys().get(name).and_then(|r| self.sign_one(&r, item));
        let pending = self
            .audit
            .submit(vec![Self::sign_event(caller, name, item, &result)]);
        Deferred::new(result, pending)
    }

    /// Signs each input on its own (a bad item gets its own error); every record is durable,
    /// with one sync for the lot, before any signature is returned.
    pub fn sign_batch(
        &self,
        caller: &Caller,
        name: &str,
        items: Vec<Result<SignItem>>,
    ) -> Result<Vec<Result<Signature>>> {
        self.sign_batch_deferred(caller, name, items).wait()
    }

    /// As [`Service::sign_batch`], deferred.
    pub fn sign_batch_deferred(
        &self,
        caller: &Caller,
        name: &str,
        items: Vec<Result<SignItem>>,
    ) -> Deferred<Vec<Result<Signature>>> {
        if let Err(e) = self.authorize(caller, Action::KeySignBatch, name) {
            return Deferred::ready(Err(e));
        }
        let max = self.config.server.sign_batch_max;
        if items.is_empty() || items.len() > max {
            return Deferred::ready(Err(Error::BadRequest(format!(
                "items must hold 1..={max} entries, got {}",
                items.len()
            ))));
        }
        // One lookup of the key for the whole batch.
        let record = self.keys().get(name);
        let mut results = Vec::with_capacity(items.len());
        let mut events = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let result = match item {
                Ok(item) => {
                    let result = match &record {
                        Ok(r) => self.sign_one(r, &item),
                        Err(e) => Err(Error::NotFound(e.to_string())),
                    };
                    events.push(
                        Self::sign_event(caller, name, &item, &result).with("batch_index", index),
                    );
                    result
                }
                Err(e) => {
                    self.metrics.sign("unknown", false);
                    Err(e)
                }
            };
            results.push(result);
        }
        let pending = self.audit.submit(events);
        Deferred::new(Ok(results), pending)
    }

    /// Checks a signature. Disabled versions still verify.
    pub fn verify(&self, caller: &Caller, name: &str, v: &VerifyItem) -> Result<(bool, u32)> {
        self.verify_deferred(caller, name, v).wait()
    }

    /// As [`Service::verify`], deferred.
    pub fn verify_deferred(
        &self,
        caller: &Caller,
        name: &str,
        v: &VerifyItem,
    ) -> Deferred<(bool, u32)> {
        if let Err(e) = self.authorize(caller, Action::KeyVerify, name) {
            return Deferred::ready(Err(e));
        }
        let result = self.keys().verify(
            name,
            v.item.version,
            v.item.algorithm,
            v.item.sign_input(),
            &v.signature,
            v.item.format,
        );
        let mut event = caller
            .event(
                Action::KeyVerify.name(),
                name,
                if result.is_ok() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                },
            )
            .with("input_sha256", sha256_hex(&v.item.input));
        if let Ok((valid, version)) = &result {
            event = event.with("valid", valid).with("version", version);
        }
        let pending = self.audit.submit(vec![event]);
        Deferred::new(result, pending)
    }
}
