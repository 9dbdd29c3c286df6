//! Time as Signet writes it: unix seconds inside, RFC 3339 UTC outside.
//!
//! Every rule that reads the time (token lifetimes, revocation pruning, deletion windows, CRL
//! freshness, certificate validity checks, audit record times) reads it here, from the
//! process's [`Clock`]: the system clock, unless a test has installed a [`TestClock`] before
//! opening the service, so that a test waiting for time moves the clock instead of sleeping.
//! Timers (timeouts, the housekeeping interval, the audit checkpoint interval) are monotonic
//! `Instant`s and are not moved by it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use ::time::format_description::well_known::Rfc3339;
use ::time::{Duration, OffsetDateTime};

/// Where the time comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current time, UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system clock: what every process uses unless a test installed another.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The system clock moved forward by what a test has [advanced](TestClock::advance) it: time
/// still passes, and jumps when the test says so.
#[derive(Debug, Default)]
pub struct TestClock {
    ahead_ms: AtomicI64,
}

impl TestClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.ahead_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::milliseconds(self.ahead_ms.load(Ordering::SeqCst))
    }
}

impl Clock for Arc<TestClock> {
    fn now(&self) -> OffsetDateTime {
        self.as_ref().now()
    }
}

static CLOCK: OnceLock<Box<dyn Clock>> = OnceLock::new();

/// Makes `clock` this process's clock. Only before anything has read the time, and once: a
/// clock that changed under a running service would make its records disagree. Returns
/// whether it was installed.
pub fn install(clock: impl Clock) -> bool {
    CLOCK.set(Box::new(clock)).is_ok()
}

fn clock_now() -> OffsetDateTime {
    CLOCK.get_or_init(|| Box::new(SystemClock)).now()
}

/// Current time, unix seconds.
pub fn now() -> i64 {
    clock_now().unix_timestamp()
}

/// RFC 3339 UTC from unix seconds.
pub fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Now, RFC 3339 UTC with milliseconds (audit records).
pub fn format_time_precise() -> String {
    let now = clock_now();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_rfc3339_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert!(format_time_precise().ends_with('Z'));
    }

    #[test]
    fn a_test_clock_runs_with_the_system_and_jumps_when_told() {
        let clock = TestClock::default();
        let before = clock.now();
        assert!((before - OffsetDateTime::now_utc()).abs() < Duration::seconds(1));
        clock.advance(std::time::Duration::from_secs(3600));
        let after = clock.now();
        assert!(
            after - before >= Duration::seconds(3600),
            "{before} {after}"
        );
        assert!(after - before < Duration::seconds(3601), "{before} {after}");
    }
}
