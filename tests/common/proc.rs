//! Counts read from /proc, shared by the tests and the load benchmark (which includes this
//! file by path).

#![allow(dead_code)]

/// Voluntary context switches of every thread of `pid`, summed
/// (`/proc/<pid>/task/*/status`). A thread that ends between two readings takes its count
/// with it; the server's threads live as long as it does.
pub fn voluntary_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}
