//! The aggregates, written once: keys, certificates, principals, token revocations and the
//! small service records, as JSON values over any [`RecordEngine`]. The engines (sled,
//! PostgreSQL) only move bytes; the record shapes, the conflict and not-found answers and
//! the counters' names live here.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::engine::{Kind, RecordEngine, CERTS, CERTS_BY_KEY, KEYS, META, PRINCIPALS, REVOKED};
use super::{
    AuditKeyRecord, CaRecord, CertRecord, CertStore, ChainHead, Change, CrlRecord, KeyRecord,
    KeyStore, MetaStore, Principal, PrincipalStore, RevokedToken, Store, TokenStore,
};
use crate::error::{Error, Result, StoreError};

/// The store over one engine.
#[derive(Debug)]
pub struct Records<E> {
    engine: E,
}

impl<E: RecordEngine> Records<E> {
    /// The store over `engine`.
    pub fn new(engine: E) -> Self {
        Records { engine }
    }

    /// The engine.
    pub fn inner(&self) -> &E {
        &self.engine
    }

    fn get<T: DeserializeOwned>(&self, kind: Kind, key: &str) -> Result<Option<T>> {
        self.engine
            .get(kind, key)?
            .map(|bytes| decode(kind, key, &bytes))
            .transpose()
    }

    fn all<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<(String, T)>> {
        self.engine
            .all(kind)?
            .into_iter()
            .map(|(key, bytes)| {
                let value = decode(kind, &key, &bytes)?;
                Ok((key, value))
            })
            .collect()
    }

    fn values<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>> {
        Ok(self.all(kind)?.into_iter().map(|(_, v)| v).collect())
    }

    fn put<T: Serialize>(&self, kind: Kind, key: &str, value: &T) -> Result<()> {
        self.engine.put(kind, key, encode(value)?, None)
    }

    /// Read-modify-write through the engine's compare-and-swap; `missing` when absent.
    fn update<T: Serialize + DeserializeOwned>(
        &self,
        kind: Kind,
        key: &str,
        missing: impl FnOnce() -> Error,
        change: Change<'_, T>,
    ) -> Result<T> {
        let mut applied = None;
        let written = self.engine.update(kind, key, &mut |bytes| {
            let mut value: T = decode(kind, key, bytes)?;
            change(&mut value)?;
            let new = encode(&value)?;
            applied = Some(value);
            Ok(new)
        })?;
        match (written, applied) {
            (Some(_), Some(value)) => Ok(value),
            _ => Err(missing()),
        }
    }
}

fn decode<T: DeserializeOwned>(kind: Kind, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::Store(StoreError::Corrupt {
            table: kind,
            key: key.to_string(),
            detail: e.to_string(),
        })
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(value)?)
}

/// The counter of CRL numbers.
const CRL_NUMBER: &str = "crl_number";

/// The counter of the latest `exp` signed by a token-key version.
fn token_expiry_counter(version: u32) -> String {
    format!("token_last_exp:{version}")
}

impl<E: RecordEngine> KeyStore for Records<E> {
    fn key(&self, name: &str) -> Result<Option<KeyRecord>> {
        match super::prefetch::take(KEYS, name) {
            Some(ahead) => ahead.map(|b| decode(KEYS, name, &b)).transpose(),
            None => self.get(KEYS, name),
        }
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.values(KEYS)
    }

    fn insert_key(&self, record: &KeyRecord) -> Result<()> {
        if self
            .engine
            .insert_new(KEYS, &record.name, encode(record)?)?
        {
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
        self.engine.remove(KEYS, name)
    }
}

impl<E: RecordEngine> CertStore for Records<E> {
    fn ca(&self) -> Result<Option<CaRecord>> {
        self.get(META, "ca")
    }

    fn put_ca(&self, record: &CaRecord) -> Result<()> {
        self.put(META, "ca", record)
    }

    fn cert(&self, serial: &str) -> Result<Option<CertRecord>> {
        self.get(CERTS, &serial.to_ascii_lowercase())
    }

