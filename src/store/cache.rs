//! The node's cache of the records every signature reads (the caller's certificate and
//! principal, the key), for a store shared by several nodes. Without it each signature costs a
//! database round trip before the token is even asked; with it the records are taken from
//! memory and checked afterwards, inside the audit transaction the signature needs anyway (see
//! `store::prefetch`): a record another node changed meanwhile (a revocation, a disabled key,
//! a scope taken away) makes the request's records discarded and the request run again on
//! fresh reads, so a change is still in force for every request that starts after its answer.
//! This node's own writes drop the entries they touch at once.

use std::collections::HashMap;
use std::sync::Mutex;

use super::engine::{Bytes, Kind};

/// At most this many records are kept; a full cache starts again empty (the hot set refills it
/// within a few requests).
const CAPACITY: usize = 16_384;

/// Records by (kind, key), as last read from the database.
#[derive(Debug, Default)]
pub struct NodeCache {
    entries: Mutex<HashMap<(Kind, String), Bytes>>,
}

impl NodeCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(Kind, String), Bytes>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every one of `wanted`, or `None` when any is not cached.
    pub fn get_all(&self, wanted: &[(Kind, &str)]) -> Option<Vec<Bytes>> {
        let entries = self.entries();
        wanted
            .iter()
            .map(|(kind, key)| entries.get(&(*kind, (*key).to_string())).cloned())
            .collect()
    }

    /// Keeps what was just read (`None`: no such record, which is not kept).
    pub fn fill(&self, read: &[(Kind, &str)], found: &[Option<Bytes>]) {
        let mut entries = self.entries();
        for ((kind, key), value) in read.iter().zip(found) {
            match value {
                Some(value) => {
                    if entries.len() >= CAPACITY {
                        entries.clear();
                    }
                    entries.insert((*kind, (*key).to_string()), value.clone());
                }
                None => {
                    entries.remove(&(*kind, (*key).to_string()));
                }
            }
        }
    }

    /// Forgets one record (this node is changing it).
    pub fn forget(&self, kind: Kind, key: &str) {
        self.entries().remove(&(kind, key.to_string()));
    }

    /// Forgets every record of a kind.
    pub fn forget_kind(&self, kind: Kind) {
        self.entries().retain(|(k, _), _| *k != kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_only_complete_sets_and_forgets_changes() {
        let cache = NodeCache::default();
        let wanted = [("certs", "01"), ("principals", "app")];
        assert_eq!(cache.get_all(&wanted), None);
        cache.fill(&wanted, &[Some(b"c".to_vec()), None]);
        assert_eq!(
            cache.get_all(&wanted),
            None,
            "a missing record is read again"
        );
        cache.fill(&wanted, &[Some(b"c".to_vec()), Some(b"p".to_vec())]);
        assert_eq!(
            cache.get_all(&wanted),
            Some(vec![b"c".to_vec(), b"p".to_vec()])
        );
        cache.forget("principals", "app");
        assert_eq!(cache.get_all(&wanted), None);
        cache.fill(&wanted[1..], &[Some(b"p".to_vec())]);
        cache.forget_kind("certs");
        assert_eq!(cache.get_all(&wanted[1..]), Some(vec![b"p".to_vec()]));
        assert_eq!(cache.get_all(&wanted[..1]), None);
    }
}
