//! One deadline per request for database work. A request's store calls (the revocation check,
//! the key lookup, its audit batch) share it: `store.timeout_ms` bounds the request, not each
//! call, so a frozen database refuses a request in that time however many calls it makes.
//! The deadline is a property of the thread doing the request's work, set for that work only.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with `deadline` for the database calls it makes on this thread (the previous one
/// is restored afterwards; `None` leaves only each call's own limit).
pub fn within<T>(deadline: Option<Instant>, f: impl FnOnce() -> T) -> T {
    let before = DEADLINE.with(|d| d.replace(deadline));
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

/// How long a database call made now may take: `limit`, or less when this thread's deadline
/// comes first (zero once it has passed).
pub fn remaining(limit: Duration) -> Duration {
    match DEADLINE.with(Cell::get) {
        Some(deadline) => limit.min(deadline.saturating_duration_since(Instant::now())),
        None => limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_bounds_calls_within_it_and_is_restored() {
        let limit = Duration::from_secs(5);
        assert_eq!(remaining(limit), limit);
        within(Some(Instant::now() + Duration::from_millis(100)), || {
            assert!(remaining(limit) <= Duration::from_millis(100));
            within(None, || assert_eq!(remaining(limit), limit));
            assert!(remaining(limit) <= Duration::from_millis(100));
        });
        assert_eq!(remaining(limit), limit);
        within(Some(Instant::now()), || {
            assert_eq!(remaining(limit), Duration::ZERO)
        });
    }
}
