//! The record engine: the few primitives every database gives (get, all, put, insert-new,
//! read-modify-write, remove, expiry, counters, a cluster-wide lock), over JSON values kept by
//! kind and key. sled and PostgreSQL are engines; the aggregates (keys, certificates,
//! principals, token revocations, the small service records) are written once over this trait
//! ([`super::aggregates::Records`]).

use crate::error::Result;

/// What kind of record: sled's tree, PostgreSQL's `kind` column.
pub type Kind = &'static str;

/// Key records.
pub const KEYS: Kind = "keys";
/// Certificate records.
pub const CERTS: Kind = "certs";
/// The CA record, the CRL, the audit key and anchor.
pub const META: Kind = "meta";
/// Principals.
pub const PRINCIPALS: Kind = "principals";
/// Revoked token ids.
pub const REVOKED: Kind = "revoked_tokens";
/// The serials of the certificates issued for each public key (by the SHA-256 of its
/// SubjectPublicKeyInfo).
pub const CERTS_BY_KEY: Kind = "certs_by_key";

/// The kinds, for engines that make one place per kind.
pub const KINDS: [Kind; 6] = [KEYS, CERTS, META, PRINCIPALS, REVOKED, CERTS_BY_KEY];

/// A stored value: JSON.
pub type Bytes = Vec<u8>;

/// A change to a stored value (its JSON bytes in, the new bytes out); it may run more than
/// once (when another writer got in first) and must not have side effects.
pub type ByteChange<'a> = &'a mut dyn FnMut(&[u8]) -> Result<Vec<u8>>;

/// What a database engine must do. Every write is durable when it returns.
pub trait RecordEngine: Send + Sync + std::fmt::Debug {
    /// The engine's name (`sled`, `postgres`).
    fn name(&self) -> &'static str;

    /// The value at `key`.
    fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>>;

    /// Several values at once, in the order asked (one round trip where the engine is
    /// remote): what every request reads about its caller.
    fn get_many(&self, wanted: &[(Kind, &str)]) -> Result<Vec<Option<Bytes>>> {
        wanted
            .iter()
            .map(|(kind, key)| self.get(kind, key))
            .collect()
    }

    /// [`RecordEngine::get_many`] for a request that may be served from the node's cache (see
    /// `store::prefetch`): an engine shared by several nodes answers from memory when it holds
    /// every record asked for, and notes what the request relied on. Others read.
    fn get_many_cached(&self, wanted: &[(Kind, &str)]) -> Result<Vec<Option<Bytes>>> {
        self.get_many(wanted)
    }

    /// Every (key, value) of a kind, by key.
    fn all(&self, kind: Kind) -> Result<Vec<(String, Vec<u8>)>>;

    /// Writes a value (new or replacing); `exp` (unix seconds) makes it prunable.
    fn put(&self, kind: Kind, key: &str, value: Vec<u8>, exp: Option<i64>) -> Result<()>;

    /// Writes a value only when the key is free; whether it did.
    fn insert_new(&self, kind: Kind, key: &str, value: Vec<u8>) -> Result<bool>;

    /// Applies `change` to the current value atomically (compare-and-swap, retried when
    /// another writer got in first); the new value, or `None` when there is none.
    fn update(&self, kind: Kind, key: &str, change: ByteChange<'_>) -> Result<Option<Vec<u8>>>;

    /// Removes a value; whether it existed.
    fn remove(&self, kind: Kind, key: &str) -> Result<bool>;

    /// Removes the values of `kind` whose `exp` (given to [`RecordEngine::put`]) is at or
    /// before `at`; how many. An engine that keeps no expiry beside the value asks `expired`.
    fn prune_expired(&self, kind: Kind, at: i64, expired: &dyn Fn(&[u8]) -> bool) -> Result<usize>;

    /// Sets a counter atomically — to at least `value` (`raise`), else adds `value` — and
    /// returns the result.
    fn counter(&self, name: &str, value: i64, raise: bool) -> Result<i64>;

    /// A counter's value (0 before any write).
    fn counter_value(&self, name: &str) -> Result<i64>;

    /// Checks that a durable write works now (readiness).
    fn check_writable(&self) -> Result<()>;

    /// Runs `f` only if no other process sharing this database runs work named `name` now;
    /// whether it ran.
    fn exclusive(&self, name: &str, f: &mut dyn FnMut()) -> Result<bool>;
}
