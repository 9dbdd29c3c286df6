//! A fixed set of worker threads for what blocks (the key store, writes to the store): a
//! bounded number of threads ever calls into the token, and no thread is spawned per request.
//! A request waits for its result without holding a thread; what waits for the audit log waits
//! on the request's own task (see [`crate::service::Deferred`]).
//!
//! A job wakes the worker that went idle last (each worker waits on its own condition
//! variable): under light load the same thread, with its caches warm, takes every job, instead
//! of the jobs going round all the threads.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Idle workers, the one that went idle last at the end; whoever wakes one takes it off.
    idle: Vec<usize>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// One per worker.
    wake: Vec<Condvar>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn work(&self, me: usize) {
        let mut queue = self.lock();
        loop {
            if let Some(job) = queue.jobs.pop_front() {
                drop(queue);
                job();
                queue = self.lock();
                continue;
            }
            if queue.stopping {
                return;
            }
            queue.idle.push(me);
            while queue.idle.contains(&me) && !queue.stopping {
                queue = self.wake[me].wait(queue).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

/// The worker pool.
pub struct Executor {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor").finish_non_exhaustive()
    }
}

/// Why a job gave no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobError {
    /// The pool has stopped.
    Stopped,
    /// The job panicked (the worker survives it and takes the next job).
    Panicked,
}

impl Executor {
    /// Starts `threads` workers.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: (0..threads).map(|_| Condvar::new()).collect(),
        });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let shared = shared.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("signet-worker-{i}"))
                    .spawn(move || shared.work(i))?,
            );
        }
        Ok(Executor {
            shared,
            threads: Mutex::new(handles),
        })
    }

    /// Runs `f` on a worker; its result when done.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobError> {
        let (tx, rx) = oneshot::channel();
        let woken = {
            let mut queue = self.shared.lock();
            if queue.stopping {
                return Err(JobError::Stopped);
            }
            queue.jobs.push_back(Box::new(move || {
                // A panic is this request's failure, not the worker's end: a pool that lost its
                // threads one panic at a time would leave every later request waiting forever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                    .map_err(|_| JobError::Panicked);
                let _ = tx.send(result);
            }));
            queue.idle.pop()
        };
        if let Some(i) = woken {
            self.shared.wake[i].notify_one();
        }
        rx.await.unwrap_or(Err(JobError::Stopped))
    }

    /// Lets queued jobs finish and stops the workers.
    pub fn stop(&self) {
        self.shared.lock().stopping = true;
        for wake in &self.shared.wake {
            wake.notify_all();
        }
        for handle in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn name() -> String {
        std::thread::current().name().unwrap().to_string()
    }

    /// Jobs queued while every worker is busy all run; one at a time, each job goes to the
    /// worker that went idle last; a stopped pool takes no job.
    #[test]
    fn every_job_runs_and_a_lone_job_goes_to_the_last_idle_worker() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let executor = Arc::new(Executor::new(3).unwrap());
        let (all, names) = runtime.block_on(async {
            // Many at once: every one runs, on any worker.
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let executor = executor.clone();
                    tokio::spawn(async move {
                        executor
                            .run(|| {
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                name()
                            })
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut all = std::collections::BTreeSet::new();
            for t in tasks {
                all.insert(t.await.unwrap());
            }
            // Then one after another, each once the last worker is idle again.
            let mut names = Vec::new();
            for _ in 0..10 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                names.push(executor.run(name).await.unwrap());
            }
            (all, names)
        });
        assert!(!all.is_empty() && all.len() <= 3, "workers: {all:?}");
        assert!(
            names.windows(2).all(|w| w[0] == w[1]),
            "one job at a time went round the workers: {names:?}"
        );
        executor.stop();
        assert_eq!(
            runtime.block_on(executor.run(|| ())),
            Err(JobError::Stopped)
        );
    }

    /// A job that panics fails alone: every worker is still there for the jobs after it.
    #[test]
    fn a_panicking_job_fails_alone_and_the_workers_survive() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let executor = Executor::new(2).unwrap();
        runtime.block_on(async {
            for _ in 0..5 {
                let failed = executor
                    .run(|| -> u32 { panic!("a bug in a handler") })
                    .await;
                assert_eq!(failed, Err(JobError::Panicked));
            }
            assert_eq!(executor.run(|| 7).await, Ok(7));
        });
        executor.stop();
    }
}
