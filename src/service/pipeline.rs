//! One pipeline for every operation. An operation is a small value ([`Operation`]): which
//! action it is, what it is done to, how it is recorded, the rules it must meet beyond its
//! route's requirement, and the work. [`Service::execute`] runs every one the same way, for the
//! API and the CLI alike:
//!
//! 1. the action's requirement (its row in [`super::ACTIONS`]) against the caller's scopes;
//! 2. the operation's own rules (the cross-principal rights, the last admin…);
//!    a refusal at either step is audited (`denied`) and answered 403 or 409;
//! 3. the work, recorded as the operation says: a state change's `requested` record is durable
//!    before anything changes, and its outcome follows; a use (a signature, a token) is handed
//!    out only once its records are durable; a read is not recorded;
//! 4. one count per action and outcome (`signet_operations_total`).
//!
//! Nothing outside this file authorizes or writes a decision's audit record.

use super::{Action, Caller, Deferred, Service};
use crate::error::{classify, Error, Result};
use crate::store::{Event, Outcome};

/// How an operation is recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// A read: no record (a denial still is).
    Read,
    /// A state change: `requested` (durable before the effect: if it cannot be written, nothing
    /// changes), then the outcome described from the result.
    Change,
    /// A use whose result is handed out only once its records (from
    /// [`Operation::records`]) are durable.
    Use,
}

/// Why an operation that met its route's requirement is refused anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may not do this to that (403).
    Forbidden(String),
    /// The state does not allow it (409): the last admin, say.
    Conflict(String),
}

/// One operation of the service.
pub trait Operation {
    /// What it produces.
    type Output;

    /// Which action: its row gives the audit name and the requirement.
    fn action(&self) -> Action;

    /// What the requirement is judged on, and the audit records' target.
    fn target(&self) -> String;

    /// How it is recorded.
    fn recording(&self) -> Recording {
        Recording::Read
    }

    /// The rules beyond the route's requirement (checked before any record of the change).
    fn rules(&self, service: &Service, caller: &Caller) -> Result<Option<Refusal>> {
        let _ = (service, caller);
        Ok(None)
    }

    /// Checks what must hold before a change is recorded (a name free, a key that exists), and
    /// gives the details of its `requested` record. An error here is answered without a
    /// record: nothing was attempted.
    fn requested(&mut self, service: &Service, event: Event) -> Result<Event> {
        let _ = service;
        Ok(event)
    }

    /// Does it.
    fn run(&mut self, service: &Service, caller: &Caller) -> Result<Self::Output>;

    /// A change's outcome record, from its result (details added to `event`).
    fn describe(&self, output: &Self::Output, event: Event) -> Event {
        let _ = output;
        event
    }

    /// A use's records, from its result (none: the use did not happen, e.g. bad input).
    fn records(&self, caller: &Caller, result: &Result<Self::Output>) -> Vec<Event> {
        let outcome = if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        let event = caller.event(self.action().name(), &self.target(), outcome);
        vec![match result {
            Ok(_) => event,
            Err(e) => event.with("error", classify(e).1),
        }]
    }
}

impl Service {
    /// Runs an operation through the pipeline (see the module's description). The answer is
    /// deferred until its records are durable: `.wait()` from a thread that may block,
    /// `.settle().await` from a task.
    pub fn execute<O: Operation>(&self, caller: &Caller, mut op: O) -> Deferred<O::Output> {
        let action = op.action();
        let target = op.target();
        if let Err(e) = self.admit(caller, &op, action, &target) {
            return Deferred::ready(Err(e));
        }
        match op.recording() {
            Recording::Read => {
                let result = op.run(self, caller);
                self.metrics.operation(action.name(), outcome_name(&result));
                Deferred::ready(result)
            }
            Recording::Change => {
                let requested = match op.requested(
                    self,
                    caller.event(action.name(), &target, Outcome::Requested),
                ) {
                    Ok(event) => event,
                    Err(e) => return Deferred::ready(Err(e)),
                };
                // Durable before anything changes: if it cannot be written, nothing does.
                if let Err(e) = self.audit.record(vec![requested.clone()]) {
                    return Deferred::ready(Err(e));
                }
                let result = op.run(self, caller);
                let outcome = match &result {
                    Ok(output) => op.describe(output, requested.outcome(Outcome::Ok)),
                    Err(e) => requested
                        .outcome(Outcome::Error)
                        .with("error", classify(e).1),
                };
                self.metrics.operation(action.name(), outcome_name(&result));
                // The change is made (or failed) and its `requested` record is durable: the
                // outcome's record is waited for too, but its failure is reported, not
                // turned into the change's.
                if let Err(e) = self.audit.record(vec![outcome]) {
                    tracing::error!(error = %e, "the outcome of a recorded change could not be audited");
                }
                Deferred::ready(result)
            }
            Recording::Use => {
                let result = op.run(self, caller);
                self.metrics.operation(action.name(), outcome_name(&result));
                let events = op.records(caller, &result);
                if events.is_empty() {
                    return Deferred::ready(result);
                }
                Deferred::new(result, self.audit.submit(events))
            }
        }
    }

    /// Steps 1 and 2: the requirement, then the operation's rules; a refusal is audited.
    fn admit<O: Operation>(
        &self,
        caller: &Caller,
        op: &O,
        action: Action,
        target: &str,
    ) -> Result<()> {
        if let Some(reason) = caller.refusal(action.spec().requirement, target) {
            return self.deny(caller, action, target, reason);
        }
        match op.rules(self, caller)? {
            None => Ok(()),
            Some(Refusal::Forbidden(reason)) => self.deny(caller, action, target, reason),
            Some(Refusal::Conflict(reason)) => self.refuse_conflict(caller, action, target, reason),
        }
    }
}

/// The outcome label of a result.
fn outcome_name<T>(result: &Result<T>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::Forbidden(_)) => "denied",
        Err(_) => "error",
    }
}
