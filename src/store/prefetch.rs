//! What one request reads ahead, and what it takes from the node's cache.
//!
//! A request that only reads one key (a signature, a verification) has that key's record
//! fetched in the same round trip as its caller's certificate and principal, and its first read
//! of the key takes it from here instead of asking the database again. The slot belongs to the
//! thread doing the request's work, for that work only ([`scope`]); it is taken by the first
//! read and never serves a second.
//!
//! Such a request may also be run on records from the node's cache (a shared database only,
//! see `store::cache`) instead of reading them at all. What it took from the cache is its
//! [`Reliance`]: every audit record the request submits carries it ([`vouch`]), and the
//! journal writes those records as the request's only if the records are unchanged in the
//! database within the same transaction; otherwise the records are written as discarded and the
//! request is run again on fresh reads. A request that relied on the cache and submitted no
//! record (an unrecorded refusal, say) is run again on fresh reads before it is answered
//! ([`scope`] says so), so nothing is ever answered on cached records that nobody checked.

use std::cell::RefCell;
use std::sync::Arc;

use super::engine::{Bytes, Kind};

/// Records a request took from the node's cache instead of the database: (kind, key, the
/// value it used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reliance(pub Vec<(Kind, String, Bytes)>);

#[derive(Default)]
struct Slot {
    ahead: Option<(Kind, String, Option<Bytes>)>,
    /// This request may take records from the node's cache.
    cache: bool,
    /// What it took.
    relied: Option<Arc<Reliance>>,
    /// Whether records carrying `relied` were submitted for checking.
    vouched: bool,
}

thread_local! {
    static SLOT: RefCell<Slot> = RefCell::new(Slot::default());
}

/// Runs `f` with an empty slot, and empties it again afterwards: nothing read ahead for one
/// request is seen by another on the same thread. With `cache`, `f` may be served records from
/// the node's cache. Returns `f`'s result and whether it relied on cached records that no
/// submitted audit record carries (then its result must not be answered: run it again without
/// the cache).
pub fn scope<T>(cache: bool, f: impl FnOnce() -> T) -> (T, bool) {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            SLOT.with(|s| *s.borrow_mut() = Slot::default());
        }
    }
    SLOT.with(|s| {
        *s.borrow_mut() = Slot {
            cache,
            ..Slot::default()
        }
    });
    let _clear = Clear;
    let result = f();
    let unchecked = SLOT.with(|s| {
        let s = s.borrow();
        s.relied.is_some() && !s.vouched
    });
    (result, unchecked)
}

/// Keeps what was read ahead at (`kind`, `key`) (`None`: there is no such record).
pub(super) fn keep(kind: Kind, key: &str, value: Option<Bytes>) {
    SLOT.with(|s| s.borrow_mut().ahead = Some((kind, key.to_string(), value)));
}

/// What was read ahead at (`kind`, `key`), once; `None` when nothing was.
pub(super) fn take(kind: Kind, key: &str) -> Option<Option<Bytes>> {
    SLOT.with(|s| {
        let slot = &mut s.borrow_mut().ahead;
        match slot.as_ref() {
            Some((k, name, _)) if *k == kind && name == key => slot.take().map(|(_, _, v)| v),
            _ => None,
        }
    })
}

/// Whether this thread's request may be served from the node's cache (and has not yet
/// relied on it: one reliance per request).
pub(super) fn may_use_cache() -> bool {
    SLOT.with(|s| {
        let s = s.borrow();
        s.cache && s.relied.is_none()
    })
}

/// Notes that this thread's request uses `records` from the node's cache.
pub(super) fn rely(records: Reliance) {
    SLOT.with(|s| s.borrow_mut().relied = Some(Arc::new(records)));
}

/// What this thread's request took from the node's cache, for the audit records it submits
/// now (they are then written as its own only if those records are unchanged).
pub fn vouch() -> Option<Arc<Reliance>> {
    SLOT.with(|s| {
        let mut s = s.borrow_mut();
        let relied = s.relied.clone();
        s.vouched |= relied.is_some();
        relied
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_ahead_serves_one_read_of_its_own_record_within_its_scope() {
        let ((), _) = scope(false, || {
            keep("keys", "k", Some(b"v".to_vec()));
            assert_eq!(take("keys", "other"), None);
            assert_eq!(take("certs", "k"), None);
            assert_eq!(take("keys", "k"), Some(Some(b"v".to_vec())));
            assert_eq!(take("keys", "k"), None, "served twice");
            keep("keys", "gone", None);
            assert_eq!(take("keys", "gone"), Some(None));
            keep("keys", "left", Some(Vec::new()));
        });
        assert_eq!(
            scope(false, || take("keys", "left")).0,
            None,
            "seen by the next scope"
        );
    }

    #[test]
    fn cached_records_are_answered_only_when_a_submitted_record_carries_them() {
        let reliance = || Reliance(vec![("certs", "01".into(), b"{}".to_vec())]);
        // Not allowed outside a scope that asks for it.
        assert!(!may_use_cache());
        let (allowed, unchecked) = scope(false, may_use_cache);
        assert!(!allowed && !unchecked);
        // Relied on and never vouched for: must be run again.
        let ((), unchecked) = scope(true, || {
            assert!(may_use_cache());
            rely(reliance());
            assert!(!may_use_cache(), "one reliance per request");
        });
        assert!(unchecked);
        // Vouched for by a submitted record: fine.
        let (carried, unchecked) = scope(true, || {
            rely(reliance());
            vouch()
        });
        assert_eq!(carried.as_deref(), Some(&reliance()));
        assert!(!unchecked);
        // Nothing relied on: nothing to vouch for, and nothing left for the next scope.
        let (carried, unchecked) = scope(true, vouch);
        assert!(carried.is_none() && !unchecked);
        assert!(!may_use_cache());
    }
}
