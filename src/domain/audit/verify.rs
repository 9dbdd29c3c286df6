//! Verification: walks records in order and names the first one that breaks the chain.

use std::collections::VecDeque;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::checkpoint_message;
use crate::store::audit::{AuditRecord, ChainHead, CHECKPOINT, GENESIS};

/// The hashes kept for checkpoints to name. A checkpoint names the head just before it, or a few
/// records before it when several nodes append at once, so a window of the latest hashes
/// is enough, and verification's memory stays bounded however long the log.
pub const WINDOW: usize = 16_384;

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
    /// The first checkpoint's sequence number.
    pub first_checkpoint: Option<u64>,
    /// The last checkpoint's sequence number.
    pub last_checkpoint: Option<u64>,
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
    // The latest hashes, oldest first, with consecutive sequence numbers.
    let mut recent: VecDeque<(u64, String)> = VecDeque::with_capacity(WINDOW);
    let mut known_hash: Option<String> = None;
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
            let expected_hash = match recent.front() {
                _ if head_seq == 0 => Some(GENESIS),
                Some((first, _)) if head_seq >= *first => usize::try_from(head_seq - first)
                    .ok()
                    .and_then(|i| recent.get(i))
                    .map(|(_, hash)| hash.as_str()),
                Some(_) if head_seq < record.seq => {
                    return Err(brk(format!(
                        "checkpoint names head {head_seq}, more than {WINDOW} records before it"
                    )));
                }
                _ => None,
            };
            if expected_hash != Some(head_hash.as_str()) {
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
            report.first_checkpoint.get_or_insert(record.seq);
            report.last_checkpoint = Some(record.seq);
        } else {
            report.unsigned_tail += 1;
        }
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back((record.seq, record.hash.clone()));
        if known_head.is_some_and(|head| head.seq == record.seq) {
            known_hash = Some(record.hash.clone());
        }
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
            known_hash
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::audit::chain;
    use crate::store::{Event, Outcome};
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    /// A P-256 key and its SubjectPublicKeyInfo.
    fn key() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // The fixed DER header of an id-ecPublicKey / prime256v1 SPKI, then the point.
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(key.public_key().as_ref());
        (key, spki)
    }

    struct Log {
        key: EcdsaKeyPair,
        records: Vec<AuditRecord>,
    }

    impl Log {
        fn head(&self) -> ChainHead {
            self.records
                .last()
                .map_or_else(ChainHead::genesis, |r| ChainHead {
                    seq: r.seq,
                    hash: r.hash.clone(),
                })
        }

        fn push(&mut self, event: Event) {
            let record = chain(&self.head(), vec![event], "t", None).remove(0);
            self.records.push(record);
        }

        fn record(&mut self, n: usize) {
            self.push(Event::new(
                "p",
                "-",
                "key.sign",
                &format!("t{n}"),
                Outcome::Ok,
            ));
        }

        /// A checkpoint signing the record at `head_seq`.
        fn checkpoint(&mut self, head_seq: u64) {
            let hash = self.records[head_seq as usize - 1].hash.clone();
            let rng = ring::rand::SystemRandom::new();
            let signature = self
                .key
                .sign(&rng, &checkpoint_message(head_seq, &hash))
                .unwrap();
            self.push(
                Event::new("signet", "-", CHECKPOINT, "audit", Outcome::Ok)
                    .with("head_seq", head_seq)
                    .with("head_hash", &hash)
                    .with("signature", STANDARD.encode(signature.as_ref())),
            );
        }

        fn verify(&self, known: Option<&ChainHead>, spki: &[u8]) -> Result<VerifyReport, Break> {
            verify_chain(self.records.iter().cloned().map(Ok), spki, known)
        }
    }

    /// A log longer than the window of kept hashes verifies (checkpoints naming the record
    /// before them, or a few before), and so does a head kept outside it from the start of
    /// the log; a checkpoint naming a head beyond the window, or an outside head that differs,
    /// is a break.
    #[test]
    fn a_log_longer_than_the_window_verifies_with_bounded_memory() {
        let (key, spki) = key();
        let mut log = Log {
            key,
            records: Vec::new(),
        };
        let total = WINDOW + 3_000;
        for n in 0..total {
            log.record(n);
            if n % 2_000 == 1_999 {
                let head = log.head().seq;
                // As when other nodes appended between reading the head and the checkpoint.
                log.record(n);
                log.record(n);
                log.checkpoint(head);
            }
        }
        log.checkpoint(log.head().seq);
        let early = ChainHead {
            seq: 5,
            hash: log.records[4].hash.clone(),
        };
        let report = log.verify(Some(&early), &spki).unwrap();
        assert_eq!(report.records, log.records.len() as u64);
        assert_eq!(report.checkpoints, (total / 2_000 + 1) as u64);
        assert_eq!(report.unsigned_tail, 0);

        let rewritten = ChainHead {
            seq: 5,
            hash: log.records[5].hash.clone(),
        };
        let broken = log.verify(Some(&rewritten), &spki).unwrap_err();
        assert_eq!(broken.seq, 5);
        assert!(broken.reason.contains("rewritten"), "{}", broken.reason);

        let far = log.head().seq - WINDOW as u64 - 1;
        log.checkpoint(far);
        let broken = log.verify(None, &spki).unwrap_err();
        assert_eq!(broken.seq, log.head().seq);
        assert!(
            broken.reason.contains("more than 16384 records before it"),
            "{}",
            broken.reason
        );
    }
}
