//! The tamper-evident audit log. Every record carries the SHA-256 of the previous one, so editing,
//! deleting or reordering a record breaks the chain; checkpoints hold the chain head signed by a
//! dedicated audit key in the token. The record model and the journal are in the store layer;
//! here are the writer ([`AuditLog`]), the audit key and verification.

mod anchor;
mod log;
pub mod refusals;
mod verify;

use std::sync::Arc;

use signet_hsm::{Backend, KeyId, KeyRequest, KeyRole, KeySpec};

pub use self::anchor::{first_checkpoint, Anchor, Anchoring, Gap, GapKind, ANCHOR_NAME};
pub use self::log::{Announced, AuditLog, AuditStats, Pending, SERVICE};
pub use self::verify::{verify_chain, Break, VerifyReport};
use crate::error::{Error, Result};
pub use crate::store::audit::{AuditRecord, ChainHead, Event, Outcome, CHECKPOINT, GENESIS};
pub use crate::store::audit_file::{log_lines, read_log, LOG_FILE};
use crate::store::{AuditKeyRecord, Store};

/// The message a checkpoint signs.
pub fn checkpoint_message(head_seq: u64, head_hash: &str) -> Vec<u8> {
    format!("signet-audit-checkpoint\n{head_seq}\n{head_hash}").into_bytes()
}

/// SHA-256 of data, hex (for audited inputs: the digest, never the input).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// The audit key's id, creating the key in the token on first use.
pub fn ensure_audit_key(store: &dyn Store, backend: &Arc<dyn Backend>) -> Result<KeyId> {
    if let Some(rec) = store.audit_key()? {
        return Ok(rec.key_id);
    }
    let created = crate::support::time::now();
    let info = backend.generate(&KeyRequest {
        // Unique even when two deployments share one token and start in the same second.
        label: format!(
            "signet:audit:{created}-{}",
            &crate::support::random::hex_id()?[..8]
        ),
        spec: KeySpec::EcP256,
        role: KeyRole::Audit,
    })?;
    if let Err(e) = store.put_audit_key(&AuditKeyRecord {
        key_id: info.id.clone(),
        created,
    }) {
        let _ = backend.destroy(&info.id);
        return Err(e);
    }
    Ok(info.id)
}

/// The audit public key (SPKI DER) from the token.
pub fn public_key(store: &dyn Store, backend: &dyn Backend) -> Result<Vec<u8>> {
    let rec = store
        .audit_key()?
        .ok_or_else(|| Error::NotFound("no audit key yet (nothing has been audited)".into()))?;
    Ok(backend.public_key(&rec.key_id)?.spki_der())
}
