//! Refused connections, audited so that a flood cannot fill the disk: each refusal is recorded on
//! its own while they are few (up to a budget per second); beyond that they are counted, per
//! reason and source, and written as one summary record per pair and interval. The table of
//! counts is bounded: past its size, new sources are counted together as `other`.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::store::{Event, Outcome};
use crate::support::time::format_time_precise;

/// Most (reason, source) pairs counted between two summaries.
pub const MAX_PAIRS: usize = 256;

#[derive(Debug)]
struct Count {
    count: u64,
    first: String,
    last: String,
}

/// What to do with one refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Record it on its own, now.
    Record(Event),
    /// Counted; it will be in the next summary.
    Counted,
}

/// The counts of one interval.
#[derive(Debug)]
pub struct Refusals {
    per_second: u32,
    second: Instant,
    recorded_this_second: u32,
    pending: BTreeMap<(String, String), Count>,
}

impl Refusals {
    /// Up to `per_second` refusals are recorded one by one each second.
    pub fn new(per_second: u32) -> Self {
        Refusals {
            per_second,
            second: Instant::now(),
            recorded_this_second: 0,
            pending: BTreeMap::new(),
        }
    }

    /// Notes a refusal from `source` (an address) for `reason`.
    pub fn note(&mut self, source: &str, reason: &str) -> Disposition {
        if self.second.elapsed().as_secs() >= 1 {
            self.second = Instant::now();
            self.recorded_this_second = 0;
        }
        if self.recorded_this_second < self.per_second {
            self.recorded_this_second += 1;
            return Disposition::Record(
                Event::new("-", "-", "tls.handshake", source, Outcome::Denied)
                    .with("reason", reason),
            );
        }
        let now = format_time_precise();
        let mut key = (reason.to_string(), source.to_string());
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PAIRS {
            key.1 = "other".into();
        }
        let entry = self.pending.entry(key).or_insert_with(|| Count {
            count: 0,
            first: now.clone(),
            last: now.clone(),
        });
        entry.count += 1;
        entry.last = now;
        Disposition::Counted
    }

    /// One summary record per (reason, source) counted since the last call.
    pub fn summaries(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((reason, source), c)| {
                Event::new("-", "-", "tls.handshake.summary", &source, Outcome::Denied)
                    .with("reason", reason)
                    .with("count", c.count)
                    .with("first", c.first)
                    .with("last", c.last)
            })
            .collect()
    }

    /// How many refusals wait for the next summary.
    pub fn pending(&self) -> u64 {
        self.pending.values().map(|c| c.count).sum()
    }
}

/// Authorization denials, audited so that a principal sending denied requests in a loop
/// cannot fill the disk: each principal's first denials each second are recorded in full (up
/// to its budget); beyond that they are counted per (principal, action, reason) and written
/// as one summary record per triple and interval. Both tables are bounded.
#[derive(Debug)]
pub struct Denials {
    per_second: u32,
    /// Per principal: the second it is in and how many were recorded in it.
    budgets: BTreeMap<String, (Instant, u32)>,
    pending: BTreeMap<(String, String, String), Count>,
}

impl Denials {
    /// Up to `per_second` denials of each principal are recorded one by one each second.
    pub fn new(per_second: u32) -> Self {
        Denials {
            per_second,
            budgets: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Notes a denial; `event` is its full record.
    pub fn note(
        &mut self,
        principal: &str,
        action: &str,
        reason: &str,
        event: Event,
    ) -> Disposition {
        if self.budgets.len() >= MAX_PAIRS && !self.budgets.contains_key(principal) {
            // Forget principals whose second is over; if none is, share one budget.
            self.budgets
                .retain(|_, (since, _)| since.elapsed().as_secs() < 1);
        }
        let key = if self.budgets.len() >= MAX_PAIRS && !self.budgets.contains_key(principal) {
            "other".to_string()
        } else {
            principal.to_string()
        };
        let budget = self.budgets.entry(key).or_insert((Instant::now(), 0));
        if budget.0.elapsed().as_secs() >= 1 {
            *budget = (Instant::now(), 0);
        }
        if budget.1 < self.per_second {
            budget.1 += 1;
            return Disposition::Record(event);
        }
        let now = format_time_precise();
        let mut key = (
            principal.to_string(),
            action.to_string(),
            reason.to_string(),
        );
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PAIRS {
            key = ("other".into(), "other".into(), "other".into());
        }
        let entry = self.pending.entry(key).or_insert_with(|| Count {
            count: 0,
            first: now.clone(),
            last: now.clone(),
        });
        entry.count += 1;
        entry.last = now;
        Disposition::Counted
    }

    /// One summary record per (principal, action, reason) counted since the last call.
    pub fn summaries(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((principal, action, reason), c)| {
                Event::new(
                    &principal,
                    "-",
                    "authorization.denied.summary",
                    &action,
                    Outcome::Denied,
                )
                .with("reason", reason)
                .with("count", c.count)
                .with("first", c.first)
                .with("last", c.last)
            })
            .collect()
    }

    /// How many denials wait for the next summary.
    pub fn pending(&self) -> u64 {
        self.pending.values().map(|c| c.count).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_loop_becomes_a_bounded_number_of_records() {
        let mut d = Denials::new(5);
        let mut recorded = 0;
        for _ in 0..10_000 {
            let e = Event::new("p", "-", "key.sign", "k", Outcome::Denied);
            if let Disposition::Record(_) = d.note("p", "key.sign", "lacks", e) {
                recorded += 1;
            }
        }
        // Another principal still gets its own records in full.
        let e = Event::new("q", "-", "key.sign", "k", Outcome::Denied);
        assert!(matches!(
            d.note("q", "key.sign", "lacks", e),
            Disposition::Record(_)
        ));
        assert_eq!(recorded, 5);
        assert_eq!(d.pending(), 10_000 - 5);
        let summaries = d.summaries();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].details["count"], "9995");
        assert_eq!(summaries[0].principal, "p");
    }

    #[test]
    fn a_flood_becomes_a_bounded_number_of_records() {
        let mut r = Refusals::new(3);
        let mut recorded = 0;
        for i in 0..10_000 {
            let source = format!("10.0.{}.{}:1", i % 1000 / 250, i % 250);
            if let Disposition::Record(_) = r.note(&source, "no-client-certificate") {
                recorded += 1;
            }
        }
        assert_eq!(recorded, 3);
        assert_eq!(r.pending(), 10_000 - 3);
        let summaries = r.summaries();
        assert!(summaries.len() <= MAX_PAIRS + 1, "{}", summaries.len());
        let total: u64 = summaries
            .iter()
            .map(|e| e.details["count"].parse::<u64>().unwrap_or(0))
            .sum();
        assert_eq!(total, 10_000 - 3);
        assert!(summaries.iter().any(|e| e.target == "other"));
        assert!(r.summaries().is_empty());
    }
}
