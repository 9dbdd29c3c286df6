//! Counts read from /proc, shared by the tests and the load benchmark (which includes this
//! file by path).

#![allow(dead_code)]

use std::path::Path;

/// Voluntary context switches of every thread of `pid`, summed
/// (`/proc/<pid>/task/*/status`). A thread that ends between two readings takes its count
/// with it; the server's threads live as long as it does.
pub fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| task_switches(&task.path()))
        .sum()
}

/// Voluntary context switches of the thread of `pid` named `name` (its `comm`); `None` when
/// there is no such thread.
pub fn thread_switches(pid: u32, name: &str) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .and_then(|task| task_switches(&task.path()))
}

/// Voluntary context switches of the calling thread so far.
pub fn own_switches() -> u64 {
    task_switches(Path::new("/proc/thread-self")).unwrap_or(0)
}

/// `voluntary_ctxt_switches` of one `/proc/<pid>/task/<tid>`.
fn task_switches(task: &Path) -> Option<u64> {
    std::fs::read_to_string(task.join("status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
}
