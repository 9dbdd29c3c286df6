//! A result held back until its audit records are durable. The work is done; what it produced
//! is handed out only once the records describing it are on disk (or refused with them).

use crate::domain::audit::Pending;
use crate::error::Result;

/// A result and the audit records it waits for.
#[must_use = "a deferred result must be waited for before it is handed out"]
#[derive(Debug)]
pub struct Deferred<T> {
    value: Result<T>,
    pending: Option<Pending>,
}

impl<T> Deferred<T> {
    /// A result with records to wait for.
    pub fn new(value: Result<T>, pending: Pending) -> Self {
        Deferred {
            value,
            pending: Some(pending),
        }
    }

    /// A result with nothing to wait for.
    pub fn ready(value: Result<T>) -> Self {
        Deferred {
            value,
            pending: None,
        }
    }

    /// Runs `next` with the value when there is one and nothing to wait for (a result that
    /// waits for records, such as a refusal, is handed on as it is).
    pub fn and_then<U>(self, next: impl FnOnce(T) -> Deferred<U>) -> Deferred<U> {
        match (self.value, self.pending) {
            (Ok(value), None) => next(value),
            (Ok(_), Some(pending)) => Deferred::new(
                Err(crate::error::Error::Internal(
                    "a step with records to wait for has no successor".into(),
                )),
                pending,
            ),
            (Err(e), pending) => Deferred {
                value: Err(e),
                pending,
            },
        }
    }

    /// Blocks until the records are durable (never on an async worker), then hands the result
    /// out; if the records could not be written, their error instead.
    pub fn wait(self) -> Result<T> {
        if let Some(pending) = self.pending {
            pending.wait()?;
        }
        self.value
    }

    /// As [`Deferred::wait`], without blocking a thread.
    pub async fn settle(self) -> Result<T> {
        if let Some(pending) = self.pending {
            pending.await?;
        }
        self.value
    }
}
