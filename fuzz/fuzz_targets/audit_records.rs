//! What `audit verify` reads: lines of a log (parsed as records where they parse) walked as a
//! chain, with checkpoints checked against a key.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use signet::domain::audit::{verify_chain, AuditRecord, ChainHead};

fn spki() -> &'static [u8] {
    static SPKI: OnceLock<Vec<u8>> = OnceLock::new();
    SPKI.get_or_init(|| {
        // A fixed P-256 public key (the point is not secret, and need not match anything).
        let mut point = vec![0x04];
        point.extend([0x11u8; 64]);
        signet_hsm::PublicKey::from_ec_point(signet_hsm::KeySpec::EcP256, &point)
            .map(|k| k.spki_der())
            .unwrap_or_default()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let records: Vec<Result<AuditRecord, String>> = text
        .lines()
        .map(|l| serde_json::from_str::<AuditRecord>(l).map_err(|e| e.to_string()))
        .collect();
    for r in records.iter().flatten() {
        let _ = r.compute_hash();
    }
    let head = serde_json::from_slice::<ChainHead>(data).ok();
    let _ = verify_chain(records, spki(), head.as_ref());
});
