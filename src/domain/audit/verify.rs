//! Verification: walks records in order and names the first one that breaks the chain.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::checkpoint_message;
use crate::store::audit::{AuditRecord, ChainHead, CHECKPOINT, GENESIS};

/// Where verification stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first bad sequence number.
    pub seq: u64,
    /// Why.
    pub reason: String,
}

/// What a successful verification saw.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Records checked.
    pub records: u64,
    /// Checkpoint signatures checked.
    pub checkpoints: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Records after the last checkpoint (covered by the chain, not yet by a signature).
    pub unsigned_tail: u64,
}

/// Walks records in order: sequence without gaps, each hash right, each `prev_hash` the previous
/// hash, each checkpoint's signature valid for the head it names (P-256 SPKI `public_key`), and,
/// when given, a head known from elsewhere (a checkpoint the log must still contain) present.
pub fn verify_chain(
    records: impl IntoIterator<Item = std::result::Result<AuditRecord, String>>,
    public_key_spki: &[u8],
    known_head: Option<&ChainHead>,
) -> Result<VerifyReport, Break> {
    let point = spki_point(public_key_spki).map_err(|e| Break { seq: 0, reason: e })?;
    let verifier =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
    let mut report = VerifyReport::default();
    let mut prev_hash = GENESIS.to_string();
    let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
    for (expected, record) in (1u64..).zip(records) {
        let record = record.map_err(|reason| Break {
            seq: expected,
            reason,
        })?;
        let brk = |reason: String| Break {
            seq: record.seq,
            reason,
        };
        if record.seq != expected {
            return Err(Break {
                seq: expected,
                reason: format!(
                    "record {expected} is missing or out of order (found {} there)",
                    record.seq
                ),
            });
        }
        if record.prev_hash != prev_hash {
            return Err(brk(
                "prev_hash does not match the previous record's hash".into()
            ));
        }
        if record.compute_hash() != record.hash {
            return Err(brk("content does not match its hash (record edited)".into()));
        }
        if record.action == CHECKPOINT {
            let head_seq: u64 = record
                .details
                .get("head_seq")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| brk("checkpoint without head_seq".into()))?;
            let head_hash = record.details.get("head_hash").cloned().unwrap_or_default();
            let expected_hash = if head_seq == 0 {
                Some(GENESIS.to_string())
            } else {
                hashes.get(&head_seq).cloned()
            };
            if expected_hash.as_deref() != Some(head_hash.as_str()) {
                return Err(brk(format!(
                    "checkpoint names head {head_seq} with a hash the chain does not have"
                )));
            }
            let signature = record
                .details
                .get("signature")
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| brk("checkpoint without signature".into()))?;
            if verifier
                .verify(&checkpoint_message(head_seq, &head_hash), &signature)
                .is_err()
            {
                return Err(brk(
                    "checkpoint signature does not verify with the audit key".into(),
                ));
            }
            report.checkpoints += 1;
            report.unsigned_tail = 0;
        } else {
            report.unsigned_tail += 1;
        }
        hashes.insert(record.seq, record.hash.clone());
        prev_hash = record.hash.clone();
        report.records += 1;
        report.last_seq = record.seq;
    }
    if let Some(head) = known_head {
        if head.seq > report.last_seq {
            return Err(Break {
                seq: report.last_seq + 1,
                reason: format!(
                    "the log ends at {} but a checkpoint kept outside it says {} (tail truncated)",
                    report.last_seq, head.seq
                ),
            });
        }
        let have = if head.seq == 0 {
            Some(GENESIS.to_string())
        } else {
            hashes.get(&head.seq).cloned()
        };
        if have.as_deref() != Some(head.hash.as_str()) {
            return Err(Break {
                seq: head.seq,
                reason: "record differs from the checkpoint kept outside the log (rewritten)"
                    .into(),
            });
        }
    }
    Ok(report)
}

fn spki_point(spki: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki)
        .map_err(|e| format!("audit public key: {e}"))?;
    Ok(info.subject_public_key.data.to_vec())
}
