//! Versioned schema migrations, applied at start in one transaction under an advisory lock,
//! so nodes starting together apply each step once and a failed step leaves nothing half
//! made. A database newer than this binary is refused rather than guessed at.

use sha2::{Digest, Sha256};

use super::{db_error, engine};
use crate::error::Result;
use crate::store::audit::GENESIS;

/// Each step, in order; `signet_schema` records how many are applied. Never edit a step that
/// has shipped: add one.
const MIGRATIONS: &[&str] = &[
    // 1: records (one row per record, JSON, with a version for optimistic updates), counters,
    // and the audit chain with its head row.
    "CREATE TABLE signet_records (
        kind text NOT NULL,
        key text NOT NULL,
        value text NOT NULL,
        version bigint NOT NULL,
        exp bigint,
        PRIMARY KEY (kind, key)
     );
     CREATE INDEX signet_records_exp ON signet_records (kind, exp) WHERE exp IS NOT NULL;
     CREATE TABLE signet_counters (
        name text PRIMARY KEY,
        value bigint NOT NULL
     );
     CREATE TABLE signet_audit (
        seq bigint PRIMARY KEY,
        hash text NOT NULL,
        node text,
        line text NOT NULL
     );
     CREATE TABLE signet_audit_head (
        id int PRIMARY KEY CHECK (id = 1),
        seq bigint NOT NULL,
        hash text NOT NULL
     );",
];

/// The advisory-lock key of a cluster-wide lock name (the first 8 bytes of its SHA-256).
pub fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("signet:{name}"));
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Checks, writing nothing, that the schema is this version's (for read-only opens).
pub async fn check(client: &deadpool_postgres::Object) -> Result<()> {
    let exists: bool = client
        .query_one("SELECT to_regclass('signet_schema') IS NOT NULL", &[])
        .await
        .map_err(db_error)?
        .get(0);
    let applied: i32 = if exists {
        client
            .query_opt("SELECT version FROM signet_schema", &[])
            .await
            .map_err(db_error)?
            .map(|row| row.get(0))
            .unwrap_or(0)
    } else {
        0
    };
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if applied != known {
        return Err(engine(format!(
            "the database schema is version {applied}, this signet's is {known}: start `signet serve` (or any command that changes something) once to migrate it; inspecting commands change nothing"
        )));
    }
    Ok(())
}

/// Brings the schema to this version's.
pub async fn migrate(client: &mut deadpool_postgres::Object) -> Result<()> {
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key("schema")])
        .await
        .map_err(db_error)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS signet_schema (version int NOT NULL)")
        .await
        .map_err(db_error)?;
    let applied: i32 = match tx
        .query_opt("SELECT version FROM signet_schema", &[])
        .await
        .map_err(db_error)?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO signet_schema (version) VALUES (0)", &[])
                .await
                .map_err(db_error)?;
            0
        }
    };
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    if applied > known {
        return Err(engine(format!(
            "the database schema is version {applied}, newer than this signet's {known}: upgrade signet"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        tx.batch_execute(step)
            .await
            .map_err(|e| engine(format!("schema migration {}: {}", i + 1, db_error(e))))?;
        if i == 0 {
            tx.execute(
                "INSERT INTO signet_audit_head (id, seq, hash) VALUES (1, 0, $1)",
                &[&GENESIS],
            )
            .await
            .map_err(db_error)?;
        }
    }
    tx.execute("UPDATE signet_schema SET version = $1", &[&known])
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}