    fn certs(&self) -> Result<Vec<CertRecord>> {
        self.values(CERTS)
    }

    fn put_cert(&self, record: &CertRecord) -> Result<()> {
        // The index first: a crash between the two leaves a serial listed with no record
        // (skipped when read), never a record the index misses.
        self.index_cert(record)?;
        self.put(CERTS, &record.serial, record)
    }

    fn certs_of_keys(&self, spkis: &[Vec<u8>]) -> Result<Option<Vec<Vec<CertRecord>>>> {
        if self.engine.get(META, CERT_INDEX)?.is_none() {
            return Ok(None);
        }
        let mut all = Vec::with_capacity(spkis.len());
        for spki in spkis {
            let serials: Vec<String> = self
                .get(CERTS_BY_KEY, &key_digest(spki))?
                .unwrap_or_default();
            let mut certs = Vec::with_capacity(serials.len());
            for serial in serials {
                certs.extend(self.cert(&serial)?);
            }
            all.push(certs);
        }
        Ok(Some(all))
    }

    fn build_cert_index(&self) -> Result<usize> {
        if self.engine.get(META, CERT_INDEX)?.is_some() {
            return Ok(0);
        }
        // Grouped first, so each key's list is written once (a key may have many).
        let certs = self.certs()?;
        let mut by_key: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for cert in &certs {
            if let Ok(spki) = signet_pki::spki_of(&cert.der) {
                by_key
                    .entry(key_digest(&spki))
                    .or_default()
                    .push(cert.serial.to_ascii_lowercase());
            }
        }
        for (key, serials) in &by_key {
            self.list_serials(key, serials)?;
        }
        self.put(META, CERT_INDEX, &serde_json::json!({"version": 1}))?;
        Ok(certs.len())
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
        self.put(META, "crl", record)
    }

    fn arl(&self) -> Result<Option<CrlRecord>> {
        self.get(META, "arl")
    }

    fn put_arl(&self, record: &CrlRecord) -> Result<()> {
        self.put(META, "arl", record)
    }

    fn previous_crl(&self, intermediate: &str) -> Result<Option<CrlRecord>> {
        self.get(META, &format!("crl:{}", intermediate.to_ascii_lowercase()))
    }

    fn put_previous_crl(&self, intermediate: &str, record: &CrlRecord) -> Result<()> {
        let key = format!("crl:{}", intermediate.to_ascii_lowercase());
        self.put(META, &key, record)
    }

    fn next_crl_number(&self) -> Result<u64> {
        let n = self.engine.counter(CRL_NUMBER, 1, false)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn raise_crl_number(&self, at_least: u64) -> Result<()> {
        let at_least = i64::try_from(at_least).unwrap_or(i64::MAX);
        self.engine.counter(CRL_NUMBER, at_least, true).map(|_| ())
    }
}

/// The META record saying the certificate index is complete.
const CERT_INDEX: &str = "cert_index";

/// The index key of a public key: the hex SHA-256 of its SubjectPublicKeyInfo.
fn key_digest(spki: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(spki))
}

impl<E: RecordEngine> Records<E> {
    /// Lists `record`'s serial under its public key (once; a certificate whose DER does not
    /// parse has no key to list it under).
    fn index_cert(&self, record: &CertRecord) -> Result<()> {
        let Ok(spki) = signet_pki::spki_of(&record.der) else {
            return Ok(());
        };
        self.list_serials(&key_digest(&spki), &[record.serial.to_ascii_lowercase()])
    }

