//! A record read ahead with the caller's: a request that only reads one key (a signature, a
//! verification) has that key's record fetched in the same round trip as its caller's
//! certificate and principal, and its first read of the key takes it from here instead of
//! asking the database again. The slot belongs to the thread doing the request's work, for
//! that work only ([`scope`]); it is taken by the first read and never serves a second.

use std::cell::RefCell;

use super::engine::{Bytes, Kind};

thread_local! {
    static AHEAD: RefCell<Option<(Kind, String, Option<Bytes>)>> = const { RefCell::new(None) };
}

/// Runs `f` with an empty slot, and empties it again afterwards: nothing read ahead for one
/// request is seen by another on the same thread.
pub fn scope<T>(f: impl FnOnce() -> T) -> T {
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            AHEAD.with(|a| a.borrow_mut().take());
        }
    }
    AHEAD.with(|a| a.borrow_mut().take());
    let _clear = Clear;
    f()
}

/// Keeps what was read ahead at (`kind`, `key`) (`None`: there is no such record).
pub(super) fn keep(kind: Kind, key: &str, value: Option<Bytes>) {
    AHEAD.with(|a| *a.borrow_mut() = Some((kind, key.to_string(), value)));
}

/// What was read ahead at (`kind`, `key`), once; `None` when nothing was.
pub(super) fn take(kind: Kind, key: &str) -> Option<Option<Bytes>> {
    AHEAD.with(|a| {
        let mut slot = a.borrow_mut();
        match slot.as_ref() {
            Some((k, name, _)) if *k == kind && name == key => slot.take().map(|(_, _, v)| v),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_ahead_serves_one_read_of_its_own_record_within_its_scope() {
        scope(|| {
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
            scope(|| take("keys", "left")),
            None,
            "seen by the next scope"
        );
    }
}
