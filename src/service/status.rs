//! `signet status` and the status operation of the API: what an operator looks at first — the backend and
//! its token, the store, the CA's validity, the CRL, the audit log's head and last checkpoint.

use serde::Serialize;
use x509_parser::prelude::FromDer;

use super::{Action, Caller, Service};
use crate::config::StoreConfig;
use crate::error::Result;
use crate::support::time::{format_time, now};

/// Everything `status` reports. A part that cannot be read says why instead of failing the
/// whole report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// The key store.
    pub backend: Part<BackendStatus>,
    /// The metadata store.
    pub store: StoreStatus,
    /// The CA's certificates (absent before `ca init`).
    pub ca: Part<Option<CaStatus>>,
    /// The current CRL.
    pub crl: Part<Option<CrlStatus>>,
    /// The audit log.
    pub audit: Part<AuditStatus>,
    /// Named keys.
    pub keys: Part<usize>,
}

/// A part of the report, or why it could not be read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Part<T> {
    /// Read.
    Ok(T),
    /// Not readable now.
    Error {
        /// Why.
        error: String,
    },
}

impl<T> Part<T> {
    fn of(result: Result<T>) -> Self {
        match result {
            Ok(v) => Part::Ok(v),
            Err(e) => Part::Error {
                error: crate::error::public_detail(&e),
            },
        }
    }
}

/// The backend and its device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackendStatus {
    /// `pkcs11` or `yubikey`.
    pub kind: String,
    /// Library or driver.
    pub library: String,
    /// Token label.
    pub token: String,
    /// Model and serial.
    pub model: String,
    /// Key specs it makes.
    pub specs: Vec<String>,
    /// Signature algorithms.
    pub algorithms: Vec<String>,
    /// Sessions (or handles) in use.
    pub sessions_open: usize,
    /// The most there can be.
    pub sessions_max: usize,
    /// Backend-specific facts (slot, mechanisms, manufacturer, the token's PKCS#11 URI…).
    pub details: std::collections::BTreeMap<String, String>,
}

/// The metadata store.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoreStatus {
    /// `sled` or `postgres`.
    pub kind: String,
    /// Where it is.
    pub location: String,
    /// Takes durable writes now (false when not probed).
    pub writable: bool,
    /// Whether a probe write was made (an inspecting command makes none).
    pub probed: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_writable: Option<String>,
}

/// One CA certificate.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CertStatus {
    /// Subject.
    pub subject: String,
    /// Serial, hex.
    pub serial: String,
    /// Key spec and origin.
    pub key: String,
    /// End of validity.
    pub not_after: String,
    /// Whole days left (negative once expired).
    pub days_left: i64,
}

/// The CA's three certificates.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaStatus {
    /// The root.
    pub root: CertStatus,
    /// The intermediate.
    pub intermediate: CertStatus,
    /// The server's TLS certificate.
    pub server: CertStatus,
}

/// The current CRL.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CrlStatus {
    /// CRL number.
    pub number: u64,
    /// When it was made.
    pub this_update: String,
    /// When clients expect the next one.
    pub next_update: Option<String>,
}

/// A checkpoint record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointRef {
    /// Its sequence number.
    pub seq: u64,
    /// When it was written; absent when the log does not hold it (records lost, or another
    /// record in its place: see `anchor_gap`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The audit log.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditStatus {
    /// Records in the chain.
    pub head_seq: u64,
    /// The head's hash.
    pub head_hash: String,
    /// The last checkpoint anchored in the token.
    pub last_checkpoint: Option<CheckpointRef>,
    /// Records after it.
    pub after_checkpoint: u64,
    /// Why the log does not hold the checkpoint anchored in the token (records lost, the log
    /// diverged, or the anchor lost), when it does not: writes are refused until
    /// `signet audit reanchor` records the loss.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_gap: Option<String>,
    /// Appends work now.
    pub writable: bool,
    /// Why not, when they do not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_writable: Option<String>,
}

impl Service {
    fn backend_status(&self) -> Result<BackendStatus> {
        let info = self.backend.info()?;
        Ok(BackendStatus {
            kind: info.kind.into(),
            library: info.library,
            token: info.token_label,
            model: info.token_model,
            specs: info.specs.iter().map(|s| s.to_string()).collect(),
            algorithms: info.algorithms.iter().map(|a| a.to_string()).collect(),
            sessions_open: info.sessions_open,
            sessions_max: info.sessions_max,
            details: info.details.into_iter().collect(),
        })
    }

