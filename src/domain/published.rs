//! The files the publication listener serves, as last read from the store. Relying parties
//! nobody enrolled fetch them as often as they like; with the files kept here for
//! [`FRESH`], a crowd of them costs the store one read per interval instead of one per
//! fetch. A change this node makes to what is published drops the copy at once, so its own
//! revocations are in the next CRL fetched; another node's reach this node's listener within
//! [`FRESH`] (the CRLs are served with a 60-second cache lifetime anyway).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::Result;

/// How long a read of the published files is served before the store is read again.
pub const FRESH: Duration = Duration::from_secs(5);

/// Published files by name (DER).
pub type Files = Arc<BTreeMap<String, Vec<u8>>>;

/// The copy, and one reader at a time to refresh it.
#[derive(Debug, Default)]
pub struct PublishedFiles {
    state: Mutex<State>,
    refresh: Mutex<()>,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every change to what is published: a read that began before a change is
    /// not kept after it.
    generation: u64,
    copy: Option<(Instant, Files)>,
}

impl PublishedFiles {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self) -> Option<Files> {
        match &self.state().copy {
            Some((at, files)) if at.elapsed() < FRESH => Some(files.clone()),
            _ => None,
        }
    }

    /// The files, from the copy while it is fresh, else from `read` (one caller reads; the
    /// others wait for its result). `read` may change what is published (a CRL past half its
    /// life is signed anew), which [`changed`](Self::changed) records as usual.
    pub fn get(&self, read: impl FnOnce() -> Result<BTreeMap<String, Vec<u8>>>) -> Result<Files> {
        if let Some(files) = self.fresh() {
            return Ok(files);
        }
        let _one = self.refresh.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(files) = self.fresh() {
            return Ok(files);
        }
        let generation = self.state().generation;
        let files = Arc::new(read()?);
        let mut state = self.state();
        if state.generation == generation {
            state.copy = Some((Instant::now(), files.clone()));
        }
        Ok(files)
    }

    /// What is published has changed on this node: the next fetch reads the store.
    pub fn changed(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.copy = None;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn one(name: &str, der: &[u8]) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(name.to_string(), der.to_vec())])
    }

    #[test]
    fn read_once_while_fresh_and_again_after_a_change() {
        let published = PublishedFiles::default();
        let reads = Cell::new(0);
        let read = |der: &'static [u8]| {
            let reads = &reads;
            move || {
                reads.set(reads.get() + 1);
                Ok(one("root.crl", der))
            }
        };
        assert_eq!(published.get(read(b"1")).unwrap()["root.crl"], b"1");
        assert_eq!(published.get(read(b"2")).unwrap()["root.crl"], b"1");
        assert_eq!(reads.get(), 1);
        published.changed();
        assert_eq!(published.get(read(b"3")).unwrap()["root.crl"], b"3");
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let published = PublishedFiles::default();
        let files = published
            .get(|| {
                // A revocation lands while the old CRL is being read.
                published.changed();
                Ok(one("root.crl", b"old"))
            })
            .unwrap();
        assert_eq!(files["root.crl"], b"old");
        assert_eq!(
            published.get(|| Ok(one("root.crl", b"new"))).unwrap()["root.crl"],
            b"new"
        );
    }
}