    /// Adds `serials` to the list at index key `key` (each once).
    fn list_serials(&self, key: &str, serials: &[String]) -> Result<()> {
        // Update the list, or make it; a list another writer made meanwhile is updated on the
        // next turn (lists are never removed).
        for _ in 0..3 {
            let mut missing = false;
            let listed = self.update(
                CERTS_BY_KEY,
                key,
                || {
                    missing = true;
                    Error::NotFound(key.to_string())
                },
                &mut |listed: &mut Vec<String>| {
                    for serial in serials {
                        if !listed.contains(serial) {
                            listed.push(serial.clone());
                        }
                    }
                    Ok(())
                },
            );
            match listed {
                Ok(_) => return Ok(()),
                Err(_) if missing => {
                    let mut unique = serials.to_vec();
                    unique.dedup();
                    if self
                        .engine
                        .insert_new(CERTS_BY_KEY, key, encode(&unique)?)?
                    {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Store(StoreError::Engine(format!(
            "the certificate index entry {key} kept changing"
        ))))
    }
}

impl<E: RecordEngine> PrincipalStore for Records<E> {
    fn principal(&self, name: &str) -> Result<Option<Principal>> {
        self.get(PRINCIPALS, name)
    }

    fn principals(&self) -> Result<Vec<Principal>> {
        self.values(PRINCIPALS)
    }

    fn put_principal(&self, principal: &Principal) -> Result<()> {
        self.put(PRINCIPALS, &principal.name, principal)
    }

    fn remove_principal(&self, name: &str) -> Result<bool> {
        self.engine.remove(PRINCIPALS, name)
    }
}

impl<E: RecordEngine> TokenStore for Records<E> {
    fn revoke_token(&self, jti: &str, record: RevokedToken) -> Result<()> {
        self.engine
            .put(REVOKED, jti, encode(&record)?, Some(record.exp))
    }

    fn token_revoked(&self, jti: &str) -> Result<bool> {
        Ok(self.engine.get(REVOKED, jti)?.is_some())
    }

    fn revoked_tokens(&self) -> Result<Vec<(String, RevokedToken)>> {
        self.all(REVOKED)
    }

    fn prune_revoked_tokens(&self, at: i64) -> Result<usize> {
        // A record that no longer reads is dropped too: it can only be an expired leftover.
        self.engine.prune_expired(REVOKED, at, &|bytes| {
            serde_json::from_slice::<RevokedToken>(bytes).map_or(true, |r| r.exp <= at)
        })
    }

    fn note_token_expiry(&self, version: u32, exp: i64) -> Result<()> {
        self.engine
            .counter(&token_expiry_counter(version), exp.max(0), true)
            .map(|_| ())
    }

    fn token_expiry(&self, version: u32) -> Result<i64> {
        self.engine.counter_value(&token_expiry_counter(version))
    }
}

impl<E: RecordEngine> MetaStore for Records<E> {
    fn audit_key(&self) -> Result<Option<AuditKeyRecord>> {
        self.get(META, "audit_key")
    }

    fn put_audit_key(&self, record: &AuditKeyRecord) -> Result<()> {
        self.put(META, "audit_key", record)
    }

    fn audit_anchor(&self) -> Result<Option<ChainHead>> {
        self.get(META, "audit_anchor")
    }

    fn put_audit_anchor(&self, head: &ChainHead) -> Result<()> {
        self.put(META, "audit_anchor", head)
    }
}

impl<E: RecordEngine> Store for Records<E> {
    fn engine(&self) -> &'static str {
        self.engine.name()
    }

    fn check_writable(&self) -> Result<()> {
        self.engine.check_writable()
    }

    fn caller_records(
        &self,
        serial: &str,
        principal: &str,
        key: Option<&str>,
    ) -> Result<(Option<CertRecord>, Option<Principal>)> {
        let serial = serial.to_ascii_lowercase();
        let mut wanted = vec![(CERTS, serial.as_str()), (PRINCIPALS, principal)];
        wanted.extend(key.map(|k| (KEYS, k)));
        let mut found = self.engine.get_many_cached(&wanted)?.into_iter();
        let (cert, who) = (found.next().flatten(), found.next().flatten());
        if let Some(key) = key {
            super::prefetch::keep(KEYS, key, found.next().flatten());
        }
        Ok((
            cert.map(|b| decode(CERTS, &serial, &b)).transpose()?,
            who.map(|b| decode(PRINCIPALS, principal, &b)).transpose()?,
        ))
    }

    fn exclusive(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool> {
        self.engine.exclusive(name, f)
    }
}