    fn store_status(&self) -> StoreStatus {
        let (kind, location) = match &self.config.store {
            StoreConfig::Sled(s) => (
                "sled",
                s.path_in(&self.config.data_dir).display().to_string(),
            ),
            StoreConfig::Postgres(p) => ("postgres", crate::store::postgres::redacted(&p.url)),
        };
        // One probe write: its outcome gives both fields. An inspecting command writes nothing,
        // so it does not probe.
        let probed = !self.audit.is_read_only();
        let not_writable = if probed {
            self.store.check_writable().err().map(|e| e.to_string())
        } else {
            None
        };
        StoreStatus {
            kind: kind.into(),
            location,
            writable: probed && not_writable.is_none(),
            probed,
            not_writable,
        }
    }

    fn ca_status(&self) -> Result<Option<CaStatus>> {
        let Some(record) = self.store.ca()? else {
            return Ok(None);
        };
        let cert = |key: &crate::store::CaKey| -> Result<CertStatus> {
            let rec = self.store.cert(&key.serial)?.ok_or_else(|| {
                crate::error::Error::Internal("a CA certificate is missing".into())
            })?;
            let origin = match key.origin {
                crate::store::KeyOrigin::Generated => "generated in the token",
                crate::store::KeyOrigin::Imported => "imported",
            };
            Ok(CertStatus {
                subject: rec.subject,
                serial: rec.serial,
                key: format!("{}, {origin}", key.spec),
                not_after: format_time(rec.not_after),
                days_left: (rec.not_after - now()).div_euclid(86_400),
            })
        };
        Ok(Some(CaStatus {
            root: cert(&record.root)?,
            intermediate: cert(&record.intermediate)?,
            server: cert(&record.server)?,
        }))
    }

    fn crl_status(&self) -> Result<Option<CrlStatus>> {
        let Some(crl) = self.store.crl()? else {
            return Ok(None);
        };
        let next_update =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&crl.der)
                .ok()
                .and_then(|(_, c)| c.next_update())
                .map(|t| format_time(t.timestamp()));
        Ok(Some(CrlStatus {
            number: crl.number,
            this_update: format_time(crl.generated),
            next_update,
        }))
    }

    fn audit_status(&self) -> Result<AuditStatus> {
        let head = self.audit.head()?;
        let last = self.anchor.load()?;
        // The anchor names the checkpoint even when the log no longer holds it.
        let last_checkpoint = match &last {
            Some(c) if c.seq > 0 => Some(CheckpointRef {
                seq: c.seq,
                time: self
                    .audit
                    .read(c.seq - 1, 1)?
                    .first()
                    .filter(|r| r.seq == c.seq && r.hash == c.hash)
                    .map(|r| r.time.clone()),
            }),
            _ => None,
        };
        let anchor_gap = self.audit_gap()?.map(|gap| gap.to_string());
        Ok(AuditStatus {
            head_seq: head.seq,
            head_hash: head.hash,
            after_checkpoint: head.seq - last.map(|c| c.seq).unwrap_or(0).min(head.seq),
            last_checkpoint,
            // A log that does not hold its anchor takes no record anywhere (serve refuses to
            // start on it, a running node is fenced) until the loss is recorded.
            writable: anchor_gap.is_none() && self.audit.writable().is_ok(),
            not_writable: match &anchor_gap {
                Some(_) => Some("refused until `signet audit reanchor` records the loss".into()),
                None => self.audit.writable().err(),
            },
            anchor_gap,
        })
    }
}

/// The status report (`signet status`, and the API's status route).
#[derive(Debug, Clone)]
pub struct ReadStatus;

impl super::Operation for ReadStatus {
    type Output = Status;
    fn action(&self) -> Action {
        Action::Status
    }
    fn target(&self) -> String {
        "service".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Status> {
        Ok(Status {
            backend: Part::of(s.backend_status()),
            store: s.store_status(),
            ca: Part::of(s.ca_status()),
            crl: Part::of(s.crl_status()),
            audit: Part::of(s.audit_status()),
            keys: Part::of(s.store.keys().map(|k| k.len())),
        })
    }
}
