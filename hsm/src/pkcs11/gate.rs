//! Who may call into the PKCS#11 module, and when it is reinitialised.
//!
//! Every call into the module holds a [`Pass`]. Reinitialising (`C_Finalize`, `C_Initialize`)
//! closes the gate, so no new call starts until it is done and no call ever meets the gap
//! between the two. Calls already in the module are waited for, but only for a while: a
//! remote module (p11-kit's client) whose connection died can leave concurrent calls blocked
//! until `C_Finalize` wakes them, so the wait is bounded, and after `C_Finalize` the calls it
//! woke are given time to leave before `C_Initialize`.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long calls in flight are waited for, before `C_Finalize` and before `C_Initialize`.
const DRAIN: Duration = Duration::from_secs(1);
/// The least time between two reinitialisations.
const SPACING: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    /// Counts reinitialisations.
    generation: u64,
    /// Calls in the module now.
    in_flight: usize,
    /// A reinitialisation is under way: no call may start.
    closed: bool,
    /// When the module was last reinitialised.
    last: Option<Instant>,
}

#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
}

/// Leave to call into the module (dropped when the call and what it did with its session are
/// over).
pub(crate) struct Pass<'a> {
    gate: &'a Gate,
    /// The module's generation when the call started.
    pub(crate) generation: u64,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.gate.lock().in_flight -= 1;
        self.gate.changed.notify_all();
    }
}

/// What a closed gate is for: the caller reinitialises, then calls [`Reinit::done`].
pub(crate) struct Reinit<'a> {
    gate: &'a Gate,
}

impl Reinit<'_> {
    /// Waits (at most [`DRAIN`]) until no call is in the module; whether none is.
    pub(crate) fn drain(&self) -> bool {
        let deadline = Instant::now() + DRAIN;
        let mut state = self.gate.lock();
        while state.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .gate
                .changed
                .wait_timeout(state, left)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }
}

impl Drop for Reinit<'_> {
    fn drop(&mut self) {
        self.gate.lock().closed = false;
        self.gate.changed.notify_all();
    }
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters and flags only: a panic cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    /// Leave to call into the module, once no reinitialisation is under way.
    pub(crate) fn enter(&self) -> Pass<'_> {
        let mut state = self.lock();
        while state.closed {
            state = self.wait(state);
        }
        state.in_flight += 1;
        Pass {
            gate: self,
            generation: state.generation,
        }
    }

    /// Closes the gate to reinitialise the module after a failure seen at generation `seen`.
    /// `Err(true)`: another caller reinitialised since, try again; `Err(false)`: the module
    /// was reinitialised less than [`SPACING`] ago, give up.
    pub(crate) fn close(&self, seen: u64) -> Result<Reinit<'_>, bool> {
        let mut state = self.lock();
        while state.closed {
            state = self.wait(state);
        }
        if state.generation != seen {
            return Err(true);
        }
        if state.last.is_some_and(|t| t.elapsed() < SPACING) {
            return Err(false);
        }
        state.closed = true;
        state.generation += 1;
        state.last = Some(Instant::now());
        Ok(Reinit { gate: self })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_gate_holds_new_calls_and_bounds_the_wait_for_old_ones() {
        let gate = std::sync::Arc::new(Gate::default());
        let stuck = gate.enter();
        assert_eq!(stuck.generation, 0);
        let reinit = gate.close(0).unwrap();
        // The call in flight does not leave: the drain gives up after a while.
        let started = Instant::now();
        assert!(!reinit.drain());
        assert!(started.elapsed() >= DRAIN);
        // A new call waits until the reinitialisation is done.
        let entered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (gate, entered) = (gate.clone(), entered.clone());
            std::thread::spawn(move || {
                let pass = gate.enter();
                entered.store(true, std::sync::atomic::Ordering::SeqCst);
                pass.generation
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!entered.load(std::sync::atomic::Ordering::SeqCst));
        drop(stuck);
        assert!(reinit.drain());
        drop(reinit);
        assert_eq!(waiter.join().unwrap(), 1);
        // A failure from before it asks to try again.
        assert!(matches!(gate.close(0), Err(true)));
        // A second reinitialisation right after a first gives up.
        let fresh = Gate::default();
        drop(fresh.close(0).unwrap());
        assert!(matches!(fresh.close(1), Err(false)));
    }
}
