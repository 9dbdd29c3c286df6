//! A fixed set of worker threads for what blocks (the key store, writes to the store): a
//! bounded number of threads ever calls into the token, and no thread is spawned per request.
//! A request waits for its result without holding a thread; what waits for the audit log waits
//! on the request's own task (see [`crate::service::Deferred`]). A job wakes one idle worker.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
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

/// The pool has stopped.
#[derive(Debug, Clone, Copy)]
pub struct Stopped;

impl Executor {
    /// Starts `threads` workers.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("signet-worker-{i}"))
                    .spawn(move || loop {
                        let job = {
                            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                            loop {
                                if let Some(job) = queue.jobs.pop_front() {
                                    break Some(job);
                                }
                                if queue.stopping {
                                    break None;
                                }
                                queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
                            }
                        };
                        match job {
                            Some(job) => job(),
                            None => return,
                        }
                    })?,
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
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            if queue.stopping {
                return Err(Stopped);
            }
            queue.jobs.push_back(Box::new(move || {
                let _ = tx.send(f());
            }));
        }
        self.shared.ready.notify_one();
        rx.await.map_err(|_| Stopped)
    }

    /// Lets queued jobs finish and stops the workers.
    pub fn stop(&self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stopping = true;
        self.shared.ready.notify_all();
        for handle in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner())) {
            let _ = handle.join();
        }
    }
}
