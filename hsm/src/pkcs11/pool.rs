//! A bounded set of logged-in sessions. Callers block (on a blocking thread, never an async
//! worker) when every session is in use.

use std::sync::{Condvar, Mutex, MutexGuard};

use cryptoki::session::Session;

use crate::error::Result;

pub(crate) struct SessionPool {
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    open: usize,
}

impl SessionPool {
    pub(crate) fn new(max: usize) -> Self {
        SessionPool {
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the state inconsistent (plain pushes and
        // counters), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle session, a new one from `open` while under the bound, or the next one released.
    pub(crate) fn acquire(&self, open: impl FnOnce() -> Result<Session>) -> Result<Session> {
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(session);
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return open().inspect_err(|_| {
                    self.lock().open -= 1;
                    self.freed.notify_one();
                });
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns a session for reuse, or closes it when it is no longer usable.
    pub(crate) fn release(&self, session: Session, healthy: bool) {
        if !healthy {
            self.discard(session);
            return;
        }
        self.lock().idle.push(session);
        self.freed.notify_one();
    }

    /// Closes a session.
    pub(crate) fn discard(&self, session: Session) {
        drop(session);
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    /// Closes every idle session (a `C_CloseAllSessions` or token reset takes them all).
    pub(crate) fn discard_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        drop(idle);
        self.freed.notify_all();
    }

    pub(crate) fn open(&self) -> usize {
        self.lock().open
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }
}
